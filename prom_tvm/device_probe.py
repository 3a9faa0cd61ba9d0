"""Is an RPC device emulated?  Asked of the device's kernel, not of its key or its address.

A tiny library compiled for the target (the same cross-link as the benchmarked ones) is run
on the device: it reads ``/proc/sys/kernel/arch`` (the running kernel's architecture) and the
head of ``/proc/cpuinfo``.  Under user-mode emulation (qemu-user through binfmt_misc, as
``scripts/emulated_device.sh`` runs it) the target's code runs on the host's kernel, and qemu
passes these reads through to it: an aarch64 library that reads ``x86_64`` is emulated.  That
cannot be claimed by a server's name or flag; what it cannot see is full-system emulation
(qemu-system: a guest kernel of the target's architecture), which needs ``--emulated``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

ARCH_BYTES = 64
CPUINFO_BYTES = 4096
COMPAT = {("arm", "aarch64"), ("x86", "x86_64")}  # (code, kernel) that run natively


@dataclass
class DeviceKernel:
    arch: str  # the kernel's architecture family ("x86_64", "aarch64", ...) or "" if unknown
    cpuinfo_head: str
    emulated: bool  # the kernel's architecture is not the target's
    evidence: str  # one sentence for the report


def _read_file(path: str, buf, size: int):
    """TIR: ``buf[:n] = contents of path`` via the device's libc (open / read / close)."""
    from tvm import tirx

    fd = tirx.Var("fd", "int32")
    read = tirx.Evaluate(tirx.call_extern("int64", "read", fd, buf.data, size - 1))
    close = tirx.Evaluate(tirx.call_extern("int32", "close", fd))
    body = tirx.IfThenElse(fd >= 0, tirx.SeqStmt([read, close]), None)
    # TVM 0.27: a binding is a statement (Bind) that the statements after it see
    return tirx.SeqStmt([tirx.Bind(fd, tirx.call_extern("int32", "open", path, 0)), body])


def probe_module(target):
    """A runtime module whose ``main(arch, cpuinfo)`` fills two uint8 buffers with the
    device's ``/proc/sys/kernel/arch`` and ``/proc/cpuinfo`` (zero-terminated, maybe empty)."""
    import tvm
    from tvm import tirx

    arch = tirx.decl_buffer((ARCH_BYTES,), "uint8", name="arch")
    info = tirx.decl_buffer((CPUINFO_BYTES,), "uint8", name="cpuinfo")
    body = tirx.SeqStmt([_read_file("/proc/sys/kernel/arch", arch, ARCH_BYTES),
                         _read_file("/proc/cpuinfo", info, CPUINFO_BYTES)])
    func = tirx.PrimFunc([arch, info], body).with_attr(
        {"global_symbol": "main", "tir.noalias": True})
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


def _family(text: str) -> str:
    from .targets import _arch_family

    return _arch_family(text.strip()) if text.strip() else ""


def classify(kernel_arch: str, cpuinfo: str, target) -> DeviceKernel:
    """What the device's two files say, against ``target``'s architecture."""
    from .targets import _arch_family, _host_triple

    want = _arch_family(str(target.attrs.get("mtriple", "")) or _host_triple())
    arch = _family(kernel_arch)
    if not arch:  # an old kernel without kernel.arch: tell the families by cpuinfo's fields
        if "vendor_id" in cpuinfo and "flags" in cpuinfo:
            arch = "x86_64"
        elif "CPU implementer" in cpuinfo:
            arch = "aarch64"
    if not arch:
        return DeviceKernel("", cpuinfo[:200], False,
                            "the device's kernel architecture could not be read")
    # 32-bit code runs natively on the 64-bit kernel of its family (AArch32 on an AArch64
    # kernel: a Raspberry Pi OS 32-bit userland; i686 on x86_64)
    emulated = arch != want and (want, arch) not in COMPAT
    where = "the kernel it runs on reports" + (f" {kernel_arch.strip()}" if kernel_arch.strip()
                                              else f" a {arch} /proc/cpuinfo")
    evidence = (f"{want} code on the device: {where}" +
                (" (user-mode emulation, e.g. qemu-user)" if emulated else ""))
    return DeviceKernel(arch, cpuinfo[:200], emulated, evidence)


def probe_device(session, target, timeout: float = 60.0) -> DeviceKernel:
    """Run the probe on ``session``'s device (an RPC session); bounded by ``timeout``."""
    import tvm

    from .tuning.measure import _bounded, upload_module

    mod = upload_module(session, probe_module(target), target,
                        f"prom_tvm_probe_{os.getpid()}.so", timeout, "the probe")
    dev = session.cpu(0)
    a = tvm.runtime.tensor(np.zeros(ARCH_BYTES, "uint8"), dev)
    c = tvm.runtime.tensor(np.zeros(CPUINFO_BYTES, "uint8"), dev)
    _bounded(lambda: mod["main"](a, c), timeout, "running the probe on the device")

    def text(t) -> str:
        raw = t.numpy().tobytes()
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    return classify(text(a), text(c), target)
