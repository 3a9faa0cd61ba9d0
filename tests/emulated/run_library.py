"""Child process for tests/test_emulated_cpus.py: run exported libraries on seeded inputs.

    python run_library.py OUT.npz LIB.so:SHAPE[:SEED] ...   (SHAPE as 1x3x16x16)

Runs under ``qemu-x86_64 -cpu <model>``, so it imports as little as it can: prom_tvm.load and
the CPU check of prom_tvm.reference.
"""

import sys

import numpy as np

import prom_tvm

results = {}
for i, spec in enumerate(sys.argv[2:]):
    path, shape, seed = [*spec.split(":"), "7"][:3]
    dims = tuple(int(d) for d in shape.split("x"))
    x = np.random.default_rng(int(seed)).standard_normal(dims).astype(np.float32)
    results[f"out{i}"] = prom_tvm.load(path)(x)
# what prom_tvm.reference tells a user of this CPU about onnxruntime's int8 kernels
from prom_tvm.reference import host_x86_without_vnni  # noqa: E402

results["x86_without_vnni"] = np.array(host_x86_without_vnni())
np.savez(sys.argv[1], **results)
