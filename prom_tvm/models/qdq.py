"""Quantize a float ONNX model to QDQ ONNX with onnxruntime's static quantizer.

This is how a user without PROM's QAT gets a model ``prom_tvm.build`` reads: per-channel symmetric
int8 weights (a ternary ``{-a_c, 0, +a_c}`` weight becomes ``{-127, 0, 127}`` with scale
``a_c / 127``), 8-bit activations with zero points from MinMax calibration. onnxruntime is an
optional dependency and is imported only here, when called.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

_ACTIVATION_TYPES = ("uint8", "int8")


def _import_quantization():
    try:
        from onnxruntime import quantization
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "quantize_qdq needs onnxruntime: pip install onnxruntime "
            "(or install prom-tvm with the [dev] or [demo] extra)"
        ) from err
    return quantization


def _input_spec(model: onnx.ModelProto) -> tuple[str, tuple[int, ...]]:
    """The one graph input that is not an initializer, with its static shape."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ValueError(f"quantize_qdq supports models with one input, this one has {names}")
    dims = inputs[0].type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        raise ValueError(
            f"input {inputs[0].name!r} has dynamic dims; give the model static shapes first"
        )
    return inputs[0].name, tuple(d.dim_value for d in dims)


def calibration_samples(
    model: onnx.ModelProto, calibration: np.ndarray | int, seed: int = 0
) -> list[np.ndarray]:
    """Inputs for calibration: ``calibration`` seeded N(0, 1) samples, or the given array.

    An array with the input's rank is split along the batch axis; one with rank + 1 is read as
    a stack of inputs.
    """
    _, shape = _input_spec(model)
    if isinstance(calibration, (int, np.integer)):
        if calibration < 1:
            raise ValueError(f"calibration needs at least one sample, got {calibration}")
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(shape).astype(np.float32) for _ in range(int(calibration))]
    data = np.asarray(calibration, dtype=np.float32)
    if data.ndim == len(shape) + 1 and data.shape[1:] == shape:
        return list(data)
    if data.ndim == len(shape) and data.shape[1:] == shape[1:]:
        return [data[i : i + shape[0]] for i in range(0, data.shape[0], shape[0])]
    raise ValueError(
        f"calibration array of shape {data.shape} does not fit the model input {shape}: "
        f"pass N samples as ({'N, ' + ', '.join(map(str, shape))}) or a batch along axis 0"
    )


class _ArrayReader:
    """onnxruntime's CalibrationDataReader protocol over a list of arrays."""

    def __init__(self, name: str, samples: list[np.ndarray]) -> None:
        self._name = name
        self._samples = samples
        self._it: Iterator[np.ndarray] = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self._name: x}

    def rewind(self) -> None:
        self._it = iter(self._samples)


def quantize_qdq(
    model_fp32: onnx.ModelProto,
    calibration: np.ndarray | int = 8,
    seed: int = 0,
    activation_type: str = "uint8",
    per_channel: bool = True,
) -> onnx.ModelProto:
    """``onnxruntime.quantization.quantize_static`` in QDQ format, in memory.

    Parameters
    ----------
    model_fp32 : onnx.ModelProto
        A float model with one static-shaped input.
    calibration : np.ndarray or int
        Calibration inputs, or how many seeded N(0, 1) inputs to draw.
    seed : int
        Seed for drawn calibration inputs.
    activation_type : {"uint8", "int8"}
        Activation encoding (asymmetric, with zero points).
    per_channel : bool
        Per-output-channel weight scales (PROM needs them: one ternary scale per channel).
    """
    if activation_type not in _ACTIVATION_TYPES:
        raise ValueError(
            f"activation_type must be one of {_ACTIVATION_TYPES}, got {activation_type!r}"
        )
    q = _import_quantization()
    name, _ = _input_spec(model_fp32)
    reader = _ArrayReader(name, calibration_samples(model_fp32, calibration, seed))
    act = q.QuantType.QUInt8 if activation_type == "uint8" else q.QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="prom_tvm_qdq_") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "qdq.onnx"
        onnx.save(model_fp32, src)
        # quantize_static logs "consider pre-processing" on every call: the models here are
        # already BN-folded and shape-complete, so the advice does not apply.
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            q.quantize_static(
                str(src),
                str(dst),
                reader,
                quant_format=q.QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=act,
                weight_type=q.QuantType.QInt8,
                calibrate_method=q.CalibrationMethod.MinMax,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        finally:
            logging.disable(previous)
        return onnx.load(dst)
