"""prom_tvm: compile PROM-quantized CNNs (ternary pointwise convs, int8 elsewhere) with TVM.

    lib = prom_tvm.build("model.onnx")        # this machine's CPU; or target="llvm -mcpu=..."
    y = lib(x)                                # numpy in, numpy out
    lib.summary()                             # kernel chosen for every Conv / Gemm / MatMul
    lib.export_library("model.so"); prom_tvm.load("model.so")

TVM is imported on first use of the compiler, so the report and the QAT tools start fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["CompiledModel", "build", "load"]


def __getattr__(name: str):
    if name == "build":
        from .compiler import build

        return build
    if name in ("CompiledModel", "load"):
        from . import compiled_model

        return getattr(compiled_model, name)
    raise AttributeError(f"module 'prom_tvm' has no attribute {name!r}")
