"""The AVX2 and generic x86-64 builds on CPUs that really lack AVX-512: qemu-user's CPU models.

This machine has AVX-512 VNNI, so running a ``-mcpu=haswell`` build here would not notice an
AVX-512 instruction that leaked into it. ``qemu-x86_64 -cpu Haswell-v4`` (AVX2, no AVX-512)
and ``-cpu Nehalem-v2`` (SSE4.2, no AVX: the least numpy itself runs on) fault on any
instruction their CPU lacks and report a CPUID without VNNI, as a user's Haswell-Zen 3 machine
would. The exported libraries are loaded and run there and compared with the exact QDQ
reference computed natively.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_harness import check_outputs

import prom_tvm
from prom_tvm.models import mobilenet_v2_qdq, tiny_qdq_cnn

QEMU = shutil.which("qemu-x86_64")
pytestmark = pytest.mark.skipif(
    QEMU is None, reason="qemu-x86_64 not installed (Debian: apt-get install qemu-user)")
CHILD = Path(__file__).parent / "emulated" / "run_library.py"
SEEDS = (7, 8)


def run_emulated(cpu: str, out: Path, specs: list[str]) -> dict[str, np.ndarray]:
    env = {"PYTHONPATH": str(Path(prom_tvm.__file__).parents[1]), "TVM_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin"}
    res = subprocess.run([QEMU, "-cpu", cpu, sys.executable, str(CHILD), str(out), *specs],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.parametrize(("target", "cpu"), [("llvm -mcpu=haswell", "Haswell-v4"),
                                             ("llvm -mcpu=x86-64", "Nehalem-v2")])
def test_builds_run_on_cpus_without_avx512(tmp_path, target, cpu):
    models = {"tiny": (tiny_qdq_cnn(16), (1, 3, 16, 16)),
              "mnv2": (mobilenet_v2_qdq(input_size=64, width=0.35, num_classes=10),
                       (1, 3, 64, 64))}
    specs = []
    for name, (model, shape) in models.items():
        lib = prom_tvm.build(model, target)
        path = lib.export_library(tmp_path / f"{name}.so")
        specs += [f"{path}:{'x'.join(map(str, shape))}:{seed}" for seed in SEEDS]
    outs = run_emulated(cpu, tmp_path / "out.npz", specs)
    assert bool(outs["x86_without_vnni"])  # the demo's explanation sees the emulated CPUID
    got = [outs[f"out{i}"] for i in range(len(specs))]
    for k, (name, (model, shape)) in enumerate(models.items()):
        xs = [np.random.default_rng(s).standard_normal(shape).astype(np.float32) for s in SEEDS]
        mine = got[k * len(SEEDS):(k + 1) * len(SEEDS)]
        check_outputs(model, xs, mine, where=f"{target} on {cpu}")


def test_host_build_is_refused_on_an_older_cpu(tmp_path):
    """A library with AVX-512 code must not be loaded where it would die of SIGILL."""
    model = tiny_qdq_cnn(16)
    path = prom_tvm.build(model, "llvm -mcpu=skylake-avx512").export_library(tmp_path / "t.so")
    res = subprocess.run(
        [QEMU, "-cpu", "Haswell-v4", sys.executable, str(CHILD), str(tmp_path / "o.npz"),
         f"{path}:1x3x16x16"], capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(Path(prom_tvm.__file__).parents[1]), "PATH": "/usr/bin:/bin"})
    assert res.returncode != 0 and "skylake-avx512" in res.stderr and "haswell" in res.stderr


def test_child_draws_the_inputs_the_test_checks(tmp_path):
    """The harness itself: natively, the child returns what the library gives on those inputs."""
    model = tiny_qdq_cnn(16)
    lib = prom_tvm.build(model)
    path = lib.export_library(tmp_path / "t.so")
    res = subprocess.run([sys.executable, str(CHILD), str(tmp_path / "o.npz"),
                          f"{path}:1x3x16x16:{SEEDS[0]}"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    x = np.random.default_rng(SEEDS[0]).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npz")["out0"], lib(x))
