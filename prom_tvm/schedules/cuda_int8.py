"""CUDA schedules of the int8 conv2d / depthwise / dense kernels (computes in int8_conv2d.py and
int8_dense.py), with ``__dp4a`` where the GPU has it.

Mapping: one thread per output element, taken from the fused requant epilogue's loops
(threadIdx.x over output pixels, so a conv's activation loads are coalesced and its weight
loads warp-uniform broadcasts; for dense, over output features: the activations are the
broadcast and each thread reads its own weight row; threadIdx.y over output channels). The int32
reduction is computed at the thread into a register.

dp4a (sm_61 and later; ``dp4a_available``): the channel reduction is split into groups of four;
the four activation bytes and the four weight bytes of a group are gathered into 4-byte register
buffers and one ``__dp4a`` (a 4-way int8 dot product with int32 accumulation, ``u8 x s8`` for
uint8 activations) replaces four multiply-adds. Needs a multiple of 4 input channels per group
(the first 3-channel conv and other layers run plain int32 multiply-adds). Depthwise convs
reduce over one channel's 3x3 window: no four contiguous operand pairs, so they keep int32
multiply-adds (packing taps would cost more loads than the dp4a saves).
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from ..targets import cuda_arch
from .cuda_intrinsics import register_cuda_intrinsics

register_cuda_intrinsics()
THREADS = 256
DP4A_MIN_ARCH = 61
_REGISTERED: set[str] = set()


def dp4a_available(target) -> bool:
    return target is not None and str(target.kind.name) == "cuda" and \
        cuda_arch(target) >= DP4A_MIN_ARCH


def dp4a_intrin(x_dtype: str, emulate: bool = False) -> str:
    """``__dp4a`` on two 4-byte register buffers (TVM ships the intrinsic for shared memory
    operands only): ``C[0] += sum_i int32(A[i]) * int32(B[i])``, A the activations.
    ``emulate``: the same description implemented with four scalar multiply-adds, so that the
    tensorized schedule can be built for a CPU and checked there (``cuda_emulation``)."""
    name = f"prom_tvm_dp4a_{x_dtype}_s8_local" + ("_emulated" if emulate else "")
    if name in _REGISTERED:
        return name
    vec_a = "int8x4" if x_dtype == "int8" else "uint8x4"

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((4,), x_dtype, offset_factor=1, align=4, scope="local"),
             b: T.Buffer((4,), "int8", offset_factor=1, align=4, scope="local"),
             c: T.Buffer((1,), "int32", offset_factor=1, align=4, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0], a[0:4], b[0:4])
            T.writes(c[0])
            for i in range(4):
                with T.sblock("update"):
                    vi = T.axis.remap("R", [i])
                    c[0] = c[0] + T.cast(a[vi], "int32") * T.cast(b[vi], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), x_dtype, offset_factor=1, align=4, scope="local"),
             b: T.Buffer((4,), "int8", offset_factor=1, align=4, scope="local"),
             c: T.Buffer((1,), "int32", offset_factor=1, align=4, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0], a[0:4], b[0:4])
            T.writes(c[0])
            c[0] += T.call_pure_extern("__dp4a", a.vload([0], vec_a), b.vload([0], "int8x4"),
                                       T.int32(0), dtype="int32")

    @T.prim_func(s_tir=True)
    def impl_emulated(a: T.Buffer((4,), x_dtype, offset_factor=1, align=4, scope="local"),
                      b: T.Buffer((4,), "int8", offset_factor=1, align=4, scope="local"),
                      c: T.Buffer((1,), "int32", offset_factor=1, align=4, scope="local")
                      ) -> None:
        with T.sblock("root"):
            T.reads(c[0], a[0:4], b[0:4])
            T.writes(c[0])
            c[0] += (T.cast(a[0], "int32") * T.cast(b[0], "int32")
                     + T.cast(a[1], "int32") * T.cast(b[1], "int32")
                     + T.cast(a[2], "int32") * T.cast(b[2], "int32")
                     + T.cast(a[3], "int32") * T.cast(b[3], "int32"))

    TensorIntrin.register(name, desc, impl_emulated if emulate else impl)
    _REGISTERED.add(name)
    return name


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _divisor_tile(n: int) -> int | None:
    """The largest divisor of ``n`` in [32, 128] (whole tiles: no predicate), if any."""
    return next((t for t in range(min(n, 128), 31, -1) if n % t == 0), None)


def _bind_epilogue(sch, outer: list, inner: list, channel, exact: bool = False) -> tuple:
    """Bind the epilogue's loops: ``inner`` (fused) over threadIdx.x / blockIdx.x, ``channel``
    over threadIdx.y / blockIdx.y together with the ``outer`` (batch) loops. Returns the
    threadIdx.x loop, under which the reduction is computed. ``exact``: threadIdx.x tiles
    ``inner`` exactly (the caller checked ``_divisor_tile``)."""
    p = sch.fuse(*inner) if len(inner) > 1 else inner[0]
    npix = _extent(sch, p)
    tx = 32
    while tx < 128 and tx < npix:
        tx *= 2
    if exact:
        tx = _divisor_tile(npix) if npix > 128 else npix
    ty = max(1, min(THREADS // tx, _extent(sch, channel)))
    pb, pt = sch.split(p, [None, tx])
    cb, ct = sch.split(channel, [None, ty])
    sch.reorder(*outer, cb, pb, ct, pt)
    sch.bind(sch.fuse(*outer, cb) if outer else cb, "blockIdx.y")
    sch.bind(pb, "blockIdx.x")
    sch.bind(ct, "threadIdx.y")
    sch.bind(pt, "threadIdx.x")
    return pt


def _channels_last(sch, block) -> None:
    """Lay a register copy out with the reduced channel axis (axis 1) innermost, so that the
    four bytes of a dp4a group are contiguous."""
    ndim = len(sch.get(block).writes[0].source.shape)
    maps = {2: lambda a, b: (a, b),
            4: lambda a, b, c, d: (a, c, d, b),
            6: lambda a, b, c, d, e, f: (a, c, d, e, f, b)}
    if ndim != 2:
        sch.transform_layout(block, ("write", 0), maps[ndim])


def _reduce_in_thread(sch, block, at, dp4a: str | None, x_index: int, w_index: int) -> None:
    """Compute ``block`` (an int32 reduction) at thread loop ``at`` into a register; with
    ``dp4a``, its first reduction loop is split by 4 and the innermost group of four becomes one
    ``__dp4a`` on register copies of the operands."""
    sch.compute_at(block, at)
    sch.set_scope(block, 0, "local")
    # under the 4 bound loops: the reduction loops compute_at made (none for unit extents)
    red = sch.get_loops(block)[4:]
    if not red:
        return
    if dp4a is None:
        sch.decompose_reduction(block, red[0])
        return
    ro, ri = sch.split(red[0], [None, 4])
    sch.reorder(ro, *red[1:], ri)
    xl = sch.cache_read(block, x_index, "local")
    wl = sch.cache_read(block, w_index, "local")
    for cache in (xl, wl):
        sch.compute_at(cache, red[-1] if len(red) > 1 else ro)
        _channels_last(sch, cache)
    sch.decompose_reduction(block, ro)
    sch.tensorize(ri, dp4a)


def _inline_producers(sch, names) -> None:
    for name in names:
        try:
            sch.compute_inline(sch.get_sblock(name))
        except Exception:  # this conv has no such stage (no phase split when not strided)
            pass


def schedule_cuda_int8_conv2d(sch, target=None) -> None:
    conv = sch.get_sblock("conv")
    req = sch.get_sblock("requant")
    b, c, oh, ow = sch.get_loops(req)
    at = _bind_epilogue(sch, [b], [oh, ow], c)
    rc = sch.get_loops(conv)[4]
    cig = _extent(sch, rc)
    use = dp4a_available(target) and cig % 4 == 0 and cig >= 4
    x_dtype = str(sch.get(sch.get_sblock("pad")).writes[0].source.dtype)
    reads = [r.source.name for r in sch.get(conv).reads]
    src = "phase" if "phase" in reads else "pad"
    if src == "phase":
        sch.compute_inline(sch.get_sblock("pad"))
    intrin = dp4a_intrin(x_dtype) if use else None
    if intrin is None:
        _inline_producers(sch, ["phase", "pad"])
        _reduce_in_thread(sch, conv, at, None, 0, 0)
        return
    w_name = next(r for r in reads if r not in ("pad", "phase"))
    _reduce_in_thread(sch, conv, at, intrin, reads.index(src), reads.index(w_name))
    sch.compute_inline(sch.get_sblock(src))  # into its register copy: reads x directly


def schedule_cuda_int8_depthwise(sch, target=None) -> None:
    conv = sch.get_sblock("conv")
    req = sch.get_sblock("requant")
    b, c, oh, ow = sch.get_loops(req)
    at = _bind_epilogue(sch, [b], [oh, ow], c)
    _inline_producers(sch, ["phase", "pad"])
    _reduce_in_thread(sch, conv, at, None, 0, 0)
    for loop in sch.get_loops(conv)[-2:]:
        sch.unroll(loop)  # the 3x3 taps


def schedule_cuda_int8_dense(sch, target=None) -> None:
    dense = sch.get_sblock("dense")
    req = sch.get_sblock("requant")
    m, n = sch.get_loops(req)
    k = _extent(sch, sch.get_loops(dense)[-1])
    n_out = _extent(sch, n)
    reads = [r.source.name for r in sch.get(dense).reads]
    x_dtype = str(sch.get(dense).reads[0].source.dtype)
    w_major = len(sch.get(dense).reads[1].source.shape) == 2 and int(
        sch.get(dense).reads[1].source.shape[1]) == k  # (N, K): k contiguous in both
    # tensorize rejects a predicated block: dp4a needs whole thread tiles of the outputs
    whole = n_out <= 128 or _divisor_tile(n_out) is not None
    use = dp4a_available(target) and k % 4 == 0 and w_major and whole
    at = _bind_epilogue(sch, [], [n], m, exact=use)
    _reduce_in_thread(sch, dense, at, dp4a_intrin(x_dtype) if use else None,
                      0, 1 if len(reads) > 1 else 0)


def cuda_int8_rules() -> dict:
    from .int8_conv2d import CONV_RULE, DEPTHWISE_RULE
    from .int8_dense import DENSE_RULE

    return {CONV_RULE: schedule_cuda_int8_conv2d, DEPTHWISE_RULE: schedule_cuda_int8_depthwise,
            DENSE_RULE: schedule_cuda_int8_dense}
