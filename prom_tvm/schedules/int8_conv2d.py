"""int8 conv2d (NCHW, any groups / strides / padding / dilation) as a TE compute, with its
numpy integer reference.

The compute accumulates raw ``x * w`` products in int32: the activation zero-point correction
``-x_zp * sum(w[c])`` is already folded into ``bias`` by the caller, which is exact because the
padding stage pads with ``x_zp`` (the quantized zero), so every border tap contributes
``x_zp * w`` and the folded term cancels it.

A strided convolution gets one more stage, ``phase``, which splits the padded image into its
``stride x stride`` phases (``phase[n, c, ph, pw, hh, ww] = pad[n, c, hh * sh + ph, ww * sw +
pw]``), so every tap reads unit-stride rows of one phase: the schedule vectorizes output
columns with plain vector loads instead of strided gathers.
"""

from __future__ import annotations

import numpy as np
from tvm import s_tir, te, tirx

from prom_tvm.schedules.cpu_default import (
    as_target,
    loop_extent,
    vector_bits,
    vector_lanes,
    vectorize_loop,
)
from prom_tvm.schedules.int8_arm_intrin import channel_dot_intrin as arm_channel_dot_intrin
from prom_tvm.schedules.int8_arm_intrin import dot_kind, row_dot_fits, row_dot_intrin
from prom_tvm.schedules.int8_arm_widening import (
    widening_fits,
    widening_mac_intrin,
    widening_outer_intrin,
)
from prom_tvm.schedules.int8_x86_intrin import (
    channel_dot_intrin,
    depthwise_row_fits,
    depthwise_row_intrin,
    has_avx2,
    has_vnni_vbmi,
    pmaddwd_row_fits,
    pmaddwd_row_intrin,
)
from prom_tvm.schedules.requant import Requant, requant_expr, requant_np
from prom_tvm.schedules.requant_rows import requant_attrs, tensorize_requant_row

CONV_RULE = "prom_tvm.int8_conv2d"
# TVM puts constant-size buffers below this on the stack, larger ones in its workspace pool.
_STACK_BYTES = 1024
DEPTHWISE_RULE = "prom_tvm.int8_conv2d_depthwise"


def conv_output_size(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int,
                     dilation: int) -> int:
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def padded_width(wo: int) -> int:
    """Width of the int32 stage: a multiple of 16 lanes, or of 8 / 4 for narrow images."""
    for lanes in (4, 8):
        if wo <= lanes:
            return lanes
    return -(-wo // 16) * 16


def _check_params(x_shape, w_shape, strides, padding, dilation, groups):
    n, cin, h, w = (int(v) for v in x_shape)
    cout, cig, kh, kw = (int(v) for v in w_shape)
    if len(strides) != 2 or len(dilation) != 2 or len(padding) != 4:
        raise ValueError("int8 conv2d: strides and dilation take 2 values, padding 4 "
                         f"(top, left, bottom, right); got {strides}, {dilation}, {padding}")
    if groups < 1 or cin % groups or cout % groups or cin // groups != cig:
        raise ValueError(f"int8 conv2d: input channels {cin}, weight {tuple(w_shape)} and "
                         f"groups={groups} do not agree (need Cin == groups * weight.shape[1])")
    ho = conv_output_size(h, kh, strides[0], padding[0], padding[2], dilation[0])
    wo = conv_output_size(w, kw, strides[1], padding[1], padding[3], dilation[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"int8 conv2d: kernel {kh}x{kw} does not fit input {h}x{w} with "
                         f"padding {padding}, dilation {dilation}")
    return n, cin, h, w, cout, cig, kh, kw, ho, wo


def int8_conv2d_compute(
    x: te.Tensor,
    w: te.Tensor,
    bias: te.Tensor,
    scale: te.Tensor,
    *,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    x_zero_point: int,
    rq: Requant,
) -> te.Tensor:
    """Quantized conv2d: ``requant(sum(x * w) + bias[c], scale[c])``.

    Parameters
    ----------
    x : te.Tensor
        (N, Cin, H, W) uint8 or int8 activation with zero point ``x_zero_point``.
    w : te.Tensor
        (Cout, Cin / groups, KH, KW) int8 weight (symmetric, zero point 0).
    bias : te.Tensor
        int32 [Cout]: quantized bias with ``-x_zero_point * sum(w[c])`` folded in.
    scale : te.Tensor
        float32 [Cout] requantization multiplier ``sx * sw[c] / sy``.
    strides, padding, dilation, groups
        ONNX Conv attributes; ``padding`` is (top, left, bottom, right).
    x_zero_point : int
        Value the padding stage fills borders with.
    rq : Requant
        Output zero point, clamp range and dtype (``rq.scale`` is not read: ``scale`` is).

    Returns
    -------
    te.Tensor
        (N, Cout, Ho, Wo) in ``rq.out_dtype``. Stages are named ``pad``, ``phase`` (strided
        convs only), ``conv`` (the int32 reduction over a width padded to whole vectors,
        tagged with a meta-schedule rule) and ``requant``.
    """
    sh, sw = (int(v) for v in strides)
    dh, dw = (int(v) for v in dilation)
    pt, pl = int(padding[0]), int(padding[1])
    n, cin, h, wd, cout, cig, kh, kw, ho, wo = _check_params(
        x.shape, w.shape, strides, padding, dilation, groups)
    cog = cout // groups
    # The int32 stage computes a few extra output columns so that its width splits evenly
    # into vector lanes (56 -> 64, 7 -> 8); the requant stage reads only the real ones.
    wo_pad = padded_width(wo)
    hq = ho + (kh - 1) * dh // sh
    wq = wo_pad + (kw - 1) * dw // sw
    zp = tirx.const(int(x_zero_point), x.dtype)

    def pad_fn(b, c, r, q):
        inside = tirx.all(r >= pt, r < pt + h, q >= pl, q < pl + wd)
        return tirx.if_then_else(inside, x[b, c, r - pt, q - pl], zp)

    pad = te.compute((n, cin, hq * sh, wq * sw), pad_fn, name="pad")
    if sh > 1 or sw > 1:
        # Phase split: src[b, c, ph, pw, hh, ww] = pad[b, c, hh * sh + ph, ww * sw + pw].
        src = te.compute(
            (n, cin, sh, sw, hq, wq),
            lambda b, c, ph, pw, hh, ww: pad[b, c, hh * sh + ph, ww * sw + pw],
            name="phase",
        )
    else:
        src = None
    rc = te.reduce_axis((0, cig), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    depthwise = cig == 1 and cog == 1

    def conv_fn(b, c, oh, ow):
        ic = c // cog * cig + rc if groups > 1 else rc
        if src is None:
            v = pad[b, ic, oh + ry * dh, ow + rx * dw]
        else:
            v = src[b, ic, ry * dh % sh, rx * dw % sw, oh + ry * dh // sh, ow + rx * dw // sw]
        # int32 products of the widened operands: both fit in 16 bits, so x86 LLVM makes
        # them one vpmaddwd (exact) per 8 lanes, AArch64 an ushll + mla; an int16 multiply
        # then a sign extension (the old form: LLVM cannot widen an i16 mul without nsw)
        # cost vpmullw + vpmovsxwd, 1.1-1.5x slower on AVX2.
        prod = v.astype("int32") * w[c, rc, ry, rx].astype("int32")
        return te.sum(prod, axis=[rc, ry, rx])

    rule = DEPTHWISE_RULE if depthwise else CONV_RULE
    conv = te.compute((n, cout, ho, wo_pad), conv_fn, name="conv",
                      attrs={"schedule_rule": rule, "prom_tvm.strides": [sh, sw],
                             "prom_tvm.dilation": [dh, dw]})
    return te.compute(
        (n, cout, ho, wo),
        lambda b, c, i, j: requant_expr(conv[b, c, i, j] + bias[c], scale[c], rq),
        name="requant",
        attrs=requant_attrs(rq),
    )


def int8_conv2d_ref(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    rq: Requant,
    *,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    x_zero_point: int,
) -> np.ndarray:
    """numpy reference of :func:`int8_conv2d_compute` (int64 accumulation, then requant_np
    with ``rq.scale``)."""
    sh, sw = strides
    dh, dw = dilation
    pt, pl, pb, pr = padding
    n, cin, h, wd, cout, cig, kh, kw, ho, wo = _check_params(
        x.shape, w.shape, strides, padding, dilation, groups)
    xp = np.full((n, cin, h + pt + pb + sh * kh, wd + pl + pr + sw * kw), x_zero_point,
                 dtype=np.int64)
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    cog = cout // groups
    acc = np.zeros((n, cout, ho, wo), dtype=np.int64)
    wl = w.astype(np.int64)
    for g in range(groups):
        xs = xp[:, g * cig:(g + 1) * cig]
        wg = wl[g * cog:(g + 1) * cog]
        for i in range(kh):
            for j in range(kw):
                tap = xs[:, :, i * dh:i * dh + sh * ho:sh, j * dw:j * dw + sw * wo:sw]
                acc[:, g * cog:(g + 1) * cog] += np.einsum("nchw,oc->nohw", tap, wg[:, :, i, j])
    acc += np.asarray(bias, dtype=np.int64).reshape(1, -1, 1, 1)
    if np.abs(acc).max(initial=0) >= 2**31:
        raise OverflowError("int8 conv2d reference: accumulator exceeds int32")
    return requant_np(acc.astype(np.int32), rq, channel_axis=1)



def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def _maybe_block(sch: s_tir.Schedule, name: str):
    try:
        return sch.get_sblock(name)
    except (RuntimeError, ValueError):
        return None


def _schedule_padding(sch: s_tir.Schedule, at) -> None:
    """Padding as fill-then-copy (no per-element border test), then the strided-conv phase
    split with its phase column innermost, so that LLVM turns that copy into wide loads and
    byte shuffles. Both run under loop ``at`` (one channel plane at a time, while it is hot
    in L1) or, when ``at`` is None, at the root in parallel over channels."""
    pad = sch.get_sblock("pad")
    phase = _maybe_block(sch, "phase")
    depth = 1
    if at is not None:
        if phase is not None:
            sch.compute_at(phase, at, preserve_unit_loops=True)
        sch.compute_at(pad, at, preserve_unit_loops=True)
        srefs = [sch.get_sref(v) for v in sch.get_loops(pad)]
        depth = srefs.index(sch.get_sref(at)) + 3  # skip the unit batch / channel loops
    else:
        for blk in (phase, pad):
            if blk is not None:
                b, c, *_ = sch.get_loops(blk)
                sch.parallel(sch.fuse(b, c))
    rows = sch.get_loops(pad)[depth]
    try:
        fill = sch.decompose_padding(pad, rows)
        sch.vectorize(sch.get_loops(fill)[-1])
    except RuntimeError:
        pass  # no border to fill (a width-only pad still needs its copy)
    sch.vectorize(sch.get_loops(pad)[-1])
    if phase is not None:
        ph, pw, hh, ww = sch.get_loops(phase)[-4:]
        sch.reorder(hh, ph, ww, pw)
        sch.unroll(pw)


def schedule_int8_conv2d(sch: s_tir.Schedule, target) -> s_tir.Schedule:
    """Default CPU schedule of :func:`int8_conv2d_compute` (blocks found by name).

    Register tile: ``rows`` output rows x one vector of output columns (x ``oct`` output
    channels for a regular conv), the taps unrolled inside the input-channel loop, so each
    input vector load feeds every accumulator that needs it. Depthwise convs run one channel
    per parallel task with its padding computed in place (on AVX-512 VNNI + VBMI CPUs with
    ``vpermb`` + ``vpdpbusd``, one instruction pair per kernel row); regular convs pad once
    and run in parallel over output-channel blocks and row blocks. The requant epilogue is
    computed right after each row block, vectorized over the real (unpadded) output width.
    AArch64 (int8_arm_intrin.py, int8_arm_widening.py): with dotprod, the channel-interleaved
    kernel and a ``tbl`` + dot row kernel; without (and for what those do not take), NEON
    ``smlal`` on int16-widened operands.
    """
    conv = sch.get_sblock("conv")
    depthwise = sch.get(conv).annotations["schedule_rule"] == DEPTHWISE_RULE
    candidates = []
    if not depthwise and (_vnni_channel_lanes(sch, conv, target)
                          or _arm_channel_dot(sch, conv, target)):
        candidates.append(lambda s: _schedule_vnni_channels(s, target))
    if _vnni_row_lanes(sch, conv, target):
        candidates.append(lambda s: _schedule_vnni_rows(s, target, depthwise))
    elif _pmaddwd_row_intrin(sch, conv, target) or _arm_row_intrin(sch, conv, target):
        candidates.append(lambda s: _schedule_vnni_rows(s, target, depthwise))
    if _arm_widening(sch, conv, target):
        candidates.append(lambda s: _schedule_generic(s, target, depthwise, widen=True))
    for schedule in candidates:
        # a specialized kernel that cannot handle some corner case falls back to the next
        try:
            schedule(sch.copy())
        except (RuntimeError, ValueError):
            continue
        return schedule(sch)
    return _schedule_generic(sch, target, depthwise)


def _tile_sizes(cout: int, ho: int, wo: int, wo_pad: int, vl: int,
                depthwise: bool, whole_chunks: bool = False,
                accumulators: int = 16) -> tuple[int, int, bool]:
    """(output channels, output rows, requant per vector chunk) of one register tile.

    When the real width is a whole number of vectors, the requant epilogue runs right after
    each ``oct x rows x vl`` tile, whose int32 accumulators then fit in a stack buffer that
    LLVM keeps in registers (TVM puts constant buffers under 1 KiB on the stack; larger ones
    cost a workspace-allocator call per tile). Otherwise it runs per row block, after all
    vector chunks of the block. A regular conv's tile has up to ``accumulators`` vectors.
    """
    oct_ = 1 if depthwise else _largest_divisor(cout, min(8, accumulators))
    # whole_chunks: the epilogue may also follow each chunk when the real width is a whole
    # number of chunks (the padding columns' chunks then have nothing to requantize)
    per_chunk = wo == wo_pad or (whole_chunks and wo % vl == 0)
    width = vl if per_chunk else wo_pad
    budget = max(1, (_STACK_BYTES - 1) // (4 * width * oct_))
    rows = _largest_divisor(ho, min(8 if depthwise else max(1, accumulators // oct_), budget))
    return oct_, rows, per_chunk


def _arm_widening(sch: s_tir.Schedule, conv, target) -> tuple[str, int] | None:
    """(activation dtype, column stride read) of the NEON widening kernel (``smlal``, 8
    columns a call) for an AArch64 conv the dot kernels do not take (every conv without
    dotprod), or None. Stride 2 reads the padded rows directly (``ld2``) where that fits;
    other strided convs read the phase split."""
    t = as_target(target)
    block = sch.get(conv)
    x_dtype = block.reads[0].source.dtype
    if ("arm_cpu" not in t.keys or x_dtype not in ("uint8", "int8")
            or block.reads[1].source.dtype != "int8"):
        return None
    loops = sch.get_loops(conv)
    if loop_extent(sch, loops[3]) % 8:
        return None
    stride = int(block.annotations["prom_tvm.strides"][1])
    dilation = int(block.annotations["prom_tvm.dilation"][1])
    direct = stride == 2 and widening_fits(stride, dilation, loop_extent(sch, loops[-1]))
    return x_dtype, 2 if direct else 1


def _schedule_generic(sch: s_tir.Schedule, target, depthwise: bool,
                      widen: bool = False) -> s_tir.Schedule:
    """The register-tiled kernel of :func:`schedule_int8_conv2d`, vectorized over output
    columns; with ``widen`` (AArch64) 8 columns per NEON ``smlal`` pair, at most 8 such
    accumulators (16 registers) per regular-conv tile. A regular conv whose tile has 4 or 8
    output channels then multiplies one input row by all of them (weights repacked so that
    they are one vector: ``smlal`` by element)."""
    lanes = vector_lanes(target, 32)
    conv = sch.get_sblock("conv")
    req = sch.get_sblock("requant")
    x_dtype, col_stride = _arm_widening(sch, conv, target) if widen else (None, 1)
    if col_stride == 2:
        sch.compute_inline(sch.get_sblock("phase"))  # ld2 does the column stride
    intrin = widening_mac_intrin(x_dtype, col_stride) if widen else None
    b, c, oh, ow, rc, ry, rx = sch.get_loops(conv)
    cout, ho, wo_pad = (loop_extent(sch, v) for v in (c, oh, ow))
    kh, kw = loop_extent(sch, ry), loop_extent(sch, rx)
    wo = loop_extent(sch, sch.get_loops(req)[-1])
    vl = 8 if widen else min(lanes, wo_pad)
    oct_, rows, per_chunk = _tile_sizes(cout, ho, wo, wo_pad, vl, depthwise, whole_chunks=widen,
                                        accumulators=8 if widen else 16)
    outer = widen and not depthwise and oct_ in (4, 8)
    if outer:
        intrin = widening_outer_intrin(x_dtype, oct_, col_stride)
        wpack = sch.cache_read(conv, 1, "global")
        sch.transform_layout(wpack, ("write", 0),
                             lambda o, i, y, x: (o // oct_, i, y, x, o % oct_))
    co, ci = sch.split(c, [None, oct_])
    oho, ohi = sch.split(oh, [None, rows])
    owo, owi = sch.split(ow, [None, vl])
    if outer:
        sch.reorder(b, co, oho, owo, rc, ry, rx, ohi, ci, owi)
    else:
        sch.reorder(b, co, oho, owo, rc, ry, rx, ci, ohi, owi)
    if kh * kw <= 16:
        sch.unroll(ry)
    if kw <= 16:
        sch.unroll(rx)
    if not outer:  # (the outer-product intrinsic covers ci)
        sch.unroll(ci)
    sch.unroll(ohi)
    if not widen:
        sch.vectorize(owi)
    _finish(sch, target, depthwise, b, co, oho, owo, rc, per_chunk, per_chunk and wo < wo_pad)
    if col_stride == 2:
        # ld2's 16-byte load of the last 8 columns reads one byte past the last one the taps
        # use, where compute_at may have ended the padded row: a row pitch of whole 16 bytes
        # (the last row's slack included) keeps it inside the buffer
        sch.storage_align(sch.get_sblock("pad"), 0, axis=2, factor=16, offset=0)
    if widen:
        sch.tensorize(ci if outer else owi, intrin)
    return sch


def _finish(sch: s_tir.Schedule, target, depthwise: bool, b, co, oho, owo, rc,
            per_chunk: bool, guarded: bool = False) -> None:
    """Parallel outer loop, reduction init, epilogue placement and padding (shared tail of
    both conv schedules)."""
    conv = sch.get_sblock("conv")
    req = sch.get_sblock("requant")
    # parallel() must see the reduction whole, so it comes before decompose_reduction.
    outer = sch.fuse(b, co) if depthwise else sch.fuse(b, co, oho)
    sch.parallel(outer)
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.reverse_compute_at(req, owo if per_chunk else (oho if depthwise else outer),
                           preserve_unit_loops=True)
    _schedule_padding(sch, outer if depthwise else None)
    _vectorize_requant(sch, req, vector_lanes(target, 32), guarded, target)


def _vnni_row_lanes(sch: s_tir.Schedule, conv, target) -> int:
    """Vector lanes of the VNNI row kernel for this conv, or 0 when it does not apply
    (CPU without VNNI + VBMI, int8 activations, kernels wider than four taps, ...)."""
    if not has_vnni_vbmi(target):
        return 0
    block = sch.get(conv)
    if block.reads[0].source.dtype != "uint8" or block.reads[1].source.dtype != "int8":
        return 0
    stride = int(block.annotations["prom_tvm.strides"][1])
    dilation = int(block.annotations["prom_tvm.dilation"][1])
    *_, ow, _, _, rx = sch.get_loops(conv)
    wo_pad, kw = loop_extent(sch, ow), loop_extent(sch, rx)
    lanes = 16 if wo_pad % 16 == 0 else 8 if wo_pad % 8 == 0 else 0
    # one tap per row gains nothing over the generic kernel (and its loop of one folds away)
    if lanes and kw >= 2 and depthwise_row_fits(lanes, stride, dilation, kw):
        return lanes
    return 0


def _pmaddwd_row_intrin(sch: s_tir.Schedule, conv, target) -> str | None:
    """The AVX2 row intrinsic (two taps per exact ``vpmaddwd``) for this conv on an AVX2 CPU
    (Haswell to Skylake, Zen 1-3), or None (AVX-512 CPUs, which keep 16-lane vectors;
    stride > 2, dilation, 1 or > 4 taps, width not a multiple of 8, ...)."""
    if has_vnni_vbmi(target) or not has_avx2(target) or vector_bits(target) != 256:
        return None
    block = sch.get(conv)
    x_dtype = block.reads[0].source.dtype
    if x_dtype not in ("uint8", "int8") or block.reads[1].source.dtype != "int8":
        return None
    stride = int(block.annotations["prom_tvm.strides"][1])
    dilation = int(block.annotations["prom_tvm.dilation"][1])
    *_, ow, _, _, rx = sch.get_loops(conv)
    kw = loop_extent(sch, rx)
    if loop_extent(sch, ow) % 8 or not pmaddwd_row_fits(stride, dilation, kw):
        return None
    return pmaddwd_row_intrin(stride, kw, x_dtype)


def _arm_row_intrin(sch: s_tir.Schedule, conv, target) -> tuple[str, int] | None:
    """(name, columns) of the AArch64 dotprod row intrinsic (one ``tbl`` + one dot
    instruction per four columns and kernel row of 2-4 taps; eight columns a call where
    the width and the row's bytes allow) for this conv, or None (no dotprod, 1 or > 4
    taps, a row span past 16 bytes)."""
    block = sch.get(conv)
    kind = dot_kind(target, block.reads[0].source.dtype)
    if kind is None or block.reads[1].source.dtype != "int8":
        return None
    stride = int(block.annotations["prom_tvm.strides"][1])
    dilation = int(block.annotations["prom_tvm.dilation"][1])
    *_, ow, _, _, rx = sch.get_loops(conv)
    kw, wo_pad = loop_extent(sch, rx), loop_extent(sch, ow)
    wo = loop_extent(sch, sch.get_loops(sch.get_sblock("requant"))[-1])
    # eight columns a call load each row once for twice the work, unless that costs the
    # per-chunk epilogue (whole 4- but not 8-column chunks) or leaves a single call per
    # row; measured by the emulator's instruction count on MobileNetV2's depthwise shapes
    wide = wo_pad % 8 == 0 and (wo % 8 == 0 or (wo % 4 != 0 and wo_pad > 8))
    for columns in (8, 4) if wide else (4,):
        if row_dot_fits(stride, dilation, kw, columns):
            return row_dot_intrin(kind, stride, dilation, kw, columns), columns
    return None


def _schedule_vnni_rows(sch: s_tir.Schedule, target, depthwise: bool) -> s_tir.Schedule:
    """Each (output channel, output row, kernel row) step is one call of the row intrinsic;
    its input load and permutation do not depend on the output channel, so LLVM shares them
    across the unrolled channel and row tile. On AVX2 without VNNI the same loop nest runs
    the ``vpmaddwd`` row intrinsic (8 columns a call), on AArch64 with dotprod the ``tbl`` +
    ``udot`` / ``sdot`` / ``usdot`` one (4 columns a call)."""
    conv = sch.get_sblock("conv")
    req = sch.get_sblock("requant")
    annotations = sch.get(conv).annotations
    stride = int(annotations["prom_tvm.strides"][1])
    dilation = int(annotations["prom_tvm.dilation"][1])
    lanes = _vnni_row_lanes(sch, conv, target)
    intrin = arm = None
    if not lanes:
        arm = _arm_row_intrin(sch, conv, target)
        intrin, lanes = arm if arm else (_pmaddwd_row_intrin(sch, conv, target), 8)
    phase = _maybe_block(sch, "phase")
    if phase is not None:
        # vpermb does the column stride itself: read the padded rows directly
        sch.compute_inline(phase)
    # weight rows zero-padded to four bytes: one int32 load per row instead of byte assembly
    wpack = sch.cache_read(conv, 1, "global")
    sch.transform_layout(wpack, ("write", 0), lambda o, i, y, x: (o, i, y, x // 4, x % 4),
                         pad_value=0)
    b, c, oh, ow, rc, ry, rx = sch.get_loops(conv)
    cout, ho, wo_pad = (loop_extent(sch, v) for v in (c, oh, ow))
    cig, kh, kw = (loop_extent(sch, v) for v in (rc, ry, rx))
    wo = loop_extent(sch, sch.get_loops(req)[-1])
    oct_, rows, per_chunk = _tile_sizes(cout, ho, wo, wo_pad, lanes, depthwise,
                                        whole_chunks=arm is not None)
    co, ci = sch.split(c, [None, oct_])
    oho, ohi = sch.split(oh, [None, rows])
    owo, owi = sch.split(ow, [None, lanes])
    sch.reorder(b, co, oho, owo, rc, ry, ci, ohi, owi, rx)
    if cig * kh <= 16:
        sch.unroll(rc)
    sch.unroll(ry)
    sch.unroll(ci)
    sch.unroll(ohi)
    _finish(sch, target, depthwise, b, co, oho, owo, rc, per_chunk, per_chunk and wo < wo_pad)
    sch.tensorize(owi, intrin or depthwise_row_intrin(lanes, stride, dilation, kw,
                                                      weights_padded=True))
    return sch


def _vnni_channel_lanes(sch: s_tir.Schedule, conv, target) -> int:
    """Vector lanes of the channel-interleaved VNNI kernel, or 0 when it does not apply
    (no VNNI, int8 activations, groups, strides, input channels not a multiple of 4)."""
    if not has_vnni_vbmi(target):
        return 0
    block = sch.get(conv)
    if block.reads[0].source.dtype != "uint8" or block.reads[1].source.dtype != "int8":
        return 0
    if any(int(v) != 1 for v in block.annotations["prom_tvm.strides"]):
        return 0
    *_, ow, rc, _, _ = sch.get_loops(conv)
    cin = int(sch.get(sch.get_sblock("pad")).writes[0].source.shape[1])
    cig = loop_extent(sch, rc)
    if cig != cin or cig % 4:
        return 0
    wo_pad = loop_extent(sch, ow)
    return 16 if wo_pad % 16 == 0 else 8 if wo_pad % 8 == 0 else 0


def _arm_channel_dot(sch: s_tir.Schedule, conv, target) -> str | None:
    """The AArch64 dot instruction (``udot`` / ``sdot`` / ``usdot``, see int8_arm_intrin) of
    the channel-interleaved kernel, or None when it does not apply (no dotprod, groups,
    strides, input channels not a multiple of 4)."""
    block = sch.get(conv)
    if block.reads[1].source.dtype != "int8":
        return None
    kind = dot_kind(target, block.reads[0].source.dtype)
    if kind is None or any(int(v) != 1 for v in block.annotations["prom_tvm.strides"]):
        return None
    *_, rc, _, _ = sch.get_loops(conv)
    cin = int(sch.get(sch.get_sblock("pad")).writes[0].source.shape[1])
    cig = loop_extent(sch, rc)
    return kind if cig == cin and cig % 4 == 0 else None


def _schedule_vnni_channels(sch: s_tir.Schedule, target) -> s_tir.Schedule:
    """Regular convs on AVX-512 VNNI: the padded input is stored channel-interleaved (four
    channels per pixel, ``[n, c / 4, h, w, 4]``), so one 64-byte load holds four channels of
    16 pixels and one ``vpdpbusd`` with four broadcast weights does 64 multiply-adds; the
    load is shared by a tile of output channels. On AArch64 with dotprod the same nest runs
    one ``udot`` / ``sdot`` / ``usdot`` per four channels of four pixels (16 bytes)."""
    conv = sch.get_sblock("conv")
    arm_dot = _arm_channel_dot(sch, conv, target)
    lanes = 4 if arm_dot else _vnni_channel_lanes(sch, conv, target)
    pad = sch.get_sblock("pad")
    sch.transform_layout(pad, ("write", 0), lambda n, c, r, q: (n, c // 4, r, q, c % 4))
    b, c, oh, ow, rc, ry, rx = sch.get_loops(conv)
    cout, ho, wo_pad = (loop_extent(sch, v) for v in (c, oh, ow))
    kh, kw = loop_extent(sch, ry), loop_extent(sch, rx)
    if kh * kw > 1:
        # four consecutive input channels of one tap next to each other
        wpack = sch.cache_read(conv, 1, "global")
        sch.transform_layout(wpack, ("write", 0),
                             lambda o, i, y, x: (o, y, x, i // 4, i % 4))
        sch.parallel(sch.get_loops(wpack)[0])
    wo = loop_extent(sch, sch.get_loops(sch.get_sblock("requant"))[-1])
    oct_, rows, per_chunk = _tile_sizes(cout, ho, wo, wo_pad, lanes, False,
                                        whole_chunks=arm_dot is not None)
    rco, rci = sch.split(rc, [None, 4])
    co, ci = sch.split(c, [None, oct_])
    oho, ohi = sch.split(oh, [None, rows])
    owo, owi = sch.split(ow, [None, lanes])
    sch.reorder(b, co, oho, owo, rco, ry, rx, ci, ohi, owi, rci)
    if kh * kw <= 16:
        sch.unroll(ry)
        sch.unroll(rx)
    sch.unroll(ci)
    sch.unroll(ohi)
    outer = sch.fuse(b, co, oho)
    sch.parallel(outer)
    init = sch.decompose_reduction(conv, rco)
    sch.vectorize(sch.get_loops(init)[-1])
    req = sch.get_sblock("requant")
    sch.reverse_compute_at(req, owo if per_chunk else outer, preserve_unit_loops=True)
    guarded = per_chunk and wo < wo_pad
    # padding: four channel planes interleaved per pixel, in parallel over channel quads
    pn, pc, pr, pq = sch.get_loops(pad)
    pco, pci = sch.split(pc, [None, 4])
    sch.reorder(pn, pco, pr, pq, pci)
    sch.parallel(sch.fuse(pn, pco))
    try:
        # fill the border first so that the interleaving copy has no per-element test
        fill = sch.decompose_padding(pad, pr)
        sch.vectorize(sch.get_loops(fill)[-1])
    except RuntimeError:
        pass
    sch.unroll(sch.get_loops(pad)[-1])
    _vectorize_requant(sch, req, vector_lanes(target, 32), guarded, target)
    rank = 3 if kh * kw == 1 else 1
    sch.tensorize(owi, arm_channel_dot_intrin(arm_dot, rank) if arm_dot
                  else channel_dot_intrin(lanes, weight_rank=rank))
    return sch


def _vectorize_requant(sch: s_tir.Schedule, req, lanes: int, guarded: bool = False,
                       target=None) -> None:
    """Output rows as whole vectors (overlapping at the row end), else split + tail.
    ``guarded``: the epilogue follows each vector chunk and is skipped (a block predicate)
    on the chunks of padding columns; the row intrinsic would lose that predicate and
    write past the row, so those rows are vectorized plainly."""
    row = sch.get_loops(req)[-1]
    if guarded or not tensorize_requant_row(sch, req, row, lanes, target):
        vectorize_loop(sch, row, lanes)
