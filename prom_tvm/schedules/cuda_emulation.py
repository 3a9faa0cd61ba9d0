"""Run a CUDA schedule's TIR on the CPU, for bit-exact checks on machines without a GPU.

``cpu_twin`` applies a CUDA schedule function with two substitutions and nothing else: thread
bindings are left out (the bound loops stay serial loops, which is what TIR's semantics of a
thread-bound loop are: independent iterations), and ``__dp4a`` tensorization uses an intrinsic
with the same description implemented as four scalar multiply-adds. Loop splits, compute-at
placement, register caches, their channels-last layout, predicates of partial tiles and the
tensorize matching are those of the CUDA build. What this cannot check: the CUDA code generator,
the ``__dp4a`` instruction itself, and anything that depends on real parallel execution.
"""

from __future__ import annotations

from tvm import s_tir


class _Unbound:
    """A Schedule whose ``bind`` does nothing and whose dp4a tensorize uses the emulation."""

    def __init__(self, sch: s_tir.Schedule):
        self._sch = sch

    def __getattr__(self, name):
        return getattr(self._sch, name)

    def bind(self, loop, thread_axis):  # serial loop on the CPU
        return None

    def tensorize(self, loop, intrin, *args, **kwargs):
        from .cuda_int8 import dp4a_intrin

        if intrin.startswith("prom_tvm_dp4a_"):
            intrin = dp4a_intrin(intrin.split("_")[3], emulate=True)
        return self._sch.tensorize(loop, intrin, *args, **kwargs)


def cpu_twin(func, schedule_fn, target):
    """``func`` scheduled by ``schedule_fn(sch, target)`` without thread bindings, as a PrimFunc
    named ``main`` that builds for llvm."""
    sch = s_tir.Schedule(func)
    schedule_fn(_Unbound(sch), target)
    return sch.mod["main"].with_attr("global_symbol", "main")
