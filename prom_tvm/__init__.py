"""prom_tvm: compile PROM-quantized CNNs (ternary pointwise convs, int8 elsewhere) with TVM.

    lib = prom_tvm.build("model.onnx")        # this machine's CPU; or target="llvm -mcpu=..."
    y = lib(x)                                # numpy in, numpy out
    lib.summary()                             # kernel chosen for every Conv / Gemm / MatMul
    lib.export_library("model.so"); prom_tvm.load("model.so")
"""

from .compiled_model import CompiledModel, load
from .compiler import build

__version__ = "0.1.0"
__all__ = ["CompiledModel", "build", "load"]
