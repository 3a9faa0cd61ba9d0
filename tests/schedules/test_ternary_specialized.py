"""Weight-specialized TIR ternary kernel: bit-exact on AVX-512 and AVX2, add-only on x86 and
AArch64, int16 only where it provably fits."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import host_target

from prom_tvm.schedules.requant import Requant
from prom_tvm.schedules.requant_x86 import x86_vector_bits
from prom_tvm.schedules.ternary_conv1x1 import ternary_conv1x1_ref
from prom_tvm.schedules.ternary_forms import TernaryLayer, x86_epilogue_bits
from prom_tvm.schedules.ternary_specialized import (
    SpecializedPlan,
    lanes_for,
    specialized_primfunc,
    specialized_ref,
)

HASWELL = {"kind": "llvm", "mcpu": "haswell"}
A72 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"}
X86_INT_MUL = re.compile(r"^\s+(v?pmul\w*|v?pmadd\w*|vpdp\w*)\s", re.M)
# NEON integer multiplies (mul/mla/mls by vector or element, widening and saturating forms)
A64_INT_MUL = re.compile(r"^\s+(mul|mla|mls|[su]mull2?|[su]mlal2?|[su]mlsl2?|sqr?dmulh)\s+v",
                         re.M)


def x86_bits_for(target, signs, n, hw, x_dtype, bias, rq, magnitude, float_rescale,
                 lanes) -> int | None:
    """The x86 epilogue's width where the lowering would use it for this layer, else None."""
    layer = TernaryLayer(signs, n, hw, 1, x_dtype, bias, rq, magnitude, float_rescale)
    return x86_epilogue_bits(layer, x86_vector_bits(target), lanes)


def compile_kernel(signs, n, hw, x_dtype, bias, rq, magnitude, float_rescale, target,
                   inline=True, cse=True, rows=None, x86=True):
    """``x86``: the x86 requantization where the lowering would use it (False: portable)."""
    plan = SpecializedPlan.build(signs, x_dtype, cse=cse)
    lanes = lanes_for(target)
    bits = x86_bits_for(target, signs, n, hw, x_dtype, bias, rq, magnitude, float_rescale,
                        lanes) if x86 else None
    func = specialized_primfunc(plan, n, hw, bias, rq, magnitude, float_rescale,
                                lanes, epilogue="inline" if inline else "loop",
                                rows=rows, x86_bits=bits)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    return lib, plan


def run(lib, x, bias, rq, magnitude, cout, inline=True):
    dev = tvm.cpu()
    consts = [] if inline else [bias, rq.scale] + ([] if magnitude is None else [magnitude])
    out = tvm.runtime.tensor(np.zeros((x.shape[0], cout, x.shape[2]), rq.out_dtype), dev)
    lib["main"](tvm.runtime.tensor(x, dev), *(tvm.runtime.tensor(c, dev) for c in consts), out)
    return out.numpy()


def case(rng, n, cin, cout, hw, density, x_dtype, out_dtype, with_magnitude):
    lo, hi = (0, 255) if x_dtype == "uint8" else (-128, 127)
    x = rng.integers(lo, hi + 1, (n, cin, hw)).astype(x_dtype)
    nz = rng.random((cout, cin)) < density
    signs = np.where(nz, rng.choice([-1, 1], (cout, cin)), 0).astype(np.int8)
    bias = rng.integers(-5000, 5000, cout).astype(np.int32)
    zp = int(rng.integers(-20, 20)) + (128 if out_dtype == "uint8" else 0)
    q0, q1 = (0, 255) if out_dtype == "uint8" else (-128, 127)
    rq = Requant(scale=rng.uniform(1e-4, 0.05, cout).astype(np.float32), zero_point=zp,
                 qmin=int(rng.integers(q0, zp + 1)), qmax=int(rng.integers(zp, q1 + 1)),
                 out_dtype=out_dtype)
    mag = rng.integers(1, 128, cout).astype(np.int32) if with_magnitude else None
    return x, signs, bias, rq, mag


def reference(x, signs, bias, rq, mag):
    n, cin, hw = x.shape
    return ternary_conv1x1_ref(x.reshape(n, cin, hw, 1), signs, bias, rq,
                               mag).reshape(n, -1, hw)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 300), cout=st.integers(1, 24), hw=st.integers(32, 120),
       n=st.sampled_from([1, 1, 2]), density=st.floats(0.0, 1.0),
       x_dtype=st.sampled_from(["uint8", "int8"]), out_dtype=st.sampled_from(["uint8", "int8"]),
       with_magnitude=st.booleans(), inline=st.booleans(),
       rows=st.sampled_from([None, "ssa", "buffer"]), x86=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_bit_exact_on_host(cin, cout, hw, n, density, x_dtype, out_dtype, with_magnitude,
                           inline, rows, x86, seed):
    rng = np.random.default_rng(seed)
    x, signs, bias, rq, mag = case(rng, n, cin, cout, hw, density, x_dtype, out_dtype,
                                   with_magnitude)
    float_rescale = with_magnitude and 127 * 255 * cin + 5000 < 2**24 and seed % 2 == 0
    lib, plan = compile_kernel(signs, n, hw, x_dtype, bias, rq, mag, float_rescale,
                               host_target(), inline=inline, rows=rows, x86=x86)
    want = reference(x, signs, bias, rq, mag)
    np.testing.assert_array_equal(specialized_ref(x, plan, bias, rq, mag), want)
    np.testing.assert_array_equal(run(lib, x, bias, rq, mag, cout, inline), want)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 200), cout=st.integers(1, 16), hw=st.integers(16, 70),
       x_dtype=st.sampled_from(["uint8", "int8"]), seed=st.integers(0, 2**31 - 1))
def test_bit_exact_with_avx2_codegen(cin, cout, hw, x_dtype, seed):
    """-mcpu=haswell: 16 int16 lanes, the same generator; runs on this (AVX-512) host."""
    assert lanes_for(HASWELL) == 16
    rng = np.random.default_rng(seed)
    x, signs, bias, rq, mag = case(rng, 1, cin, cout, hw, 0.5, x_dtype, "uint8", True)
    lib, _ = compile_kernel(signs, 1, hw, x_dtype, bias, rq, mag, False, HASWELL)
    assert "ymm" in lib.mod.inspect_source("asm") and "zmm" not in lib.mod.inspect_source("asm")
    np.testing.assert_array_equal(run(lib, x, bias, rq, mag, cout),
                                  reference(x, signs, bias, rq, mag))


@pytest.mark.parametrize("rows", ["ssa", "buffer"])
def test_bit_exact_with_sse2_codegen(rows):
    """-mcpu=x86-64 (SSE2 only): 8 int16 lanes, as on NEON."""
    target = {"kind": "llvm", "mcpu": "x86-64"}
    assert lanes_for(target) == 8
    rng = np.random.default_rng(11)
    x, signs, bias, rq, mag = case(rng, 2, 40, 20, 50, 0.6, "uint8", "int8", True)
    lib, _ = compile_kernel(signs, 2, 50, "uint8", bias, rq, mag, False, target, rows=rows)
    np.testing.assert_array_equal(run(lib, x, bias, rq, mag, 20),
                                  reference(x, signs, bias, rq, mag))


@pytest.mark.parametrize("x_dtype,value", [("uint8", 255), ("int8", -128), ("int8", 127)])
@pytest.mark.parametrize("cin", [128, 129, 256])
def test_worst_case_sums(x_dtype, value, cin):
    """Every weight +1 (or -1) at the extreme input: exactly at / past the int16 bound."""
    rng = np.random.default_rng(cin)
    cout, hw = 4, 40
    x = np.full((1, cin, hw), value, x_dtype)
    signs = np.ones((cout, cin), np.int8)
    signs[1] = -1
    signs[2, ::2] = -1
    signs[3, rng.random(cin) < 0.5] = 0
    bias = np.zeros(cout, np.int32)
    rq = Requant(scale=np.full(cout, 1.0 / 4096, np.float32), zero_point=128, qmin=0,
                 qmax=255, out_dtype="uint8")
    lib, plan = compile_kernel(signs, 1, hw, x_dtype, bias, rq, None, False, host_target())
    want = reference(x, signs, bias, rq, None)
    assert want[0, 0, 0] == 128 + np.rint(value * cin / 4096)  # not trivially saturated
    np.testing.assert_array_equal(specialized_ref(x, plan, bias, rq, None), want)
    np.testing.assert_array_equal(run(lib, x, bias, rq, None, cout), want)
    one_chunk = (255 if x_dtype == "uint8" else 128) * cin <= 32767
    assert (plan.int32_outputs == 0) == one_chunk


def test_half_way_values_round_to_even_with_odd_and_even_zero_points():
    x = np.arange(1, 65, 2, dtype=np.uint8).reshape(1, 1, 32)
    signs = np.ones((1, 1), np.int8)
    for zp in (0, 3, 10):
        rq = Requant(scale=np.array([0.5], np.float32), zero_point=zp, qmin=0, qmax=255,
                     out_dtype="uint8")
        lib, _ = compile_kernel(signs, 1, 32, "uint8", np.zeros(1, np.int32), rq, None, False,
                                host_target())
        got = run(lib, x, np.zeros(1, np.int32), rq, None, 1)
        np.testing.assert_array_equal(got.ravel(), np.rint(x.ravel() * 0.5) + zp)


def test_shared_subsums_are_what_runs():
    """The x86 code runs the planned adds, not one per nonzero weight."""
    rng = np.random.default_rng(0)
    x, signs, bias, rq, mag = case(rng, 1, 16, 48, 64, 0.5, "uint8", "uint8", False)
    lib, plan = compile_kernel(signs, 1, 64, "uint8", bias, rq, mag, False, host_target())
    asm = lib.mod.inspect_source("asm")
    n_add = len(re.findall(r"^\s+vp(add|sub)w\s", asm, re.M))
    assert plan.adds < plan.subsums.nnz - 48
    # LLVM may move each channel's int32 bias add into the int16 domain: one more per output
    assert plan.adds <= n_add <= plan.adds + 48, (n_add, plan.adds)
    assert not X86_INT_MUL.findall(asm)
    np.testing.assert_array_equal(run(lib, x, bias, rq, mag, 48),
                                  reference(x, signs, bias, rq, mag))


@pytest.mark.parametrize("inline,rows", [(True, "ssa"), (True, "buffer"), (False, None)])
def test_aarch64_codegen_is_add_only(inline, rows):
    assert lanes_for(A72) == 8
    rng = np.random.default_rng(1)
    _, signs, bias, rq, mag = case(rng, 1, 24, 32, 3136, 0.5, "uint8", "uint8", True)
    lib, plan = compile_kernel(signs, 1, 3136, "uint8", bias, rq, mag, True, A72, inline=inline,
                               rows=rows)
    asm = lib.mod.inspect_source("asm")
    assert not A64_INT_MUL.findall(asm), A64_INT_MUL.findall(asm)[:5]
    # the int16 add chain runs on NEON vectors; LLVM fuses the widening of an input into its
    # first add (uaddw / usubw / uaddl / usubl)
    adds = re.findall(r"^\s+(add|sub|[us]addw|[us]subw|[us]addl|[us]subl)\s+v\d+\.8h", asm, re.M)
    assert 0.9 * plan.adds <= len(adds) <= plan.adds + 32, (len(adds), plan.adds)  # neg etc.
    assert re.search(r"^\s+fmul\s+v\d+\.4s", asm, re.M) or re.search(r"^\s+fmla\s", asm, re.M)


def test_host_lanes_follow_the_target():
    from prom_tvm.schedules.cpu_default import vector_bits

    assert lanes_for(host_target()) == vector_bits(host_target()) // 16
    with pytest.raises(ValueError, match="less than one vector"):
        plan = SpecializedPlan.build(np.ones((2, 2), np.int8), "uint8")
        rq = Requant(np.ones(2, np.float32), 0, 0, 255, "uint8")
        specialized_primfunc(plan, 1, 8, np.zeros(2, np.int32), rq, None, False, 32)


MNV2 = [(32, 16, 112), (16, 96, 112), (96, 24, 56), (24, 144, 56), (144, 24, 56), (144, 32, 28),
        (32, 192, 28), (192, 32, 28), (192, 64, 14), (64, 384, 14), (384, 64, 14),
        (96, 576, 14), (576, 160, 7), (160, 960, 7), (320, 1280, 7)]


def test_rule_specializes_the_wide_image_layers_only():
    from prom_tvm.schedules.ternary_specialized import should_specialize

    for density in (0.5, 0.67):  # random weights; the PROM MobileNetV2's own density
        chosen = [(cin, cout, hw) for cin, cout, hw in MNV2
                  if should_specialize(cin, cout, hw * hw, int(density * cin * cout), 32)]
        assert chosen == [s for s in MNV2 if s[2] >= 56]  # 28x28: the table kernel
    assert not should_specialize(16, 96, 16, 768, 32)  # fewer pixels than one vector


def test_specialized_kernel_reports_adds_and_nonzeros():
    from prom_tvm.schedules.ternary_specialized import specialized_kernel

    rng = np.random.default_rng(3)
    x, signs, bias, rq, mag = case(rng, 1, 16, 96, 3136, 0.5, "uint8", "uint8", True)
    k = specialized_kernel(signs, 1, 3136, "uint8", bias, rq, mag, True, 32)
    assert k.details["nnz"] == np.count_nonzero(signs) and k.details["adds"] < k.details["nnz"]
    assert k.details["form"] == "specialized"
    lib = tvm.compile(tvm.IRModule({"main": k.func.with_attr("global_symbol", "main")}),
                      host_target())
    np.testing.assert_array_equal(run(lib, x, bias, rq, mag, 96),
                                  reference(x, signs, bias, rq, mag))
    big = np.ones((160, 960), np.int8)
    assert specialized_kernel(big, 1, 49, "uint8", np.zeros(160, np.int32),
                              Requant(np.ones(160, np.float32), 0, 0, 255, "uint8"), None,
                              False, 32) is None


@pytest.mark.parametrize("cin,cout,hw,form", [(24, 144, 56, "specialized"),
                                              (192, 64, 14, "table-lookup")])
def test_build_chooses_the_form_per_layer_and_stays_exact(cin, cout, hw, form):
    import prom_tvm
    from prom_tvm.models.pointwise_layer import pointwise_qdq
    from prom_tvm.onnx_io import output_step
    from prom_tvm.reference import ExactReference, agreement

    model, x = pointwise_qdq(cin, cout, hw)
    lib = prom_tvm.build(model)
    row = lib.summary()[0]
    assert row["kernel"] == "ternary-add" and row["form"] == form
    if form == "specialized":
        assert row["adds"] < row["nnz"]
    # the same integers as the index-list kernel, and as close to the exact reference
    lists = prom_tvm.build(model, options={"specialize": False})
    assert lists.summary()[0]["form"] != "specialized"
    np.testing.assert_array_equal(lib(x), lists(x))
    assert agreement(lib(x), ExactReference(model)(x), output_step(model)).max_lsb <= 1
