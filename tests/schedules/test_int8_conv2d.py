"""int8 conv2d: the scheduled kernel is bit-exact against its numpy reference (hypothesis
over shapes, groups, strides, padding, dilation, zero points, weights), vectorized, and the
reference agrees with onnxruntime's QLinearConv on one-layer QDQ models."""

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
from prom_tvm.schedules.int8_conv2d import (
    conv_output_size,
    int8_conv2d_compute,
    int8_conv2d_ref,
    schedule_int8_conv2d,
)
from prom_tvm.schedules.int8_x86_intrin import has_avx2, has_vnni_vbmi
from prom_tvm.schedules.requant import QRANGE, Requant


def _layer(case):
    """Placeholders, output tensor and numpy inputs for one conv case."""
    rng = np.random.default_rng(case["seed"])
    n, cin, cout, groups = case["n"], case["cin"], case["cout"], case["groups"]
    kh, kw = case["kernel"]
    xdt, ydt = case["x_dtype"], case["y_dtype"]
    x = te.placeholder((n, cin, case["h"], case["w"]), xdt, name="x")
    w = te.placeholder((cout, cin // groups, kh, kw), "int8", name="w")
    bias = te.placeholder((cout,), "int32", name="bias")
    scale = te.placeholder((cout,), "float32", name="scale")
    lo, hi = QRANGE[ydt]
    qmin = int(rng.integers(lo, lo + 40)) if case["clamp"] else lo
    qmax = int(rng.integers(hi - 40, hi + 1)) if case["clamp"] else hi
    rq = Requant(scale=(rng.random(cout) * 2e-3 + 1e-5).astype(np.float32),
                 zero_point=int(rng.integers(lo, hi + 1)), qmin=qmin, qmax=qmax, out_dtype=ydt)
    params = {k: case[k] for k in ("strides", "padding", "dilation", "groups", "x_zero_point")}
    y = int8_conv2d_compute(x, w, bias, scale, rq=rq, **params)
    xlo, xhi = QRANGE[xdt]
    arrays = [
        rng.integers(xlo, xhi + 1, (n, cin, case["h"], case["w"])).astype(xdt),
        case["weights"](rng, (cout, cin // groups, kh, kw)),
        rng.integers(-20000, 20000, cout).astype(np.int32),
        rq.scale,
    ]
    return [x, w, bias, scale], y, arrays, rq, params


def _random_weights(rng, shape):
    return rng.integers(-128, 128, shape).astype(np.int8)


def _extreme_weights(rng, shape):
    return rng.choice(np.array([-128, -1, 0, 1, 127], dtype=np.int8), shape)


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["regular", "depthwise", "grouped"]))
    groups_n = draw(st.integers(2, 3))
    if kind == "regular":
        # multiples of 4 take the channel-interleaved VNNI kernel where the CPU has one
        cin, cout, groups = draw(st.sampled_from([1, 2, 3, 4, 5, 8, 12])), draw(
            st.integers(1, 10)), 1
    elif kind == "depthwise":
        cin = draw(st.integers(1, 12))
        cout, groups = cin, cin
    else:
        cin = groups_n * draw(st.integers(1, 3))
        cout, groups = groups_n * draw(st.integers(1, 3)), groups_n
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 5), (1, 3)]))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = draw(st.sampled_from([(1, 1), (1, 1), (2, 2), (1, 2)]))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h, w = draw(st.integers(1, 19)), draw(st.integers(1, 37))
    ho = conv_output_size(h, kh, strides[0], padding[0], padding[2], dilation[0])
    wo = conv_output_size(w, kw, strides[1], padding[1], padding[3], dilation[1])
    if ho < 1 or wo < 1:
        h += dilation[0] * (kh - 1) + 1
        w += dilation[1] * (kw - 1) + 1
    x_dtype = draw(st.sampled_from(["uint8", "int8"]))
    lo, hi = QRANGE[x_dtype]
    return {
        "n": draw(st.sampled_from([1, 1, 2])), "cin": cin, "cout": cout, "groups": groups,
        "kernel": (kh, kw), "strides": strides, "dilation": dilation, "padding": padding,
        "h": h, "w": w, "x_dtype": x_dtype, "y_dtype": draw(st.sampled_from(["uint8", "int8"])),
        "x_zero_point": draw(st.integers(lo, hi)), "clamp": draw(st.booleans()),
        "weights": draw(st.sampled_from([_random_weights, _extreme_weights])),
        "seed": draw(st.integers(0, 2**31)),
    }


def _portable_target(mcpu: str = "skylake-avx512"):
    """A host-runnable target without AVX-512 VNNI/VBMI: exercises the generic schedule
    (``haswell``: with 256-bit vectors)."""
    if not has_vnni_vbmi(host_target()):
        return host_target()
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2})


def _build(placeholders, y, target):
    sch = s_tir.Schedule(te.create_prim_func([*placeholders, y]))
    schedule_int8_conv2d(sch, target)
    return tvm.compile(sch.mod, target=target)


def _check(case, target=None):
    placeholders, y, arrays, rq, params = _layer(case)
    lib = _build(placeholders, y, target or host_target())
    got = run_kernel(lib, arrays, [int(v) for v in y.shape], rq.out_dtype)
    want = int8_conv2d_ref(arrays[0], arrays[1], arrays[2], rq, **params)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases())
def test_scheduled_conv_matches_reference(case):
    _check(case)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases())
def test_generic_schedule_matches_reference(case):
    """The schedule used where VNNI/VBMI is missing (every conv on such CPUs)."""
    _check(case, _portable_target())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases())
def test_avx2_schedule_matches_reference(case):
    """AVX2 without VNNI (``haswell``): 3x3 / 2- to 4-tap rows with stride 1 or 2 take the
    ``vpmaddwd`` row kernel, the rest the generic one."""
    _check(case, _avx2_target())


def _avx2_target():
    if not has_avx2(host_target()):
        pytest.skip("host CPU cannot run AVX2 code")
    return tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})


@pytest.mark.parametrize(("groups", "cin", "stride"), [(8, 8, 1), (8, 8, 2), (1, 3, 2)])
def test_avx2_schedule_uses_exact_vpmaddwd(groups, cin, stride):
    """Two taps per vpmaddwd (int16 pairs into int32, exact); never the saturating
    vpmaddubsw (u8 x s8 pairs summed in int16: onnxruntime's bug on these CPUs)."""
    case = _vector_case(groups, cin, 3) | {"strides": (stride, stride)}
    placeholders, y, *_ = _layer(case)
    target = _avx2_target()
    asm = _build(placeholders, y, target).mod.inspect_source("asm")
    assert re.search(r"vpmaddwd\t[^\n]*%ymm", asm), "taps are not multiplied in 256-bit pairs"
    assert "vpmaddubsw" not in asm


AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "num-cores": 4}


@pytest.mark.parametrize(("groups", "cin", "stride"), [(8, 8, 1), (8, 8, 2), (1, 3, 2)])
def test_aarch64_build_is_widening_neon(groups, cin, stride):
    """AArch64 without dotprod (cortex-a72; run in test_aarch64_kernels_run.py): 128-bit
    NEON, input bytes widened to int16 (ushll) and multiplied-accumulated into int32 lanes
    (smlal / smlal2 .4s, exact int16 x int16), no 32-bit mla, no saturation."""
    case = _vector_case(groups, cin, 3) | {"strides": (stride, stride)}
    placeholders, y, *_ = _layer(case)
    asm = _build(placeholders, y, tvm.target.Target(AARCH64)).mod.inspect_source("asm")
    assert re.search(r"\bsmlal2?\tv\d+\.4s", asm), "no widening int32 multiply-accumulate"
    assert not re.search(r"\bmla\tv\d+\.4s", asm), "32-bit multiplies of widened bytes"
    assert re.search(r"\bushll2?\tv\d+\.8h", asm), "input bytes are not widened in vectors"
    assert not re.search(r"\t[su]q[a-z0-9]+\t", asm), "saturating arithmetic"
    assert not A64_DOT.search(asm), "dot-product instruction in a build for a CPU without dotprod"


A64_DOT = re.compile(r"\t(u|s|us)dot\t")


@pytest.mark.parametrize(("mattr", "x_dtype", "dot"), [
    ([], "uint8", "udot"), ([], "int8", "sdot"), (["+i8mm"], "uint8", "usdot")])
@pytest.mark.parametrize(("groups", "cin", "k", "stride"), [
    (8, 8, 3, 1), (8, 8, 3, 2), (1, 3, 3, 2), (1, 8, 3, 1), (1, 16, 1, 1)])
def test_aarch64_dotprod_build_uses_dot_instructions(groups, cin, k, stride, mattr, x_dtype,
                                                     dot):
    """cortex-a76 (dotprod): depthwise and 3-channel convs take the tbl + dot row kernel,
    regular ones with 4k channels the channel-interleaved one; no widening multiply left.
    uint8 x int8 is udot with offset weights (usdot with i8mm), int8 x int8 sdot."""
    case = _vector_case(groups, cin, k) | {"strides": (stride, stride), "x_dtype": x_dtype}
    placeholders, y, *_ = _layer(case)
    target = tvm.target.Target(AARCH64 | {"mcpu": "cortex-a76", "mattr": ["+neon", *mattr]})
    asm = _build(placeholders, y, target).mod.inspect_source("asm")
    assert {m.group(1) + "dot" for m in A64_DOT.finditer(asm)} == {dot}
    assert not re.search(r"\b(mla|[su]mlal2?)\tv\d+\.4s", asm), "widening multiply left"
    if groups > 1 or cin % 4:
        assert re.search(r"\btbl\tv\d+\.16b", asm), "taps not gathered into dot lanes"


MOBILENET_V2 = [
    # (cin, cout, hw, k, stride, groups): first conv and every depthwise shape, widths cut
    # to keep the test fast where the width does not change the loop structure.
    (3, 32, 224, 3, 2, 1),
    (32, 32, 112, 3, 1, 32),
    (16, 16, 112, 3, 2, 16),
    (16, 16, 56, 3, 1, 16),
    (16, 16, 56, 3, 2, 16),
    (16, 16, 28, 3, 1, 16),
    (16, 16, 14, 3, 2, 16),
    (40, 40, 14, 3, 1, 40),
    (40, 40, 7, 3, 1, 40),
    (24, 48, 7, 1, 1, 1),
]


@pytest.mark.parametrize("portable", [None, "skylake-avx512", "haswell"])
@pytest.mark.parametrize(("cin", "cout", "hw", "k", "stride", "groups"), MOBILENET_V2)
def test_mobilenet_v2_shapes(cin, cout, hw, k, stride, groups, portable):
    _check({
        "n": 1, "cin": cin, "cout": cout, "groups": groups, "kernel": (k, k),
        "strides": (stride, stride), "dilation": (1, 1), "padding": (k // 2,) * 4, "h": hw,
        "w": hw, "x_dtype": "uint8", "y_dtype": "uint8", "x_zero_point": 3, "clamp": True,
        "weights": _random_weights, "seed": cin * hw + stride,
    }, _portable_target(portable) if portable else None)


@pytest.mark.parametrize(("h", "w", "kernel"), [(1, 19, (1, 3)), (1, 9, (1, 3)), (2, 35, (2, 3))])
def test_single_row_images(h, w, kernel):
    """One-row planes: a vector kernel that loaded whole vectors past the last row read
    memory outside the (compacted) padding buffer here and got the last column wrong."""
    _check({
        "n": 1, "cin": 1, "cout": 1, "groups": 1, "kernel": kernel, "strides": (1, 1),
        "dilation": (1, 1), "padding": (0, 0, 0, 0), "h": h, "w": w, "x_dtype": "uint8",
        "y_dtype": "uint8", "x_zero_point": 0, "clamp": False, "weights": _random_weights,
        "seed": 0,
    })


def test_worst_case_accumulation_is_exact():
    """All-extreme inputs and weights over a deep reduction stay exact in int32."""
    case = {
        "n": 1, "cin": 256, "cout": 4, "groups": 1, "kernel": (3, 3), "strides": (1, 1),
        "dilation": (1, 1), "padding": (1, 1, 1, 1), "h": 5, "w": 5, "x_dtype": "uint8",
        "y_dtype": "int8", "x_zero_point": 0, "clamp": False, "seed": 0,
        "weights": lambda rng, shape: np.full(shape, -128, np.int8),
    }
    placeholders, y, arrays, rq, params = _layer(case)
    arrays[0][:] = 255
    lib = _build(placeholders, y, host_target())
    got = run_kernel(lib, arrays, [int(v) for v in y.shape], rq.out_dtype)
    np.testing.assert_array_equal(got, int8_conv2d_ref(arrays[0], arrays[1], arrays[2], rq,
                                                       **params))


@pytest.mark.parametrize(("groups", "cin", "k"), [(1, 8, 3), (8, 8, 3), (1, 8, 1)])
def test_generic_schedule_emits_full_width_vectors(groups, cin, k):
    target = _portable_target()
    bits = vector_bits(target)
    if bits < 256:
        pytest.skip("host has no 256/512-bit integer SIMD")
    lanes = bits // 32
    placeholders, y, *_ = _layer(_vector_case(groups, cin, k))
    ir = _build(placeholders, y, target).mod.inspect_source("ll")
    # the accumulation and the requant epilogue both run on whole vectors
    assert re.search(rf"add (nsw )?<{lanes} x i32>", ir), "int32 accumulation is not vectorized"
    # (LLVM may split float vectors to 256 bits where the CPU model prefers that width)
    assert re.search(r"fmul <(8|16) x float>", ir), "requant epilogue is not vectorized"


@pytest.mark.parametrize(("groups", "cin", "stride"), [(8, 8, 1), (8, 8, 2), (1, 3, 2)])
def test_vnni_schedule_uses_vpermb_and_vpdpbusd(groups, cin, stride):
    if not has_vnni_vbmi(host_target()):
        pytest.skip("host CPU has no AVX-512 VNNI + VBMI")
    case = _vector_case(groups, cin, 3) | {"strides": (stride, stride)}
    placeholders, y, *_ = _layer(case)
    asm = _build(placeholders, y, host_target()).mod.inspect_source("asm")
    assert "vpdpbusd" in asm and "vpermb" in asm
    assert re.search(r"vpdpbusd\t[^\n]*%zmm", asm), "dot products are not 512-bit"


@pytest.mark.parametrize("k", [1, 3])
def test_vnni_channel_schedule_uses_vpdpbusd(k):
    """Regular convs with a multiple of four input channels: one 64-byte load of four
    interleaved channels per dot product, no byte permutation."""
    if not has_vnni_vbmi(host_target()):
        pytest.skip("host CPU has no AVX-512 VNNI + VBMI")
    placeholders, y, *_ = _layer(_vector_case(1, 16, k))
    asm = _build(placeholders, y, host_target()).mod.inspect_source("asm")
    assert re.search(r"vpdpbusd\t[^\n]*%zmm", asm), "dot products are not 512-bit"
    assert "vpermb" not in asm


@pytest.mark.parametrize(("c", "hw", "stride", "y_dtype"), [
    (24, 14, 1, "uint8"), (16, 7, 1, "int8"), (16, 14, 2, "uint8"), (8, 28, 1, "uint8"),
    (8, 56, 1, "int8"), (4, 5, 1, "uint8"), (3, 17, 1, "uint8"), (3, 33, 1, "int8")])
def test_rows_of_partial_vectors_end_in_one_masked_store(c, hw, stride, y_dtype):
    """AVX-512 BW: a row of 14 (7, 28, 56) outputs is whole vectors, the last stored through
    a byte mask (``vpmovdb`` with a k register): bit-exact, and not one byte written past
    the output (its buffer is a view at the start of a larger one, filled with a sentinel);
    rows of 16k + 1 columns (LLVM's one-lane masked store writes 4 bytes) keep a byte store."""
    from tvm.target.codegen import target_has_features

    target = host_target()
    if not target_has_features("avx512bw", target):
        pytest.skip("host CPU has no AVX-512 BW")
    case = {"n": 1, "cin": c, "cout": c, "groups": c, "kernel": (3, 3), "strides": (stride,) * 2,
            "dilation": (1, 1), "padding": (1, 1, 1, 1), "h": hw, "w": hw, "x_dtype": "uint8",
            "y_dtype": y_dtype, "x_zero_point": 5, "clamp": True, "weights": _random_weights,
            "seed": c + hw}
    placeholders, y, arrays, rq, params = _layer(case)
    lib = _build(placeholders, y, target)
    asm = lib.mod.inspect_source("asm")
    wo = int(y.shape[-1])
    tail = wo % min(16, 1 << (wo - 1).bit_length())
    if tail >= 2:  # (a one-column tail is a plain byte store: see masked_tail_fits)
        assert re.search(r"vpmovdb\t%[xyz]mm\d+, [^\n]*\{%k\d\}", asm), "no masked row store"
    dev = tvm.cpu()
    shape = [int(v) for v in y.shape]
    size = int(np.prod(shape))
    big = tvm.runtime.tensor(np.full(size + 256, 0x5A, np.dtype(y_dtype)), dev)
    out = big._create_view(tuple(shape))
    lib["main"](*(tvm.runtime.tensor(a, dev) for a in arrays), out)
    whole = big.numpy()
    np.testing.assert_array_equal(whole[:size].reshape(shape),
                                  int8_conv2d_ref(*arrays[:3], rq, **params))
    assert (whole[size:] == np.dtype(y_dtype).type(0x5A)).all(), "bytes written past the output"


def _vector_case(groups, cin, k):
    return {
        "n": 1, "cin": cin, "cout": 8, "groups": groups, "kernel": (k, k), "strides": (1, 1),
        "dilation": (1, 1), "padding": (k // 2,) * 4, "h": 16, "w": 32, "x_dtype": "uint8",
        "y_dtype": "uint8", "x_zero_point": 0, "clamp": False, "weights": _random_weights,
        "seed": 0,
    }


def test_bad_groups_name_the_problem():
    x = te.placeholder((1, 6, 8, 8), "uint8", name="x")
    w = te.placeholder((4, 4, 3, 3), "int8", name="w")
    b = te.placeholder((4,), "int32", name="b")
    s = te.placeholder((4,), "float32", name="s")
    rq = Requant(np.ones(4, np.float32), 0, 0, 255, "uint8")
    with pytest.raises(ValueError, match="groups=2"):
        int8_conv2d_compute(x, w, b, s, strides=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                            groups=2, x_zero_point=0, rq=rq)
