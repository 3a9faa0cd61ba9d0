"""The Relax pipeline for CUDA targets, and the check that a GPU build has GPU code.

prom_tvm's kernels get their CUDA schedules (``ScheduleKernels`` picks the CUDA rules for a GPU
target); everything TVM legalizes itself gets dlight's default GPU rules (Matmul, GEMV,
Reduction, GeneralReduction, Fallback), as TVM's own CUDA pipeline does.

The kernels' LLVM intrinsics get their CUDA equivalents from ``schedules.cuda_intrinsics``.
"""

from __future__ import annotations

import tvm

from ..schedules.cuda_intrinsics import register_cuda_intrinsics
from .schedule_kernels import ScheduleKernels


def cuda_passes(target: tvm.target.Target, log=None) -> list:
    """Phases 3-5 of ``compiler.relax_pipeline`` for a CUDA target."""
    from tvm.relax.backend.cuda import pipeline as cuda

    register_cuda_intrinsics()
    passes = [ScheduleKernels(target, log)]
    passes += cuda.library_dispatch_passes(target)
    passes += cuda.legalize_passes(target)  # ends with dlight's default GPU rules
    lower = cuda.dataflow_lower_passes(target)
    at = next(i for i, p in enumerate(lower) if "RewriteDataflowReshape" in str(p.info))
    lower.insert(at + 1, tvm.relax.transform.DeadCodeElimination())  # see relax_pipeline
    passes += lower
    passes += cuda.finalize_passes(target)
    return passes


def device_modules(ex) -> list:
    """The device modules (kinds other than the host's) an executable imports, recursively."""
    found, todo = [], list(ex.mod.imports)
    while todo:
        m = todo.pop()
        found.append(m)
        todo.extend(m.imports)
    return [m for m in found if str(m.kind) not in ("llvm", "c", "static_library")]


def check_gpu_module(ex, target: tvm.target.Target) -> None:
    """Refuse a GPU build whose executable has no module of the target's kind (TVM builds a
    host-only library when no kernel was scheduled for the device)."""
    kind = str(target.kind.name)
    kinds = sorted({str(m.kind) for m in device_modules(ex)})
    if kind not in kinds:
        raise RuntimeError(
            f"building for {kind} produced no {kind} module (device modules: {kinds or 'none'}): "
            f"no kernel was scheduled for the GPU, so the library would run nothing there. "
            f"This is a prom_tvm bug: please report it with the model and target")
