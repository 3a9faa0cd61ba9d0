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

from prom_tvm.schedules.cpu_default import loop_extent, vector_lanes, vectorize_loop
from prom_tvm.schedules.requant import Requant, requant_expr, requant_np

CONV_RULE = "prom_tvm.int8_conv2d"
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
        # int16 products are exact (|u8 * i8| <= 32640) and vectorize twice as wide.
        prod = v.astype("int16") * w[c, rc, ry, rx].astype("int16")
        return te.sum(prod.astype("int32"), axis=[rc, ry, rx])

    rule = DEPTHWISE_RULE if depthwise else CONV_RULE
    conv = te.compute((n, cout, ho, wo_pad), conv_fn, name="conv",
                      attrs={"schedule_rule": rule})
    return te.compute(
        (n, cout, ho, wo),
        lambda b, c, i, j: requant_expr(conv[b, c, i, j] + bias[c], scale[c], rq),
        name="requant",
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
    per parallel task with its padding computed in place; regular convs pad once and run
    in parallel over output-channel blocks and row blocks. The requant epilogue is computed
    right after each row block, vectorized over the real (unpadded) output width.
    """
    lanes = vector_lanes(target, 32)
    conv = sch.get_sblock("conv")
    req = sch.get_sblock("requant")
    depthwise = sch.get(conv).annotations["schedule_rule"] == DEPTHWISE_RULE
    b, c, oh, ow, rc, ry, rx = sch.get_loops(conv)
    cout, ho, wo_pad = (loop_extent(sch, v) for v in (c, oh, ow))
    kh, kw = loop_extent(sch, ry), loop_extent(sch, rx)
    vl = min(lanes, wo_pad)
    if depthwise:
        oct_ = 1
        rows = _largest_divisor(ho, 8)
    else:
        oct_ = _largest_divisor(cout, 8)
        rows = _largest_divisor(ho, max(1, 16 // (oct_ * max(1, wo_pad // vl // 2))))
    co, ci = sch.split(c, [None, oct_])
    oho, ohi = sch.split(oh, [None, rows])
    owo, owi = sch.split(ow, [None, vl])
    sch.reorder(b, co, oho, owo, rc, ry, rx, ci, ohi, owi)
    if kh * kw <= 16:
        sch.unroll(ry)
    sch.unroll(rx)
    sch.unroll(ci)
    sch.unroll(ohi)
    sch.vectorize(owi)
    # parallel() must see the reduction whole, so it comes before decompose_reduction.
    outer = sch.fuse(b, co) if depthwise else sch.fuse(b, co, oho)
    sch.parallel(outer)
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    if depthwise:
        sch.reverse_compute_at(req, oho)
        _schedule_padding(sch, outer)
    else:
        sch.reverse_compute_at(req, outer)
        _schedule_padding(sch, None)
    del kw
    vectorize_loop(sch, sch.get_loops(req)[-1], lanes)
    return sch
