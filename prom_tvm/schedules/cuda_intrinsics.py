"""CUDA lowering of the LLVM intrinsics prom_tvm's shared TE computes call.

The kernels' computes are shared with the CPU path and call ``llvm.roundeven`` (requantization:
round half to even) and ``llvm.fma`` (onnxruntime's fused multiply-add in the int8 add). CUDA C
has exact equivalents, registered as the CUDA lowering of ``call_llvm_pure_intrin``:
``nearbyintf`` (round to nearest even in the default rounding mode) and ``fmaf`` (one rounding).
Any other LLVM intrinsic reaching CUDA code is an error naming it. Registered on import of the
CUDA schedules (and so in meta-schedule's builder processes, which import them).
"""

from __future__ import annotations

from tvm import tirx
from tvm.target import codegen

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
