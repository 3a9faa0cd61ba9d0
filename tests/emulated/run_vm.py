"""Child process run by the AArch64 Python of the arm64 rootfs under qemu-aarch64: call
exported prom_tvm libraries with TVM's Relax VM on given inputs (no prom_tvm, no onnx there).

    python run_vm.py IN.npz OUT.npz LIB.so...     IN.npz: x0, x1, ... (each library gets all)
"""

import sys

import numpy as np
import tvm
from tvm import relax

xs = np.load(sys.argv[1])
out = {}
for i, path in enumerate(sys.argv[3:]):
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    for name in sorted(xs.files):
        y = vm["main"](tvm.runtime.tensor(xs[name]))
        out[f"lib{i}_{name}"] = (y[0] if isinstance(y, tvm.ir.Array | list | tuple) else y).numpy()
np.savez(sys.argv[2], **out)
