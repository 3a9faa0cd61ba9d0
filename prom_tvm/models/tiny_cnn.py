"""A tiny PROM CNN with every layer kind MobileNetV2 has, for fast whole-model tests.

Layers (input ``(1, 3, S, S)``, S = 16 by default): 3x3 conv 3→8 + ReLU6; an inverted-residual
block with a residual Add (1x1 expand 8→16, 3x3 depthwise, 1x1 project 16→8); a strided block
without a residual (1x1 8→16, 3x3 depthwise stride 2, 1x1 16→16); GlobalAveragePool, Flatten,
Gemm 16→classes. The 1x1 convs are exactly ternary per output channel unless
``ternary_pointwise=False``. Compiles and runs in well under a second.
"""

from __future__ import annotations

import numpy as np
import onnx

from prom_tvm.models.onnx_builder import OnnxGraphBuilder
from prom_tvm.models.qdq import quantize_qdq

__all__ = ["tiny_float_cnn", "tiny_qdq_cnn"]


def tiny_float_cnn(
    input_size: int = 16, num_classes: int = 10, ternary_pointwise: bool = True, seed: int = 0
) -> onnx.ModelProto:
    """The float model (BN folded, ReLU6 as Clip), seeded random weights."""
    if input_size < 2 or input_size % 2:
        raise ValueError(f"input_size must be an even number >= 2, got {input_size}")
    g = OnnxGraphBuilder(seed=seed, ternary_pointwise=ternary_pointwise)
    x = g.input("input", (1, 3, input_size, input_size))
    x = g.conv("features.0.0", x, 3, 8, kernel=3, act_name="features.0.2")
    # block with residual: stride 1, cin == cout
    y = g.conv("features.1.conv.0.0", x, 8, 16, kernel=1, act_name="features.1.conv.0.2")
    y = g.conv(
        "features.1.conv.1.0", y, 16, 16, kernel=3, groups=16, act_name="features.1.conv.1.2"
    )
    y = g.conv("features.1.conv.2", y, 16, 8, kernel=1, act=None, gain=1.0)
    x = g.add("features.1.add", x, y)
    # strided block, no residual
    y = g.conv("features.2.conv.0.0", x, 8, 16, kernel=1, act_name="features.2.conv.0.2")
    y = g.conv(
        "features.2.conv.1.0",
        y,
        16,
        16,
        kernel=3,
        stride=2,
        groups=16,
        act_name="features.2.conv.1.2",
    )
    x = g.conv("features.2.conv.2", y, 16, 16, kernel=1, act=None, gain=1.0)
    x = g.global_average_pool("avgpool", x)
    x = g.flatten("flatten", x)
    x = g.gemm("classifier.1", x, 16, num_classes)
    g.output(x, "logits", (1, num_classes))
    return g.model(f"prom_tiny_cnn_{input_size}")


def tiny_qdq_cnn(
    input_size: int = 16,
    num_classes: int = 10,
    ternary_pointwise: bool = True,
    seed: int = 0,
    calibration: np.ndarray | int = 8,
    activation_type: str = "uint8",
    per_channel: bool = True,
) -> onnx.ModelProto:
    """``tiny_float_cnn`` quantized to QDQ by onnxruntime (see ``quantize_qdq``)."""
    fp32 = tiny_float_cnn(input_size, num_classes, ternary_pointwise, seed)
    return quantize_qdq(
        fp32, calibration, seed=seed, activation_type=activation_type, per_channel=per_channel
    )
