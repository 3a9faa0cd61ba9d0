"""Add-only ternary 1x1 convolution for CUDA: TE compute and GPU schedule.

    acc[n, co, p] = sum_k x[n, pos[co, k], p] - sum_k x[n, neg[co, k], p]

Why index lists (not sign code baked into the instructions) on a GPU: a warp runs one
instruction stream, so baked code needs the 32 lanes of a warp to share an output channel
anyway, and then per-channel code is a switch over up to 960 straight-line blocks (instruction
cache misses, ~150k instructions on MobileNetV2's widest layer). With index lists every thread
runs the same short loop; the lanes of a warp cover consecutive pixels of one output channel, so
the index load ``pos[co, k]`` is one broadcast (warp-uniform address) and the warp's data load is
32 consecutive 4-pixel groups of one input row (one ``uchar4`` per thread, 128 coalesced bytes).
The data are never multiplied: each step is a compare (padding entry or not), a load and an add /
subtract; the only multiplies are the per-output rescale of the fused epilogue.

Lists are padded with ``Cin`` to the layer's longest channel; a padding entry contributes 0
through a select on the index (warp-uniform, and the CUDA code loads the data only inside that
branch; the row index is clamped so that the access is in bounds either way). Accumulation is
int32: a GPU's integer ALUs are 32-bit (int16 adds are no faster) and 255 * Cin is far below
2**31, so it provably cannot overflow. Each thread sums ``PIXELS_PER_THREAD`` consecutive pixels
where the row length allows (one index load and one 4-byte load per list entry serve them all),
else one.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from .cuda_intrinsics import register_cuda_intrinsics
from .requant import requant_expr
from .ternary_conv1x1 import TernaryLists
from .ternary_forms import Kernel, TernaryLayer

register_cuda_intrinsics()
CUDA_TERNARY_RULE = "prom_tvm.cuda_ternary_conv1x1"
THREADS = 256  # per block: pixels (x) times output channels (y)
PIXELS_PER_THREAD = 4


def cuda_ternary_compute(x: te.Tensor, pos: te.Tensor, neg: te.Tensor, bias: te.Tensor,
                         scale: te.Tensor, magnitude: te.Tensor | None = None, *, rq,
                         float_rescale: bool) -> te.Tensor:
    """(N, Cin, H*W) x -> (N, Cout, H*W) (pixels flattened: a thread's group of pixels may
    straddle two image rows); pos / neg int32 [Cout, L] padded with Cin; bias, scale, magnitude
    and ``float_rescale`` as in ``ternary_conv1x1_compute``."""
    n_batch, cin, hw = (int(v) for v in x.shape)
    cout, length = (int(v) for v in pos.shape)
    k = te.reduce_axis((0, length), name="k")

    def term(n, idx, p):
        row = tirx.min(idx, cin - 1)  # padded entries read a real row, then count 0
        return tirx.if_then_else(idx < cin, x[n, row, p].astype("int32"), 0)

    acc = te.compute(
        (n_batch, cout, hw),
        lambda n, co, p: te.sum(term(n, pos[co, k], p) - term(n, neg[co, k], p), axis=k),
        name="acc", attrs={"schedule_rule": CUDA_TERNARY_RULE},
    )

    def finish(n, co, p):
        if magnitude is not None and float_rescale:
            f32 = "float32"
            total = acc[n, co, p].astype(f32) * magnitude[co].astype(f32) + bias[co].astype(f32)
            return requant_expr(total, scale[co], rq)
        total = acc[n, co, p]
        if magnitude is not None:
            total = total * magnitude[co]  # per-output rescale, after the add chain
        return requant_expr(total + bias[co], scale[co], rq)

    return te.compute((n_batch, cout, hw), finish, name="requant")


def cuda_ternary_kernel(layer: TernaryLayer) -> Kernel:
    """The layer's CUDA kernel (a PrimFunc tagged with ``CUDA_TERNARY_RULE``) and its constants."""
    lists = TernaryLists.from_signs(layer.signs)
    x = te.placeholder((layer.n, layer.cin, layer.hw), layer.x_dtype, name="x")
    pos = te.placeholder(lists.pos.shape, "int32", name="pos")
    neg = te.placeholder(lists.neg.shape, "int32", name="neg")
    bias = te.placeholder((layer.cout,), "int32", name="bias")
    scale = te.placeholder((layer.cout,), "float32", name="scale")
    mag = None if layer.magnitude is None else te.placeholder((layer.cout,), "int32", name="mag")
    out = cuda_ternary_compute(x, pos, neg, bias, scale, mag, rq=layer.rq,
                               float_rescale=layer.float_rescale)
    args = [x, pos, neg, bias, scale] + ([mag] if mag is not None else []) + [out]
    func = te.create_prim_func(args).without_attr("global_symbol")
    consts = [lists.pos, lists.neg, layer.bias, layer.rq.scale.astype(np.float32)]
    if layer.magnitude is not None:
        consts.append(layer.magnitude)
    nnz = int(lists.n_pos.sum() + lists.n_neg.sum())
    details = {"form": "cuda-index-lists", "acc_dtype": "int32", "nonzeros": nnz,
               "list_length": lists.length,
               "note": f"CUDA index lists, {lists.length} entries per sign, acc int32"}
    return Kernel(func, consts, details)


def _extent(sch, loop) -> int | None:
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def _tile(hw: int, cout: int) -> tuple[int, int]:
    """(threads over pixels, threads over output channels) of a block: whole warps of pixels,
    as many as the image fills (one pixel group each), the rest of the block channels."""
    tx = 32
    while tx < 128 and tx < hw:
        tx *= 2
    ty = max(1, min(THREADS // tx, cout))
    return tx, ty


def schedule_cuda_ternary(sch, target=None) -> None:
    """The epilogue's loops carry the mapping: blockIdx.x pixel tiles, blockIdx.y (batch,
    channel tiles), threadIdx.y output channels, threadIdx.x pixels; each thread owns
    PIXELS_PER_THREAD consecutive pixels (one vector load per index where rows are 4-aligned),
    so a warp's load for one list entry covers 32 * 4 consecutive bytes of one input row. The
    add chain is computed at the thread into a register accumulator of those pixels."""
    acc = sch.get_sblock("acc")
    req = sch.get_sblock("requant")
    n, co, p = sch.get_loops(req)
    hw = int(sch.get(p).extent)
    cout = int(sch.get(co).extent)
    # a thread's pixel group divides the row: no partial groups (their extent would be symbolic)
    group = PIXELS_PER_THREAD if hw % PIXELS_PER_THREAD == 0 else 1
    tx, ty = _tile(hw // group, cout)
    pb, pt, pv = sch.split(p, [None, tx, group])
    cb, ct = sch.split(co, [None, ty])
    sch.reorder(pb, n, cb, ct, pt, pv)
    nc = sch.fuse(n, cb)
    sch.bind(pb, "blockIdx.x")
    sch.bind(nc, "blockIdx.y")
    sch.bind(ct, "threadIdx.y")
    sch.bind(pt, "threadIdx.x")
    sch.compute_at(acc, pt)
    sch.set_scope(acc, 0, "local")
    loops = sch.get_loops(acc)
    k = loops[-1]
    lanes = [lp for lp in loops[4:-1] if _extent(sch, lp) != 1]  # under pb, nc, ct, pt
    if lanes:
        sch.reorder(k, *lanes)

    def lanes_of(block):  # whole 4-byte aligned groups: one vector load per list entry
        inner = sch.get_loops(block)[-1]
        if group > 1 and _extent(sch, inner) == group:
            sch.vectorize(inner)

    if lanes:
        lanes_of(acc)  # before the reduction is split: vectorize needs the whole block
    init = sch.decompose_reduction(acc, k)
    lanes_of(init)
    lanes_of(req)


SCHEDULE_RULES = {CUDA_TERNARY_RULE: schedule_cuda_ternary}
