"""Whole-model checks: a compiled model against the exact QDQ reference on the same inputs."""

from __future__ import annotations

import numpy as np
import onnx

from prom_tvm.onnx_io import output_step
from prom_tvm.reference import TOLERANCE_LSB, Agreement, ExactReference, agreement

# x86 code paths a user's CPU may take, all runnable on this (AVX-512 VNNI) machine: the host's
# own features, AVX2 without AVX-512/VNNI (Haswell-Skylake client, Zen 1-3), and SSE2 only.
X86_TARGETS = {
    "host": None,
    "avx2": "llvm -mcpu=haswell",
    "x86-64": "llvm -mcpu=x86-64",
}


def inputs(shape, n=3, seed=7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def check_against_exact(lib, model: onnx.ModelProto, xs, tolerance: int = TOLERANCE_LSB
                        ) -> list[Agreement]:
    """Assert top-1 identical and within ``tolerance`` LSB on every input; return the numbers."""
    return check_outputs(model, xs, [lib(x) for x in xs], tolerance, where=lib.target)


def check_outputs(model: onnx.ModelProto, xs, outputs, tolerance: int = TOLERANCE_LSB,
                  where="") -> list[Agreement]:
    """The same for outputs computed elsewhere (e.g. on an emulated CPU)."""
    ref = ExactReference(model)
    step = output_step(model)
    found = [agreement(y, ref(x), step) for x, y in zip(xs, outputs, strict=True)]
    assert all(a.ok(tolerance) for a in found), (where, found)
    return found
