"""Vectorized requant epilogue for rows whose width is not a whole number of vectors.

A conv output row of 56, 28, 14 or 7 columns does not split into 16-lane vectors: a
predicated split stops vectorization and a short tail loop is scalarized by LLVM (one
``cvttss2si`` per element). This tensor intrinsic computes a row as whole vectors and a tail
of power-of-two pieces (56 = 16 + 16 + 16 + 8, 28 = 16 + 8 + 4, 7 = 4 + 2 + 1), each piece a
vector of its own width that starts where a stored accumulator vector starts or inside it.
(Two alternatives measured worse or wrong: overlapping the last vector with the previous one
loads across two just-stored accumulator vectors, a store-forwarding stall per row; an
``llvm.masked.store`` of a one-byte tail came out of LLVM 22 as a four-byte store.)

With AVX-512 BW + VL, where the accumulator row is padded to whole vectors (the int8 convs'
int32 stage is, see ``padded_width``), :func:`masked_row_intrin` computes the row as whole
vectors only and stores the last one through a byte mask (``vmovdqu8`` with a k register):
a 14-column row is one 16-lane vector instead of 8 + 4 + 2 pieces, about a third of the
instructions of the deep depthwise convs' epilogue.
"""

from __future__ import annotations

import numpy as np
from tvm import s_tir, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from prom_tvm.schedules.requant import Requant, requant_expr

# Annotation that int8 computes put on their requant block: [zero_point, qmin, qmax].
REQUANT_ATTR = "prom_tvm.requant"


def requant_attrs(rq: Requant) -> dict:
    """Block annotations that let a schedule rebuild ``requant_expr`` for this layer."""
    return {REQUANT_ATTR: [int(rq.zero_point), int(rq.qmin), int(rq.qmax)]}


def _row_lanes(width: int, lanes: int) -> int:
    """Widest power-of-two vector (at most ``lanes``) that fits in the row."""
    v = 1
    while v * 2 <= min(width, lanes):
        v *= 2
    return v


def _value(acc, bias, scale, j, rq: Requant):
    """The requant block's value for column ``j`` (``requant_expr`` of acc + bias)."""
    return requant_expr(acc[j] + bias[0], scale[0], rq)


def _row_desc(width: int, rq: Requant):
    """The pattern both row intrinsics match: a ``requant`` block over ``width`` columns."""
    out_dtype = rq.out_dtype

    @T.prim_func(s_tir=True)
    def desc(
        acc: T.Buffer((width,), "int32", offset_factor=1),
        bias: T.Buffer((1,), "int32", offset_factor=1),
        scale: T.Buffer((1,), "float32", offset_factor=1),
        out: T.Buffer((width,), out_dtype, offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(acc[0:width], bias[0:1], scale[0:1])
            T.writes(out[0:width])
            for j in T.serial(width):
                with T.sblock("requant"):
                    vj = T.axis.spatial(width, j)
                    val = T.meta_var(_value(acc, bias, scale, vj, rq))
                    out[vj] = val

    return desc


def requant_row_intrin(width: int, lanes: int, zero_point: int, qmin: int, qmax: int,
                       out_dtype: str) -> str:
    """Register (once) and return the name of the row intrinsic for this width and epilogue.

    It matches a ``requant`` block of ``width`` columns computing
    ``requant_expr(acc[j] + bias[c], scale[c], rq)``.
    """
    name = f"prom_tvm.requant_row_w{width}_l{lanes}_z{zero_point}_{qmin}_{qmax}_{out_dtype}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    rq = Requant(np.ones(1, np.float32), zero_point, qmin, qmax, out_dtype)
    vec = _row_lanes(width, lanes)
    full, tail = divmod(width, vec)
    # tail pieces of 8, 4, 2, 1 columns (those below vec), in order, with their offsets
    starts, offset = {}, full * vec
    for size in (8, 4, 2, 1):
        if size < vec and tail & size:
            starts[size] = offset
            offset += size
    has8, has4, has2, has1 = (size in starts for size in (8, 4, 2, 1))
    at8, at4, at2, at1 = (starts.get(size, 0) for size in (8, 4, 2, 1))

    @T.prim_func(s_tir=True)
    def impl(
        acc: T.Buffer((width,), "int32", offset_factor=1),
        bias: T.Buffer((1,), "int32", offset_factor=1),
        scale: T.Buffer((1,), "float32", offset_factor=1),
        out: T.Buffer((width,), out_dtype, offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(acc[0:width], bias[0:1], scale[0:1])
            T.writes(out[0:width])
            for k in T.unroll(full):
                for v in T.vectorized(vec):
                    val = T.meta_var(_value(acc, bias, scale, k * vec + v, rq))
                    out[k * vec + v] = val
            if has8:
                for v in T.vectorized(8):
                    val8 = T.meta_var(_value(acc, bias, scale, at8 + v, rq))
                    out[at8 + v] = val8
            if has4:
                for v in T.vectorized(4):
                    val4 = T.meta_var(_value(acc, bias, scale, at4 + v, rq))
                    out[at4 + v] = val4
            if has2:
                for v in T.vectorized(2):
                    val2 = T.meta_var(_value(acc, bias, scale, at2 + v, rq))
                    out[at2 + v] = val2
            if has1:
                val1 = T.meta_var(_value(acc, bias, scale, at1, rq))
                out[at1] = val1

    TensorIntrin.register(name, _row_desc(width, rq), impl)
    return name


def masked_row_intrin(width: int, lanes: int, zero_point: int, qmin: int, qmax: int,
                      out_dtype: str) -> str:
    """Register (once) and return the name of the masked-tail row intrinsic: the same
    ``requant`` block as :func:`requant_row_intrin`, computed as ceil(width / lanes) whole
    vectors, the last stored through a mask of its first width % lanes bytes.  It reads the
    accumulator row up to the next multiple of ``lanes`` (``masked_tail_fits`` checks that
    the row is that long) and writes only the row's ``width`` outputs."""
    name = f"prom_tvm.requant_masked_row_w{width}_l{lanes}_z{zero_point}_{qmin}_{qmax}_{out_dtype}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    rq = Requant(np.ones(1, np.float32), zero_point, qmin, qmax, out_dtype)
    full, tail = divmod(width, lanes)

    def masked_tail(acc, bias, scale, out):
        start = full * lanes
        ptr = tirx.call_intrin("handle", "tirx.tvm_access_ptr", tirx.type_annotation(out_dtype),
                               out.data, out.elem_offset + start, tail, 2)
        mask = tirx.Ramp(0, 1, lanes) < tirx.Broadcast(tail, lanes)
        return tirx.call_llvm_intrin(
            "void", "llvm.masked.store",
            _value(acc, bias, scale, tirx.Ramp(start, 1, lanes), rq), ptr, mask)

    @T.prim_func(s_tir=True)
    def impl(
        acc: T.Buffer((width,), "int32", offset_factor=1),
        bias: T.Buffer((1,), "int32", offset_factor=1),
        scale: T.Buffer((1,), "float32", offset_factor=1),
        out: T.Buffer((width,), out_dtype, offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(acc[0:width], bias[0:1], scale[0:1])
            T.writes(out[0:width])
            for k in T.unroll(full):
                for v in T.vectorized(lanes):
                    val = T.meta_var(_value(acc, bias, scale, k * lanes + v, rq))
                    out[k * lanes + v] = val
            store = T.meta_var(masked_tail(acc, bias, scale, out))
            T.evaluate(store)

    TensorIntrin.register(name, _row_desc(width, rq), impl)
    return name


def masked_tail_fits(sch: s_tir.Schedule, block, width: int, lanes: int, target) -> bool:
    """Whether :func:`masked_row_intrin` may serve this requant block: AVX-512 BW + VL (byte
    masks), a row whose last vector has 2 or more columns, a loop over a whole output row, and an
    accumulator row at least ceil(width / lanes) * lanes long (the requant of output column
    j reads accumulator column j, so the last vector's load stays in the row)."""
    from tvm.target.codegen import target_has_features

    from .cpu_default import as_target

    t = as_target(target)
    try:
        if t.kind.name != "llvm" or not all(
                target_has_features(f, t) for f in ("avx512bw", "avx512vl")):
            return False
    except (RuntimeError, ValueError):
        return False
    if width % lanes < 2 or lanes not in (8, 16):
        # (a one-byte tail: LLVM 22 turns a one-lane masked store into a 4-byte store)
        return False
    blk = sch.get(block)
    if int(blk.writes[0].source.shape[-1]) != width:  # the loop is a whole output row
        return False
    return int(blk.reads[0].source.shape[-1]) >= -(-width // lanes) * lanes


def tensorize_requant_row(sch: s_tir.Schedule, block, loop, lanes: int,
                          target=None) -> bool:
    """Tensorize the row loop ``loop`` of requant block ``block``; False (schedule
    untouched) when the block lacks the annotation or the pattern does not match."""
    annotations = sch.get(block).annotations
    if REQUANT_ATTR not in annotations:
        return False
    zp, qmin, qmax = (int(v) for v in annotations[REQUANT_ATTR])
    width = int(sch.get(loop).extent)
    out_dtype = str(sch.get(block).writes[0].source.dtype)
    vec = min(lanes, 1 << (max(width, 1) - 1).bit_length())  # the row's vector: 7 -> 8
    if target is not None and masked_tail_fits(sch, block, width, vec, target):
        name = masked_row_intrin(width, vec, zp, qmin, qmax, out_dtype)
    else:
        name = requant_row_intrin(width, lanes, zp, qmin, qmax, out_dtype)
    trial = sch.copy()
    try:
        trial.tensorize(loop, name)
    except (RuntimeError, ValueError):
        return False
    sch.tensorize(loop, name)
    return True
