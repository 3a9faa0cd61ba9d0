"""PROM MobileNetV2 as ONNX, built from numpy alone (no torch).

The architecture is torchvision's ``mobilenet_v2`` with BatchNorm already folded into the convs (as
an eval-mode export leaves it), node names follow torchvision's module paths
(``features.3.conv.2`` ...), so reports and summaries read like the torch model's.
Weights are seeded random: with ``ternary_pointwise=True`` every 1x1 conv weight is exactly ternary
per output channel, ``{-a_c, 0, +a_c}``, which is what a PROM-quantized network looks like after
BN folding (a per-channel factor keeps a ternary x scale weight ternary x scale).

``quantize_qdq`` turns the float model into the QDQ ONNX that ``onnxruntime.quantization`` emits,
the input format of ``prom_tvm.build``.
"""

from __future__ import annotations

import numpy as np
import onnx

from prom_tvm.models.onnx_builder import OnnxGraphBuilder
from prom_tvm.models.qdq import quantize_qdq

__all__ = [
    "INVERTED_RESIDUAL_SETTING",
    "mobilenet_v2_float",
    "mobilenet_v2_qdq",
    "quantize_qdq",
]

# torchvision's table: expansion t, output channels c, repeats n, first stride s.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels as torchvision does (never more than 10% below ``v``)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def mobilenet_v2_float(
    input_size: int = 224,
    width: float = 1.0,
    num_classes: int = 1000,
    ternary_pointwise: bool = True,
    seed: int = 0,
) -> onnx.ModelProto:
    """A float MobileNetV2 (BN folded) with seeded random weights.

    Parameters
    ----------
    input_size : int
        Height and width of the NCHW input ``input`` (batch 1, 3 channels); a multiple of 32.
    width : float
        torchvision's width multiplier.
    num_classes : int
        Classifier outputs (``logits``).
    ternary_pointwise : bool
        Make every 1x1 conv weight exactly ternary per output channel (PROM); else plain
        random weights everywhere.
    seed : int
        Seed of all weights.
    """
    if input_size % 32 or input_size < 32:
        raise ValueError(f"input_size must be a positive multiple of 32, got {input_size}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    g = OnnxGraphBuilder(seed=seed, ternary_pointwise=ternary_pointwise)
    x = g.input("input", (1, 3, input_size, input_size))

    cin = make_divisible(32 * width)
    x = g.conv("features.0.0", x, 3, cin, kernel=3, stride=2, act="relu6", act_name="features.0.2")
    idx = 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        cout = make_divisible(c * width)
        for i in range(n):
            x = _inverted_residual(g, f"features.{idx}", x, cin, cout, s if i == 0 else 1, t)
            cin = cout
            idx += 1
    last = make_divisible(1280 * max(1.0, width))
    x = g.conv(
        f"features.{idx}.0", x, cin, last, kernel=1, act="relu6", act_name=f"features.{idx}.2"
    )
    x = g.global_average_pool("avgpool", x)
    x = g.flatten("flatten", x)
    x = g.gemm("classifier.1", x, last, num_classes)
    g.output(x, "logits", (1, num_classes))
    return g.model(f"prom_mobilenet_v2_{input_size}")


def _inverted_residual(
    g: OnnxGraphBuilder, name: str, x: str, cin: int, cout: int, stride: int, t: int
) -> str:
    """torchvision's InvertedResidual: [1x1 expand], 3x3 depthwise, 1x1 linear projection."""
    hidden = round(cin * t)
    y = x
    j = 0
    if t != 1:
        y = g.conv(f"{name}.conv.0.0", y, cin, hidden, 1, act="relu6", act_name=f"{name}.conv.0.2")
        j = 1
    y = g.conv(
        f"{name}.conv.{j}.0",
        y,
        hidden,
        hidden,
        3,
        stride=stride,
        groups=hidden,
        act="relu6",
        act_name=f"{name}.conv.{j}.2",
    )
    y = g.conv(f"{name}.conv.{j + 1}", y, hidden, cout, 1, act=None, gain=1.0)
    if stride == 1 and cin == cout:
        y = g.add(f"{name}.add", x, y)
    return y


def mobilenet_v2_qdq(
    input_size: int = 224,
    width: float = 1.0,
    num_classes: int = 1000,
    ternary_pointwise: bool = True,
    seed: int = 0,
    calibration: np.ndarray | int = 8,
    activation_type: str = "uint8",
    per_channel: bool = True,
) -> onnx.ModelProto:
    """``mobilenet_v2_float`` quantized by ``quantize_qdq`` (needs onnxruntime)."""
    fp32 = mobilenet_v2_float(input_size, width, num_classes, ternary_pointwise, seed)
    return quantize_qdq(
        fp32, calibration, seed=seed, activation_type=activation_type, per_channel=per_channel
    )
