"""Run a QDQ model through onnxruntime and prom_tvm on the same inputs."""

from __future__ import annotations

import numpy as np
import onnx


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def output_step(model: onnx.ModelProto) -> float:
    """Scale of the final DequantizeLinear: one LSB of the quantized output."""
    inits = {t.name: t for t in model.graph.initializer}
    out = model.graph.output[0].name
    for node in model.graph.node:
        if node.output[0] == out and node.op_type == "DequantizeLinear":
            return float(onnx.numpy_helper.to_array(inits[node.input[1]]))
    raise AssertionError("graph output is not produced by a DequantizeLinear")


def lsb_diff(a: np.ndarray, b: np.ndarray, step: float) -> int:
    return int(np.rint(np.abs(a.astype(np.float64) - b) / step).max())
