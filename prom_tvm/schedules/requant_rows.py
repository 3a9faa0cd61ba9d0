"""Vectorized requant epilogue for rows whose width is not a whole number of vectors.

A conv output row of 56, 28, 14 or 7 columns does not split into 16-lane vectors: a
predicated split stops vectorization and a short tail loop is scalarized by LLVM (one
``cvttss2si`` per element). This tensor intrinsic computes a row as whole vectors and a tail
of power-of-two pieces (56 = 16 + 16 + 16 + 8, 28 = 16 + 8 + 4, 7 = 4 + 2 + 1), each piece a
vector of its own width that starts where a stored accumulator vector starts or inside it.
(Two alternatives measured worse or wrong: overlapping the last vector with the previous one
loads across two just-stored accumulator vectors, a store-forwarding stall per row; an
``llvm.masked.store`` of a one-byte tail came out of LLVM 22 as a four-byte store.)
"""

from __future__ import annotations

import numpy as np
from tvm import s_tir
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

    def value(acc, bias, scale, j):
        return requant_expr(acc[j] + bias[0], scale[0], rq)

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
                    val = T.meta_var(value(acc, bias, scale, vj))
                    out[vj] = val

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
                    val = T.meta_var(value(acc, bias, scale, k * vec + v))
                    out[k * vec + v] = val
            if has8:
                for v in T.vectorized(8):
                    val8 = T.meta_var(value(acc, bias, scale, at8 + v))
                    out[at8 + v] = val8
            if has4:
                for v in T.vectorized(4):
                    val4 = T.meta_var(value(acc, bias, scale, at4 + v))
                    out[at4 + v] = val4
            if has2:
                for v in T.vectorized(2):
                    val2 = T.meta_var(value(acc, bias, scale, at2 + v))
                    out[at2 + v] = val2
            if has1:
                val1 = T.meta_var(value(acc, bias, scale, at1))
                out[at1] = val1

    TensorIntrin.register(name, desc, impl)
    return name


def tensorize_requant_row(sch: s_tir.Schedule, block, loop, lanes: int) -> bool:
    """Tensorize the row loop ``loop`` of requant block ``block``; False (schedule
    untouched) when the block lacks the annotation or the pattern does not match."""
    annotations = sch.get(block).annotations
    if REQUANT_ATTR not in annotations:
        return False
    zp, qmin, qmax = (int(v) for v in annotations[REQUANT_ATTR])
    width = int(sch.get(loop).extent)
    out_dtype = str(sch.get(block).writes[0].source.dtype)
    name = requant_row_intrin(width, lanes, zp, qmin, qmax, out_dtype)
    trial = sch.copy()
    try:
        trial.tensorize(loop, name)
    except (RuntimeError, ValueError):
        return False
    sch.tensorize(loop, name)
    return True
