"""Run a QDQ model through onnxruntime and prom_tvm on the same inputs."""

from __future__ import annotations

import numpy as np
import onnx

from prom_tvm.onnx_io import output_step  # noqa: F401 - re-exported for tests


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def lsb_diff(a: np.ndarray, b: np.ndarray, step: float) -> int:
    return int(np.rint(np.abs(a.astype(np.float64) - b) / step).max())
