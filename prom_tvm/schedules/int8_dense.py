"""int8 dense (Gemm / MatMul with constant weights) as a TE compute, its numpy integer
reference and its default CPU schedule.

As for conv2d, the activation zero-point correction ``-x_zp * sum_k w[n, k]`` is folded into
``bias`` by the caller, so the compute accumulates raw ``x * w`` products in int32.
"""

from __future__ import annotations

import numpy as np
import tvm_ffi
from tvm import s_tir, te, tirx

from prom_tvm.schedules.cpu_default import (
    as_target,
    loop_extent,
    vector_bits,
    vector_lanes,
    vectorize_loop,
)
from prom_tvm.schedules.int8_arm_intrin import dense_dot_intrin, dot_kind
from prom_tvm.schedules.int8_arm_widening import widening_dot_intrin
from prom_tvm.schedules.int8_x86_intrin import (
    dot_intrin,
    has_avx2,
    has_vnni_vbmi,
    pmaddwd_dot_intrin,
)
from prom_tvm.schedules.requant import Requant, requant_expr, requant_np

DENSE_RULE = "prom_tvm.int8_dense"


def _dims(x_shape, w_shape, transpose_w: bool) -> tuple[int, int, int]:
    if len(x_shape) != 2 or len(w_shape) != 2:
        raise ValueError(f"int8 dense: x and w must be 2-D, got {tuple(x_shape)} and "
                         f"{tuple(w_shape)} (reshape batched inputs to (M, K) first)")
    m, k = (int(v) for v in x_shape)
    n, kw = (int(v) for v in w_shape) if transpose_w else (int(w_shape[1]), int(w_shape[0]))
    if k != kw:
        layout = "(N, K)" if transpose_w else "(K, N)"
        raise ValueError(f"int8 dense: x has K={k} but w {tuple(w_shape)} read as {layout} has "
                         f"K={kw}; check transpose_w")
    return m, n, k


def int8_dense_compute(
    x: te.Tensor,
    w: te.Tensor,
    bias: te.Tensor,
    scale: te.Tensor,
    *,
    x_zero_point: int,
    rq: Requant,
    transpose_w: bool = True,
) -> te.Tensor:
    """Quantized dense: ``y[m, n] = requant(sum_k x[m, k] * w[n, k] + bias[n], scale[n])``.

    Parameters
    ----------
    x : te.Tensor
        (M, K) uint8 or int8 activation.
    w : te.Tensor
        int8 weight, (N, K) when ``transpose_w`` (ONNX Gemm ``transB=1``, torch Linear) or
        (K, N) when not (ONNX MatMul). (N, K) is the faster layout: its dot-product kernels
        take contiguous K slices (AVX-512 VNNI ``vpdpbusd`` for uint8 activations and K a
        multiple of 64, ~4x the (K, N) kernel; AVX2 and AArch64 for K a multiple of 16);
        elsewhere both layouts run about equally fast. With constant MatMul weights,
        transpose them to (N, K) at compile time.
    bias : te.Tensor
        int32 [N] with ``-x_zero_point * sum_k w[n, k]`` folded in.
    scale : te.Tensor
        float32 [N] requantization multiplier.
    x_zero_point : int
        Not read by the compute (the caller folds it into ``bias``); kept so every int8
        compute takes the same arguments.
    rq : Requant
        Output zero point, clamp range and dtype.

    Returns
    -------
    te.Tensor
        (M, N) in ``rq.out_dtype``; stages ``dense`` (int32 reduction, tagged for
        meta-schedule) and ``requant``.
    """
    del x_zero_point
    m, n, kk = _dims(x.shape, w.shape, transpose_w)
    k = te.reduce_axis((0, kk), name="k")

    def weight(j, r):
        return w[j, r] if transpose_w else w[r, j]

    acc = te.compute(
        (m, n),
        # int32 products of the widened operands: both fit in 16 bits, so x86 LLVM makes
        # them one vpmaddwd (exact) per 8 lanes, AArch64 an ushll + mla; an int16 multiply
        # then a sign extension (the old form: LLVM cannot widen an i16 mul without nsw)
        # cost vpmullw + vpmovsxwd, 1.1-1.5x slower on AVX2.
        lambda i, j: te.sum(
            x[i, k].astype("int32") * weight(j, k).astype("int32"), axis=k),
        name="dense",
        attrs={"schedule_rule": DENSE_RULE},
    )
    return te.compute(
        (m, n),
        lambda i, j: requant_expr(acc[i, j] + bias[j], scale[j], rq),
        name="requant",
    )


def int8_dense_ref(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    rq: Requant,
    *,
    x_zero_point: int = 0,
    transpose_w: bool = True,
) -> np.ndarray:
    """numpy reference of :func:`int8_dense_compute` (int64 accumulation, then requant_np
    with ``rq.scale``)."""
    del x_zero_point
    _dims(x.shape, w.shape, transpose_w)
    wl = w.astype(np.int64)
    acc = x.astype(np.int64) @ (wl.T if transpose_w else wl)
    acc += np.asarray(bias, dtype=np.int64).reshape(1, -1)
    if np.abs(acc).max(initial=0) >= 2**31:
        raise OverflowError("int8 dense reference: accumulator exceeds int32")
    return requant_np(acc.astype(np.int32), rq, channel_axis=1)


def schedule_int8_dense(sch: s_tir.Schedule, target) -> s_tir.Schedule:
    """Default CPU schedule of :func:`int8_dense_compute` (blocks found by name).

    (K, N) weights: vectorize over output columns (one broadcast activation times a
    contiguous weight row per step), a few vectors per task, parallel over column blocks.
    (N, K) weights: vectorize the reduction over K (rfactor into per-lane partial sums,
    reduced at the end), parallel over output columns; with K a multiple of 16 each step is
    one dot instruction (AVX-512 VNNI, AVX2 ``vpmaddwd``, AArch64 ``udot`` / ``sdot`` /
    ``usdot``, or NEON ``smlal`` pairs without dotprod). The requant epilogue follows each
    block of outputs, vectorized.
    """
    lanes = vector_lanes(target, 32)
    dense = sch.get_sblock("dense")
    req = sch.get_sblock("requant")
    i, j, k = sch.get_loops(dense)
    n, kk = loop_extent(sch, j), loop_extent(sch, k)
    n_major = not _k_major_access(sch, dense)
    x_dtype = sch.get(dense).reads[0].source.dtype
    # (intrinsic, partial sums, products per partial sum, lane innermost) to try, best first
    dots = []
    if n_major and kk % 64 == 0 and x_dtype == "uint8" and has_vnni_vbmi(target):
        dots.append((dot_intrin(16), 16, 4, False))
    avx2 = has_avx2(target) and vector_bits(target) == 256
    if n_major and kk % 16 == 0 and avx2 and x_dtype in ("uint8", "int8"):
        dots.append((pmaddwd_dot_intrin(x_dtype), 8, 2, False))
    arm_dot = dot_kind(target, x_dtype)
    if n_major and kk % 16 == 0 and arm_dot is not None:
        dots.append((dense_dot_intrin(arm_dot), 4, 4, False))
    if n_major and kk % 16 == 0 and "arm_cpu" in as_target(target).keys and x_dtype in (
            "uint8", "int8"):
        dots.append((widening_dot_intrin(x_dtype), 8, 2, True))  # NEON without dotprod
    for intrin, lanes_k, group, lane_inner in dots:
        try:
            _schedule_vnni(sch.copy(), intrin, lanes_k, group, lane_inner)
        except (RuntimeError, ValueError):
            continue  # fall back to the next kernel, then the generic one below
        return _schedule_vnni(sch, intrin, lanes_k, group, lane_inner)
    if n_major and kk % lanes == 0:
        ko, ki = sch.split(k, [None, lanes])
        jo, ji = sch.split(j, [None, _divisor(n, 4)])
        sch.reorder(jo, i, ko, ji, ki)
        sch.parallel(jo)
        # Partial sums per lane (the rfactor block), reduced across lanes afterwards.
        rf = sch.rfactor(ki, factor_axis=0)
        sch.unroll(sch.get_loops(rf)[-2])
        sch.vectorize(sch.get_loops(rf)[-1])
        init = sch.decompose_reduction(rf, sch.get_loops(rf)[-3])
        sch.vectorize(sch.get_loops(init)[-1])
        sch.reverse_compute_at(req, jo)
        return sch
    if n_major:
        jo, ji = sch.split(j, [None, _divisor(n, 4)])
        sch.reorder(jo, i, ji, k)
        sch.parallel(jo)
        sch.reverse_compute_at(req, jo)
        return sch
    # (K, N): columns in vector lanes.
    block = lanes * _divisor(max(1, n // lanes), 4)
    if n % lanes:
        block = lanes
    jo, ji = sch.split(j, [None, block]) if n >= block else (None, j)
    if jo is None:
        sch.reorder(i, k, ji)
        vectorize_loop(sch, ji, lanes)
        return sch
    jv, jl = sch.split(ji, [None, lanes]) if block > lanes else (None, ji)
    inner = [jv, jl] if jv is not None else [jl]
    sch.reorder(jo, i, k, *inner)
    sch.parallel(jo)
    if jv is not None:
        sch.unroll(jv)
    sch.vectorize(jl)
    sch.decompose_reduction(dense, k)
    sch.reverse_compute_at(req, jo)
    vectorize_loop(sch, sch.get_loops(req)[-1], lanes)
    return sch


def _schedule_vnni(sch: s_tir.Schedule, intrin: str, lanes: int, group: int,
                   lane_inner: bool = False) -> s_tir.Schedule:
    """(N, K) weights with a dot-product instruction: ``lanes`` int32 partial sums per
    output, each adding ``group`` products per step, so one instruction covers a contiguous
    ``lanes * group`` slice of activations and weights (AVX-512 VNNI ``vpdpbusd``: 16 x 4,
    AVX2 ``vpmaddwd``: 8 x 2, AArch64 ``udot`` / ``sdot`` / ``usdot``: 4 x 4); four outputs
    share each activation load; the lanes are summed at the end. ``lane_inner``: lane j
    takes products ``lanes * g + j`` (AArch64 ``smlal``: 8 x 2) instead of ``group * j + g``."""
    dense = sch.get_sblock("dense")
    req = sch.get_sblock("requant")
    i, j, k = sch.get_loops(dense)
    n = loop_extent(sch, j)
    jo, ji = sch.split(j, [None, _divisor(n, 4)])
    if lane_inner:
        ko, kk, kj = sch.split(k, [None, group, lanes])
        sch.reorder(jo, i, ko, ji, kk, kj)
    else:
        ko, kj, kk = sch.split(k, [None, lanes, group])
        sch.reorder(jo, i, ko, ji, kj, kk)
    sch.parallel(jo)
    rf = sch.rfactor(kj, factor_axis=2)  # partial sums contiguous: [i, j, lane]
    *_, rf_ji, rf_k, _ = sch.get_loops(rf)  # the intrinsic covers the last two
    sch.unroll(rf_ji)
    init = sch.decompose_reduction(rf, sch.get_loops(rf)[-4])
    sch.vectorize(sch.get_loops(init)[-1])
    sch.reverse_compute_at(req, jo)
    sch.tensorize(rf_k, intrin)
    return sch


def _divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def _k_major_access(sch: s_tir.Schedule, dense) -> bool:
    """True when the weight is read as w[k, n] (MatMul layout)."""
    region = sch.get(dense).reads[1].region
    it_k = sch.get(dense).iter_vars[2].var
    first = region[0].min
    return any(v.same_as(it_k) for v in _vars(first))


def _vars(expr) -> list:
    found = []
    tvm_ffi.structural_walk(expr, (tirx.Var, found.append), order="post")
    return found
