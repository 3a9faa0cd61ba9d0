"""The add-only kernels' requantization in x86 SIMD: ``requant_np``'s result in fewer uops.

The portable epilogue (``ternary_specialized._epilogue``) is plain TIR that LLVM lowers, for 32
int16 sums on AVX-512, to ~20 vector uops (sign-extend and extract, convert, multiply, clamp
twice in float, magic-number rounding, two 2-uop ``vpmovdb``): half the time of an expand
layer whose adds are few.  x86 has the pieces to do less, and they are exact:

* int16 sums t: ``u = t ^ 0x8000`` (= t + 32768, unsigned), zero-extended to dwords by
  ``vpunpck{l,h}wd``; ``vpaddd`` of ``0x4B400000 + bias`` makes the bit pattern of the float32
  ``1.5 * 2**23 + 32768 + t + bias`` (|u + bias| < 2**22 keeps the exponent); ``vsubps`` of
  ``1.5 * 2**23 + 32768`` leaves ``t + bias`` as a float32, exactly (all integers < 2**24).
  With a magnitude m (proven ``|m * t + bias| < 2**24``): ``fma(t, m, bias)``, exact.
* int32 sums: ``float(acc + bias)``, the reference's own single RNE conversion.
* ``v = total * scale``: the reference's float32 product; ``vcvtps2dq`` rounds it half to even
  (the default MXCSR mode TVM runs under), |v| < 2**31 proven by the caller's bound.
* ``vpackssdw`` (saturating) to int16, ``vpaddsw`` of the zero point (saturating: a value
  past int16 is past every 8-bit clamp anyway), ``vpmaxsw`` / ``vpminsw`` only for a clamp
  tighter than the output type (ReLU, ReLU6), ``vpack{us,ss}wb`` (saturating) to 8 bits,
  one permute back to pixel order (the packs work within 128-bit lanes).

Against the portable epilogue this drops the float clamps, the magic-number add and the
2-uop narrowing stores.  The unpack and pack orders are defined here by shuffle indices and
the intrinsics' in-lane semantics; ``final_order`` derives the last permute from them, for
512-, 256- and 128-bit vectors alike.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx

from .requant import QRANGE, Requant

# 1.5 * 2**23: a float32 whose ulp is 1 for values within +-2**22 of it
_BASE_BITS = 0x4B400000
_BASE = 12582912.0 + 32768.0  # value of the dword 0x4B400000 + (t ^ 0x8000) minus t

_CVT = {512: "llvm.x86.avx512.mask.cvtps2dq.512", 256: "llvm.x86.avx.cvt.ps2dq.256",
        128: "llvm.x86.sse2.cvtps2dq"}
_PACK_DW = {512: "llvm.x86.avx512.packssdw.512", 256: "llvm.x86.avx2.packssdw",
            128: "llvm.x86.sse2.packssdw.128"}
_PACK_WB = {("uint8", 512): "llvm.x86.avx512.packuswb.512",
            ("uint8", 256): "llvm.x86.avx2.packuswb",
            ("uint8", 128): "llvm.x86.sse2.packuswb.128",
            ("int8", 512): "llvm.x86.avx512.packsswb.512",
            ("int8", 256): "llvm.x86.avx2.packsswb",
            ("int8", 128): "llvm.x86.sse2.packsswb.128"}


def x86_vector_bits(target) -> int | None:
    """512 / 256 / 128 where ``target`` (None: this machine) is x86 with AVX-512BW / AVX2 /
    SSE2, else None (AArch64 and others keep the portable epilogue)."""
    from tvm.target import Target

    from ..targets import arch_family, host_target
    from .cpu_default import vector_bits

    t = host_target() if target is None else (
        target if isinstance(target, Target) else Target(target))
    if t.kind.name != "llvm" or arch_family(t) not in ("x86_64", "x86"):
        return None
    return vector_bits(t)


def _unpack_indices(lanes: int, high: bool) -> list[int]:
    """shufflevector indices of ``vpunpck{l,h}wd(a, b)`` on two int16 x lanes vectors
    (b's elements are numbered from ``lanes``)."""
    idx = []
    for lane in range(lanes // 8):
        for j in range(4):
            src = lane * 8 + j + (4 if high else 0)
            idx += [src, lanes + src]
    return idx


def final_order(lanes: int, acc_int16: bool) -> list[int]:
    """Byte positions, in the packed 8-bit vector, of pixels 0..lanes-1."""
    bits = lanes * 16  # the int16 vector's width
    n128 = bits // 128
    pix = np.arange(lanes)
    if acc_int16:  # the dword halves hold the unpack orders
        lo = np.array([pix[i] for i in _unpack_indices(lanes, False)[0::2]])
        hi = np.array([pix[i] for i in _unpack_indices(lanes, True)[0::2]])
    else:
        lo, hi = pix[:lanes // 2], pix[lanes // 2:]

    def pack(a, b):  # per 128-bit lane of the result: a's part of that lane, then b's
        per = len(a) // n128
        return np.concatenate([np.concatenate([a[k * per:(k + 1) * per],
                                               b[k * per:(k + 1) * per]])
                               for k in range(n128)])

    words = pack(lo, hi)
    byts = pack(words, words)
    return [int(np.flatnonzero(byts == p)[0]) for p in range(lanes)]


def _splat(v, lanes):
    return tirx.Broadcast(v, lanes)


def fast_epilogue(acc, lanes: int, bits: int, bias, scale, magnitude, rq: Requant):
    """``requant_np`` of a vector of ``lanes`` int16 or int32 sums (bias not yet added) as an
    ``rq.out_dtype`` x lanes expression.  ``bias`` (int32), ``scale`` (float32) and
    ``magnitude`` (int32 or None) are the channel's scalars, immediates or loads.

    The caller proves: |sum * m + bias| < 2**24 and |bias| < 2**21 where the sums are int16,
    and |v| = |total * scale| < 2**31 (``fits``).
    """
    if lanes * 16 != bits:
        raise ValueError(f"{lanes} int16 lanes do not fill a {bits}-bit vector")
    half = lanes // 2
    f32, i32 = f"float32x{half}", f"int32x{half}"
    acc_int16 = str(acc.ty).startswith("int16")
    if acc_int16:
        u = tirx.bitwise_xor(acc, _splat(tirx.const(-32768, "int16"), lanes))
        zero = _splat(tirx.const(0, "int16"), lanes)
        # the channel's one add: the base bit pattern plus (without a magnitude) the bias
        offset = tirx.const(_BASE_BITS, "int32")
        if magnitude is None:
            offset = tirx.Add(bias, offset)
        parts = []
        for high in (False, True):
            # zero-extending unpack (LLVM's canonical vpunpck{l,h}wd with a zero register)
            idx = [tirx.const(i, "int32") for i in _unpack_indices(lanes, high)]
            d = tirx.Add(tirx.reinterpret(i32, tirx.Shuffle([u, zero], idx)), _splat(offset, half))
            t = tirx.Sub(tirx.reinterpret(f32, d), _splat(tirx.const(_BASE, "float32"), half))
            if magnitude is None:
                total = t
            else:
                total = tirx.call_llvm_pure_intrin(
                    f32, "llvm.fma", t, _splat(tirx.Cast("float32", magnitude), half),
                    _splat(tirx.Cast("float32", bias), half))
            parts.append(total)
    else:
        parts = []
        for h in range(2):
            a = tirx.Shuffle([acc], [tirx.const(h * half + i, "int32") for i in range(half)])
            if magnitude is None:
                total = tirx.Cast(f32, tirx.Add(a, _splat(bias, half)))
            else:
                total = tirx.call_llvm_pure_intrin(
                    f32, "llvm.fma", tirx.Cast(f32, a),
                    _splat(tirx.Cast("float32", magnitude), half),
                    _splat(tirx.Cast("float32", bias), half))
            parts.append(total)
    rounded = []
    for total in parts:
        v = tirx.Mul(total, _splat(scale, half))
        if bits == 512:
            r = tirx.call_llvm_pure_intrin(i32, _CVT[512], v, _splat(tirx.const(0, "int32"), half),
                                           tirx.const(-1, "int16"), tirx.const(4, "int32"))
        else:
            r = tirx.call_llvm_pure_intrin(i32, _CVT[bits], v)
        rounded.append(r)
    i16 = f"int16x{lanes}"
    p = tirx.call_llvm_pure_intrin(i16, _PACK_DW[bits], rounded[0], rounded[1])
    if rq.zero_point:
        p = tirx.call_llvm_pure_intrin(i16, "llvm.sadd.sat", p,
                                       _splat(tirx.const(rq.zero_point, "int16"), lanes))
    lo, hi = QRANGE[rq.out_dtype]
    if rq.qmin > lo:
        p = tirx.Max(p, _splat(tirx.const(rq.qmin, "int16"), lanes))
    if rq.qmax < hi:
        p = tirx.Min(p, _splat(tirx.const(rq.qmax, "int16"), lanes))
    b8 = f"int8x{2 * lanes}"
    packed = tirx.call_llvm_pure_intrin(b8, _PACK_WB[(rq.out_dtype, bits)], p, p)
    packed = tirx.reinterpret(f"{rq.out_dtype}x{2 * lanes}", packed)
    return tirx.Shuffle([packed], [tirx.const(i, "int32")
                                   for i in final_order(lanes, acc_int16)])


def fits(sum_bound: int, bias: np.ndarray, magnitude, scale: np.ndarray) -> bool:
    """The bounds ``fast_epilogue`` needs, for a layer whose sums satisfy |sum| <= ``sum_bound``:
    |m * sum + bias| < 2**24 (exact in float32), |bias| < 2**21 (the int16 path's bit-pattern
    add keeps its exponent) and |v| < 2**30 (``vcvtps2dq`` does not overflow)."""
    m = 1 if magnitude is None else int(np.max(np.abs(np.asarray(magnitude, np.int64)),
                                               initial=1))
    b = int(np.max(np.abs(np.asarray(bias, np.int64)), initial=0))
    total = m * int(sum_bound) + b
    s = float(np.max(np.abs(np.asarray(scale, np.float64)), initial=0.0))
    return b < 2**21 and total < 2**24 and total * s < 2**30
