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


def run_kernel(lib, inputs: list[np.ndarray], out_shape, out_dtype) -> np.ndarray:
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in inputs]
    out = tvm.runtime.tensor(np.zeros(out_shape, out_dtype), dev)
    lib["main"](*args, out)
    return out.numpy()
