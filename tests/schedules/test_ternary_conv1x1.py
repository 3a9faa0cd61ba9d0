"""Add-only ternary 1x1 kernel: bit-exact against its numpy reference, overflow-safe."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import build_kernel, run_kernel
from tvm import te

from prom_tvm.schedules.requant import Requant
from prom_tvm.schedules.ternary_conv1x1 import (
    TernaryLists,
    accumulation_plan,
    accumulator_dtype,
    schedule_ternary_conv1x1,
    ternary_conv1x1_compute,
    ternary_conv1x1_ref,
)


def run_ternary(x, signs, bias, rq, magnitude=None, float_rescale=False):
    n, cin, h, w = x.shape
    lists = TernaryLists.from_signs(signs)
    acc_dtype = accumulator_dtype(lists, str(x.dtype))
    plan = accumulation_plan(lists, str(x.dtype))
    lists = lists.padded_to(plan.length)
    cout = signs.shape[0]
    xs = te.placeholder((n, cin, h * w), str(x.dtype), "x")
    ps = [te.placeholder(lists.pos.shape, "int32", "pos"),
          te.placeholder(lists.neg.shape, "int32", "neg"),
          te.placeholder((cout,), "int32", "bias"), te.placeholder((cout,), "float32", "scale")]
    inputs = [x.reshape(n, cin, h * w), lists.pos, lists.neg, bias, rq.scale]
    if magnitude is not None:
        ps.append(te.placeholder((cout,), "int32", "magnitude"))
        inputs.append(magnitude)
    out = ternary_conv1x1_compute(xs, *ps, rq=rq, plan=plan, float_rescale=float_rescale)
    lib = build_kernel([xs, *ps], out, schedule_ternary_conv1x1)
    y = run_kernel(lib, inputs, (n, cout, h * w), rq.out_dtype)
    return y.reshape(n, cout, h, w), acc_dtype


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cin=st.integers(1, 400), cout=st.integers(1, 40), h=st.integers(1, 12), w=st.integers(1, 12),
    batch=st.sampled_from([1, 1, 2]), density=st.floats(0.0, 1.0),
    x_dtype=st.sampled_from(["uint8", "int8"]), out_dtype=st.sampled_from(["uint8", "int8"]),
    with_magnitude=st.booleans(), seed=st.integers(0, 2**31 - 1),
)
def test_bit_exact_against_numpy(cin, cout, h, w, batch, density, x_dtype, out_dtype,
                                 with_magnitude, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (0, 255) if x_dtype == "uint8" else (-128, 127)
    x = rng.integers(lo, hi + 1, (batch, cin, h, w)).astype(x_dtype)
    nz = rng.random((cout, cin)) < density
    signs = np.where(nz, rng.choice([-1, 1], (cout, cin)), 0).astype(np.int8)
    bias = rng.integers(-5000, 5000, cout).astype(np.int32)
    zp = int(rng.integers(-20, 20)) + (128 if out_dtype == "uint8" else 0)
    q0, q1 = (0, 255) if out_dtype == "uint8" else (-128, 127)
    qmin = int(rng.integers(q0, zp + 1))
    rq = Requant(scale=rng.uniform(1e-4, 0.05, cout).astype(np.float32), zero_point=zp,
                 qmin=qmin, qmax=q1, out_dtype=out_dtype)
    magnitude = rng.integers(1, 128, cout).astype(np.int32) if with_magnitude else None
    # the float rescale is exact while |m * sum + bias| < 2**24, which these sizes keep
    float_rescale = with_magnitude and 127 * 255 * cin + 5000 < 2**24 and seed % 2 == 0
    got, _ = run_ternary(x, signs, bias, rq, magnitude, float_rescale)
    np.testing.assert_array_equal(got, ternary_conv1x1_ref(x, signs, bias, rq, magnitude))


def test_half_way_values_round_to_even():
    # acc * scale lands exactly on .5: numpy's rint and the kernel must both round to even
    x = np.array([1, 3, 5, 7], np.uint8).reshape(1, 1, 2, 2)
    signs = np.ones((1, 1), np.int8)
    rq = Requant(scale=np.array([0.5], np.float32), zero_point=0, qmin=0, qmax=255,
                 out_dtype="uint8")
    got, _ = run_ternary(x, signs, np.zeros(1, np.int32), rq)
    np.testing.assert_array_equal(got.ravel(), [0, 2, 2, 4])


def test_long_lists_are_chunked_into_int16_partials():
    lists = TernaryLists.from_signs(np.ones((3, 2048), np.int8))
    plan = accumulation_plan(lists, "uint8")
    assert plan.chunks > 1 and plan.chunk <= 128 and plan.length >= 2048
    plan8 = accumulation_plan(lists, "int8")
    assert plan8.chunk * 2 * 128 <= 32767


def test_accumulator_is_int16_only_when_it_provably_fits():
    many = TernaryLists.from_signs(np.ones((2, 129), np.int8))
    few = TernaryLists.from_signs(np.ones((2, 128), np.int8))
    assert accumulator_dtype(few, "uint8") == "int16"
    assert accumulator_dtype(many, "uint8") == "int32"
    # int8 inputs can be negative: the bound counts both signs
    mixed = TernaryLists.from_signs(np.array([[1] * 128 + [-1] * 128]))
    assert accumulator_dtype(mixed, "int8") == "int32"
    assert accumulator_dtype(TernaryLists.from_signs(np.array([[1] * 255])), "int8") == "int16"


@pytest.mark.parametrize("x_dtype,value", [("uint8", 255), ("int8", -128), ("int8", 127)])
def test_worst_case_accumulation_cin_2048(x_dtype, value):
    """Cin = 2048, every weight +1, inputs at the extremes: no overflow anywhere."""
    cin, cout, hw = 2048, 4, 5
    x = np.full((1, cin, hw, 1), value, x_dtype)
    signs = np.ones((cout, cin), np.int8)
    signs[1] = -1  # most negative sum too
    signs[2, ::2] = -1  # cancelling
    bias = np.zeros(cout, np.int32)
    rq = Requant(scale=np.full(cout, 1.0 / 8192, np.float32), zero_point=128, qmin=0, qmax=255,
                 out_dtype="uint8")
    got, acc_dtype = run_ternary(x, signs, bias, rq)
    assert acc_dtype == "int32"
    np.testing.assert_array_equal(got, ternary_conv1x1_ref(x, signs, bias, rq))
    # and the reference is not trivially saturated: sums of +-522240 map inside the range
    assert got[0, 0, 0, 0] == 128 + np.rint(value * 2048 / 8192)
    assert got[0, 1, 0, 0] == 128 - np.rint(value * 2048 / 8192)
