"""AArch64 builds of the int8 and ternary kernels, run under qemu-aarch64 and compared
bit-exactly with their numpy references.

Three code paths: ``cortex-a72`` (no dotprod: widening NEON multiply-accumulate), run on
``-cpu cortex-a72``; ``cortex-a76`` (dotprod without i8mm: ``udot`` with the weights offset
by 128 and a per-pixel correction, ``sdot`` for int8 activations) and ``cortex-a76+i8mm``
(``usdot``), run on ``-cpu max``. A dotprod build faults on the emulated A72, so the dot
instructions are what runs. Skips (with the reason) without qemu-user or the cross gcc.
"""

from __future__ import annotations

import subprocess

import aarch64_emulator as emu
import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_int8_conv2d import _build as build_conv
from test_int8_conv2d import _layer, _random_weights, conv_cases
from test_int8_dense import _build as build_dense
from test_ternary_lut import compile_lut, float_rescale_ok
from test_ternary_specialized import case, compile_kernel, reference

from prom_tvm.schedules.int8_conv2d import int8_conv2d_ref
from prom_tvm.schedules.int8_dense import int8_dense_ref
from prom_tvm.schedules.ternary_lut import choose_config, lut_ref, pack_indices
from prom_tvm.schedules.ternary_specialized import lanes_for, specialized_ref

pytestmark = pytest.mark.skipif(emu.missing() is not None, reason=str(emu.missing()))

_A64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 4}
# name: (target, qemu CPU that runs it)
TARGETS = {
    "a72": ({**_A64, "mcpu": "cortex-a72"}, "cortex-a72"),
    "a76": ({**_A64, "mcpu": "cortex-a76"}, "max"),
    "i8mm": ({**_A64, "mcpu": "cortex-a76", "mattr": ["+i8mm"]}, "max"),
}


def _target(name):
    return tvm.target.Target(TARGETS[name][0])


def _conv(case_, name):
    placeholders, y, arrays, rq, params = _layer(case_)
    lib = build_conv(placeholders, y, _target(name))
    got = emu.run(lib, arrays, [int(v) for v in y.shape], rq.out_dtype, cpu=TARGETS[name][1])
    want = int8_conv2d_ref(arrays[0], arrays[1], arrays[2], rq, **params)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases(), st.sampled_from(sorted(TARGETS)))
def test_conv_matches_reference(case_, name):
    _conv(case_, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_=conv_cases())
def test_conv_matches_reference_per_target(name, case_):
    _conv(case_, name)


def _mnv2_case(cin, cout, hw, k, stride, groups, x_dtype="uint8"):
    return {
        "n": 1, "cin": cin, "cout": cout, "groups": groups, "kernel": (k, k),
        "strides": (stride, stride), "dilation": (1, 1), "padding": (k // 2,) * 4, "h": hw,
        "w": hw, "x_dtype": x_dtype, "y_dtype": "uint8", "x_zero_point": 3, "clamp": True,
        "weights": _random_weights, "seed": cin * hw + stride,
    }


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize(("cin", "cout", "hw", "k", "stride", "groups"), [
    (3, 16, 32, 3, 2, 1),  # first conv: row kernel (3 channels)
    (16, 16, 28, 3, 1, 16),  # depthwise
    (16, 16, 28, 3, 2, 16),  # depthwise, strided
    (16, 16, 32, 3, 1, 16),  # depthwise, whole 8-column chunks: 8 columns a dot row call
    (16, 16, 14, 3, 1, 16),  # depthwise, 14 of 16 columns: 8 columns a call too
    (24, 32, 14, 1, 1, 1),  # int8 1x1 (an int8-only build's pointwise conv): channel kernel
    (8, 12, 10, 3, 1, 1),  # 3x3 regular: channel kernel
])
def test_mobilenet_v2_shapes(name, cin, cout, hw, k, stride, groups):
    _conv(_mnv2_case(cin, cout, hw, k, stride, groups), name)


@pytest.mark.parametrize(("k", "stride", "dilation", "groups"), [
    (2, 2, 1, 8),  # odd reach: the phase split, not ld2 (its load would pass the row end)
    (3, 2, 2, 8),  # even reach with dilation: ld2 on the padded rows
    (5, 2, 1, 1),  # 5 taps: no dot row kernel on a76 either
    (3, 3, 1, 8),  # stride 3: the phase split
])
@pytest.mark.parametrize("name", ["a72", "a76"])
def test_strided_convs(name, k, stride, dilation, groups):
    """The widening kernel's column strides (a72, and a76 where its dot kernels do not
    apply) on two input widths."""
    for w in (19, 33):
        case_ = _mnv2_case(8, 8, w, k, stride, groups) | {"dilation": (dilation, dilation),
                                                          "h": 9, "seed": w + k}
        _conv(case_, name)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_access_past_a_buffer(name):
    """The runner ends every buffer at an inaccessible page. Depthwise stride 2 at 32x32:
    its padded planes (33 x 33 bytes) are workspace buffers, and a72's ld2 load of the last
    8 columns reads one byte past the last one its taps use (faulted here before the rows
    got slack)."""
    _conv(_mnv2_case(16, 16, 32, 3, 2, 16), name)


@pytest.mark.parametrize("name", ["a76", "i8mm"])
@pytest.mark.parametrize("groups", [1, 16])
@pytest.mark.parametrize(("x_dtype", "x", "w"), [("uint8", 255, -128), ("uint8", 255, 127),
                                                 ("int8", -128, -128), ("int8", 127, -128)])
def test_conv_worst_case_values(name, groups, x_dtype, x, w):
    """Extreme inputs times extreme weights over every tap. For udot the weight offset
    turns -128 into 0 and 127 into 255: the biased dot is 0 or at its largest (255 * 255 per
    product) and the per-pixel correction does all or none of the work."""
    cin = 16
    case_ = _mnv2_case(cin, 4 if groups == 1 else cin, 6, 3, 1, groups, x_dtype)
    case_ |= {"clamp": False, "padding": (0, 0, 0, 0), "x_zero_point": 0,
              "weights": lambda rng, shape: np.full(shape, w, np.int8)}
    placeholders, y, arrays, rq, params = _layer(case_)
    arrays[0][:] = x
    arrays[2][:] = 0
    lib = build_conv(placeholders, y, _target(name))
    got = emu.run(lib, arrays, [int(v) for v in y.shape], rq.out_dtype, cpu=TARGETS[name][1])
    np.testing.assert_array_equal(got, int8_conv2d_ref(arrays[0], arrays[1], arrays[2], rq,
                                                       **params))


def _dense(m, n, k, x_dtype, seed, name, weights=None, x_value=None):
    lib, arrays, rq = build_dense(m, n, k, True, x_dtype, "int8", seed, weights=weights,
                                  target=_target(name))
    if x_value is not None:
        arrays[0][:] = x_value
    got = emu.run(lib, arrays, (m, n), "int8", cpu=TARGETS[name][1])
    np.testing.assert_array_equal(got, int8_dense_ref(arrays[0], arrays[1], arrays[2], rq))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 3), n=st.integers(1, 40), k=st.sampled_from([7, 16, 48, 100, 256]),
       x_dtype=st.sampled_from(["uint8", "int8"]), seed=st.integers(0, 2**31),
       name=st.sampled_from(sorted(TARGETS)))
def test_dense_matches_reference(m, n, k, x_dtype, seed, name):
    _dense(m, n, k, x_dtype, seed, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 3), n=st.integers(1, 70), k=st.sampled_from([16, 48, 100, 256, 1280]),
       x_dtype=st.sampled_from(["uint8", "int8"]), seed=st.integers(0, 2**31))
def test_dense_matches_reference_per_target(name, m, n, k, x_dtype, seed):
    _dense(m, n, k, x_dtype, seed, name)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_dense_worst_case_accumulation(name):
    """K = 4096 products of 255 * -128 and of 255 * 127 (half the outputs each)."""
    k = 4096
    weights = np.full((8, k), -128, np.int8)
    weights[4:] = 127
    _dense(1, 8, k, "uint8", 0, name, weights=weights, x_value=255)


def test_dotprod_build_faults_on_a72():
    """The a76 build really holds dot instructions (SIGILL on an A72); the a72 build of the
    same kernel runs there."""
    lib, arrays, _ = build_dense(1, 16, 64, True, "uint8", "int8", 0, target=_target("a76"))
    with pytest.raises(subprocess.CalledProcessError) as err:
        emu.run(lib, arrays, (1, 16), "int8", cpu="cortex-a72")
    assert err.value.returncode == emu.SIGILL, err.value.stderr
    lib, arrays, _ = build_dense(1, 16, 64, True, "uint8", "int8", 0, target=_target("a72"))
    emu.run(lib, arrays, (1, 16), "int8", cpu="cortex-a72")


@pytest.mark.parametrize(("cin", "cout", "hw", "x_dtype", "density"), [
    (24, 32, 64, "uint8", 0.5), (96, 24, 49, "uint8", 0.67), (40, 20, 50, "int8", 0.6)])
def test_ternary_specialized_on_a72(cin, cout, hw, x_dtype, density):
    rng = np.random.default_rng(cin)
    x, signs, bias, rq, mag = case(rng, 1, cin, cout, hw, density, x_dtype, "uint8", True)
    lib, plan = compile_kernel(signs, 1, hw, x_dtype, bias, rq, mag, False, _target("a72"))
    got = emu.run(lib, [x], (1, cout, hw), rq.out_dtype, cpu="cortex-a72")
    want = reference(x, signs, bias, rq, mag)
    np.testing.assert_array_equal(specialized_ref(x, plan, bias, rq, mag), want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("cin", "cout", "hw", "x_dtype", "value"), [
    (192, 64, 49, "uint8", None), (960, 16, 7, "uint8", None), (384, 8, 20, "int8", None),
    (129, 8, 16, "uint8", 255), (128, 8, 16, "int8", -128)])
def test_ternary_lut_on_a72(cin, cout, hw, x_dtype, value):
    """Random layers and worst-case sums (every input extreme, every weight +1: at and just
    past what an int16 accumulator holds)."""
    rng = np.random.default_rng(cin + hw)
    x, signs, bias, rq, _ = case(rng, 1, cin, cout, hw, 0.6, x_dtype, "int8", False)
    if value is not None:
        x[:] = value
        signs[:] = 1
        bias[:] = 0
    mag = rng.integers(1, 128, cout).astype(np.int32)
    target = _target("a72")
    cfg = choose_config(cin, cout, hw, x_dtype, lanes_for(target), signs)
    idx = pack_indices(signs, cfg)
    fr = float_rescale_ok(signs, x_dtype, bias, mag)
    lib = compile_lut(cfg, 1, cin, cout, hw, x_dtype, rq, "per-channel", fr, target)
    got = emu.run(lib, [x, idx, bias, rq.scale, mag], (1, cout, hw), rq.out_dtype,
                  cpu="cortex-a72")
    want = reference(x, signs, bias, rq, mag)
    np.testing.assert_array_equal(lut_ref(x, idx, cfg, bias, rq, mag), want)
    np.testing.assert_array_equal(got, want)
