"""AArch64 dot-product tensor intrinsics for the int8 kernels (``+dotprod``, ``+i8mm``).

One ``udot`` / ``sdot`` adds four products of bytes into each of four int32 lanes (16
multiply-adds). Both operands must have the same signedness, while prom_tvm's activations
are uint8 and its weights int8. Where ``+i8mm`` is there, ``usdot`` takes that mix directly;
elsewhere (Cortex-A55 / A76 / Neoverse N1: dotprod without i8mm) the weights are offset
into uint8 and a per-pixel term takes the offset out again::

    sum_k x_k * w_k  =  udot(x, w ^ 0x80)  -  udot(x, 128)          (w ^ 0x80 == w + 128)

Exactness: ``udot``, the subtraction and the running sum are all arithmetic modulo 2**32
(unsigned vectors in the IR, so LLVM sees no signed-overflow promise), hence every lane
holds the exact sum modulo 2**32. Each lane's exact value is a partial sum of products
``|x * w| <= 255 * 128``, so it lies in int32 whenever the kernel's whole reduction does
(``K * 32640 < 2**31``, K < 65793; the numpy references refuse accumulators past int32):
the lanes, read back as int32, are the exact partial sums, never wrapped values. The
intermediate ``udot(x, w ^ 0x80)`` alone can pass 2**31 (products up to 255 * 255); it is
only ever used modulo 2**32, where that does not matter.

Per 16 products this costs one ``udot`` and one ``sub`` per output (plus one ``eor`` per
weight vector and one ``udot`` per input vector, which LLVM shares across the unrolled
output tile), against four widening ``smlal`` and their ``sxtl`` / ``ushll`` on NEON
without dotprod (int8_arm_widening.py).
"""

from __future__ import annotations

from tvm import tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from prom_tvm.schedules.cpu_default import as_target


def _has(feature: str, target) -> bool:
    from tvm.target.codegen import target_has_features

    t = as_target(target)
    if t.kind.name != "llvm" or "arm_cpu" not in t.keys:
        return False
    try:
        return bool(target_has_features(feature, t))
    except (RuntimeError, ValueError):
        return False


def has_dotprod(target) -> bool:
    """AArch64 ``udot`` / ``sdot`` (Armv8.2 dotprod: Cortex-A55 / A76 and later, not A72)."""
    return _has("dotprod", target)


def has_i8mm(target) -> bool:
    """AArch64 ``usdot`` (Armv8.6 i8mm: Neoverse N2 / V1, Cortex-A510 / A710 and later)."""
    return _has("i8mm", target)


def dot_kind(target, x_dtype: str) -> str | None:
    """How a uint8 / int8 activation meets an int8 weight on ``target``: ``"sdot"`` (int8
    activations), ``"usdot"`` (uint8, i8mm), ``"udot"`` (uint8, offset weights), or None
    (no dotprod, or another dtype)."""
    if not has_dotprod(target) or x_dtype not in ("uint8", "int8"):
        return None
    if x_dtype == "int8":
        return "sdot"
    return "usdot" if has_i8mm(target) else "udot"


def _as(dtype: str, value):
    return tirx.call_intrin(dtype, "tirx.reinterpret", value)


def dot4(kind: str, acc, a, b):
    """``acc[j] + sum_k a[4j + k] * b[4j + k]`` for four int32 lanes; ``a`` 16 activation
    bytes (int8 for ``sdot``, else uint8), ``b`` 16 int8 weights, ``acc`` int32x4."""
    a8 = a if kind == "sdot" else _as("int8x16", a)
    if kind in ("sdot", "usdot"):
        return tirx.call_llvm_pure_intrin("int32x4", f"llvm.aarch64.neon.{kind}", acc, a8, b)
    if kind != "udot":
        raise ValueError(f"unknown dot kind {kind!r}")
    offset = _as("int8x16", tirx.Broadcast(tirx.const(128, "uint8"), 16))
    shifted = tirx.bitwise_xor(b, tirx.Broadcast(tirx.const(-128, "int8"), 16))
    zero = tirx.Broadcast(tirx.const(0, "uint32"), 4)
    biased = tirx.call_llvm_pure_intrin("uint32x4", "llvm.aarch64.neon.udot",
                                        _as("uint32x4", acc), a8, shifted)
    pixel = tirx.call_llvm_pure_intrin("uint32x4", "llvm.aarch64.neon.udot", zero, a8, offset)
    return _as("int32x4", biased - pixel)


def dense_dot_intrin(kind: str) -> str:
    """Register (once) and return the name of ``C[j] += sum_k A[4j + k] * B[4j + k]`` for four
    int32 partial sums (k < 4): 16 contiguous activations and weights, one dot instruction.
    It matches the per-lane partial-sum block (rfactor) of a dense layer's K loop split
    into lanes of four."""
    name = f"prom_tvm.arm.dense_dot_{kind}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    x_dtype = "int8" if kind == "sdot" else "uint8"

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((16,), x_dtype, offset_factor=1),
        b: T.Buffer((16,), "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:4], a[0:16], b[0:16])
            T.writes(c[0:4])
            for j, k in T.grid(4, 4):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + (T.Cast("int32", a[vj * 4 + vk])
                                     * T.Cast("int32", b[vj * 4 + vk]))

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((16,), x_dtype, offset_factor=1),
        b: T.Buffer((16,), "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:4], a[0:16], b[0:16])
            T.writes(c[0:4])
            value = T.meta_var(dot4(kind, c.vload([0], "int32x4"), a.vload([0], f"{x_dtype}x16"),
                                    b.vload([0], "int8x16")))
            c[T.ramp(T.int32(0), 1, 4)] = value

    TensorIntrin.register(name, desc, impl)
    return name


def channel_dot_intrin(kind: str, weight_rank: int = 1) -> str:
    """Register (once) and return the name of ``C[j] += sum_k A[j, k] * B[k]`` for four
    pixels j and four input channels k: the channel-interleaved input (four channels per
    pixel, 16 bytes for four pixels) times four weights of one output channel, broadcast
    to every lane. ``weight_rank`` 3 reads them as ``w[c, i:i + 4, 0, 0]`` of a 1x1 conv's
    (Cout, Cin, 1, 1) tensor (contiguous, no repacking)."""
    name = f"prom_tvm.arm.channel_dot_{kind}_w{weight_rank}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    x_dtype = "int8" if kind == "sdot" else "uint8"
    w_shape = (4,) if weight_rank == 1 else (4, 1, 1)
    w_region = (slice(0, 4),) if weight_rank == 1 else (slice(0, 4), slice(0, 1), slice(0, 1))

    def w_at(b, k):
        return b[k] if weight_rank == 1 else b[k, 0, 0]

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((4, 4), x_dtype, offset_factor=1),
        b: T.Buffer(w_shape, "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:4], a[0:4, 0:4], b[w_region])
            T.writes(c[0:4])
            for j, k in T.grid(4, 4):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + T.Cast("int32", a[vj, vk]) * T.Cast("int32", w_at(b, vk))

    def body(a, b, c):
        word = _as("int32", b.vload([0] * len(b.shape), "int8x4"))
        weights = _as("int8x16", tirx.Broadcast(word, 4))
        return dot4(kind, c.vload([0], "int32x4"), a.vload([0, 0], f"{x_dtype}x16"), weights)

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((4, 4), x_dtype, offset_factor=1),
        b: T.Buffer(w_shape, "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:4], a[0:4, 0:4], b[w_region])
            T.writes(c[0:4])
            value = T.meta_var(body(a, b, c))
            c[T.ramp(T.int32(0), 1, 4)] = value

    TensorIntrin.register(name, desc, impl)
    return name


def row_dot_fits(stride: int, dilation: int, taps: int, columns: int = 4) -> bool:
    """Whether :func:`row_dot_intrin` covers this kernel row for ``columns`` (4 or 8) output
    columns: 2-4 taps, the row's bytes in one 16-byte table register."""
    return 2 <= taps <= 4 and (columns - 1) * stride + (taps - 1) * dilation < 16


def row_dot_intrin(kind: str, stride: int, dilation: int, taps: int, columns: int = 4) -> str:
    """Register (once) and return the name of one kernel row of a conv for ``columns`` (4 or
    8) output columns: ``C[j] += sum_k A[j * stride + k * dilation] * B[k]`` (k < taps <= 4),
    the description of the x86 ``depthwise_row_intrin``.

    The ``span`` input bytes are loaded once and one byte shuffle (``tbl``) per four columns
    gathers each column's taps into the four bytes of its lane (unused bytes repeat byte 0
    and meet a zero weight); one dot instruction per four columns then does the row. The
    weight row is the repacked copy, zero-padded to four bytes (one 32-bit load, broadcast).
    The load, the shuffles and the ``udot`` correction depend only on the input row, so LLVM
    shares them between the output rows of a tile that read the same input row (three, for
    a 3x3 kernel); eight columns share one load (a 6-byte row costs three instructions to
    load, a 10-byte one the same).
    """
    name = f"prom_tvm.arm.row_dot_{kind}_s{stride}_d{dilation}_k{taps}_c{columns}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    if columns not in (4, 8) or not row_dot_fits(stride, dilation, taps, columns):
        raise ValueError(f"no AArch64 row dot intrinsic for stride={stride}, "
                         f"dilation={dilation}, taps={taps}, columns={columns}")
    x_dtype = "int8" if kind == "sdot" else "uint8"
    span = (columns - 1) * stride + (taps - 1) * dilation + 1

    def body(a, b, c):
        word = _as("int32", b.vload([0], "int8x4"))
        weights = _as("int8x16", tirx.Broadcast(word, 4))
        row = a.vload([0], f"{x_dtype}x{span}")
        quads = []
        for q in range(columns // 4):
            index = [(4 * q + j) * stride + k * dilation if k < taps else 0
                     for j in range(4) for k in range(4)]
            # a TIR shuffle yields at most as many lanes as its inputs hold: repeat the row
            taps16 = tirx.Shuffle([row] * -(-16 // span), index)
            quads.append(dot4(kind, c.vload([4 * q], "int32x4"), taps16, weights))
        return quads[0] if columns == 4 else tirx.Shuffle(quads, list(range(8)))

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((span,), x_dtype, offset_factor=1),
        b: T.Buffer((taps,), "int8", offset_factor=1),
        c: T.Buffer((columns,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:columns], a[0:span], b[0:taps])
            T.writes(c[0:columns])
            for j, k in T.grid(columns, taps):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + (T.Cast("int32", a[vj * stride + vk * dilation])
                                     * T.Cast("int32", b[vk]))

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((span,), x_dtype, offset_factor=1),
        b: T.Buffer((taps,), "int8", offset_factor=1),
        c: T.Buffer((columns,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:columns], a[0:span], b[0:taps])
            T.writes(c[0:columns])
            value = T.meta_var(body(a, b, c))
            c[T.ramp(T.int32(0), 1, columns)] = value

    TensorIntrin.register(name, desc, impl)
    return name
