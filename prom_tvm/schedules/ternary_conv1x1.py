"""Add-only ternary 1x1 convolution: TE compute, numpy reference, default CPU schedule.

A PROM pointwise conv has weights w[co, ci] in {-1, 0, +1} (times a per-channel scale that
the requantization absorbs), so

    acc[co, p] = sum_{ci in P(co)} x[ci, p] - sum_{ci in N(co)} x[ci, p]

The weights are known at compile time, so the kernel does not read them at all: it reads
per-output-channel *index lists* of the +1 and -1 input channels (padded to a common length
with a zero row) and adds / subtracts whole pixel vectors.  Pixels are the vector lanes
(NCHW keeps them contiguous); a block of pixels of every input channel is widened once into a
small buffer that stays in cache while every output channel is accumulated from it.

Partial sums are int16 (twice the lanes of int32) over chunks of the index lists short
enough that the bound (entries per chunk) * max|x| provably fits; chunks are summed in int32.
The one multiplication per output element is the float rescale of the epilogue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from .requant import Requant, requant_expr, requant_np

SCHEDULE_RULE = "prom_tvm.ternary_conv1x1"


@dataclass(frozen=True)
class TernaryLists:
    """Index lists of one ternary 1x1 layer, derived from its sign matrix.

    pos / neg: int32 [Cout, L] input-channel indices of the +1 / -1 weights, padded with
    ``Cin`` (the zero row of the widened input) to a common length L.
    """

    pos: np.ndarray
    neg: np.ndarray
    n_pos: np.ndarray
    n_neg: np.ndarray
    cin: int

    def padded_to(self, length: int) -> TernaryLists:
        """The same lists padded with the zero row to ``length`` entries."""
        extra = length - self.length
        if extra < 0:
            raise ValueError(f"cannot pad lists of length {self.length} to {length}")
        pad = np.full((self.pos.shape[0], extra), self.cin, np.int32)
        return TernaryLists(np.hstack([self.pos, pad]), np.hstack([self.neg, pad]),
                            self.n_pos, self.n_neg, self.cin)

    @staticmethod
    def from_signs(signs: np.ndarray) -> TernaryLists:
        signs = np.asarray(signs)
        if signs.ndim == 4:
            signs = signs.reshape(signs.shape[0], signs.shape[1])
        if not np.isin(signs, (-1, 0, 1)).all():
            raise ValueError("ternary sign matrix must contain only -1, 0, +1")
        cout, cin = signs.shape
        n_pos = (signs == 1).sum(axis=1)
        n_neg = (signs == -1).sum(axis=1)
        length = max(1, int(max(n_pos.max(initial=0), n_neg.max(initial=0))))
        pos = np.full((cout, length), cin, dtype=np.int32)
        neg = np.full((cout, length), cin, dtype=np.int32)
        for co in range(cout):
            p = np.flatnonzero(signs[co] == 1)
            n = np.flatnonzero(signs[co] == -1)
            pos[co, : len(p)] = p
            neg[co, : len(n)] = n
        return TernaryLists(pos, neg, n_pos, n_neg, cin)

    @property
    def length(self) -> int:
        return self.pos.shape[1]


@dataclass(frozen=True)
class Accumulation:
    """How the add chain is split: ``chunks`` int16 partial sums of ``chunk`` list entries
    each (a partial is a sum of ``chunk`` (+x, -x) pairs), added in int32 when chunks > 1."""

    chunk: int
    chunks: int
    partial_dtype: str = "int16"

    @property
    def length(self) -> int:
        return self.chunk * self.chunks


# Most (pos, neg) entry pairs an int16 partial sum can hold without overflow:
# uint8 x >= 0 keeps a partial in [-255 * C, 255 * C]; int8 x gives |partial| <= 2 * 128 * C.
INT16_PAIRS = {"uint8": 32767 // 255, "int8": 32767 // 256}


def sum_bound(lists: TernaryLists, x_dtype: str) -> int:
    """Largest |partial sum| of any output channel: uint8 inputs are >= 0, so partial sums
    lie in [-255*|N|, 255*|P|]; int8 inputs can have either sign: 128*(|P|+|N|)."""
    if x_dtype == "uint8":
        return 255 * int(max(lists.n_pos.max(initial=0), lists.n_neg.max(initial=0)))
    return 128 * int((lists.n_pos + lists.n_neg).max(initial=0))


def accumulation_plan(lists: TernaryLists, x_dtype: str) -> Accumulation:
    """Chunk the index lists so that every int16 partial sum provably fits.

    One chunk when the whole list fits (the exact per-channel counts are used: uint8 partial
    sums lie in [-255*|N|, 255*|P|], int8 ones within 128*(|P|+|N|)); otherwise equal chunks
    of at most INT16_PAIRS[x_dtype] entries.
    """
    if sum_bound(lists, x_dtype) <= np.iinfo(np.int16).max:
        return Accumulation(chunk=lists.length, chunks=1)
    limit = INT16_PAIRS[x_dtype]
    chunks = -(-lists.length // limit)
    return Accumulation(chunk=-(-lists.length // chunks), chunks=chunks)


def accumulator_dtype(lists: TernaryLists, x_dtype: str) -> str:
    """The dtype the full sum is carried in: int16 with one chunk, int32 otherwise."""
    return "int16" if accumulation_plan(lists, x_dtype).chunks == 1 else "int32"


BLOCK = 64  # pixels per block: 64 pixels of every input channel stay in L1 while all
# output channels are summed from them


def padded_pixels(hw: int) -> int:
    """Pixels rounded up to whole blocks (padding pixels are computed, never stored).

    Blocks of 64 pixels run fastest: 1.5-2x faster than 16-pixel blocks on MobileNetV2's
    layers, even at 14x14 where padding 196 -> 256 wastes 30% (measured, one thread).
    """
    return -(-hw // BLOCK) * BLOCK


def ternary_conv1x1_compute(
    x: te.Tensor,
    pos: te.Tensor,
    neg: te.Tensor,
    bias: te.Tensor,
    scale: te.Tensor,
    magnitude: te.Tensor | None = None,
    *,
    rq: Requant,
    plan: Accumulation,
    float_rescale: bool = False,
) -> te.Tensor:
    """TE compute of the add-only 1x1 conv on x reshaped to (N, Cin, H*W).

    pos / neg: int32 [Cout, plan.length] index lists (``TernaryLists.padded_to``);
    bias: int32 [Cout], the quantized bias plus the zero-point correction
    ``-x_zp * m * (|P| - |N|)``; scale: float32 [Cout]; magnitude: optional int32 [Cout]
    integer weight magnitude m (127 for onnxruntime's {-127, 0, 127} encoding), applied to the
    finished sum as part of the rescale so the accumulator matches onnxruntime's exactly.
    Output (N, Cout, H*W) in rq.out_dtype.

    ``float_rescale``: the caller proved |m * sum + bias| < 2**24, so the magnitude and bias
    are applied in float32 (exact for integers below 2**24, hence bit-identical to the int32
    path) and the epilogue is one fused multiply-add plus the scale multiply.

    Rows are padded to whole pixel blocks (``padded_pixels``) so that every block is
    computed without bounds checks; a final ``crop`` stage stores the real pixels.
    """
    n_batch, cin, hw = (int(v) for v in x.shape)
    cout, length = (int(v) for v in pos.shape)
    if length != plan.length:
        raise ValueError(f"index lists have {length} entries, the plan expects {plan.length}")
    hwp = padded_pixels(hw)
    part_dtype = plan.partial_dtype

    # Widened input with one zero row (index Cin) that the padded index lists point to.
    xw = te.compute(
        (n_batch, cin + 1, hwp),
        lambda n, c, p: tirx.if_then_else(tirx.all(c < cin, p < hw),
                                          x[n, c, tirx.min(p, hw - 1)].astype(part_dtype),
                                          tirx.const(0, part_dtype)),
        name="widen",
    )
    if plan.chunks == 1:
        k = te.reduce_axis((0, length), name="k")
        acc = te.compute(
            (n_batch, cout, hwp),
            lambda n, co, p: te.sum(xw[n, pos[co, k], p] - xw[n, neg[co, k], p], axis=k),
            name="acc",
            attrs={"schedule_rule": SCHEDULE_RULE},
        )
    else:
        ki = te.reduce_axis((0, plan.chunk), name="ki")
        part = te.compute(
            (n_batch, cout, plan.chunks, hwp),
            lambda n, co, c, p: te.sum(
                xw[n, pos[co, c * plan.chunk + ki], p] - xw[n, neg[co, c * plan.chunk + ki], p],
                axis=ki),
            name="partial",
            attrs={"schedule_rule": SCHEDULE_RULE},
        )
        kc = te.reduce_axis((0, plan.chunks), name="kc")
        acc = te.compute(
            (n_batch, cout, hwp),
            lambda n, co, p: te.sum(part[n, co, kc, p].astype("int32"), axis=kc),
            name="acc",
        )

    def finish(n, co, p):
        if magnitude is not None and float_rescale:
            f32 = "float32"
            total = (acc[n, co, p].astype(f32) * magnitude[co].astype(f32)
                     + bias[co].astype(f32))
            return requant_expr(total, scale[co], rq)
        total = acc[n, co, p].astype("int32")
        if magnitude is not None:
            total = total * magnitude[co]  # per-output rescale, outside the add chain
        return requant_expr(total + bias[co], scale[co], rq)

    out = te.compute((n_batch, cout, hwp), finish, name="requant")
    if hwp == hw:
        return out
    return te.compute((n_batch, cout, hw), lambda n, co, p: out[n, co, p], name="crop")


def ternary_conv1x1_ref(x: np.ndarray, signs: np.ndarray, bias: np.ndarray, rq: Requant,
                        magnitude: np.ndarray | None = None) -> np.ndarray:
    """numpy integer reference on NCHW x; signs [Cout, Cin(,1,1)] in {-1,0,1}."""
    s = np.asarray(signs).reshape(signs.shape[0], -1).astype(np.int64)
    acc = np.einsum("oc,nchw->nohw", s, x.astype(np.int64))
    if magnitude is not None:
        acc = acc * magnitude.astype(np.int64)[None, :, None, None]
    acc = acc + bias.astype(np.int64)[None, :, None, None]
    return requant_np(acc.astype(np.int32), rq)


def _optional_block(sch, name: str):
    try:
        return sch.get_sblock(name)
    except Exception:  # the compute did not need this stage
        return None


def schedule_ternary_conv1x1(sch, target=None, block: int | None = None) -> None:
    """Default CPU schedule: pixel blocks outside, output channels inside, lanes = pixels.

    Loop nest: n, pixel-block (parallel) { widen block; for co { [for chunk] add/sub chain
    over the index lists into a register block; requant (+ crop) and store } }.
    """
    acc = sch.get_sblock("acc")
    widen = sch.get_sblock("widen")
    req = sch.get_sblock("requant")
    crop = _optional_block(sch, "crop")
    part = _optional_block(sch, "partial")
    chain = part if part is not None else acc
    # The channel index comes from the index lists, so TVM cannot bound the region of the
    # widened input it reads; declare it (all channels of the current pixels).
    reads = [_region_name(r) for r in sch.get(chain).reads]
    rows = int(_region_shape(sch.get(widen).writes[0])[1])
    if part is None:
        _declare_read_region(sch, acc, reads.index("widen"),
                             lambda vn, vco, vp, vk: [vn, vn + 1, 0, rows, vp, vp + 1])
    else:
        _declare_read_region(sch, part, reads.index("widen"),
                             lambda vn, vco, vc, vp, vk: [vn, vn + 1, 0, rows, vp, vp + 1])
    n, co, p, k = sch.get_loops(acc)
    hwp = int(sch.get(p).extent)
    cout = int(sch.get(co).extent)
    block = block or BLOCK
    po, pi = sch.split(p, [None, block])
    sch.reorder(n, po, co, k, pi)
    n_blocks = hwp // block
    # Parallelize over pixel blocks; small images (one or few blocks) split channels instead.
    if n_blocks >= 4:
        outer = sch.fuse(n, po)
        sch.parallel(outer)
    else:
        cob, coi = sch.split(co, [None, max(1, cout // 8)])
        sch.parallel(cob)
        co = coi
        outer = po
    sch.reverse_compute_at(req, co)
    if crop is not None:
        if n_blocks >= 4:
            sch.reverse_compute_at(crop, co)
        else:
            sch.reverse_compute_at(crop, sch.get_loops(acc)[0])
    if part is not None:
        sch.compute_at(part, k)  # one chunk's int16 partial sum per kc iteration
    sch.compute_at(widen, outer)
    # Accumulators live in local block buffers (registers after LLVM's SROA).
    sch.set_scope(acc, 0, "local")
    if part is not None:
        sch.set_scope(part, 0, "local")
        ploops = sch.get_loops(part)
        sch.reorder(ploops[-1], ploops[-2])  # chunk entries outside, pixels (lanes) inside
        ploops = sch.get_loops(part)
        sch.vectorize(ploops[-1])
        pinit = sch.decompose_reduction(part, ploops[-2])
        sch.vectorize(sch.get_loops(pinit)[-1])
    sch.vectorize(pi)
    init = sch.decompose_reduction(acc, k)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(req)[-1])
    sch.vectorize(sch.get_loops(widen)[-1])


def _declare_read_region(sch, block, buffer_index, ranges) -> None:
    # Schedule.annotate_buffer_access insists on one range per block iter var, which a
    # reduction block reading a lower-rank buffer cannot give; call the primitive directly.
    from tvm.s_tir.schedule import _ffi_api
    from tvm.tirx import IndexMap

    iter_vars = [iv.var for iv in sch.get(block).iter_vars]
    index_map = IndexMap(initial_indices=iter_vars, final_indices=ranges(*iter_vars),
                         inverse_index_map=None)
    _ffi_api.ScheduleAnnotateBufferAccess(sch, block, buffer_index, 0, index_map)


def _region_name(region) -> str:
    src = region.source
    return getattr(src, "name", None) or src.data.name


def _region_shape(region):
    return region.source.shape


SCHEDULE_RULES = {SCHEDULE_RULE: schedule_ternary_conv1x1}
