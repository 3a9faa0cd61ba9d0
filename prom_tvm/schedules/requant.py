"""Requantization epilogue shared by every integer kernel, with its numpy reference.

Semantics are onnxruntime's QLinearConv / MLAS ``MlasRequantizeOutput``: the int32
accumulator (bias and zero-point corrections already added) is converted to float32,
multiplied by the per-output-channel float32 scale ``sx * sw[c] / sy``, rounded half to
even, offset by the output zero point and saturated.  ReLU / ReLU6 that follow the conv in
float are folded into the clamp range (quantization is monotonic, so
``Q(clip(v, a, b)) == clamp(Q(v), Q(a), Q(b))`` exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import tirx

QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def ort_scale(x_scale: float, w_scale: np.ndarray, y_scale: float) -> np.ndarray:
    """Per-channel requantization scale computed in float32 the way onnxruntime does."""
    xs = np.float32(x_scale)
    ys = np.float32(y_scale)
    return (xs * np.asarray(w_scale, dtype=np.float32) / ys).astype(np.float32)


@dataclass(frozen=True)
class Requant:
    """Output quantization of one layer.

    scale: float32 [C] multiplier applied to the int32 accumulator.
    zero_point: output zero point.
    qmin, qmax: saturation range in the quantized domain (ReLU/ReLU6 folded in).
    out_dtype: "uint8" or "int8".
    """

    scale: np.ndarray
    zero_point: int
    qmin: int
    qmax: int
    out_dtype: str

    def __post_init__(self):
        if self.out_dtype not in QRANGE:
            raise ValueError(f"out_dtype must be one of {sorted(QRANGE)}, got {self.out_dtype!r}")
        lo, hi = QRANGE[self.out_dtype]
        if not (lo <= self.qmin <= self.qmax <= hi):
            raise ValueError(f"clamp range [{self.qmin}, {self.qmax}] outside {self.out_dtype}")

    @staticmethod
    def clamp_range(out_dtype: str, zero_point: int, y_scale: float,
                    lo: float | None = None, hi: float | None = None) -> tuple[int, int]:
        """Quantized clamp range for an activation clip [lo, hi] (None = unbounded)."""
        qlo, qhi = QRANGE[out_dtype]
        if lo is not None:
            qlo = max(qlo, int(np.clip(np.rint(np.float32(lo) / np.float32(y_scale)) + zero_point,
                                       *QRANGE[out_dtype])))
        if hi is not None:
            qhi = min(qhi, int(np.clip(np.rint(np.float32(hi) / np.float32(y_scale)) + zero_point,
                                       *QRANGE[out_dtype])))
        return qlo, qhi


def requant_np(acc: np.ndarray, rq: Requant, channel_axis: int = 1) -> np.ndarray:
    """numpy reference: int32 accumulator -> quantized output (bit-exact contract)."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    scale = rq.scale.astype(np.float32).reshape(shape)
    v = np.rint(acc.astype(np.float32) * scale)  # np.rint rounds half to even
    v = v + np.float32(rq.zero_point)
    return np.clip(v, rq.qmin, rq.qmax).astype(rq.out_dtype)


def round_half_even(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """Round a float32 value to nearest, ties to even, as a vectorizable expression.

    ``tirx.nearbyint`` rounds the same way but TVM 0.27's loop vectorizer does not know it
    (the op lacks ``TVectorizable``): a loop containing it is scalarized. ``llvm.roundeven`` is
    a pure LLVM intrinsic, vectorized like any other (vroundps / frintn). A vector ``x``
    gives the vector (the masked row epilogue builds its vector expression with it).
    """
    return tirx.call_llvm_pure_intrin(str(x.ty.dtype), "llvm.roundeven", x)


def requant_expr(acc: tirx.PrimExpr, scale: tirx.PrimExpr, rq: Requant) -> tirx.PrimExpr:
    """TE/TIR expression of the epilogue for one element.

    ``scale`` is the element's float32 channel scale (a load from a constant tensor).
    The float multiply here is the only multiplication an add-only kernel performs.
    """
    v = round_half_even(acc.astype(_like("float32", acc)) * scale) + tirx.const(rq.zero_point,
                                                                               "float32")
    v = tirx.max(tirx.min(v, tirx.const(rq.qmax, "float32")), tirx.const(rq.qmin, "float32"))
    return v.astype(_like("int32", v)).astype(_like(rq.out_dtype, v))


def _like(dtype: str, x: tirx.PrimExpr) -> str:
    """``dtype`` with ``x``'s lane count (a vector ``acc`` gives a vector epilogue)."""
    lanes = x.ty.dtype.lanes
    return dtype if lanes == 1 else f"{dtype}x{lanes}"
