"""The Relax pipeline for CUDA targets, and the check that a GPU build has GPU code.

prom_tvm's kernels get their CUDA schedules (``ScheduleKernels`` picks the CUDA rules for a GPU
target); everything TVM legalizes itself gets dlight's default GPU rules (Matmul, GEMV,
Reduction, GeneralReduction, Fallback), as TVM's own CUDA pipeline does.

The kernels' TE computes are shared with the CPU path and call two LLVM intrinsics,
``llvm.roundeven`` (requantization: round half to even) and ``llvm.fma`` (onnxruntime's fused
multiply-add in the int8 add). CUDA C has exact equivalents, registered here as the CUDA lowering
of ``call_llvm_pure_intrin``: ``nearbyintf`` (rounds to nearest even in the default rounding
mode) and ``fmaf`` (one rounding). Any other LLVM intrinsic reaching CUDA code is an error
naming it.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.target import codegen

from .schedule_kernels import ScheduleKernels

_CUDA_EQUIVALENT = {"llvm.roundeven": "nearbyintf", "llvm.fma": "fmaf"}


def _lower_llvm_intrin_for_cuda(call):
    ids = {int(codegen.llvm_lookup_intrinsic_id(n)): n for n in _CUDA_EQUIVALENT}
    name = ids.get(int(call.args[0].value))
    if name is None:
        raise ValueError(f"LLVM intrinsic #{int(call.args[0].value)} in a CUDA kernel has no CUDA "
                         f"equivalent in prom_tvm (known: {', '.join(_CUDA_EQUIVALENT)})")
    # args[0] is the intrinsic id, the operands follow
    return tirx.call_pure_extern(call.ty, _CUDA_EQUIVALENT[name], *call.args[1:])


_registered = False


def register_cuda_intrinsics() -> None:
    global _registered
    if not _registered:
        tirx.op.register_intrin_lowering("tirx.call_llvm_pure_intrin", "cuda",
                                         f=_lower_llvm_intrin_for_cuda, level=99)
        _registered = True


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
