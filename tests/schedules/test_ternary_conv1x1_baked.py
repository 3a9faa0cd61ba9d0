"""Weight-specialized ternary kernel: bit-exact, add-only, used for the small layers."""

from __future__ import annotations

import re

import numpy as np
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import host_target

from prom_tvm.schedules.requant import Requant
from prom_tvm.schedules.ternary_conv1x1 import ternary_conv1x1_ref
from prom_tvm.schedules.ternary_conv1x1_baked import BLOCK, baked_ternary_primfunc, can_bake


def build(signs, n, hw, x_dtype, bias, rq, magnitude, float_rescale):
    func = baked_ternary_primfunc(signs, n, hw, x_dtype, bias, rq, magnitude, float_rescale)
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.compile(mod, target=host_target())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 32), cout=st.integers(1, 24), hw=st.integers(BLOCK, 150),
       batch=st.sampled_from([1, 2]), x_dtype=st.sampled_from(["uint8", "int8"]),
       magnitude=st.sampled_from([None, 1, 127]), seed=st.integers(0, 2**31 - 1))
def test_bit_exact_against_numpy(cin, cout, hw, batch, x_dtype, magnitude, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (0, 255) if x_dtype == "uint8" else (-128, 127)
    x = rng.integers(lo, hi + 1, (batch, cin, hw, 1)).astype(x_dtype)
    signs = rng.choice([-1, 0, 1], (cout, cin)).astype(np.int8)
    bias = rng.integers(-3000, 3000, cout).astype(np.int32)
    rq = Requant(scale=rng.uniform(1e-4, 2e-2, cout).astype(np.float32),
                 zero_point=int(rng.integers(0, 40)), qmin=0, qmax=255, out_dtype="uint8")
    mag = None if magnitude is None else np.full(cout, magnitude, np.int32)
    lib = build(signs, batch, hw, x_dtype, bias, rq, mag, float_rescale=seed % 2 == 0)
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros((batch, cout, hw), "uint8"), dev)
    lib["main"](tvm.runtime.tensor(x.reshape(batch, cin, hw), dev), out)
    ref = ternary_conv1x1_ref(x, signs, bias, rq, mag).reshape(batch, cout, hw)
    np.testing.assert_array_equal(out.numpy(), ref)


def test_add_only_code():
    rng = np.random.default_rng(0)
    signs = rng.choice([-1, 0, 1], (96, 16))
    rq = Requant(np.full(96, 0.01, np.float32), 0, 0, 255, "uint8")
    lib = build(signs, 1, 112 * 112, "uint8", np.zeros(96, np.int32), rq,
                np.full(96, 127, np.int32), True)
    ll = lib.mod.inspect_source("ll")
    int_muls = re.findall(r"= mul(?: [a-z]+)* (<\d+ x i\d+>)", ll)
    assert not int_muls, int_muls
    assert re.search(r"= (add|sub) <\d+ x i16>", ll)
    assert re.search(r"= fmul <\d+ x float>|llvm\.fma\.v\d+f32", ll)  # the rescale


def test_only_small_layers_are_baked():
    assert can_bake(16, 96, 112 * 112, True)
    assert not can_bake(24, 144, 3136, True)  # over the default compile-time budget
    assert can_bake(24, 144, 3136, True, max_weights=8192)
    # the input block would not fit the registers
    assert not can_bake(64, 96, 3136, True, max_weights=10**6)
    assert not can_bake(16, 96, 8, True)  # fewer pixels than one block
    assert not can_bake(16, 96, 3136, False)  # needs int16 chunks
