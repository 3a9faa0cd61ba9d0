"""Build a single TE kernel with its default schedule and run it on the host CPU."""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import s_tir, te


@functools.cache
def host_target() -> tvm.target.Target:
    cpu = tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")()
    return tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": 2})


def build_kernel(placeholders: list[te.Tensor], out: te.Tensor, schedule):
    """Compile te.create_prim_func(placeholders + [out]) after applying ``schedule(sch)``."""
    sch = s_tir.Schedule(te.create_prim_func([*placeholders, out]))
    schedule(sch)
    return tvm.compile(sch.mod, target=host_target())


SENTINEL_BYTES = 256


def run_kernel(lib, inputs: list[np.ndarray], out_shape, out_dtype) -> np.ndarray:
    """Run ``lib`` on host and return its output.  The output tensor is a view at the start
    of a larger buffer filled with a sentinel, and the bytes after it must come back
    untouched: a kernel that stores past its output fails here, not by corrupting the heap."""
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in inputs]
    size = int(np.prod(out_shape))
    pad = SENTINEL_BYTES // np.dtype(out_dtype).itemsize
    sentinel = np.frombuffer(b"\x5a" * np.dtype(out_dtype).itemsize, out_dtype)[0]
    big = tvm.runtime.tensor(np.full(size + pad, sentinel, out_dtype), dev)
    out = big._create_view(tuple(int(v) for v in out_shape))
    lib["main"](*args, out)
    whole = big.numpy()
    assert (whole[size:] == sentinel).all(), "the kernel wrote past its output"
    return whole[:size].reshape(out_shape)
