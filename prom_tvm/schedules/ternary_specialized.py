"""Weight-specialized add-only ternary 1x1 conv, built directly as TIR from the sign matrix.

The code has the shape of the AVX-512 probe in DESIGN.md, written as portable TIR vector
expressions (so the same generator serves AVX2, AVX-512 and NEON; only the lane count comes
from the target):

    for block in parallel(N * ceil(HW / L)):        # L = vector bits / 16 pixels
        x_c  = int16xL(x[n, c, start : start + L])  # every used input channel, once
        t_k  = v_a +- v_b                           # shared sub-sums (ternary_cse), each once
        out[n, co, start : start + L] = requant(sum of +-v over the output's terms)

Inputs and sub-sums are SSA values (``tirx.Bind`` of vector variables) that LLVM keeps in
registers, or, when there are more of them than registers, rows of one aligned workspace
buffer read as memory operands (``SSA_MAX_ROWS``); either way every add is one vector
instruction, no index list is read and no weight is stored.  The last block is shifted
back to end at HW, recomputing a few pixels instead of needing a bounds check.  Sums are
int16 where ``int16_fits`` proves it for every partial sum (temporaries too), else int16
chunks added in int32.  The requantization (rescale, round half to even, zero point, clamp)
is fused per output channel, with the channel's constants as immediates.

Building is O(terms) Python object construction — no TVMScript is printed or parsed; a
MobileNetV2 layer at 28x28 or above plans + builds in 0.1-1.7 s.

Measured (``benchmarks/ternary_specialized_layers.py``, 1 thread, AVX-512 host, random
50%-density weights; µs, quiet machine): 32->16@112: 33 vs 74 index lists vs 103
onnxruntime int8; 16->96@112: 131 / 314 / 336; 96->24@56: 21 / 58 / 78; 24->144@56:
51-59 / 142 / 130; 144->24@56: 27 / 70 / 95; 192->32@28: 14-15 / 32-36 / 35.  Sharing
sub-sums runs 0.44-0.5 adds per nonzero weight.  Things that did not work: vector
variables exposed to TVM's CommonSubexprElim (quadratic: 1.5 s of a 1.8 s build, hence the
``reinterpret`` wrapper below); one small buffer per value (TVM 0.27 allocates every
``AllocBuffer`` through TVMBackendAllocWorkspace, so that is hundreds of allocations per
block and nothing LLVM can promote to registers: 10-20x slower).
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


def lanes_from_options(options: dict) -> int:
    """Lanes for the build's target, ``options["target"]`` (``prom_tvm.build`` passes it);
    without one, this machine's CPU.  A wider vector than the target has is still correct
    code: LLVM splits each vector op into native ones."""
    target = options.get("target")
    if target is None:
        from tvm import get_global_func

        target = {"kind": "llvm", "mcpu": get_global_func("tvm.codegen.llvm.GetHostCPUName")()}
    return lanes_for(target)


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


def fake_compute(out_shape, fn, name: str = "out"):
    """te.compute over a 3-d or 4-d shape (te needs the lambda's exact arity)."""
    if len(out_shape) == 3:
        return te.compute(out_shape, lambda n, c, p: fn(n, c, (p,)), name=name)
    return te.compute(out_shape, lambda n, c, i, j: fn(n, c, (i, j)), name=name)


def flat_views(func, bufs: dict, spatial, hw: int):
    """Parameters of NCHW (``spatial`` = (H, W)) or N,C,HW (None) shape, and N,C,HW views of
    x and out for the kernel body: (views, DeclBuffer statements that introduce them).  A
    kernel with NCHW parameters needs no reshape around it (a copy, at a graph's output)."""
    if spatial is None:
        return bufs, []
    views, decls = dict(bufs), []
    for key in ("x", "out"):
        b = bufs[key]
        v = tirx.decl_buffer((b.shape[0], b.shape[1], hw), b.dtype, f"{b.name}_flat",
                             data=b.data)
        views[key] = v
        decls.append(tirx.DeclBuffer(v, data=b.data))  # an alias of the parameter's data
    return views, decls


def spatial_shape(hw: int, spatial) -> tuple[int, ...]:
    if spatial is None:
        return (hw,)
    h, w = (int(d) for d in spatial)
    if h * w != hw:
        raise ValueError(f"spatial {spatial} has {h * w} pixels, not {hw}")
    return (h, w)


def _io_buffers(n_batch: int, cin: int, cout: int, hw: int, x_dtype: str, out_dtype: str,
                n_consts: int, spatial=None):
    """A PrimFunc skeleton main(x (N, Cin, HW), c_0 .. c_k (Cout,), out (N, Cout, HW)) (NCHW
    parameters with ``spatial``); the constants are bias (int32), scale (float32) and
    optionally magnitude (int32).  Returns the function, the N,C,HW views of x and out, the
    constant buffers and the DeclBuffer statements of the views."""
    sp = spatial_shape(hw, spatial)
    x = te.placeholder((n_batch, cin, *sp), x_dtype, "x")
    names = [("bias", "int32"), ("scale", "float32"), ("magnitude", "int32")][:n_consts]
    consts = [te.placeholder((cout,), dt, nm) for nm, dt in names]

    def fake(n, c, p):
        v = x[(n, 0, *p)].astype("float32")
        for k in consts:
            v = v + k[c].astype("float32")
        return v.astype(out_dtype)

    out = fake_compute((n_batch, cout, *sp), fake)
    func, bufs, views, decls = skeleton_buffers([x, *consts], out, spatial, hw)
    return func, views["x"], [bufs[nm] for nm, _ in names], views["out"], decls


def skeleton_buffers(inputs: list, out, spatial, hw: int):
    """The PrimFunc of a placeholder compute ``out`` over ``inputs`` (its body is replaced by
    the caller), its parameter buffers by name (``out`` for the output), the N,C,HW views of
    x and out, and the views' DeclBuffer statements."""
    func = te.create_prim_func([*inputs, out])
    stmt = func.body
    while not (isinstance(stmt, s_tir.SBlock) and stmt.name_hint == "out"):
        stmt = stmt.block if isinstance(stmt, s_tir.SBlockRealize) else stmt.body
    bufs = {r.source.name: r.source for r in stmt.reads}
    bufs["out"] = stmt.writes[0].source
    views, decls = flat_views(func, bufs, spatial, hw)
    return func, bufs, views, decls


def vec(dtype: str, lanes: int) -> str:
    """The TIR dtype of ``lanes`` elements (a scalar for one: TIR has no 1-lane vectors)."""
    return dtype if lanes == 1 else f"{dtype}x{lanes}"


def splat(value, lanes: int):
    return value if lanes == 1 else tirx.Broadcast(value, lanes)


def span(start, lanes: int):
    """Index of ``lanes`` consecutive elements from ``start``."""
    return start if lanes == 1 else tirx.Ramp(start, 1, lanes)


def _bcast(value, dtype: str, lanes: int):
    return splat(tirx.const(value, dtype), lanes)


def _epilogue(acc, lanes: int, bias, scale, magnitude, rq: Requant, float_rescale: bool,
              x86_bits: int | None = None):
    """requant_np on a vector of int16/int32 sums; bias / scale / magnitude are the
    channel's scalars (immediates or loads), magnitude None for {-1, 0, 1} weights.
    ``x86_bits``: the x86 vector width whose epilogue (``requant_x86``) to use, the caller
    having proven ``requant_x86.fits``; None or another width: the portable one."""
    if x86_bits is not None and lanes * 16 == x86_bits:
        from .requant_x86 import fast_epilogue

        return fast_epilogue(acc, lanes, x86_bits, bias, scale, magnitude, rq)
    f32, i32 = vec("float32", lanes), vec("int32", lanes)

    def bc(v, dt):
        return splat(tirx.Cast(dt, v), lanes)

    if magnitude is not None and float_rescale:
        # |m * sum + bias| < 2**24 was proven: exact in float32, one fma
        total = tirx.Add(tirx.Mul(tirx.Cast(f32, acc), bc(magnitude, "float32")),
                         bc(bias, "float32"))
    else:
        total = tirx.Cast(i32, acc) if str(acc.ty) != i32 else acc
        if magnitude is not None:
            total = tirx.Mul(total, bc(magnitude, "int32"))  # after the adds
        total = tirx.Cast(f32, tirx.Add(total, bc(bias, "int32")))
    return _round_clamp(tirx.Mul(total, bc(scale, "float32")), rq, lanes)


# 1.5 * 2**23: adding it to |v| < 2**22 leaves round_half_even(v) in the low mantissa bits
_MAGIC = 12582912.0
_MAGIC_BITS = 0x4B400000


def _round_clamp(v, rq: Requant, lanes: int):
    """clamp(round_half_even(v) + zp, qmin, qmax) in four vector ops.

    Clamping v to [qmin - zp, qmax - zp] first is exact (rounding is monotonic and fixes
    integers) and bounds |v| < 2**22, so v + 1.5 * 2**23 rounds half to even under the
    default FP mode and its bit pattern minus that of 1.5 * 2**23 is the integer.  An even
    zero point rides along in the magic constant (adding an even integer keeps the tie
    parity).  Against roundeven + add + clamp + convert it saves two ops per vector
    (measured 16->96@112: see the module docstring).
    """
    zp = rq.zero_point
    i32 = vec("int32", lanes)
    v = tirx.Max(tirx.Min(v, _bcast(float(rq.qmax - zp), "float32", lanes)),
                 _bcast(float(rq.qmin - zp), "float32", lanes))
    even = zp % 2 == 0
    v = tirx.Add(v, _bcast(_MAGIC + (zp if even else 0), "float32", lanes))
    q = tirx.Sub(tirx.reinterpret(i32, v),
                 _bcast(_MAGIC_BITS - (0 if even else zp), "int32", lanes))
    return tirx.Cast(vec(rq.out_dtype, lanes), q)


# Where the inputs and sub-sums of a block live.  "ssa": vector variables, for LLVM to keep
# in registers; with more values than registers it spills them, unaligned (TVM's kernels do
# not realign the stack), and builds slowly (64->384: 9.5 s).  "buffer": one 64-byte-aligned
# workspace row each, read by every add as a memory operand: no spills, builds 3-6x faster,
# as fast or faster from ~100 values on (measured, µs, ssa vs buffer: 32->16@112 (80
# values) 33 vs 49; 16->96@112 154 vs 152; 192->64@14 15.5 vs 14.5; 64->384@14 31.6 vs
# 22.3; 384->64@14 48.6 vs 31.8).
SSA_MAX_ROWS = 96


def specialized_primfunc(plan: SpecializedPlan, n_batch: int, hw: int, bias: np.ndarray,
                         rq: Requant, magnitude: np.ndarray | None, float_rescale: bool,
                         lanes: int, epilogue: str = "inline", rows: str | None = None,
                         spatial: tuple[int, int] | None = None,
                         x86_bits: int | None = None) -> tirx.PrimFunc:
    """The scheduled PrimFunc: main(x, out) for the inline epilogue, main(x, bias, scale[,
    magnitude], out) for the loop epilogue.

    x: (N, Cin, HW) plan.x_dtype; out: (N, Cout, HW) rq.out_dtype (NCHW both, for
    ``spatial`` = (H, W)); HW >= lanes.  bias:
    int32 [Cout] with the zero-point correction folded in (as for
    ``ternary_conv1x1_compute``); magnitude: int32 [Cout] integer weight magnitudes or None.

    ``rows``: "ssa" / "buffer" (see SSA_MAX_ROWS; None picks by the number of values).
    ``epilogue="inline"``: each channel's requantization follows its add chain, constants
    as immediates (``x86_bits``: see ``_epilogue``).  ``"loop"``: the sums of up to 1 kB of
    channels go to a small buffer and
    one loop requantizes them, loading the constants from the arguments: ~90 bytes less
    code per output channel, but 15-40% slower (measured 16->96@112: 150 vs 131 µs;
    144->24@56: 47 vs 27 µs), so inline is the default.
    """
    if epilogue not in ("inline", "loop"):
        raise ValueError(f"epilogue must be 'inline' or 'loop', got {epilogue!r}")
    inline_consts = (bias, magnitude) if epilogue == "inline" else None
    with_magnitude = magnitude is not None
    sub = plan.subsums
    cin, cout = sub.cin, sub.cout
    if hw < lanes:
        raise ValueError(f"{hw} pixels is less than one vector of {lanes} lanes")
    n_consts = 0 if inline_consts is not None else 3 if with_magnitude else 2
    func, xb, cbufs, ob, decls = _io_buffers(n_batch, cin, cout, hw, plan.x_dtype,
                                             rq.out_dtype, n_consts, spatial)
    blocks = -(-hw // lanes)
    nb = tirx.Var("nb", "int32")
    n, start = tirx.Var("n", "int32"), tirx.Var("start", "int32")
    body = [*decls,
            tirx.Bind(n, nb // blocks) if n_batch > 1 else tirx.Bind(n, tirx.const(0, "int32")),
            tirx.Bind(start, tirx.min(nb % blocks * lanes, hw - lanes))]
    i16 = f"int16x{lanes}"
    used = {v for terms in sub.outputs for v, _ in terms}
    for a, b, _ in sub.temps:
        used.update((a, b))
    if rows is None:
        rows = "ssa" if len(used) <= SSA_MAX_ROWS else "buffer"
    if rows not in ("ssa", "buffer"):
        raise ValueError(f"rows must be 'ssa' or 'buffer', got {rows!r}")
    slot: dict[int, object] = {}
    ramp0 = tirx.Ramp(tirx.const(0, "int32"), 1, lanes)
    if rows == "buffer":
        # widened inputs and sub-sums in one 64-byte-aligned workspace buffer, read back
        # by every use as a memory operand of its add: no register spills at all
        buf = tirx.decl_buffer((len(used), lanes), "int16", "rows", scope="local")
        body.append(tirx.AllocBuffer(buf))

    def define(v: int, expr) -> None:
        if rows == "buffer":
            slot[v] = tirx.BufferLoad(buf, [tirx.const(len(slot), "int32"), ramp0])
            body.append(tirx.BufferStore(buf, expr, list(slot[v].indices)))
            return
        var = tirx.Var(f"v{v}", i16)
        body.append(tirx.Bind(var, expr))
        # A same-type reinterpret is free (LLVM drops the no-op bitcast), but as a call it
        # keeps TVM's CommonSubexprElim pass off the add chains, where it is quadratic
        # (1.5 s of a 1.8 s build for 192 -> 32); loads are off-limits to it anyway.
        slot[v] = tirx.reinterpret(i16, var)

    for c in sorted(v for v in used if v < cin):  # widen each used input channel once
        load = tirx.BufferLoad(xb, [n, c, tirx.Ramp(start, 1, lanes)])
        define(c, tirx.Cast(i16, load))

    def value(v: int):
        """The row of v, emitting temporaries just before their first use (keeps the
        live range short, so fewer of them spill)."""
        if v not in slot:
            a, b, rel = sub.temps[v - cin]
            va, vb = value(a), value(b)
            define(v, tirx.Add(va, vb) if rel > 0 else tirx.Sub(va, vb))
        return slot[v]

    acc_dtype = "int32" if plan.int32_outputs else "int16"
    acc_vec = f"{acc_dtype}x{lanes}"
    # The loop epilogue requantizes GROUP channels' sums per loop: the group's sums stay
    # under TVM's 1 kB stack-allocation limit, and the epilogue code is 1/GROUP per channel.
    group = max(1, 1024 // (lanes * (2 if acc_dtype == "int16" else 4)))
    pending: list = []
    # one buffer per block, reused by every group (each allocation is a workspace call)
    sums = tirx.decl_buffer((min(group, cout), lanes), acc_dtype, "sums", scope="local")
    if inline_consts is None:
        body.insert(len(decls) + 2, tirx.AllocBuffer(sums))

    def flush() -> None:
        if not pending:
            return
        for i, (_, acc) in enumerate(pending):
            body.append(tirx.BufferStore(sums, acc, [tirx.const(i, "int32"), ramp0]))
        first = pending[0][0]
        i = tirx.Var("i", "int32")
        co = i + first
        y = _epilogue(tirx.BufferLoad(sums, [i, ramp0]), lanes,
                      *(tirx.BufferLoad(b, [co]) for b in cbufs[:2]),
                      tirx.BufferLoad(cbufs[2], [co]) if with_magnitude else None, rq,
                      float_rescale, x86_bits)
        body.append(tirx.For(i, 0, len(pending), tirx.ForKind.SERIAL,
                             tirx.BufferStore(ob, y, [n, co, tirx.Ramp(start, 1, lanes)])))
        pending.clear()

    for co in range(cout):
        chunks = plan.chunks[co]
        for terms in chunks:
            for v, _ in terms:
                value(v)
        # An output of only negative terms sums them positively and negates bias and scale
        # instead: (-T) * (-s) == T * s exactly in IEEE arithmetic, so no negation is spent.
        flip = inline_consts is not None and all(sg < 0 for t in chunks for _, sg in t)
        if flip:
            chunks = [[(v, 1) for v, _ in t] for t in chunks]
        if len(chunks) <= 1:
            acc = _signed_sum(chunks[0] if chunks else (), value, i16)
        else:  # int16 partial sums that provably fit, added in int32
            acc = _tree([tirx.Cast(f"int32x{lanes}", _signed_sum(t, value, i16))
                         for t in chunks], tirx.Add)
        if inline_consts is None:
            pending.append((co, acc if str(acc.ty) == acc_vec else tirx.Cast(acc_vec, acc)))
            if len(pending) == group:
                flush()
            continue
        bias, mag = inline_consts
        sign = -1 if flip else 1
        y = _epilogue(acc, lanes, tirx.const(sign * int(bias[co]), "int32"),
                      tirx.const(sign * float(np.float32(rq.scale[co])), "float32"),
                      None if mag is None else tirx.const(int(mag[co]), "int32"), rq,
                      float_rescale, x86_bits)
        body.append(tirx.BufferStore(ob, y, [n, co, tirx.Ramp(start, 1, lanes)]))
    flush()
    loop = tirx.For(nb, 0, n_batch * blocks, tirx.ForKind.PARALLEL, tirx.SeqStmt(body))
    # Relax's analyses expect a root block around a call_tir function's body
    root = s_tir.SBlockRealize([], True, s_tir.SBlock([], [], [], "root", loop))
    # the Relax module names it; tests add a global symbol of their own
    return func.with_body(root).with_attr("tirx.is_scheduled", True).without_attr(
        "global_symbol")


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


# Which layers get specialized code: a code-size budget per pixel.  The inline x86 code of
# a layer measures ~BYTES_PER_NONZERO per nonzero weight (the shared adds plus their spill
# traffic) + BYTES_PER_OUTPUT per output channel (the epilogue) (fit over MobileNetV2's
# shapes, random 50%-density weights: 16->96 16.5 kB, 32->192 42.8 kB, 192->32 29.1 kB,
# 64->384 121.5 kB, 384->64 103 kB).  The time it saves grows with pixels x adds, so the
# speed gained per byte of code grows with the pixels.  The alternative is the table-lookup
# kernel (``ternary_lut``: 2.67 bits per weight of data, ~8 kB of code per shape), measured
# against it, 1 thread (µs, specialized / table lookup; saved µs per kB of code):
# 32->16@112 33 / 87 (12), 16->96@112 131 / 227 (5.8), 96->24@56 21 / 63 (2.7),
# 144->24@56 27 / 85 (2.7), 24->144@56 55 / 88 (1.2); at 28x28 only 0.3-0.5 µs per kB
# (32->192: ~20 / 34 for 52 kB; 192->32: 14.5 / 34 for 38 kB).  A budget of 16 B/pixel
# keeps the 56x56 and 112x112 layers (<= 9 B/pixel at the PROM MobileNetV2's 67% density)
# and gives the 28x28 ones (>= 37 B/pixel) to the table kernel: 6 of 34 layers, ~0.14 MB
# of code, where a 128 B/pixel budget took 12 layers and 0.36 MB for ~0.1 ms (3%) of the
# network's time -- bytes that the 2.6 MB storage goal of the whole library cannot spare.
# build(options={"specialize_bytes_per_pixel": 128}) restores that trade.
# MAX_WEIGHTS bounds the build time (planning grows faster than linearly with the weights).
BYTES_PER_NONZERO = 8.5
BYTES_PER_OUTPUT = 90
MAX_CODE_BYTES_PER_PIXEL = 16
MAX_WEIGHTS = 24576


def estimated_code_bytes(nnz: int, cout: int) -> int:
    return int(BYTES_PER_NONZERO * nnz + BYTES_PER_OUTPUT * cout)


def should_specialize(cin: int, cout: int, hw: int, nnz: int, lanes: int,
                      max_bytes_per_pixel: float = MAX_CODE_BYTES_PER_PIXEL) -> bool:
    """The per-layer rule (see above): whole vectors of pixels, bounded build time, and at
    most ``max_bytes_per_pixel`` bytes of code per output pixel."""
    return (hw >= lanes and cin * cout <= MAX_WEIGHTS
            and estimated_code_bytes(nnz, cout) <= max_bytes_per_pixel * hw)


@dataclass(frozen=True)
class SpecializedKernel:
    """What the Relax lowering needs: the PrimFunc main(x, out) and the summary details."""

    func: tirx.PrimFunc
    details: dict


def specialized_kernel(signs, n_batch: int, hw: int, x_dtype: str, bias: np.ndarray,
                       rq: Requant, magnitude: np.ndarray | None, float_rescale: bool,
                       lanes: int, max_bytes_per_pixel: float = MAX_CODE_BYTES_PER_PIXEL,
                       spatial: tuple[int, int] | None = None) -> SpecializedKernel | None:
    """The specialized kernel of a layer, or None where the rule keeps the index lists."""
    signs2 = np.asarray(signs).reshape(np.shape(signs)[0], -1)
    cout, cin = signs2.shape
    nnz = int(np.count_nonzero(signs2))
    if not should_specialize(cin, cout, hw, nnz, lanes, max_bytes_per_pixel):
        return None
    plan = SpecializedPlan.build(signs2, x_dtype)
    func = specialized_primfunc(plan, n_batch, hw, bias, rq, magnitude, float_rescale, lanes,
                                spatial=spatial)
    return SpecializedKernel(func, kernel_details(plan, nnz, cout, lanes))


def kernel_details(plan: SpecializedPlan, nnz: int, cout: int, lanes: int) -> dict:
    """What ``summary()`` shows for a specialized layer."""
    acc = "int16" if not plan.int32_outputs else f"int16 ({plan.int32_outputs} in chunks+int32)"
    return {"form": "specialized", "nnz": nnz, "adds": plan.adds, "acc_dtype": acc,
            "adds_per_output": round(plan.adds / cout, 1),
            "nnz_per_output": round(nnz / cout, 1), "shared_subsums": len(plan.subsums.temps),
            "lanes": lanes, "code_bytes_estimate": estimated_code_bytes(nnz, cout)}
