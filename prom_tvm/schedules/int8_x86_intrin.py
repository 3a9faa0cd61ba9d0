"""x86 tensor intrinsics for the int8 kernels (AVX-512 VNNI + VBMI).

``depthwise_row_intrin`` computes one vector of output columns of a depthwise conv for one
kernel row: ``C[j] += sum_k A[j * stride + k * dilation] * B[k]`` for ``lanes`` columns and up to
four taps. One masked load of the input row, one byte permutation (``vpermb``) that gathers
each column's taps into the four bytes of its int32 lane, and one ``vpdpbusd`` (u8 x i8 dot
products of four, accumulated in int32) replace ``taps`` multiply-adds per lane; for a strided
conv the permutation also does the stride, so no phase-split copy is needed.
"""

from __future__ import annotations

from tvm import tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from prom_tvm.schedules.cpu_default import as_target


def has_vnni_vbmi(target) -> bool:
    """AVX-512 VNNI (vpdpbusd) and VBMI (vpermb): Ice Lake / Zen 4 and later."""
    from tvm.target.codegen import target_has_features

    t = as_target(target)
    if t.kind.name != "llvm":
        return False
    try:
        return all(target_has_features(f, t) for f in ("avx512bw", "avx512vnni", "avx512vbmi",
                                                        "avx512vl"))
    except (RuntimeError, ValueError):
        return False


def depthwise_row_fits(lanes: int, stride: int, dilation: int, taps: int) -> bool:
    """Whether one permuted vector load covers every tap of ``lanes`` output columns."""
    table = 4 * lanes
    return 1 <= taps <= 4 and (lanes - 1) * stride + (taps - 1) * dilation < table


def _pack_weights(b, taps: int):
    """The ``taps`` int8 weights as the bytes of one int32 (unused bytes zero)."""
    word = None
    for k in range(taps):
        byte = tirx.Cast("int32", b[k]) & 255
        byte = byte << (8 * k) if k else byte
        word = byte if word is None else (word | byte)
    return word


def _load_span(a, span: int, table: int):
    """The ``span`` input bytes in a ``table``-byte vector, upper bytes zero: a masked load
    (``vmovdqu8 {k}{z}``) never touches memory past the row, so no buffer needs slack."""
    mask = tirx.Ramp(0, 1, table) < tirx.Broadcast(tirx.const(span, "int32"), table)
    return tirx.call_llvm_intrin(f"uint8x{table}", "llvm.masked.load", a.access_ptr("r"), mask,
                                 tirx.Broadcast(tirx.const(0, "uint8"), table))


def _load_weights(b, taps: int, padded: bool):
    if padded:
        return tirx.call_intrin("int32", "tirx.reinterpret", b.vload([0], "int8x4"))
    return _pack_weights(b, taps)


def depthwise_row_intrin(lanes: int, stride: int, dilation: int, taps: int,
                         scope: str = "global", weights_padded: bool = False) -> str:
    """Register (once) and return the name of the depthwise row intrinsic for these sizes.

    The description matches the ``conv`` block of ``int8_conv2d_compute`` after its output
    column and kernel-column loops are split out: uint8 input, int8 weight, int32 sum of
    products of the widened operands. With ``weights_padded`` the weight row is known to
    continue with zero bytes up to four (a repacked copy), so the kernel loads it as one
    int32 instead of assembling it byte by byte.
    """
    packed = "_packed" if weights_padded else ""
    name = f"prom_tvm.x86.dw_row_l{lanes}_s{stride}_d{dilation}_k{taps}_{scope}{packed}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    if lanes not in (8, 16) or not depthwise_row_fits(lanes, stride, dilation, taps):
        raise ValueError(f"no depthwise row intrinsic for lanes={lanes}, stride={stride}, "
                         f"dilation={dilation}, taps={taps}")
    span = (lanes - 1) * stride + (taps - 1) * dilation + 1
    table = 4 * lanes
    index = [j * stride + k * dilation if k < taps else 0
             for j in range(lanes) for k in range(4)]
    dot = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((span,), "uint8", offset_factor=1, scope=scope),
        b: T.Buffer((taps,), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1, scope=scope),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:span], b[0:taps])
            T.writes(c[0:lanes])
            for j, k in T.grid(lanes, taps):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + (T.Cast("int32", a[vj * stride + vk * dilation])
                                     * T.Cast("int32", b[vk]))

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((span,), "uint8", offset_factor=1, scope=scope),
        b: T.Buffer((taps,), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1, scope=scope),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:span], b[0:taps])
            T.writes(c[0:lanes])
            weights = T.meta_var(_load_weights(b, taps, weights_padded))
            rows = T.meta_var(_load_span(a, span, table))
            c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                f"int32x{lanes}",
                dot,
                c.vload([0], f"int32x{lanes}"),
                T.reinterpret(T.Shuffle([rows], index), dtype=f"int8x{table}"),
                T.reinterpret(T.broadcast(weights, lanes),
                              dtype=f"int8x{table}"),
            )

    TensorIntrin.register(name, desc, impl)
    return name


def dot_intrin(lanes: int = 16) -> str:
    """Register (once) and return the name of a ``4 * lanes``-long u8 x i8 dot product into
    ``lanes`` int32 partial sums: ``C[j] += sum_k A[4j + k] * B[4j + k]`` (one ``vpdpbusd``).

    It matches the per-lane partial-sum block (rfactor) of a dense layer whose reduction is
    split into lanes of four consecutive products.
    """
    name = f"prom_tvm.x86.dot_u8i8_l{lanes}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    width = 4 * lanes
    dot = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((width,), "uint8", offset_factor=1),
        b: T.Buffer((width,), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:width], b[0:width])
            T.writes(c[0:lanes])
            for j, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + (T.Cast("int32", a[vj * 4 + vk])
                                     * T.Cast("int32", b[vj * 4 + vk]))

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((width,), "uint8", offset_factor=1),
        b: T.Buffer((width,), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:width], b[0:width])
            T.writes(c[0:lanes])
            c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                f"int32x{lanes}", dot, c.vload([0], f"int32x{lanes}"),
                T.reinterpret(a.vload([0], f"uint8x{width}"), dtype=f"int8x{width}"),
                b.vload([0], f"int8x{width}"))

    TensorIntrin.register(name, desc, impl)
    return name


def channel_dot_intrin(lanes: int = 16, weight_rank: int = 1) -> str:
    """Register (once) and return the name of ``C[j] += sum_k A[j, k] * B[k]`` for ``lanes``
    outputs and ``k < 4``: four input channels of ``lanes`` pixels (channel-interleaved, 4
    bytes per pixel) times four weights of one output channel, one ``vpdpbusd`` with the
    weights broadcast. ``weight_rank`` 3 matches the four weights as ``w[c, i:i + 4, 0, 0]``
    of a 1x1 conv's (Cout, Cin, 1, 1) tensor (contiguous, no repacking needed)."""
    name = f"prom_tvm.x86.channel_dot_u8i8_l{lanes}_w{weight_rank}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    width = 4 * lanes
    dot = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"

    @T.prim_func(s_tir=True)
    def desc_w1(
        a: T.Buffer((lanes, 4), "uint8", offset_factor=1),
        b: T.Buffer((4,), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:lanes, 0:4], b[0:4])
            T.writes(c[0:lanes])
            for j, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + T.Cast("int32", a[vj, vk]) * T.Cast("int32", b[vk])

    @T.prim_func(s_tir=True)
    def desc_w3(
        a: T.Buffer((lanes, 4), "uint8", offset_factor=1),
        b: T.Buffer((4, 1, 1), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:lanes, 0:4], b[0:4, 0:1, 0:1])
            T.writes(c[0:lanes])
            for j, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + T.Cast("int32", a[vj, vk]) * T.Cast("int32", b[vk, 0, 0])

    def body(a, b, c):
        weights = tirx.call_intrin("int32", "tirx.reinterpret",
                                   b.vload([0] * len(b.shape), "int8x4"))
        return tirx.call_llvm_pure_intrin(
            f"int32x{lanes}", dot, c.vload([0], f"int32x{lanes}"),
            tirx.call_intrin(f"int8x{width}", "tirx.reinterpret",
                             a.vload([0, 0], f"uint8x{width}")),
            tirx.call_intrin(f"int8x{width}", "tirx.reinterpret",
                             tirx.Broadcast(weights, lanes)))

    @T.prim_func(s_tir=True)
    def impl_w1(
        a: T.Buffer((lanes, 4), "uint8", offset_factor=1),
        b: T.Buffer((4,), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:lanes, 0:4], b[0:4])
            T.writes(c[0:lanes])
            value = T.meta_var(body(a, b, c))
            c[T.ramp(T.int32(0), 1, lanes)] = value

    @T.prim_func(s_tir=True)
    def impl_w3(
        a: T.Buffer((lanes, 4), "uint8", offset_factor=1),
        b: T.Buffer((4, 1, 1), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:lanes, 0:4], b[0:4, 0:1, 0:1])
            T.writes(c[0:lanes])
            value = T.meta_var(body(a, b, c))
            c[T.ramp(T.int32(0), 1, lanes)] = value

    if weight_rank == 1:
        TensorIntrin.register(name, desc_w1, impl_w1)
    else:
        TensorIntrin.register(name, desc_w3, impl_w3)
    return name


def has_avx2(target) -> bool:
    from tvm.target.codegen import target_has_features

    t = as_target(target)
    if t.kind.name != "llvm":
        return False
    try:
        return target_has_features("avx2", t)
    except (RuntimeError, ValueError):
        return False


def pmaddwd_row_fits(stride: int, dilation: int, taps: int) -> bool:
    """Whether :func:`pmaddwd_row_intrin` covers this kernel row."""
    return stride in (1, 2) and dilation == 1 and 2 <= taps <= 4


def pmaddwd_row_intrin(stride: int, taps: int, x_dtype: str = "uint8") -> str:
    """Register (once) and return the name of the AVX2 row intrinsic: the description of
    :func:`depthwise_row_intrin` (8 output columns, one kernel row of ``taps`` weights,
    repacked to four zero-padded bytes), computed two taps per ``vpmaddwd``.

    ``vpmaddwd`` multiplies int16 pairs and adds each pair into an int32 lane, exactly (the
    saturating ``vpmaddubsw`` is never used). The pair vector of taps (k, k + 1) holds
    ``(a[j * stride + k], a[j * stride + k + 1])`` in lane j: with stride 2 that is the
    input row itself (one 16-byte load, widened); with stride 1 it interleaves two loads
    one byte apart. A lone last tap is paired with the row's zero fourth weight (stride 2:
    the pair (k - 1, k) with weights (0, w[k]), inside the span) or widened to int32 lanes
    (stride 1: (a, 0) pairs). Three taps then take 2 multiplies per 8 columns instead of 3;
    the loads and pair vectors do not depend on the output channel or weights, so LLVM
    shares them across the unrolled channel / row tile.
    """
    name = f"prom_tvm.x86.pmaddwd_row_s{stride}_k{taps}_{x_dtype}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    if not pmaddwd_row_fits(stride, 1, taps):
        raise ValueError(f"no pmaddwd row intrinsic for stride={stride}, taps={taps}")
    lanes = 8
    span = (lanes - 1) * stride + taps
    wide = "int16x16"

    def pair_weights(w4, k0: int, k1: int):
        # (w[k0], w[k1]) repeated in every int32 lane (w4: the four int16 weights); it does
        # not depend on the column, so LLVM hoists it out of the column loop
        word = tirx.call_intrin("int32", "tirx.reinterpret", tirx.Shuffle([w4], [k0, k1]))
        return tirx.call_intrin(wide, "tirx.reinterpret", tirx.Broadcast(word, lanes))

    def pair_inputs(a, k: int):
        if stride == 2:
            return tirx.Cast(wide, a.vload([k], f"{x_dtype}x16"))
        lo, hi = a.vload([k], f"{x_dtype}x8"), a.vload([k + 1], f"{x_dtype}x8")
        inter = [v for j in range(lanes) for v in (j, lanes + j)]
        return tirx.Cast(wide, tirx.Shuffle([lo, hi], inter))

    def dot(x, w):
        return tirx.call_llvm_pure_intrin("int32x8", "llvm.x86.avx2.pmadd.wd", x, w)

    def body(a, b, c):
        w4 = tirx.Cast("int16x4", b.vload([0], "int8x4"))
        acc = c.vload([0], "int32x8")
        for k in range(0, taps - 1, 2):
            acc = acc + dot(pair_inputs(a, k), pair_weights(w4, k, k + 1))
        if taps % 2:
            k = taps - 1
            if stride == 2:  # (a[2j + k - 1], a[2j + k]) with weights (0, w[k])
                x, w = pair_inputs(a, k - 1), pair_weights(w4, 3, k)
            else:  # (a[j + k], 0) with weights (w[k], 0)
                x = tirx.call_intrin(wide, "tirx.reinterpret",
                                     tirx.Cast("int32x8", a.vload([k], f"{x_dtype}x8")))
                w = pair_weights(w4, k, 3)
            acc = acc + dot(x, w)
        return acc

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((span,), x_dtype, offset_factor=1),
        b: T.Buffer((taps,), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:span], b[0:taps])
            T.writes(c[0:lanes])
            for j, k in T.grid(lanes, taps):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + (T.Cast("int32", a[vj * stride + vk])
                                     * T.Cast("int32", b[vk]))

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((span,), x_dtype, offset_factor=1),
        b: T.Buffer((taps,), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:span], b[0:taps])
            T.writes(c[0:lanes])
            value = T.meta_var(body(a, b, c))
            c[T.ramp(T.int32(0), 1, lanes)] = value

    TensorIntrin.register(name, desc, impl)
    return name


def pmaddwd_dot_intrin(x_dtype: str = "uint8") -> str:
    """Register (once) and return the name of ``C[j] += sum_k A[2j + k] * B[2j + k]`` for 8
    int32 partial sums (k < 2): 16 contiguous activations and weights widened to int16, one
    exact ``vpmaddwd`` (the AVX2 analogue of :func:`dot_intrin`)."""
    name = f"prom_tvm.x86.pmaddwd_dot_{x_dtype}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((16,), x_dtype, offset_factor=1),
        b: T.Buffer((16,), "int8", offset_factor=1),
        c: T.Buffer((8,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:8], a[0:16], b[0:16])
            T.writes(c[0:8])
            for j, k in T.grid(8, 2):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + (T.Cast("int32", a[vj * 2 + vk])
                                     * T.Cast("int32", b[vj * 2 + vk]))

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((16,), x_dtype, offset_factor=1),
        b: T.Buffer((16,), "int8", offset_factor=1),
        c: T.Buffer((8,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:8], a[0:16], b[0:16])
            T.writes(c[0:8])
            c[T.ramp(T.int32(0), 1, 8)] = c.vload([0], "int32x8") + T.call_llvm_pure_intrin(
                "int32x8", "llvm.x86.avx2.pmadd.wd",
                T.Cast("int16x16", a.vload([0], f"{x_dtype}x16")),
                T.Cast("int16x16", b.vload([0], "int8x16")))

    TensorIntrin.register(name, desc, impl)
    return name
