"""AArch64 NEON intrinsics for the int8 kernels on CPUs without dotprod (Cortex-A53 / A72),
and for the convs the dot-product kernels (int8_arm_intrin.py) do not take.

Products of a uint8 / int8 activation and an int8 weight fit int16 operands (|x * w| <= 255 *
128 < 2**15), so both are widened to int16 once (``ushll`` / ``sshll``) and multiplied into
int32 lanes by ``smlal`` / ``smlal2``, exact (int16 x int16 -> int32), 8 multiply-accumulates
in two instructions; the int32 sums are the compute's, so every int32 bound of the kernels
holds unchanged. Left to LLVM, the compute's int32 products became ``ushll`` twice per
activation, three instructions per weight to sign-extend it in 32-bit lanes, and ``mla .4s``.
"""

from __future__ import annotations

from tvm import tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder.tirx import prim_func as build_prim_func


def _columns(a, x_dtype: str, stride: int):
    """Eight columns ``a[j * stride]`` widened to int16x8. Stride 2 loads 16 contiguous bytes
    and keeps the even ones (LLVM: ``ld2``); the caller makes sure that all 16 lie in the
    row (:func:`widening_fits`)."""
    if stride == 1:
        return tirx.Cast("int16x8", a.vload([0], f"{x_dtype}x8"))
    return tirx.Cast("int16x8", tirx.Shuffle([a.vload([0], f"{x_dtype}x16")],
                                             list(range(0, 16, 2))))


def widening_fits(stride: int, dilation: int, taps: int) -> bool:
    """Whether the widening intrinsics read this conv's input rows directly (no phase-split
    copy): unit stride, or stride 2 with the taps' reach even, so that the 16-byte load of
    the last 8 columns ends at or before the padded row's end (its width is ``(wo_pad +
    (taps - 1) * dilation // 2) * 2``)."""
    return stride == 1 or (stride == 2 and (taps - 1) * dilation % 2 == 0)


def widening_mac_intrin(x_dtype: str, stride: int = 1) -> str:
    """Register (once) and return the name of ``C[j] += A[j * stride] * B[0]`` for eight
    int32 lanes: one weight times eight columns (depthwise convs, and convs whose tile has
    neither 4 nor 8 output channels)."""
    name = f"prom_tvm.arm.widening_mac_{x_dtype}_s{stride}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    span = 7 * stride + 1

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((span,), x_dtype, offset_factor=1),
        b: T.Buffer((1,), "int8", offset_factor=1),
        c: T.Buffer((8,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:8], a[0:span], b[0:1])
            T.writes(c[0:8])
            for j in T.serial(8):
                with T.sblock("update"):
                    vj = T.axis.remap("S", [j])
                    c[vj] = c[vj] + T.Cast("int32", a[vj * stride]) * T.Cast("int32", b[0])

    def body(a, b, c):
        x = _columns(a, x_dtype, stride)
        w = tirx.Broadcast(tirx.Cast("int16", b[0]), 8)
        halves = [tirx.call_llvm_pure_intrin(
            "int32x4", "llvm.aarch64.neon.smull.v4i32",
            tirx.call_intrin("int16x4", f"tirx.vector{half}", x),
            tirx.call_intrin("int16x4", f"tirx.vector{half}", w)) for half in ("low", "high")]
        return c.vload([0], "int32x8") + tirx.Shuffle(halves, list(range(8)))

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((span,), x_dtype, offset_factor=1),
        b: T.Buffer((1,), "int8", offset_factor=1),
        c: T.Buffer((8,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:8], a[0:span], b[0:1])
            T.writes(c[0:8])
            value = T.meta_var(body(a, b, c))
            c[T.ramp(T.int32(0), 1, 8)] = value

    TensorIntrin.register(name, desc, impl)
    return name


def widening_outer_intrin(x_dtype: str, channels: int, stride: int = 1) -> str:
    """Register (once) and return the name of ``C[o, 0, j] += A[j * stride] * B[o]`` for
    ``channels`` (4 or 8) output channels o and eight columns j: one input row times the
    weights of a tile of output channels (repacked contiguous), an outer product. The weights
    are widened once into one int16 register and each channel's product is ``smlal`` /
    ``smlal2`` by element (``v.h[o]``), so a weight costs no instruction of its own; the
    activations are widened once and LLVM shares them between the unrolled rows' calls."""
    name = f"prom_tvm.arm.widening_outer_{x_dtype}_c{channels}_s{stride}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    if channels not in (4, 8):
        raise ValueError(f"widening outer product: channels must be 4 or 8, got {channels}")
    span = 7 * stride + 1

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle):
        A = T.match_buffer(a, (span,), x_dtype, offset_factor=1)
        B = T.match_buffer(b, (channels,), "int8", offset_factor=1)
        C = T.match_buffer(c, (channels, 1, 8), "int32", offset_factor=1,
                           strides=[T.int32(), T.int32(), 1])
        with T.sblock("root"):
            T.reads(C[0:channels, 0, 0:8], A[0:span], B[0:channels])
            T.writes(C[0:channels, 0, 0:8])
            for o, j in T.grid(channels, 8):
                with T.sblock("update"):
                    vo, vj = T.axis.remap("SS", [o, j])
                    C[vo, 0, vj] = C[vo, 0, vj] + (T.Cast("int32", A[vj * stride])
                                                   * T.Cast("int32", B[vo]))

    def row(A, B, C, o):
        x = _columns(A, x_dtype, stride)
        w = tirx.Cast(f"int16x{channels}", B.vload([0], f"int8x{channels}"))
        lane = tirx.Shuffle([w], [o] * 4)  # the o-th weight in every lane: smull by element
        halves = [tirx.call_llvm_pure_intrin(
            "int32x4", "llvm.aarch64.neon.smull.v4i32",
            tirx.call_intrin("int16x4", f"tirx.vector{half}", x), lane) for half in ("low", "high")]
        return C.vload([o, 0, 0], "int32x8") + tirx.Shuffle(halves, list(range(8)))

    # built with the IR builder: one store per channel, unrolled here (lane o a constant)
    with IRBuilder() as ib:
        with build_prim_func():
            a, b, c = (T.arg(n, T.handle()) for n in ("a", "b", "c"))
            A = T.match_buffer(a, (span,), x_dtype, offset_factor=1)
            B = T.match_buffer(b, (channels,), "int8", offset_factor=1)
            C = T.match_buffer(c, (channels, 1, 8), "int32", offset_factor=1,
                               strides=[T.int32(), T.int32(), 1])
            with T.sblock("root"):
                T.reads(C[0:channels, 0, 0:8], A[0:span], B[0:channels])
                T.writes(C[0:channels, 0, 0:8])
                for o in range(channels):
                    T.buffer_store(C, row(A, B, C, o), [o, 0, tirx.Ramp(0, 1, 8)])
    impl = ib.get()

    TensorIntrin.register(name, desc, impl)
    return name


def widening_dot_intrin(x_dtype: str) -> str:
    """Register (once) and return the name of ``C[j] += sum_k A[8k + j] * B[8k + j]`` for
    eight int32 partial sums (k < 2): 16 contiguous activations and weights, widened to int16
    (``ushll`` / ``sshll`` and their ``2`` forms) and multiplied-accumulated by four ``smlal``
    / ``smlal2``: a dense layer's K slice. Lane j takes products j and j + 8, so no
    pairwise add is needed."""
    name = f"prom_tvm.arm.widening_dot_{x_dtype}"
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
            for k, j in T.grid(2, 8):
                with T.sblock("update"):  # rfactor's block: the partial-sum lane first
                    vj, vk = T.axis.remap("SR", [j, k])
                    c[vj] = c[vj] + (T.Cast("int32", a[vk * 8 + vj])
                                     * T.Cast("int32", b[vk * 8 + vj]))

    def body(a, b, c):
        acc = c.vload([0], "int32x8")
        for k in range(2):
            x = tirx.Cast("int16x8", a.vload([8 * k], f"{x_dtype}x8"))
            w = tirx.Cast("int16x8", b.vload([8 * k], "int8x8"))
            halves = [tirx.call_llvm_pure_intrin(
                "int32x4", "llvm.aarch64.neon.smull.v4i32",
                tirx.call_intrin("int16x4", f"tirx.vector{half}", x),
                tirx.call_intrin("int16x4", f"tirx.vector{half}", w))
                for half in ("low", "high")]
            acc = acc + tirx.Shuffle(halves, list(range(8)))
        return acc

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((16,), x_dtype, offset_factor=1),
        b: T.Buffer((16,), "int8", offset_factor=1),
        c: T.Buffer((8,), "int32", offset_factor=1),
    ):
        with T.sblock("root"):
            T.reads(c[0:8], a[0:16], b[0:16])
            T.writes(c[0:8])
            value = T.meta_var(body(a, b, c))
            c[T.ramp(T.int32(0), 1, 8)] = value

    TensorIntrin.register(name, desc, impl)
    return name
