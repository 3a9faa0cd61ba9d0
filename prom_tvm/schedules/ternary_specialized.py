"""Weight-specialized add-only ternary 1x1 conv, built directly as TIR from the sign matrix.

The code has the shape of the AVX-512 probe in DESIGN.md, written as portable TIR vector
expressions (so the same generator serves AVX2, AVX-512 and NEON; only the lane count comes
from the target):

    for block in parallel(N * ceil(HW / L)):        # L = vector bits / 16 pixels
        x_c  = int16xL(x[n, c, start : start + L])  # every used input channel, once
        t_k  = v_a +- v_b                           # shared sub-sums (ternary_cse), each once
        out[n, co, start : start + L] = requant(sum of +-v over the output's terms)

Inputs and sub-sums are SSA values (``tirx.Bind`` of vector variables), so LLVM keeps them in
registers (or spills them to L1) and every add is one vector instruction; no index list is
read and no weight is stored.  The last block is shifted back to end at HW, recomputing a few
pixels instead of needing a bounds check.  Sums are int16 where ``int16_fits`` proves it for
every partial sum (temporaries too), else int16 chunks added in int32.  The requantization
(rescale, round half to even, zero point, clamp) is fused per output channel, with the
channel's constants as immediates.

Building is O(terms) Python object construction — no TVMScript is printed or parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import s_tir, te, tirx

from .cpu_default import vector_bits
from .requant import Requant
from .ternary_cse import (
    SubSumPlan,
    chunk_terms,
    int16_fits,
    no_sharing,
    plan_subsums,
    term_counts,
)


def lanes_for(target) -> int:
    """int16 pixels per vector register of ``target`` (AVX-512: 32, AVX2: 16, NEON: 8)."""
    return vector_bits(target) // 16


@dataclass(frozen=True)
class SpecializedPlan:
    """The sub-sum program of one layer and how each output is chunked for int16."""

    subsums: SubSumPlan
    chunks: tuple[tuple[tuple[tuple[int, int], ...], ...], ...]  # [co][chunk] -> terms
    x_dtype: str

    @staticmethod
    def build(signs, x_dtype: str, cse: bool = True) -> SpecializedPlan:
        fits = int16_fits(x_dtype)
        sub = plan_subsums(signs, fits) if cse else no_sharing(signs)
        counts = sub.var_counts()
        chunks = tuple(tuple(tuple(c) for c in chunk_terms(t, counts, fits))
                       for t in sub.outputs)
        return SpecializedPlan(sub, chunks, x_dtype)

    @property
    def int32_outputs(self) -> int:
        return sum(len(c) > 1 for c in self.chunks)

    @property
    def adds(self) -> int:
        """Vector adds per pixel block: the sub-sum program's plus the int32 chunk adds."""
        return self.subsums.adds + sum(max(0, len(c) - 1) for c in self.chunks)

    def n_pos_neg(self) -> tuple[np.ndarray, np.ndarray]:
        counts = self.subsums.var_counts()
        pn = [term_counts(t, counts) for t in self.subsums.outputs]
        return (np.array([p for p, _ in pn], np.int64), np.array([n for _, n in pn], np.int64))


def _tree(vals: list, op):
    """Balanced reduction, so the adds do not form one long dependency chain."""
    while len(vals) > 1:
        nxt = [op(vals[i], vals[i + 1]) for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


def _signed_sum(terms, var_of, dtype: str):
    pos = [var_of(v) for v, s in terms if s > 0]
    neg = [var_of(v) for v, s in terms if s < 0]
    add = tirx.Add  # plain TIR vector adds: LLVM picks vpaddw / vaddq_s16
    if pos and neg:
        return tirx.Sub(_tree(pos, add), _tree(neg, add))
    if pos:
        return _tree(pos, add)
    if neg:
        return tirx.Sub(tirx.Broadcast(tirx.const(0, dtype.split("x")[0]), _lanes(dtype)),
                        _tree(neg, add))
    return tirx.Broadcast(tirx.const(0, dtype.split("x")[0]), _lanes(dtype))


def _lanes(dtype: str) -> int:
    return int(dtype.split("x")[1])


def _io_buffers(n_batch: int, cin: int, cout: int, hw: int, x_dtype: str, out_dtype: str):
    """A PrimFunc skeleton with buffers x (N, Cin, HW) and out (N, Cout, HW)."""
    x = te.placeholder((n_batch, cin, hw), x_dtype, "x")
    out = te.compute((n_batch, cout, hw), lambda n, c, p: x[n, 0, p].astype(out_dtype),
                     name="out")
    func = te.create_prim_func([x, out])
    stmt = func.body
    while not (isinstance(stmt, s_tir.SBlock) and stmt.name_hint == "out"):
        stmt = stmt.block if isinstance(stmt, s_tir.SBlockRealize) else stmt.body
    return func, stmt.reads[0].source, stmt.writes[0].source


def _bcast(value, dtype: str, lanes: int):
    return tirx.Broadcast(tirx.const(value, dtype), lanes)


def _epilogue(acc, co: int, lanes: int, bias: np.ndarray, rq: Requant,
              magnitude: np.ndarray | None, float_rescale: bool):
    """requant_np on a vector of int16/int32 sums, constants as immediates."""
    f32, i32 = f"float32x{lanes}", f"int32x{lanes}"
    if magnitude is not None and float_rescale:
        # |m * sum + bias| < 2**24 was proven: exact in float32, one fma
        total = tirx.Add(tirx.Mul(tirx.Cast(f32, acc), _bcast(float(magnitude[co]), "float32",
                                                                lanes)),
                         _bcast(float(bias[co]), "float32", lanes))
    else:
        total = tirx.Cast(i32, acc) if acc.dtype != i32 else acc
        if magnitude is not None:
            total = tirx.Mul(total, _bcast(int(magnitude[co]), "int32", lanes))  # after the adds
        total = tirx.Cast(f32, tirx.Add(total, _bcast(int(bias[co]), "int32", lanes)))
    scaled = tirx.Mul(total, _bcast(float(np.float32(rq.scale[co])), "float32", lanes))
    v = tirx.call_llvm_pure_intrin(f32, "llvm.roundeven", scaled)
    v = tirx.Add(v, _bcast(float(rq.zero_point), "float32", lanes))
    v = tirx.Max(tirx.Min(v, _bcast(float(rq.qmax), "float32", lanes)),
                 _bcast(float(rq.qmin), "float32", lanes))
    return tirx.Cast(f"{rq.out_dtype}x{lanes}", tirx.Cast(i32, v))


def specialized_primfunc(plan: SpecializedPlan, n_batch: int, hw: int, bias: np.ndarray,
                         rq: Requant, magnitude: np.ndarray | None, float_rescale: bool,
                         lanes: int) -> tirx.PrimFunc:
    """The scheduled PrimFunc main(x: (N, Cin, HW) x_dtype, out: (N, Cout, HW) rq.out_dtype).

    Needs HW >= lanes (one whole vector per block).  ``bias`` is int32 [Cout] with the
    zero-point correction folded in, as for ``ternary_conv1x1_compute``.
    """
    sub = plan.subsums
    cin, cout = sub.cin, sub.cout
    if hw < lanes:
        raise ValueError(f"{hw} pixels is less than one vector of {lanes} lanes")
    func, xb, ob = _io_buffers(n_batch, cin, cout, hw, plan.x_dtype, rq.out_dtype)
    blocks = -(-hw // lanes)
    nb = tirx.Var("nb", "int32")
    n, start = tirx.Var("n", "int32"), tirx.Var("start", "int32")
    body = [tirx.Bind(n, nb // blocks) if n_batch > 1 else tirx.Bind(n, tirx.const(0, "int32")),
            tirx.Bind(start, tirx.min(nb % blocks * lanes, hw - lanes))]
    i16 = f"int16x{lanes}"
    values: dict[int, tirx.Var] = {}
    used = {v for terms in sub.outputs for v, _ in terms}
    for a, b, _ in sub.temps:
        used.update((a, b))
    for c in sorted(v for v in used if v < cin):  # widen each used input channel once
        var = tirx.Var(f"x{c}", i16)
        load = tirx.BufferLoad(xb, [n, c, tirx.Ramp(start, 1, lanes)])
        body.append(tirx.Bind(var, tirx.Cast(i16, load)))
        values[c] = var

    def value(v: int):
        """The variable of v, emitting temporaries just before their first use (keeps the
        live range short, so fewer of them spill)."""
        if v not in values:
            a, b, rel = sub.temps[v - cin]
            va, vb = value(a), value(b)
            var = tirx.Var(f"t{v - cin}", i16)
            body.append(tirx.Bind(var, tirx.Add(va, vb) if rel > 0 else tirx.Sub(va, vb)))
            values[v] = var
        return values[v]

    for co in range(cout):
        chunks = plan.chunks[co]
        for terms in chunks:
            for v, _ in terms:
                value(v)
        if len(chunks) <= 1:
            acc = _signed_sum(chunks[0] if chunks else (), value, i16)
        else:  # int16 partial sums that provably fit, added in int32
            acc = _tree([tirx.Cast(f"int32x{lanes}", _signed_sum(t, value, i16))
                         for t in chunks], tirx.Add)
        y = _epilogue(acc, co, lanes, bias, rq, magnitude, float_rescale)
        body.append(tirx.BufferStore(ob, y, [n, co, tirx.Ramp(start, 1, lanes)]))
    loop = tirx.For(nb, 0, n_batch * blocks, tirx.ForKind.PARALLEL, tirx.SeqStmt(body))
    # Relax's analyses expect a root block around a call_tir function's body
    root = s_tir.SBlockRealize([], True, s_tir.SBlock([], [], [], "root", loop))
    return func.with_body(root).with_attr("tirx.is_scheduled", True)


def specialized_ref(x: np.ndarray, plan: SpecializedPlan, bias: np.ndarray, rq: Requant,
                    magnitude: np.ndarray | None = None) -> np.ndarray:
    """numpy reference that runs the plan itself (temporaries, chunks) on NC(HW) x and checks
    that every int16 value it forms fits; bit-exact with ``ternary_conv1x1_ref``."""
    from .requant import requant_np

    sub = plan.subsums
    n_batch = x.shape[0]
    xs = x.reshape(n_batch, sub.cin, -1).astype(np.int64)
    vals = [xs[:, c] for c in range(sub.cin)]
    lo, hi = np.iinfo(np.int16).min, np.iinfo(np.int16).max

    def checked(v):
        if v.size and (v.min() < lo or v.max() > hi):
            raise OverflowError("an int16 value of the plan overflows")
        return v

    for a, b, rel in sub.temps:
        vals.append(checked(vals[a] + rel * vals[b]))
    acc = np.zeros((n_batch, sub.cout, xs.shape[2]), np.int64)
    for co, chunks in enumerate(plan.chunks):
        for terms in chunks:
            part = np.zeros_like(xs[:, 0])
            for v, s in terms:
                part = part + s * vals[v]
            acc[:, co] += checked(part)
    if magnitude is not None:
        acc = acc * magnitude.astype(np.int64)[None, :, None]
    acc = acc + bias.astype(np.int64)[None, :, None]
    return requant_np(acc.astype(np.int32), rq)
