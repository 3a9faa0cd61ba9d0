"""int8 dense: the scheduled kernel is bit-exact against its numpy reference in both weight
layouts (hypothesis over shapes, zero points, weights) and vectorized."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import host_target, run_kernel
from tvm import s_tir, te

from prom_tvm.schedules.cpu_default import vector_bits
from prom_tvm.schedules.int8_dense import int8_dense_compute, int8_dense_ref, schedule_int8_dense
from prom_tvm.schedules.int8_x86_intrin import has_avx2, has_vnni_vbmi
from prom_tvm.schedules.requant import QRANGE, Requant


def _portable_target():
    """A host-runnable target without AVX-512 VNNI: exercises the generic schedule."""
    if not has_vnni_vbmi(host_target()):
        return host_target()
    return tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})


def _build(m, n, k, transpose_w, x_dtype, y_dtype, seed, weights=None, target=None):
    rng = np.random.default_rng(seed)
    w_shape = (n, k) if transpose_w else (k, n)
    x = te.placeholder((m, k), x_dtype, name="x")
    w = te.placeholder(w_shape, "int8", name="w")
    bias = te.placeholder((n,), "int32", name="bias")
    scale = te.placeholder((n,), "float32", name="scale")
    lo, hi = QRANGE[y_dtype]
    rq = Requant(scale=(rng.random(n) * 1e-3 + 1e-6).astype(np.float32),
                 zero_point=int(rng.integers(lo, hi + 1)), qmin=lo, qmax=hi, out_dtype=y_dtype)
    y = int8_dense_compute(x, w, bias, scale, x_zero_point=3, rq=rq, transpose_w=transpose_w)
    xlo, xhi = QRANGE[x_dtype]
    arrays = [
        rng.integers(xlo, xhi + 1, (m, k)).astype(x_dtype),
        weights if weights is not None else rng.integers(-128, 128, w_shape).astype(np.int8),
        rng.integers(-50000, 50000, n).astype(np.int32),
        rq.scale,
    ]
    target = target or host_target()
    sch = s_tir.Schedule(te.create_prim_func([x, w, bias, scale, y]))
    schedule_int8_dense(sch, target)
    return tvm.compile(sch.mod, target=target), arrays, rq


def _check(m, n, k, transpose_w, x_dtype="uint8", y_dtype="uint8", seed=0, target=None):
    lib, arrays, rq = _build(m, n, k, transpose_w, x_dtype, y_dtype, seed, target=target)
    got = run_kernel(lib, arrays, (m, n), y_dtype)
    want = int8_dense_ref(arrays[0], arrays[1], arrays[2], rq, transpose_w=transpose_w)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=st.integers(1, 5), n=st.integers(1, 70), k=st.sampled_from([1, 7, 16, 48, 64, 100, 256]),
    transpose_w=st.booleans(), x_dtype=st.sampled_from(["uint8", "int8"]),
    y_dtype=st.sampled_from(["uint8", "int8"]), seed=st.integers(0, 2**31),
    portable=st.booleans(),
)
def test_scheduled_dense_matches_reference(m, n, k, transpose_w, x_dtype, y_dtype, seed,
                                           portable):
    _check(m, n, k, transpose_w, x_dtype, y_dtype, seed,
           target=_portable_target() if portable else None)


@pytest.mark.parametrize("portable", [False, True], ids=["host", "portable"])
@pytest.mark.parametrize("transpose_w", [True, False])
def test_mobilenet_v2_classifier(transpose_w, portable):
    _check(1, 1000, 1280, transpose_w, target=_portable_target() if portable else None)


def test_worst_case_accumulation_is_exact():
    """K = 4096 products of 255 * -128 (and the int32 bias) stay exact."""
    k = 4096
    weights = np.full((8, k), -128, np.int8)
    lib, arrays, rq = _build(1, 8, k, True, "uint8", "int8", 0, weights=weights)
    arrays[0][:] = 255
    got = run_kernel(lib, arrays, (1, 8), "int8")
    np.testing.assert_array_equal(
        got, int8_dense_ref(arrays[0], arrays[1], arrays[2], rq, transpose_w=True))


def test_square_weight_layout_follows_transpose_w():
    """N == K: only the access pattern, not the shape, tells the layouts apart."""
    for transpose_w in (True, False):
        _check(2, 32, 32, transpose_w, seed=7)


@pytest.mark.parametrize("transpose_w", [True, False])
def test_generic_schedule_emits_full_width_vectors(transpose_w):
    target = _portable_target()
    bits = vector_bits(target)
    if bits < 256:
        pytest.skip("host has no 256/512-bit integer SIMD")
    lib, _, _ = _build(1, 64, 256, transpose_w, "uint8", "uint8", 0, target=target)
    ir = lib.mod.inspect_source("ll")
    assert re.search(rf"add (nsw )?<{bits // 32} x i32>", ir), "accumulation is not vectorized"


def _avx2_target():
    if not has_avx2(host_target()):
        pytest.skip("host CPU cannot run AVX2 code")
    return tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=st.integers(1, 3), n=st.integers(1, 40), k=st.sampled_from([16, 48, 64, 100, 1280]),
    transpose_w=st.booleans(), x_dtype=st.sampled_from(["uint8", "int8"]),
    seed=st.integers(0, 2**31),
)
def test_avx2_dense_matches_reference(m, n, k, transpose_w, x_dtype, seed):
    """haswell: (N, K) weights with K a multiple of 16 take the vpmaddwd kernel."""
    _check(m, n, k, transpose_w, x_dtype, "uint8", seed, target=_avx2_target())


def test_avx2_dense_uses_exact_vpmaddwd():
    lib, _, _ = _build(1, 64, 256, True, "uint8", "uint8", 0, target=_avx2_target())
    asm = lib.mod.inspect_source("asm")
    assert re.search(r"vpmaddwd\t[^\n]*%ymm", asm)
    assert "vpmaddubsw" not in asm  # saturating u8 x s8 pair sums: never


def test_aarch64_dense_builds_widening_neon():
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                "mcpu": "cortex-a72", "num-cores": 4})
    lib, _, _ = _build(1, 64, 256, True, "uint8", "uint8", 0, target=target)
    asm = lib.mod.inspect_source("asm")
    assert re.search(r"\b(mla|smlal2?|umlal2?)\tv\d+\.4s", asm), "no int32 multiply-accumulate"
    assert not re.search(r"\t[su]q[a-z0-9]+\t", asm), "saturating arithmetic"
    assert not re.search(r"\t(u|s|us)dot\t", asm), "dot instruction without dotprod"


@pytest.mark.parametrize(("mattr", "x_dtype", "dot"), [
    ([], "uint8", "udot"), ([], "int8", "sdot"), (["+i8mm"], "uint8", "usdot")])
def test_aarch64_dotprod_dense_uses_dot_instructions(mattr, x_dtype, dot):
    """cortex-a76: one dot instruction per 16 products per output (udot has a second one
    per activation vector, the per-pixel correction, shared by four outputs)."""
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                "mcpu": "cortex-a76", "mattr": ["+neon", *mattr],
                                "num-cores": 4})
    lib, _, _ = _build(1, 64, 256, True, x_dtype, "uint8", 0, target=target)
    asm = lib.mod.inspect_source("asm")
    assert {m.group(1) + "dot" for m in re.finditer(r"\t(u|s|us)dot\t", asm)} == {dot}
    assert not re.search(r"\b(mla|[su]mlal2?)\tv\d+\.4s", asm), "widening multiply left"


def test_vnni_schedule_uses_vpdpbusd():
    if not has_vnni_vbmi(host_target()):
        pytest.skip("host CPU has no AVX-512 VNNI")
    lib, _, _ = _build(1, 64, 256, True, "uint8", "uint8", 0)
    assert re.search(r"vpdpbusd\t[^\n]*%zmm", lib.mod.inspect_source("asm"))


def test_mismatched_k_names_transpose_w():
    x = te.placeholder((1, 64), "uint8", name="x")
    w = te.placeholder((64, 10), "int8", name="w")
    rq = Requant(np.ones(10, np.float32), 0, 0, 255, "uint8")
    with pytest.raises(ValueError, match="transpose_w"):
        int8_dense_compute(x, w, te.placeholder((10,), "int32"), te.placeholder((10,), "float32"),
                           x_zero_point=0, rq=rq, transpose_w=True)
