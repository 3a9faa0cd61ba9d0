"""Run an AArch64 build of one TE kernel under qemu-user, without an AArch64 TVM runtime.

The kernel is exported as a shared library with the cross gcc and called by
``emulated/kernel_runner.c`` (cross-compiled once per session), which stands in for the few
runtime functions a kernel library imports, and ends every tensor and workspace buffer at an
inaccessible page (a read or write past a buffer faults). ``-cpu max`` has dotprod and i8mm;
``-cpu cortex-a72`` has neither and faults (SIGILL) on their instructions.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

QEMU = shutil.which("qemu-aarch64")
GCC = shutil.which("aarch64-linux-gnu-gcc")
RUNNER_SOURCE = Path(__file__).parent / "emulated" / "kernel_runner.c"
SIGILL = -4


def sysroot() -> str | None:
    """The AArch64 libraries qemu loads the runner with: the cross toolchain's (Debian
    ``gcc-aarch64-linux-gnu``), else the arm64 rootfs of scripts/emulated_device.sh."""
    for root in ("/usr/aarch64-linux-gnu", os.environ.get("PROM_TVM_ARM64_ROOTFS"),
                 "/var/tmp/prom_tvm/arm64-rootfs"):
        if root and Path(root, "lib", "ld-linux-aarch64.so.1").exists():
            return root
    return None


def missing() -> str | None:
    """Why AArch64 kernels cannot run here, or None."""
    if QEMU is None:
        return "qemu-aarch64 not installed (Debian: apt-get install qemu-user)"
    if GCC is None:
        return "aarch64-linux-gnu-gcc not installed (Debian: apt-get install gcc-aarch64-linux-gnu)"
    if sysroot() is None:
        return "no AArch64 C library (/usr/aarch64-linux-gnu, from gcc-aarch64-linux-gnu)"
    return None


@functools.cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="prom_tvm_a64_"))


@functools.cache
def runner() -> Path:
    exe = _workdir() / "kernel_runner"
    subprocess.run([GCC, "-O1", "-Wall", "-Werror", "-rdynamic", "-o", str(exe),
                    str(RUNNER_SOURCE), "-ldl"], check=True, capture_output=True)
    return exe


def export(lib, path: Path) -> Path:
    from tvm.support import cc

    lib.export_library(str(path), fcompile=cc.cross_compiler(GCC))
    return path


def _prepare(lib, inputs, out_shape, out_dtype, name):
    work = Path(tempfile.mkdtemp(prefix=f"{name}_", dir=_workdir()))
    so = export(lib, work / "kernel.so")
    specs = []
    for i, a in enumerate([*inputs, np.zeros(out_shape, out_dtype)]):
        a = np.ascontiguousarray(a)
        path = work / f"t{i}.bin"
        a.tofile(path)
        mode = "out" if i == len(inputs) else "in"
        specs.append(f"{a.dtype}:{'x'.join(str(d) for d in a.shape) or '1'}:{path}:{mode}")
    return [str(runner()), str(so), *specs], work / f"t{len(inputs)}.bin"


def run(lib, inputs: list[np.ndarray], out_shape, out_dtype, cpu: str = "max",
        name: str = "kernel") -> np.ndarray:
    """Call ``lib``'s main(inputs..., out) under ``qemu-aarch64 -cpu CPU``; the output.

    Raises ``subprocess.CalledProcessError`` (returncode ``SIGILL`` for an instruction the
    emulated CPU lacks) when the kernel does not finish.
    """
    cmd, out = _prepare(lib, inputs, out_shape, out_dtype, name)
    subprocess.run([QEMU, "-cpu", cpu, "-L", sysroot(), *cmd], check=True, capture_output=True,
                   timeout=120)
    return np.fromfile(out, out_dtype).reshape(out_shape)


def executed_instructions(lib, inputs: list[np.ndarray], out_shape, out_dtype,
                          cpu: str = "max") -> int:
    """AArch64 instructions one call of the kernel executes, counted by the emulator: each
    translated block's instructions (``-d in_asm``) times the block's executions (``-d
    exec,nochain``), for two calls minus one call, so the runner's own start-up cancels.
    Instruction counts, not time: qemu says nothing about how long one takes on a Cortex."""
    cmd, _ = _prepare(lib, inputs, out_shape, out_dtype, "count")
    counts = []
    for calls in (1, 2):
        proc = subprocess.Popen(
            [QEMU, "-cpu", cpu, "-L", sysroot(), "-d", "in_asm,exec,nochain",
             "-D", "/dev/stdout", *cmd], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "KERNEL_RUNNER_CALLS": str(calls)})
        size: dict[str, int] = {}
        block, total = None, 0
        for line in proc.stdout:
            if line.startswith("Trace "):
                total += size[line.split("/", 2)[1].lstrip("0")]
            elif line.startswith("IN:"):
                block = None
            elif line.startswith("0x") and ":  " in line:
                pc = line[2:line.index(":")].lstrip("0")
                if block is None:
                    block, size[pc] = pc, 0
                size[block] += 1
        if proc.wait():
            raise subprocess.CalledProcessError(proc.returncode, cmd)
        counts.append(total)
    return counts[1] - counts[0]
