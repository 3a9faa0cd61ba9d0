"""Add-only ternary 1x1 conv for deep layers: packed 2-bit weights and per-pixel sum tables.

Weight-specialized code (``ternary_specialized``) pays where many pixels share few weights;
at 14x14 and 7x7 MobileNetV2 has most of its weights (80% of the ternary ones) and few
pixels, so there the weights are data, packed, and the kernel is the same small code for
every layer of a shape.  The idea is T-MAC's (table lookup instead of multiply), turned so
that it stays add-only and exact:

* input channels are taken in groups of ``g`` (3 or 4); for a vector of L pixels, the
  table of a group holds all 3**g signed sums of its g input rows
  (``T[e] = sum_k s(d_k) x_k`` for the base-3 digits d_k of e, s(0, 1, 2) = (0, +1, -1)),
  each built from a smaller entry with one vector add or subtract;
* a weight group of an output channel is its table index, one byte (g = 4: 2 bits per
  weight, g = 3: 2.67), so an output channel sums one table row per group: one vector add
  for g input channels, where a pixels-in-lanes kernel spends one per nonzero weight;
* tables of GB groups (about 24 kB: they stay in L1) are built per pixel vector, then every
  output channel sums its GB rows in int16 (GB * g * max|x| fits) and adds that to its
  accumulator row (int16 where the whole layer's bound fits, else int32); the last block
  fuses the requantization, with the channel's constants loaded from arguments.

    for task in parallel(N * ceil(HW / L)):               # one vector of L pixels
        for block in range(ceil(groups / GB)):
            T[j, e, :] = T[j, parent(e), :] +- x[g * (block * GB + j) + k, pixels]
            for co in range(Cout):
                s = sum_j T[j, idx[co, block * GB + j], :]     # GB vector adds
                acc[co] (+)= s    (last block: out[co] = requant(acc[co] + s))

No multiplication touches data: table rows are addressed by ``index << log2(row bytes)``.
The last pixel vector is shifted back to end at HW (recomputing a few pixels) and padded
input channels read the last real channel, whose digit is 0 in every padded group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import s_tir, te, tirx

from .requant import Requant

# digit of a weight in a table index: w = 0 -> 0, +1 -> 1, -1 -> 2
_DIGIT = {0: 0, 1: 1, -1: 2}
TABLE_BYTES = 24 * 1024  # tables of one block: well inside a 32-48 kB L1 data cache


@dataclass(frozen=True)
class LutConfig:
    """Shape of one layer's kernel.

    g input channels per table, ``groups_per_block`` tables per block (built together, kept
    in L1), ``blocks`` blocks; ``lanes`` pixels per vector; ``chunk_blocks`` blocks summed in
    int16 before the int32 accumulator takes them (``acc_dtype`` "int16": the whole layer
    fits, no int32 at all).  ``index_scale``: a table index e is stored as e * index_scale,
    so that e * row bytes = stored * 8, an x86 scale-8 address (no shift per lookup).
    """

    g: int
    groups_per_block: int
    blocks: int
    lanes: int
    acc_dtype: str
    chunk_blocks: int
    index_scale: int
    vectors: int = 1  # pixel vectors per task: they share every index load
    co_split: int = 1  # tasks per pixel group, each over Cout / co_split outputs
    words: bool = False  # indices wanted 4 per 32-bit load (see ``word_loads``)
    # outputs per iteration of the output loop (where they divide it): two independent add
    # chains in flight; no measurable change on MobileNetV2's layers, 1 and 4 are tuner knobs
    co_unroll: int = 2

    @property
    def word_loads(self) -> bool:
        """Indices read 4 per 32-bit load (blocks of whole words): a load and an extraction
        per 4 lookups instead of a byte load each.  Off by default: the extractions and their
        register pressure cost about what the loads save (the tuner picks words for 3 of
        MobileNetV2's 19 workloads on AVX-512: ``tuning_logs/``)."""
        return self.words and self.groups_per_block % 4 == 0

    @property
    def padded_cin(self) -> int:
        return self.g * self.groups_per_block * self.blocks

    @property
    def entries(self) -> int:
        return 3 ** self.g


def signs_sum_bound(signs: np.ndarray | None, cin: int, x_dtype: str) -> int:
    """Largest |sum| of one output (the layer's int16 question); no signs: all channels."""
    per_x = 255 if x_dtype == "uint8" else 128
    if signs is None:
        return per_x * cin
    s = np.asarray(signs).reshape(np.shape(signs)[0], -1)
    npos, nneg = (s > 0).sum(axis=1), (s < 0).sum(axis=1)
    if x_dtype == "uint8":  # x >= 0: sums lie in [-255 |N|, 255 |P|]
        return per_x * int(max(npos.max(initial=0), nneg.max(initial=0)))
    return per_x * int((npos + nneg).max(initial=0))


def choose_config(cin: int, cout: int, hw: int, x_dtype: str, lanes: int,
                  signs: np.ndarray | None = None, g: int = 3,
                  table_bytes: int = TABLE_BYTES, vectors: int | None = None,
                  co_split: int | None = None, min_tasks: int = 2,
                  word_loads: bool = False, co_unroll: int = 2) -> LutConfig:
    """Blocks as large as ``table_bytes`` and the int16 block sum allow, balanced so that
    padding is less than one group per block.  g = 3 by default: its 27-entry index fits a
    prescaled byte (scale-8 addressing) and its table is a third of g = 4's; g = 4 stores
    2 bits per weight instead of 2.67."""
    if g not in (2, 3, 4):
        raise ValueError(f"group size g must be 2, 3 or 4, got {g}")
    lanes = max(1, min(lanes, hw))
    per_x = 255 if x_dtype == "uint8" else 128
    pblocks = -(-hw // lanes)
    if vectors is None:  # two vectors share each index load where no vector is wasted
        vectors = 1
    vectors = max(1, min(vectors, pblocks))
    if co_split is None:  # at least min_tasks parallel tasks (threads) per image
        tasks = -(-pblocks // vectors)
        co_split = 1
        while tasks * co_split < min_tasks and cout % (2 * co_split) == 0:
            co_split *= 2
    if cout % co_split:
        raise ValueError(f"co_split {co_split} does not divide {cout} output channels")
    row = 3 ** g * lanes * 2 * vectors
    gb_max = max(1, min(table_bytes // row, 32767 // (per_x * g)))
    groups = -(-cin // g)
    blocks = -(-groups // gb_max)
    gb = -(-groups // blocks)
    if word_loads and gb >= 8:  # whole 4-byte words of indices per block
        # the multiple of 4 that wastes least: padded lookups + ~2 ops per block's
        # accumulator update (and padding is stored: bits per weight)
        def cost(size: int) -> int:
            n = -(-groups // size)
            return n * size + 2 * n

        gb = min(range(gb_max // 4 * 4, 7, -4), key=cost)
        blocks = -(-groups // gb)
    acc = "int16" if signs_sum_bound(signs, cin, x_dtype) <= 32767 else "int32"
    # blocks whose int16 sum provably fits: (blocks * gb * g) channels of max|x| each
    chunk_blocks = blocks if acc == "int16" else max(1, 32767 // (per_x * g * gb))
    scale = lanes // 4 if lanes % 4 == 0 and (3 ** g - 1) * (lanes // 4) <= 255 else 1
    if co_unroll < 1:
        raise ValueError(f"co_unroll must be >= 1, got {co_unroll}")
    return LutConfig(g, gb, blocks, lanes, acc, chunk_blocks, scale, vectors, co_split,
                     word_loads, co_unroll)


def cores_of(target) -> int:
    """The target's ``num-cores`` (prom_tvm's targets always carry it), 1 if unknown: the
    number of parallel tasks a layer should offer so that every core gets work."""
    try:
        return max(1, int(target.attrs.get("num-cores", 1)))
    except (AttributeError, TypeError, ValueError):
        return 1


def pack_indices(signs: np.ndarray, cfg: LutConfig) -> np.ndarray:
    """uint8 [Cout, groups]: the base-3 table index of each group of g weights, times
    ``cfg.index_scale`` (input channels past Cin are zero weights: digit 0)."""
    s = np.asarray(signs).reshape(np.shape(signs)[0], -1).astype(np.int64)
    cout, cin = s.shape
    if not np.isin(s, (-1, 0, 1)).all():
        raise ValueError("ternary sign matrix must contain only -1, 0, +1")
    padded = np.zeros((cout, cfg.padded_cin), np.int64)
    padded[:, :cin] = s
    digits = np.where(padded < 0, 2, padded).reshape(cout, -1, cfg.g)
    weights = 3 ** np.arange(cfg.g)
    return ((digits * weights).sum(axis=2) * cfg.index_scale).astype(np.uint8)


def unpack_indices(idx: np.ndarray, cfg: LutConfig, cin: int) -> np.ndarray:
    """The sign matrix [Cout, Cin] an index array encodes (inverse of ``pack_indices``)."""
    e = idx.astype(np.int64) // cfg.index_scale
    d = np.stack([(e // 3 ** k) % 3 for k in range(cfg.g)], axis=2)
    s = np.select([d == 1, d == 2], [1, -1], 0)
    return s.reshape(idx.shape[0], -1)[:, :cin].astype(np.int8)


def _table_parents(g: int) -> list[tuple[int, int, int]]:
    """For each entry e > 0: (parent entry, input k, +1/-1): T[e] = T[parent] +- x_k, the
    parent being e with its highest nonzero digit cleared (so it is built before e)."""
    out = []
    for e in range(1, 3 ** g):
        k = max(i for i in range(g) if (e // 3 ** i) % 3)
        d = (e // 3 ** k) % 3
        out.append((e - d * 3 ** k, k, 1 if d == 1 else -1))
    return out


def _skeleton(n_batch: int, cin: int, cout: int, hw: int, groups: int, x_dtype: str,
              out_dtype: str, with_magnitude: bool, spatial=None):
    """PrimFunc main(x (N, Cin, HW), idx (Cout, groups) uint8, bias, scale[, magnitude],
    out (N, Cout, HW)) (NCHW x and out with ``spatial``), the N,C,HW views of x and out, the
    other buffers and the views' DeclBuffer statements; the body is replaced."""
    from .ternary_specialized import fake_compute, skeleton_buffers, spatial_shape

    sp = spatial_shape(hw, spatial)
    x = te.placeholder((n_batch, cin, *sp), x_dtype, "x")
    idx = te.placeholder((cout, groups), "uint8", "idx")
    names = [("bias", "int32"), ("scale", "float32")] + (
        [("magnitude", "int32")] if with_magnitude else [])
    consts = [te.placeholder((cout,), dt, nm) for nm, dt in names]

    def fake(n, c, p):
        v = x[(n, 0, *p)].astype("float32") + idx[c, 0].astype("float32")
        for k in consts:
            v = v + k[c].astype("float32")
        return v.astype(out_dtype)

    out = fake_compute((n_batch, cout, *sp), fake)
    func, bufs, views, decls = skeleton_buffers([x, idx, *consts], out, spatial, hw)
    return (func, views["x"], bufs["idx"], [bufs[nm] for nm, _ in names], views["out"],
            decls)


def _i32(v: int):
    return tirx.const(v, "int32")


def lut_primfunc(cfg: LutConfig, n_batch: int, cin: int, cout: int, hw: int, x_dtype: str,
                 rq: Requant, magnitude: int | str | None, float_rescale: bool,
                 spatial: tuple[int, int] | None = None,
                 x86_bits: int | None = None) -> tirx.PrimFunc:
    """The scheduled PrimFunc main(x, idx, bias, scale[, magnitude], out).

    idx: ``pack_indices(signs, cfg)``; bias int32 [Cout] with the zero-point correction
    folded in (as for ``ternary_conv1x1_compute``).  ``magnitude``: None for {-1, 0, 1}
    weights, an int when every channel has the same integer magnitude (onnxruntime's 127:
    an immediate, no argument), "per-channel" for an int32 [Cout] argument.  With
    ``spatial`` = (H, W), x and out are NCHW (no reshape around the kernel).  ``x86_bits``:
    the x86 requantization (``requant_x86``), the caller having proven its bounds.
    """
    if not (magnitude is None or magnitude == "per-channel" or isinstance(magnitude, int)):
        raise ValueError(f"magnitude must be None, an int or 'per-channel', got {magnitude!r}")
    with_magnitude = magnitude == "per-channel"
    from .ternary_specialized import _epilogue, span, splat, vec

    L, g, gb, nb, V = cfg.lanes, cfg.g, cfg.groups_per_block, cfg.blocks, cfg.vectors
    E = cfg.entries
    func, xb, ib, cbufs, ob, decls = _skeleton(n_batch, cin, cout, hw, gb * nb, x_dtype,
                                               rq.out_dtype, with_magnitude, spatial)
    i16, i32 = vec("int16", L), vec("int32", L)
    pblocks = -(-hw // L)
    # the indices as little-endian 32-bit words (an alias of idx's data)
    iw = tirx.decl_buffer((cout, gb * nb // 4), "uint32", "idx_words", data=ib.data)
    if cfg.word_loads:
        decls = [*decls, tirx.DeclBuffer(iw, data=ib.data)]
    pgroups = -(-pblocks // V)
    cc = cout // cfg.co_split  # outputs per task
    t, n, pg, co0 = (tirx.Var(nm, "int32") for nm in ("t", "n", "pg", "co0"))
    starts = [tirx.Var(f"start{v}", "int32") for v in range(V)]
    region = gb * E * L  # one pixel vector's tables
    # flat, so that a row's offset is (stored index) * 4 elements = * 8 bytes, and the V
    # vectors' rows of one index differ by a constant displacement
    table = tirx.decl_buffer((V * region,), "int16", "table", scope="local")
    acc16 = tirx.decl_buffer((cc, V * L), "int16", "acc16", scope="local")
    acc32 = tirx.decl_buffer((cc, V * L), "int32", "acc32", scope="local")
    row_unit = L // cfg.index_scale  # elements per unit of a stored index
    parents = _table_parents(g)

    def acc_at(v: int):
        return span(_i32(v * L), L)

    def build_tables(block) -> tirx.Stmt:
        j = tirx.Var("j", "int32")
        first = (block * gb + j) * g
        stmts = []
        for v in range(V):
            xs = [tirx.Var(f"x{v}_{k}", i16) for k in range(g)]
            stmts += [tirx.Bind(xs[k], tirx.Cast(i16, tirx.BufferLoad(
                xb, [n, tirx.min(first + k, cin - 1), span(starts[v], L)])))
                for k in range(g)]
            zero = splat(tirx.const(0, "int16"), L)
            vals = [zero]
            base = v * region + j * (E * L)
            stmts.append(tirx.BufferStore(table, zero, [span(base, L)]))
            for e, (parent, k, sign) in enumerate(parents, start=1):
                var = tirx.Var(f"e{v}_{e}", i16)
                if parent == 0:
                    expr = xs[k] if sign > 0 else tirx.Sub(zero, xs[k])
                else:
                    expr = (tirx.Add if sign > 0 else tirx.Sub)(vals[parent], xs[k])
                stmts.append(tirx.Bind(var, expr))
                # the same-type reinterpret keeps TVM's CommonSubexprElim off these chains
                vals.append(tirx.reinterpret(i16, var))
                stmts.append(tirx.BufferStore(table, var, [span(base + e * L, L)]))
        return tirx.For(j, 0, gb, tirx.ForKind.SERIAL, tirx.SeqStmt(stmts))

    def block_sums(block, co) -> list:
        """Per vector, the int16 sum of the block's gb table rows for output co0 + co."""
        if cfg.word_loads:
            words = [tirx.BufferLoad(iw, [co0 + co, block * (gb // 4) + q])
                     for q in range(gb // 4)]
            idx = [tirx.Cast("int32", tirx.bitwise_and(
                tirx.shift_right(words[jj // 4], tirx.const(8 * (jj % 4), "uint32")),
                tirx.const(255, "uint32"))) for jj in range(gb)]
        else:
            idx = [tirx.Cast("int32", tirx.BufferLoad(ib, [co0 + co, block * gb + jj]))
                   for jj in range(gb)]
        out = []
        for v in range(V):
            rows = [tirx.BufferLoad(table, [span(v * region + jj * (E * L)
                                                 + idx[jj] * row_unit, L)])
                    for jj in range(gb)]
            while len(rows) > 1:
                nxt = [tirx.Add(rows[i], rows[i + 1]) for i in range(0, len(rows) - 1, 2)]
                rows = nxt + ([rows[-1]] if len(rows) % 2 else [])
            out.append(rows[0])
        return out

    def finish(co, v: int, total) -> tirx.Stmt:
        c = co0 + co
        mag = (tirx.BufferLoad(cbufs[2], [c]) if with_magnitude
               else None if magnitude is None else _i32(magnitude))
        y = _epilogue(total, L, tirx.BufferLoad(cbufs[0], [c]),
                      tirx.BufferLoad(cbufs[1], [c]), mag, rq, float_rescale, x86_bits)
        return tirx.BufferStore(ob, y, [n, c, span(starts[v], L)])

    def each(fn) -> tirx.Stmt:
        stmts = [fn(v) for v in range(V)]
        return stmts[0] if V == 1 else tirx.SeqStmt(stmts)

    def co_work(b, co, case: tuple) -> tirx.Stmt:
        """One output's work in a block of kind ``case`` (see ``block_case``): no branch
        inside, so that LLVM folds every table load into its add."""
        sums = block_sums(b, co)
        a16 = [tirx.BufferLoad(acc16, [co, acc_at(v)]) for v in range(V)]
        a32 = [tirx.BufferLoad(acc32, [co, acc_at(v)]) for v in range(V)]
        first, last, chunk_start, chunk_end, first_chunk = case
        if nb == 1:
            return each(lambda v: finish(co, v, sums[v]))
        if cfg.acc_dtype == "int16":
            if first:
                return each(lambda v: tirx.BufferStore(acc16, sums[v], [co, acc_at(v)]))
            if last:
                return each(lambda v: finish(co, v, tirx.Add(a16[v], sums[v])))
            return each(lambda v: tirx.BufferStore(acc16, tirx.Add(a16[v], sums[v]),
                                                   [co, acc_at(v)]))
        parts = [s_ if chunk_start else tirx.Add(a16[v], s_) for v, s_ in enumerate(sums)]
        if not chunk_end:
            return each(lambda v: tirx.BufferStore(acc16, parts[v], [co, acc_at(v)]))

        def wide(v):
            return tirx.Cast(i32, parts[v])

        if last:
            return each(lambda v: finish(
                co, v, wide(v) if first_chunk else tirx.Add(a32[v], wide(v))))
        if first_chunk:
            return each(lambda v: tirx.BufferStore(acc32, wide(v), [co, acc_at(v)]))
        return each(lambda v: tirx.BufferStore(acc32, tirx.Add(a32[v], wide(v)),
                                               [co, acc_at(v)]))

    def block_case(bi: int) -> tuple:
        cb = cfg.chunk_blocks
        return (bi == 0, bi == nb - 1, bi % cb == 0, bi % cb == cb - 1 or bi == nb - 1,
                bi < cb)

    def case_cond(b, case: tuple):
        """b's block is of kind ``case`` (the flags of ``block_case``, as TIR)."""
        cb = cfg.chunk_blocks
        exprs = [b == 0, b == nb - 1, b % cb == 0,
                 tirx.Or(b % cb == cb - 1, b == nb - 1), b < cb]
        conds = [e if f else tirx.Not(e) for e, f in zip(exprs, case)]
        out = conds[0]
        for c in conds[1:]:
            out = tirx.And(out, c)
        return out

    b = tirx.Var("b", "int32")
    # the kinds of block (first, last, chunk start / end) branch outside the output loop:
    # one branch-free output loop per kind that occurs
    cases = list(dict.fromkeys(block_case(bi) for bi in range(nb)))
    U = cfg.co_unroll if cc % cfg.co_unroll == 0 else 1
    loops = []
    for i, c in enumerate(cases):
        co = tirx.Var(f"co{i}", "int32")  # one variable per loop (TIR is SSA)
        body = [co_work(b, co * U + u, c) for u in range(U)]
        loops.append(tirx.For(co, 0, cc // U, tirx.ForKind.SERIAL,
                              body[0] if U == 1 else tirx.SeqStmt(body)))
    work = loops[-1]
    for c, loop_c in zip(reversed(cases[:-1]), reversed(loops[:-1])):
        work = tirx.IfThenElse(case_cond(b, c), loop_c, work)
    block = tirx.SeqStmt([build_tables(b), work])
    per_image = pgroups * cfg.co_split
    body = [*decls, tirx.Bind(n, t // per_image if n_batch > 1 else _i32(0)),
            tirx.Bind(pg, t % per_image // cfg.co_split),
            tirx.Bind(co0, t % cfg.co_split * cc)]
    # the last vector is shifted back to end at HW; vectors past the pixels repeat it
    body += [tirx.Bind(starts[v], tirx.min((pg * V + v) * L, hw - L)) for v in range(V)]
    body.append(tirx.AllocBuffer(table))
    if nb > 1:
        body.append(tirx.AllocBuffer(acc16))
    if nb > 1 and cfg.acc_dtype == "int32":
        body.append(tirx.AllocBuffer(acc32))
    body.append(tirx.For(b, 0, nb, tirx.ForKind.SERIAL, block))
    loop = tirx.For(t, 0, n_batch * per_image, tirx.ForKind.PARALLEL, tirx.SeqStmt(body))
    root = s_tir.SBlockRealize([], True, s_tir.SBlock([], [], [], "root", loop))
    return func.with_body(root).with_attr("tirx.is_scheduled", True).without_attr(
        "global_symbol")


def lut_ref(x: np.ndarray, idx: np.ndarray, cfg: LutConfig, bias: np.ndarray, rq: Requant,
            magnitude: np.ndarray | None = None) -> np.ndarray:
    """numpy model of the kernel's own algorithm (tables, int16 block sums, accumulator
    dtype), raising OverflowError if any int16 value it forms does not fit; on NC(HW) x."""
    from .requant import requant_np

    n_batch, cin = x.shape[:2]
    xs = x.reshape(n_batch, cin, -1).astype(np.int64)
    hw = xs.shape[2]
    xp = np.concatenate([xs, np.repeat(xs[:, -1:], cfg.padded_cin - cin, axis=1)], axis=1)
    groups = xp.reshape(n_batch, -1, cfg.g, hw)  # [N, G, g, HW]
    digits = np.array([[(e // 3 ** k) % 3 for k in range(cfg.g)] for e in range(cfg.entries)])
    coef = np.select([digits == 1, digits == 2], [1, -1], 0)  # [E, g]
    tables = np.einsum("ek,ngkp->ngep", coef, groups)  # [N, G, E, HW]
    lo, hi = -32768, 32767

    def checked(v, what):
        if v.min(initial=0) < lo or v.max(initial=0) > hi:
            raise OverflowError(f"{what} overflows int16")
        return v

    total = np.zeros((n_batch, idx.shape[0], hw), np.int64)
    part = np.zeros_like(total)
    gb, cb = cfg.groups_per_block, cfg.chunk_blocks
    for b in range(cfg.blocks):
        sel = idx[:, b * gb:(b + 1) * gb].astype(np.int64) // cfg.index_scale  # [Cout, gb]
        rows = tables[:, b * gb + np.arange(gb)[None, :], sel]  # [N, Cout, gb, HW]
        s = checked(rows.sum(axis=2), "a block sum")
        part = s if b % cb == 0 else checked(part + s, "a chunk sum")
        if b % cb == cb - 1 or b == cfg.blocks - 1:
            total += part
    if cfg.acc_dtype == "int16":
        checked(total, "the int16 accumulator")
    if magnitude is not None:
        total = total * magnitude.astype(np.int64)[None, :, None]
    total = total + bias.astype(np.int64)[None, :, None]
    return requant_np(total.astype(np.int32), rq)



def table_adds_per_group(g: int) -> int:
    """Vector adds/subtracts that build one group's table: every entry but 0 and the g
    plain input rows."""
    return 3 ** g - 1 - g


def summary_details(cfg: LutConfig, signs: np.ndarray) -> dict:
    """What ``summary()`` shows for a table-lookup layer.  ``adds``: vector adds per pixel
    vector for the whole layer (table building, one add per table row an output sums, the
    int16 / int32 accumulation), the count that really runs, beside ``nnz``, the nonzero
    weights (one add each in the paper's counting)."""
    s = np.asarray(signs).reshape(np.shape(signs)[0], -1)
    cout = s.shape[0]
    groups = cfg.groups_per_block * cfg.blocks
    nnz = int(np.count_nonzero(s))
    chunks = -(-cfg.blocks // cfg.chunk_blocks)
    adds = (table_adds_per_group(cfg.g) * groups * cfg.co_split
            + cout * (groups - 1) + (cout * (chunks - 1) if cfg.acc_dtype == "int32" else 0))
    return {"form": "table-lookup", "nnz": nnz, "adds": adds,
            "adds_per_output": round(adds / cout, 1), "nnz_per_output": round(nnz / cout, 1),
            "acc_dtype": cfg.acc_dtype, "lanes": cfg.lanes, "channels_per_add": cfg.g,
            "weight_bytes": cout * groups, "bits_per_weight": round(8 * groups / s.shape[1], 2)}
