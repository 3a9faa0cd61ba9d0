"""One ternary pointwise layer (1x1 conv + ReLU) as a QDQ model: the unit of the per-layer
benchmarks and of the kernel-choice tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from prom_tvm.models.qdq import quantize_qdq


def pointwise_float(cin: int, cout: int, hw: int, seed: int = 0) -> onnx.ModelProto:
    """Float 1x1 conv with ternary x per-channel-scale weights (50% zeros) and a bias, + ReLU."""
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1, 0, 1], size=(cout, cin), p=[0.25, 0.5, 0.25])
    w = (signs * rng.uniform(0.5, 1.5, (cout, 1)) / np.sqrt(cin)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="pw"),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "pw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, hw, hw])],
        [numpy_helper.from_array(w.reshape(cout, cin, 1, 1), "w"),
         numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8  # onnxruntime wheels lag onnx's newest IR version
    return m


def pointwise_qdq(cin: int, cout: int, hw: int, seed: int = 0,
                  samples: int = 4) -> tuple[onnx.ModelProto, np.ndarray]:
    """The layer quantized by onnxruntime (per-channel int8 weights: {-127, 0, 127}, uint8
    activations) on ``samples`` U(0, 2) inputs, and the first of them to run it on."""
    rng = np.random.default_rng(seed + 1)
    xs = rng.uniform(0, 2, (samples, 1, cin, hw, hw)).astype(np.float32)
    return quantize_qdq(pointwise_float(cin, cout, hw, seed), xs), xs[0]
