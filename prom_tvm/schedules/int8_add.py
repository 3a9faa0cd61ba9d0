"""Quantized residual add (onnxruntime QLinearAdd semantics) as a TE compute, its numpy
reference and its default CPU schedule.

``y = Q(DQ(a) + DQ(b))`` with per-tensor scales and zero points. onnxruntime's x86 kernel
(MLAS ``MlasQLinearAddKernelAvx2Helper``, used on every AVX2 / AVX-512 machine) does not
dequantize: it folds the scales into two float32 ratios and one float32 offset,

    ra = sa / sy,  rb = sb / sy,  f = zy - fma(ra, za, rb * zb)
    y  = saturate(round_half_even(fma(a, ra, fma(b, rb, f))))

and this module computes exactly that, with the same float32 constants and two fused
multiply-adds, so results match onnxruntime bit for bit. A ReLU between the add and the
output quantizer is folded into ``qmin`` (see ``Requant.clamp_range``).
"""

from __future__ import annotations

import numpy as np
from tvm import s_tir, te, tirx

from prom_tvm.schedules.cpu_default import loop_extent, vector_lanes, vectorize_loop
from prom_tvm.schedules.requant import QRANGE, round_half_even

ADD_RULE = "prom_tvm.int8_add"
# Elements per parallel task: below this the thread-pool launch costs more than it saves.
_CHUNK = 8192


def qlinear_add_constants(a_scale: float, a_zp: int, b_scale: float, b_zp: int,
                          y_scale: float, y_zp: int) -> tuple[np.float32, np.float32, np.float32]:
    """The float32 ratios ``ra``, ``rb`` and offset ``f`` that MLAS computes once per call."""
    f32 = np.float32
    ra = f32(f32(a_scale) / f32(y_scale))
    rb = f32(f32(b_scale) / f32(y_scale))
    # onnxruntime's build contracts ra * za + rb * zb into fma(ra, za, rb * zb): measured, the
    # uncontracted form differs from onnxruntime in a few outputs per million.
    inner = _fma_np(np.array([ra]), np.array([f32(a_zp)]), np.array([f32(rb * f32(b_zp))]))[0]
    f = f32(f32(y_zp) - inner)
    return ra, rb, f


def _check(out_dtype: str, qmin: int | None, qmax: int | None) -> tuple[int, int]:
    if out_dtype not in QRANGE:
        raise ValueError(f"int8 add: out_dtype must be one of {sorted(QRANGE)}, got {out_dtype!r}")
    lo, hi = QRANGE[out_dtype]
    qmin = lo if qmin is None else int(qmin)
    qmax = hi if qmax is None else int(qmax)
    if not lo <= qmin <= qmax <= hi:
        raise ValueError(f"int8 add: clamp range [{qmin}, {qmax}] outside {out_dtype}")
    return qmin, qmax


def _broadcast_shape(sa, sb) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in np.broadcast_shapes(tuple(int(v) for v in sa),
                                                         tuple(int(v) for v in sb)))
    except ValueError:
        raise ValueError(f"int8 add: shapes {tuple(sa)} and {tuple(sb)} do not broadcast") from None


def _fma(x, y, z):
    # llvm.fma is always fused (a libm call where the CPU has no FMA), unlike tirx.fma,
    # which LLVM may split into a multiply and an add.
    return tirx.call_llvm_pure_intrin("float32", "llvm.fma", x, y, z)


def int8_add_compute(
    a: te.Tensor,
    b: te.Tensor,
    *,
    a_scale: float,
    a_zp: int,
    b_scale: float,
    b_zp: int,
    y_scale: float,
    y_zp: int,
    out_dtype: str,
    qmin: int | None = None,
    qmax: int | None = None,
) -> te.Tensor:
    """Quantized add of two 8-bit tensors (numpy broadcasting), onnxruntime-exact.

    Parameters
    ----------
    a, b : te.Tensor
        uint8 or int8 inputs with per-tensor scales ``a_scale``, ``b_scale`` and zero points
        ``a_zp``, ``b_zp``.
    y_scale, y_zp, out_dtype
        Output quantization.
    qmin, qmax : int, optional
        Saturation range (default: the full range of ``out_dtype``); a ReLU after the add
        is ``qmin = y_zp`` (``Requant.clamp_range``).

    Returns
    -------
    te.Tensor
        The broadcast shape in ``out_dtype``; one stage named ``add``.
    """
    qmin, qmax = _check(out_dtype, qmin, qmax)
    shape = _broadcast_shape(a.shape, b.shape)
    ra, rb, f = qlinear_add_constants(a_scale, a_zp, b_scale, b_zp, y_scale, y_zp)

    def index(t, idx):
        # a size-1 axis that broadcasts reads element 0; every other axis reads the loop index
        # (a constant index where nothing broadcasts stops TVM from vectorizing the loads)
        off = len(idx) - len(t.shape)
        return t[tuple(0 if int(d) == 1 and shape[off + k] != 1 else i
                       for k, (d, i) in enumerate(zip(t.shape, idx[off:], strict=True)))]

    def body(*idx):
        av = index(a, idx).astype("float32")
        bv = index(b, idx).astype("float32")
        v = _fma(av, tirx.const(float(ra), "float32"),
                 _fma(bv, tirx.const(float(rb), "float32"), tirx.const(float(f), "float32")))
        v = round_half_even(v)
        v = tirx.max(tirx.min(v, tirx.const(qmax, "float32")), tirx.const(qmin, "float32"))
        return v.astype("int32").astype(out_dtype)

    return te.compute(shape, body, name="add", attrs={"schedule_rule": ADD_RULE})


def _fma_np(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 fma: the product is exact in float64, the sum is made exact
    with TwoSum, and a float64 result that lies on a float32 rounding midpoint is nudged the
    way its rounding error points (what a single rounding would do)."""
    p = x.astype(np.float64) * y.astype(np.float64)
    z64 = np.asarray(z, dtype=np.float64)
    s = p + z64
    bb = s - p
    err = (p - (s - bb)) + (z64 - bb)
    r = s.astype(np.float32)
    toward = np.where(s > r.astype(np.float64), np.float32(np.inf), np.float32(-np.inf))
    other = np.nextafter(r, toward.astype(np.float32))
    mid = (r.astype(np.float64) + other.astype(np.float64)) / 2
    on_mid = (s == mid) & (err != 0)
    up = err > 0
    lo = np.minimum(r, other)
    hi = np.maximum(r, other)
    return np.where(on_mid, np.where(up, hi, lo), r).astype(np.float32)


def int8_add_ref(
    a: np.ndarray,
    b: np.ndarray,
    *,
    a_scale: float,
    a_zp: int,
    b_scale: float,
    b_zp: int,
    y_scale: float,
    y_zp: int,
    out_dtype: str,
    qmin: int | None = None,
    qmax: int | None = None,
) -> np.ndarray:
    """numpy reference of :func:`int8_add_compute` (same constants, exact fma)."""
    qmin, qmax = _check(out_dtype, qmin, qmax)
    ra, rb, f = qlinear_add_constants(a_scale, a_zp, b_scale, b_zp, y_scale, y_zp)
    a32, b32 = np.broadcast_arrays(a.astype(np.float32), b.astype(np.float32))
    v = _fma_np(a32, np.full_like(a32, ra), _fma_np(b32, np.full_like(b32, rb), np.full_like(
        b32, f)))
    return np.clip(np.rint(v), qmin, qmax).astype(out_dtype)


def schedule_int8_add(sch: s_tir.Schedule, target) -> s_tir.Schedule:
    """Default CPU schedule: the last two axes (one NCHW plane) fused and vectorized in whole
    vectors, the leading axes fused and run in parallel when there is enough work.

    Planes are not fused with channels: a vector that may straddle two planes makes TVM's
    index simplifier give up and the loads turn into per-lane gathers.
    """
    lanes = vector_lanes(target, 32)
    block = sch.get_sblock("add")
    loops = sch.get_loops(block)
    inner = sch.fuse(*loops[-2:]) if len(loops) > 1 else loops[0]
    outer = loops[:-2]
    if outer:
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        work = loop_extent(sch, fused) * loop_extent(sch, inner)
        if loop_extent(sch, fused) > 1 and work > _CHUNK:
            sch.parallel(fused)
    vectorize_loop(sch, inner, lanes)
    return sch
