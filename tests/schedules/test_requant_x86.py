"""The x86 requantization epilogue: bit-exact with ``requant_np`` on AVX-512, AVX2 and SSE2
code, over every int16 sum (exhaustively) and over int32 sums, with ties (power-of-two
scales), zero points, ReLU / ReLU6 clamps, both output types and weight magnitudes; and the
code it is meant to be (no float clamps, no 2-uop narrowing stores, no integer multiply)."""

from __future__ import annotations

import functools
import platform

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import host_target
from test_ternary_specialized import X86_INT_MUL

from prom_tvm.schedules.requant import QRANGE, Requant, requant_np
from prom_tvm.schedules.requant_x86 import fast_epilogue, final_order, fits, x86_vector_bits
from prom_tvm.schedules.ternary_specialized import span

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                reason="x86 code runs on x86 hosts only")
TARGETS = {512: None, 256: {"kind": "llvm", "mcpu": "haswell"},
           128: {"kind": "llvm", "mcpu": "x86-64"}}


def _target(bits):
    if bits == 512:
        if x86_vector_bits(host_target()) != 512:
            pytest.skip("this CPU has no AVX-512BW")
        return host_target()
    return tvm.target.Target(TARGETS[bits])


@functools.cache
def _kernel(bits: int, acc_dtype: str, n: int, zp: int, qmin: int, qmax: int, out_dtype: str,
            with_mag: bool):
    """main(acc (C, n), bias (C,), scale (C,)[, mag (C,)], out (C, n)) for C = 4."""
    lanes = bits // 16
    c_count = 4
    acc = tvm.tirx.decl_buffer((c_count, n), acc_dtype, "acc")
    bias = tvm.tirx.decl_buffer((c_count,), "int32", "bias")
    scale = tvm.tirx.decl_buffer((c_count,), "float32", "scale")
    mag = tvm.tirx.decl_buffer((c_count,), "int32", "mag")
    out = tvm.tirx.decl_buffer((c_count, n), out_dtype, "out")
    c, j = tvm.tirx.Var("c", "int32"), tvm.tirx.Var("j", "int32")
    rq = Requant(np.ones(c_count, np.float32), zp, qmin, qmax, out_dtype)
    y = fast_epilogue(tvm.tirx.BufferLoad(acc, [c, span(j * lanes, lanes)]), lanes, bits,
                      tvm.tirx.BufferLoad(bias, [c]), tvm.tirx.BufferLoad(scale, [c]),
                      tvm.tirx.BufferLoad(mag, [c]) if with_mag else None, rq)
    body = tvm.tirx.For(c, 0, c_count, tvm.tirx.ForKind.SERIAL, tvm.tirx.For(
        j, 0, n // lanes, tvm.tirx.ForKind.SERIAL,
        tvm.tirx.BufferStore(out, y, [c, span(j * lanes, lanes)])))
    params = [acc, bias, scale, *([mag] if with_mag else []), out]
    func = tvm.tirx.PrimFunc(params, body)
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.compile(mod, _target(bits))


def _run(lib, arrays, shape, dtype):
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros(shape, dtype), dev)
    lib["main"](*(tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays), out)
    return out.numpy()


def _check(bits, acc, bias, scale, mag, zp, qmin, qmax, out_dtype):
    total = acc.astype(np.int64) * (1 if mag is None else mag[:, None]) + bias[:, None]
    bound = int(np.abs(acc).max())
    assert fits(bound, bias, mag, scale)  # the test only uses inputs the caller may pass
    lib = _kernel(bits, str(acc.dtype), acc.shape[1], zp, qmin, qmax, out_dtype, mag is not None)
    got = _run(lib, [acc, bias, scale, *([mag] if mag is not None else [])], acc.shape,
               out_dtype)
    want = requant_np(total.astype(np.int32), Requant(scale, zp, qmin, qmax, out_dtype),
                      channel_axis=0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bits", [512, 256, 128])
def test_final_order_is_a_permutation(bits):
    """The permute after the packs takes every pixel exactly once (that it takes the right
    byte is what the exact-value tests below check on the hardware)."""
    lanes = bits // 16
    for acc16 in (True, False):
        order = final_order(lanes, acc16)
        assert len(set(order)) == lanes and max(order) < 2 * lanes


@pytest.mark.parametrize("bits", [512, 256, 128])
@pytest.mark.parametrize("out_dtype,zp,clamp", [("uint8", 0, None), ("uint8", 131, "relu"),
                                                ("uint8", 7, "relu6"), ("int8", -5, None),
                                                ("int8", 0, "relu")])
def test_every_int16_sum_is_exact(bits, out_dtype, zp, clamp):
    """All 65536 int16 sums, four channels: a power-of-two scale (every odd sum a tie), a
    large one (most saturate), two random ones; biases of both signs."""
    lo, hi = QRANGE[out_dtype]
    qmin = zp if clamp else lo
    qmax = min(hi, zp + 60) if clamp == "relu6" else hi
    acc = np.tile(np.arange(-32768, 32768, dtype=np.int16), (4, 1))
    scale = np.array([2.0**-1, 0.37, 1 / 300.0, 2.0**-9], np.float32)
    bias = np.array([0, -2**20, 12345, 2**21 - 1], np.int32)
    _check(bits, acc, bias, scale, None, zp, qmin, qmax, out_dtype)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=st.sampled_from([512, 256, 128]), acc_dtype=st.sampled_from(["int16", "int32"]),
       out_dtype=st.sampled_from(["uint8", "int8"]), zp=st.integers(-128, 255),
       clamp=st.sampled_from([None, "relu", "relu6"]), with_mag=st.booleans(),
       pow2=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_random_sums_are_exact(bits, acc_dtype, out_dtype, zp, clamp, with_mag, pow2, seed):
    rng = np.random.default_rng(seed)
    lo, hi = QRANGE[out_dtype]
    zp = int(np.clip(zp, lo, hi))
    qmin = zp if clamp else lo
    qmax = min(hi, zp + 60) if clamp == "relu6" else hi
    n = 2 * (bits // 16)
    mag = rng.integers(1, 128, 4).astype(np.int32) if with_mag else None
    m = 1 if mag is None else int(mag.max())
    # |m * sum + bias| < 2**24 with |bias| < 2**21 (what ``fits`` asks)
    limit = min(32767 if acc_dtype == "int16" else 2**31, (2**24 - 2**21) // m - 1)
    acc = rng.integers(-limit, limit + 1, (4, n)).astype(acc_dtype)
    acc[:, 0], acc[:, 1] = limit, -limit  # the extremes
    bias = rng.integers(-2**21 + 1, 2**21, 4).astype(np.int32)
    if pow2:  # ties: total * 2**-k is a half-integer for many totals
        scale = (2.0 ** -rng.integers(1, 12, 4)).astype(np.float32)
    else:
        scale = np.exp(rng.uniform(np.log(1e-5), np.log(2.0), 4)).astype(np.float32)
    total = np.abs(acc.astype(np.int64) * (1 if mag is None else mag[:, None])).max() + 2**21
    scale = np.minimum(scale, np.float32(2**29 / total)).astype(np.float32)
    _check(bits, acc, bias, scale, mag, zp, qmin, qmax, out_dtype)


def test_avx512_code_is_the_short_form():
    lib = _kernel(512, "int16", 64, 3, 3, 255, "uint8", False)
    asm = lib.mod.inspect_source("asm") if hasattr(lib, "mod") else lib.inspect_source("asm")
    for op in ("vpunpcklwd", "vpunpckhwd", "vcvtps2dq", "vpackssdw", "vpackuswb", "vpermq"):
        assert op in asm, op
    for op in ("vminps", "vmaxps", "vpmovdb", "vpmovsxwd"):
        assert op not in asm, op
    assert not X86_INT_MUL.search(asm)


def test_fits_refuses_what_would_not_be_exact():
    scale = np.array([0.01], np.float32)
    assert fits(32767, np.array([100]), None, scale)
    assert not fits(32767, np.array([2**21]), None, scale)  # the bit-pattern add
    assert not fits(2**24, np.array([0]), None, scale)  # not exact in float32
    assert not fits(10**6, np.array([0]), None, np.array([2000.0], np.float32))  # cvtps2dq
    assert not fits(70000, np.array([0]), np.array([255]), scale)  # m * sum


def test_non_x86_targets_keep_the_portable_epilogue():
    assert x86_vector_bits({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                            "mcpu": "cortex-a72"}) is None
    assert x86_vector_bits({"kind": "llvm", "mcpu": "haswell"}) == 256
    assert x86_vector_bits({"kind": "llvm", "mcpu": "x86-64"}) == 128
