"""Whole models for AArch64: which instructions each CPU class gets, and (slow) the exported
libraries run under qemu-aarch64 in the arm64 rootfs' Python against the exact reference.

``cortex-a72`` (no dotprod) keeps the widening multiply-accumulate; ``cortex-a76`` (dotprod)
gets ``udot`` in every int8 conv and dense kernel, ``neoverse-n2`` (i8mm) ``usdot``. The run
needs the rootfs of scripts/emulated_device.sh (``PROM_TVM_ARM64_ROOTFS``, default
/var/tmp/prom_tvm/arm64-rootfs) and qemu-aarch64; its Python is started directly (no chroot,
no binfmt_misc: ``qemu-aarch64 -L ROOT ROOT/usr/bin/python3``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from model_harness import check_outputs, inputs

import prom_tvm
from prom_tvm.models import mobilenet_v2_qdq

ROOTFS = Path(os.environ.get("PROM_TVM_ARM64_ROOTFS", "/var/tmp/prom_tvm/arm64-rootfs"))
QEMU = shutil.which("qemu-aarch64")
CHILD = Path(__file__).parent / "emulated" / "run_vm.py"
DOT = re.compile(r"\t(u|s|us)dot\t")
WIDENING_MAC = re.compile(r"\t(mla|[su]mlal2?)\tv\d+\.4s")
# target: (qemu CPU, the dot instructions its int8 kernels use)
TARGETS = {
    "llvm -mcpu=cortex-a72": ("cortex-a72", set()),
    "llvm -mcpu=cortex-a76": ("max", {"udot"}),
    "llvm -mcpu=neoverse-n2": ("max", {"usdot"}),
}


def _model():
    return mobilenet_v2_qdq(input_size=64, width=0.35, num_classes=10), (1, 3, 64, 64)


def _asm(lib) -> str:
    return "".join(m.inspect_source("asm") for m in lib.executable.mod.imports)


@pytest.mark.parametrize("target", ["llvm -mcpu=cortex-a72", "llvm -mcpu=cortex-a76"])
def test_int8_kernels_use_the_cpus_instructions(target):
    lib = prom_tvm.build(_model()[0], target)
    asm = _asm(lib)
    dots = {m.group(1) + "dot" for m in DOT.finditer(asm)}
    assert dots == TARGETS[target][1]
    if dots:
        assert not WIDENING_MAC.search(asm), "an int8 kernel kept the widening path"
    else:
        assert WIDENING_MAC.search(asm)


def _rootfs_python() -> Path | None:
    py = ROOTFS / "usr" / "bin" / "python3"
    site = ROOTFS / "opt" / "venv" / "lib" / "python3.11" / "site-packages" / "tvm"
    return py if QEMU and py.exists() and site.exists() else None


@pytest.mark.slow
def test_libraries_run_exact_on_emulated_cpus(tmp_path):
    if _rootfs_python() is None:
        pytest.skip(f"no arm64 rootfs with TVM at {ROOTFS} (scripts/emulated_device.sh setup) "
                    "or no qemu-aarch64")
    model, shape = _model()
    xs = inputs(shape, n=2)
    np.savez(tmp_path / "in.npz", **{f"x{i}": x for i, x in enumerate(xs)})
    for cpu in sorted({cpu for cpu, _ in TARGETS.values()}):
        targets = [t for t, (c, _) in TARGETS.items() if c == cpu]
        libs = [str(prom_tvm.build(model, t).export_library(tmp_path / f"{i}_{cpu}.so"))
                for i, t in enumerate(targets)]
        out = tmp_path / f"out_{cpu}.npz"
        # qemu's -L resolves the guest's absolute paths (/opt/venv/...) inside the rootfs
        res = subprocess.run(
            [QEMU, "-cpu", cpu, "-L", str(ROOTFS), str(_rootfs_python()), str(CHILD),
             str(tmp_path / "in.npz"), str(out), *libs],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/opt/venv/lib/python3.11/site-packages",
                 "TVM_NUM_THREADS": "1"},
            capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        got = np.load(out)
        for i, t in enumerate(targets):
            check_outputs(model, xs, [got[f"lib{i}_x{k}"] for k in range(len(xs))],
                          where=f"{t} on qemu -cpu {cpu}")
