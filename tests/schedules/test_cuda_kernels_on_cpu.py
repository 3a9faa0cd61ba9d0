"""The CUDA schedules' TIR, run on the CPU (``cuda_emulation.cpu_twin``: thread bindings left
out, dp4a emulated), bit-exact against the numpy integer references; and the CUDA source of the
same kernels (add-only ternary, __dp4a int8)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from cuda_source import check_add_only, kernel_source
from tvm import s_tir, te

from prom_tvm.schedules import ternary_forms as tf
from prom_tvm.schedules.cuda_emulation import cpu_twin
from prom_tvm.schedules.cuda_int8 import (
    schedule_cuda_int8_conv2d,
    schedule_cuda_int8_dense,
    schedule_cuda_int8_depthwise,
)
from prom_tvm.schedules.cuda_ternary import cuda_ternary_kernel, schedule_cuda_ternary
from prom_tvm.schedules.int8_conv2d import int8_conv2d_compute, int8_conv2d_ref
from prom_tvm.schedules.int8_dense import int8_dense_compute, int8_dense_ref
from prom_tvm.schedules.requant import Requant
from prom_tvm.schedules.ternary_conv1x1 import ternary_conv1x1_ref

SM80 = tvm.target.Target({"kind": "cuda", "arch": "sm_80"})
SM60 = tvm.target.Target({"kind": "cuda", "arch": "sm_60"})


def _run(func, inputs, out_shape, out_dtype):
    ex = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros(out_shape, out_dtype), dev)
    ex["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in inputs], out)
    return out.numpy()


def _rq(rng, c, dtype="uint8", zp=3):
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    return Requant(scale=(rng.random(c) * 0.02 + 1e-3).astype(np.float32), zero_point=zp,
                   qmin=lo, qmax=hi, out_dtype=dtype)


def _cuda_source(func, schedule, target=SM80):
    sch = s_tir.Schedule(func)
    schedule(sch, target)
    ex = tvm.compile(tvm.IRModule({"main": sch.mod["main"].with_attr("global_symbol", "k")}),
                     target=tvm.target.Target(target, "llvm"))
    return ex.mod.imports[0].inspect_source("")


# -- ternary add-only ------------------------------------------------------------------------


@pytest.mark.parametrize(("cout", "cin", "h", "w", "x_dtype", "mag", "float_rescale"), [
    (24, 16, 7, 7, "uint8", None, False),     # 49 pixels: one pixel per thread, tail threads
    (40, 96, 8, 8, "uint8", None, False),     # groups of 4 pixels (vector loads)
    (20, 33, 6, 10, "int8", 127, True),       # onnxruntime's {-127, 0, 127}, float rescale
    (9, 300, 4, 4, "uint8", 127, False),      # int32 magnitude path, partial channel tile
])
def test_cuda_ternary_schedule_is_bit_exact(cout, cin, h, w, x_dtype, mag, float_rescale):
    rng = np.random.default_rng(cout + cin)
    signs = rng.integers(-1, 2, (cout, cin))
    signs[0] = 0  # an all-zero channel: only padding entries
    bias = rng.integers(-500, 500, cout).astype(np.int32)
    magnitude = None if mag is None else np.full(cout, mag, np.int32)
    rq = _rq(rng, cout, "uint8" if x_dtype == "uint8" else "int8",
             zp=3 if x_dtype == "uint8" else -2)
    if mag is not None:
        rq = Requant(scale=(rq.scale / mag).astype(np.float32), zero_point=rq.zero_point,
                     qmin=rq.qmin, qmax=rq.qmax, out_dtype=rq.out_dtype)
    layer = tf.TernaryLayer(signs, 1, h, w, x_dtype, bias, rq, magnitude, float_rescale)
    kern = cuda_ternary_kernel(layer)
    lo, hi = (0, 256) if x_dtype == "uint8" else (-128, 128)
    x = rng.integers(lo, hi, (1, cin, h, w)).astype(x_dtype)
    got = _run(cpu_twin(kern.func, schedule_cuda_ternary, SM80),
               [x.reshape(1, cin, h * w), *kern.consts], (1, cout, h * w), rq.out_dtype)
    got = got.reshape(1, cout, h, w)
    ref = ternary_conv1x1_ref(x, signs, bias, rq, magnitude)
    np.testing.assert_array_equal(got, ref)
    # the same schedule with its thread bindings is add-only CUDA code
    check_add_only(kernel_source(_cuda_source(kern.func, schedule_cuda_ternary), "k_kernel"))


# -- int8 conv / depthwise / dense -------------------------------------------------------------


def _conv(rng, x_dtype, cin, cout, h, w, k, stride, pad, groups):
    lo, hi = (0, 256) if x_dtype == "uint8" else (-128, 128)
    x = rng.integers(lo, hi, (1, cin, h, w)).astype(x_dtype)
    wt = rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8)
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    zp = 7 if x_dtype == "uint8" else -3
    rq = _rq(rng, cout)
    params = {"strides": (stride, stride), "padding": (pad,) * 4, "dilation": (1, 1),
              "groups": groups, "x_zero_point": zp}
    xs = te.placeholder(x.shape, x_dtype, name="x")
    ws = te.placeholder(wt.shape, "int8", name="w")
    bs = te.placeholder((cout,), "int32", name="bias")
    ss = te.placeholder((cout,), "float32", name="scale")
    out = int8_conv2d_compute(xs, ws, bs, ss, rq=rq, **params)
    func = te.create_prim_func([xs, ws, bs, ss, out])
    ref = int8_conv2d_ref(x, wt, bias, rq, **params)
    return func, [x, wt, bias, rq.scale], ref


@pytest.mark.parametrize(("x_dtype", "cin", "cout", "h", "k", "stride", "pad", "groups"), [
    ("uint8", 8, 12, 9, 3, 1, 1, 1),     # dp4a: 2 groups of 4 channels, padded borders
    ("int8", 16, 8, 10, 3, 2, 1, 1),     # dp4a, strided (phase split), s8 x s8
    ("uint8", 3, 8, 8, 3, 2, 1, 1),      # 3 channels: int32 multiply-adds
    ("uint8", 8, 8, 7, 1, 1, 0, 2),      # grouped 1x1, 4 channels per group: dp4a
])
def test_cuda_int8_conv_schedule_is_bit_exact(x_dtype, cin, cout, h, k, stride, pad, groups):
    rng = np.random.default_rng(cin * cout + h)
    func, args, ref = _conv(rng, x_dtype, cin, cout, h, h, k, stride, pad, groups)
    got = _run(cpu_twin(func, schedule_cuda_int8_conv2d, SM80), args, ref.shape, ref.dtype)
    np.testing.assert_array_equal(got, ref)
    src = _cuda_source(func, schedule_cuda_int8_conv2d)
    assert ("__dp4a(" in kernel_source(src, "k_kernel")) == (cin // groups % 4 == 0)
    assert "__dp4a(" not in kernel_source(_cuda_source(func, schedule_cuda_int8_conv2d, SM60),
                                          "k_kernel")  # before sm_61: plain multiply-adds


@pytest.mark.parametrize(("h", "stride"), [(9, 1), (10, 2)])
def test_cuda_int8_depthwise_schedule_is_bit_exact(h, stride):
    rng = np.random.default_rng(h)
    func, args, ref = _conv(rng, "uint8", 16, 16, h, h, 3, stride, 1, 16)
    got = _run(cpu_twin(func, schedule_cuda_int8_depthwise, SM80), args, ref.shape, ref.dtype)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize(("x_dtype", "m", "n", "k"), [("uint8", 1, 70, 64), ("int8", 2, 10, 30)])
def test_cuda_int8_dense_schedule_is_bit_exact(x_dtype, m, n, k):
    rng = np.random.default_rng(n + k)
    lo, hi = (0, 256) if x_dtype == "uint8" else (-128, 128)
    x = rng.integers(lo, hi, (m, k)).astype(x_dtype)
    wt = rng.integers(-127, 128, (n, k)).astype(np.int8)
    bias = rng.integers(-2000, 2000, n).astype(np.int32)
    rq = _rq(rng, n)
    xs = te.placeholder(x.shape, x_dtype, name="x")
    ws = te.placeholder(wt.shape, "int8", name="w")
    bs = te.placeholder((n,), "int32", name="bias")
    ss = te.placeholder((n,), "float32", name="scale")
    func = te.create_prim_func([xs, ws, bs, ss, int8_dense_compute(
        xs, ws, bs, ss, x_zero_point=0, rq=rq, transpose_w=True)])
    got = _run(cpu_twin(func, schedule_cuda_int8_dense, SM80), [x, wt, bias, rq.scale], (m, n),
               "uint8")
    np.testing.assert_array_equal(got, int8_dense_ref(x, wt, bias, rq, x_zero_point=0,
                                                      transpose_w=True))
    src = kernel_source(_cuda_source(func, schedule_cuda_int8_dense), "k_kernel")
    assert ("__dp4a(" in src) == (k % 4 == 0)
