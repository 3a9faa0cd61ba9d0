"""Table-lookup ternary kernel: bit-exact on AVX-512, AVX2 and generic x86-64, add-only on x86
and AArch64, int16 only where it provably fits, weights packed at <= 8/g bits."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import host_target
from test_ternary_specialized import (
    A64_INT_MUL,
    A72,
    HASWELL,
    X86_INT_MUL,
    case,
    reference,
    x86_bits_for,
)

from prom_tvm.schedules.requant import Requant
from prom_tvm.schedules.ternary_lut import (
    choose_config,
    lut_primfunc,
    lut_ref,
    pack_indices,
    unpack_indices,
)
from prom_tvm.schedules.ternary_specialized import lanes_for

X86_64 = {"kind": "llvm", "mcpu": "x86-64"}


def float_rescale_ok(signs, x_dtype, bias, mag) -> bool:
    """The lowering's proof that m * sum + bias is exact in float32."""
    per_x = 255 if x_dtype == "uint8" else 128
    bound = per_x * int(np.count_nonzero(signs, axis=1).max(initial=0))
    m = 1 if mag is None else int(mag.max(initial=1))
    return m * bound + int(np.abs(bias).max(initial=0)) < 2**24


def compile_lut(cfg, n, cin, cout, hw, x_dtype, rq, magnitude, float_rescale, target,
                x86_bits=None):
    func = lut_primfunc(cfg, n, cin, cout, hw, x_dtype, rq, magnitude, float_rescale,
                        x86_bits=x86_bits)
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)


def run_lut(lib, x, idx, bias, rq, mag, cout):
    dev = tvm.cpu()
    args = [x, idx, bias, rq.scale] + ([mag] if mag is not None else [])
    out = tvm.runtime.tensor(np.zeros((x.shape[0], cout, x.shape[2]), rq.out_dtype), dev)
    lib["main"](*(tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in args), out)
    return out.numpy()


def check(x, signs, bias, rq, mag_mode, mag, target, x86=True, **cfg_kw):
    """Build with ``cfg_kw`` for ``target``, run, compare with both references; ``x86``: the
    x86 requantization where the lowering would use it (False: the portable one)."""
    n, cin, hw = x.shape
    cout = signs.shape[0]
    cfg = choose_config(cin, cout, hw, str(x.dtype), lanes_for(target), signs, **cfg_kw)
    idx = pack_indices(signs, cfg)
    np.testing.assert_array_equal(unpack_indices(idx, cfg, cin), signs)
    magnitude = None if mag_mode == "none" else int(mag[0]) if mag_mode == "uniform" \
        else "per-channel"
    fr = float_rescale_ok(signs, str(x.dtype), bias, mag)
    bits = x86_bits_for(target, signs, n, hw, str(x.dtype), bias, rq,
                        None if mag_mode == "none" else mag, fr, cfg.lanes) if x86 else None
    lib = compile_lut(cfg, n, cin, cout, hw, str(x.dtype), rq, magnitude, fr, target, bits)
    got = run_lut(lib, x, idx, bias, rq, mag if mag_mode == "per-channel" else None, cout)
    want = reference(x, signs, bias, rq, mag)
    np.testing.assert_array_equal(lut_ref(x, idx, cfg, bias, rq, mag), want)
    np.testing.assert_array_equal(got, want)
    return cfg


def magnitudes(rng, mode: str, cout: int):
    if mode == "none":
        return None
    if mode == "uniform":
        return np.full(cout, 127, np.int32)
    return rng.integers(1, 128, cout).astype(np.int32)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 400), cout=st.integers(1, 40), hw=st.integers(1, 100),
       n=st.sampled_from([1, 1, 2]), density=st.floats(0.0, 1.0),
       x_dtype=st.sampled_from(["uint8", "int8"]), out_dtype=st.sampled_from(["uint8", "int8"]),
       mag_mode=st.sampled_from(["none", "uniform", "per-channel"]), g=st.sampled_from([2, 3, 4]),
       vectors=st.sampled_from([1, 2]), table_bytes=st.sampled_from([2048, 24576]),
       word_loads=st.booleans(), co_unroll=st.sampled_from([1, 2, 4]),
       x86=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_bit_exact_on_host(cin, cout, hw, n, density, x_dtype, out_dtype, mag_mode, g, vectors,
                           table_bytes, word_loads, co_unroll, x86, seed):
    rng = np.random.default_rng(seed)
    x, signs, bias, rq, _ = case(rng, n, cin, cout, hw, density, x_dtype, out_dtype, False)
    mag = magnitudes(rng, mag_mode, cout)
    check(x, signs, bias, rq, mag_mode, mag, host_target(), x86=x86, g=g, vectors=vectors,
          table_bytes=table_bytes, word_loads=word_loads, co_unroll=co_unroll)


@pytest.mark.parametrize("x_dtype,value,sign", [("uint8", 255, 1), ("uint8", 255, -1),
                                                ("int8", -128, 1), ("int8", -128, -1)])
@pytest.mark.parametrize("cin", [128, 129, 960])
def test_worst_case_sums(x_dtype, value, sign, cin):
    """Every input at its extreme and every weight the same sign: the largest |sum| a layer
    can form.  128 uint8 channels of 255 are the most an int16 accumulator holds (32640);
    129 and 960 need the int32 accumulator, with int16 chunks that still fit."""
    cout, hw = 8, 40
    x = np.full((1, cin, hw), value, x_dtype)
    signs = np.full((cout, cin), sign, np.int8)
    signs[1, ::2] = 0  # a second density in the same layer
    bias = np.zeros(cout, np.int32)
    rq = Requant(np.full(cout, 1e-4, np.float32), 0, -128, 127, "int8")
    cfg = check(x, signs, bias, rq, "none", None, host_target())
    bound = (255 if x_dtype == "uint8" else 128) * cin
    assert cfg.acc_dtype == ("int16" if bound <= 32767 else "int32")


def test_int16_only_where_it_fits():
    rng = np.random.default_rng(0)
    dense = np.ones((4, 200), np.int8)
    assert choose_config(200, 4, 49, "uint8", 32, dense).acc_dtype == "int32"
    half = np.where(rng.random((4, 200)) < 0.5, 1, -1).astype(np.int8)
    half[:, :] = 0
    half[:, :100] = 1  # 100 * 255 fits int16
    assert choose_config(200, 4, 49, "uint8", 32, half).acc_dtype == "int16"
    cfg = choose_config(960, 160, 49, "uint8", 32, dense)
    # a chunk of block sums never exceeds what int16 holds
    assert cfg.chunk_blocks * cfg.groups_per_block * cfg.g * 255 <= 32767


@pytest.mark.parametrize("target", [HASWELL, X86_64], ids=["avx2", "x86-64"])
@pytest.mark.parametrize("cin,cout,hw", [(384, 64, 196), (960, 16, 49), (24, 8, 5)])
def test_bit_exact_on_avx2_and_generic_x86(target, cin, cout, hw):
    """The code an AVX2-only or SSE-only CPU runs (this CPU runs both)."""
    rng = np.random.default_rng(cin + hw)
    x, signs, bias, rq, _ = case(rng, 1, cin, cout, hw, 0.67, "uint8", "uint8", False)
    mag = np.full(cout, 127, np.int32)
    cfg = check(x, signs, bias, rq, "uniform", mag, tvm.target.Target(target))
    assert cfg.lanes == min(hw, 16 if target is HASWELL else 8)


def _asm(target, cin=192, cout=64, hw=196, mag_mode="per-channel"):
    rng = np.random.default_rng(1)
    _, signs, _, rq, _ = case(rng, 1, cin, cout, hw, 0.6, "uint8", "uint8", False)
    t = tvm.target.Target(target)
    cfg = choose_config(cin, cout, hw, "uint8", lanes_for(t), signs)
    magnitude = "per-channel" if mag_mode == "per-channel" else None
    lib = compile_lut(cfg, 1, cin, cout, hw, "uint8", rq, magnitude, True, t)
    return lib.mod.inspect_source("asm"), lib.mod.inspect_source("ll")


@pytest.mark.parametrize("target", ["host", HASWELL], ids=["host", "avx2"])
def test_add_only_on_x86(target):
    asm, ll = _asm(host_target() if target == "host" else target)
    assert not X86_INT_MUL.findall(asm), X86_INT_MUL.findall(asm)[:5]
    assert "mul <" not in ll.replace("fmul <", "")  # no integer vector multiply in the IR
    assert "vpaddw" in asm and "vpsubw" in asm  # table building and summing: int16 adds
    assert "vmulps" in asm  # the rescale, once per output


def test_add_only_on_aarch64():
    asm, _ = _asm(A72)
    assert not A64_INT_MUL.findall(asm), A64_INT_MUL.findall(asm)[:5]
    vector_ops = {line.split()[0] for line in asm.splitlines() if ".8h" in line}
    assert "add" in vector_ops  # summing table rows: int16 lanes, 8 per NEON register
    # building them: subtracts, fused with the u8 -> i16 widening where LLVM can
    assert vector_ops & {"sub", "usubl", "usubw", "ssubl", "ssubw", "neg"}, vector_ops


def test_weights_cost_8_over_g_bits():
    signs = np.random.default_rng(0).choice([-1, 0, 1], (160, 960)).astype(np.int8)
    for g, bits in ((3, 8 / 3), (4, 2.0)):
        cfg = choose_config(960, 160, 49, "uint8", 32, signs, g=g)
        idx = pack_indices(signs, cfg)
        assert idx.dtype == np.uint8 and idx.shape == (160, cfg.groups_per_block * cfg.blocks)
        assert idx.nbytes * 8 / signs.size <= bits * 1.02  # balanced blocks: < 2% padding


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="group size"):
        choose_config(10, 4, 9, "uint8", 32, g=5)
    with pytest.raises(ValueError, match="co_split"):
        choose_config(10, 6, 9, "uint8", 32, co_split=4)
    with pytest.raises(ValueError, match="co_unroll"):
        choose_config(10, 6, 9, "uint8", 32, co_unroll=0)
    cfg = choose_config(4, 2, 9, "uint8", 32)
    with pytest.raises(ValueError, match="-1, 0, \\+1"):
        pack_indices(np.array([[2, 0, 0, 0], [0, 0, 0, 0]]), cfg)
    rq = Requant(np.ones(2, np.float32), 0, 0, 255, "uint8")
    with pytest.raises(ValueError, match="magnitude"):
        lut_primfunc(cfg, 1, 4, 2, 9, "uint8", rq, "always", False)


@pytest.mark.parametrize("co_split", [2, 4])
def test_output_channels_split_over_tasks(co_split):
    rng = np.random.default_rng(co_split)
    x, signs, bias, rq, _ = case(rng, 2, 100, 16, 30, 0.5, "uint8", "uint8", False)
    check(x, signs, bias, rq, "none", None, host_target(), co_split=co_split)


@pytest.mark.parametrize("cin,cout,hw", [(64, 96, 14), (16, 24, 56)],
                         ids=["table-lookup", "specialized"])
def test_kernels_take_nchw_no_reshape_copy_around_them(cin, cout, hw):
    """Both add-only kernels read and write NCHW tensors, so a graph that ends in a ternary
    layer has no output reshape (which Relax keeps as a copy kernel at a graph's output)."""
    import prom_tvm
    from prom_tvm.models.pointwise_layer import pointwise_qdq
    from prom_tvm.onnx_io import output_step
    from prom_tvm.reference import ExactReference, agreement

    model, x = pointwise_qdq(cin, cout, hw)
    lib = prom_tvm.build(model)
    text = lib.executable.as_text()
    kernels = [line.split()[1] for line in text.splitlines()
               if line.strip().startswith("call") and "vm.builtin" not in line]
    assert not [k for k in kernels if "reshape" in k], kernels
    assert agreement(lib(x), ExactReference(model)(x), output_step(model)).max_lsb <= 1
