"""prom_tvm.device_probe: what a device's kernel says, against the target's architecture.

The probe library itself runs on this machine here (a real run, not a mock); over RPC it runs
in tests/test_bench.py (this machine's server) and tests/test_emulated_a72.py (qemu)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import tvm

from prom_tvm.device_probe import ARCH_BYTES, CPUINFO_BYTES, classify, probe_module
from prom_tvm.targets import parse_target

A72 = parse_target("llvm -mcpu=cortex-a72")
X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd crc32\nCPU implementer\t: 0x41\n"


def test_aarch64_code_on_an_x86_64_kernel_is_emulated():
    k = classify("x86_64\n", X86_CPUINFO, A72)
    assert k.emulated and k.arch == "x86_64"
    assert k.evidence == ("aarch64 code on the device: the kernel it runs on reports x86_64 "
                          "(user-mode emulation, e.g. qemu-user)")


def test_aarch64_code_on_an_aarch64_kernel_is_a_real_board():
    assert not classify("aarch64\n", ARM_CPUINFO, A72).emulated


def test_32_bit_code_on_the_64_bit_kernel_of_its_family_is_native():
    armv7 = parse_target({"kind": "llvm", "mtriple": "armv7l-linux-gnueabihf",
                          "mcpu": "cortex-a72"})
    assert not classify("aarch64\n", ARM_CPUINFO, armv7).emulated  # 32-bit Raspberry Pi OS
    assert classify("x86_64\n", X86_CPUINFO, armv7).emulated


def test_without_kernel_arch_the_cpuinfo_fields_tell():
    assert classify("", X86_CPUINFO, A72).emulated
    assert not classify("", ARM_CPUINFO, A72).emulated
    unknown = classify("", "", A72)
    assert not unknown.emulated and "could not be read" in unknown.evidence


@pytest.mark.skipif(platform.machine() != "x86_64", reason="reads an x86_64 kernel")
def test_the_probe_reads_this_kernel():
    here = parse_target(None)
    lib = probe_module(here)
    arch = tvm.runtime.tensor(np.zeros(ARCH_BYTES, "uint8"))
    info = tvm.runtime.tensor(np.zeros(CPUINFO_BYTES, "uint8"))
    lib["main"](arch, info)
    text = arch.numpy().tobytes().split(b"\0", 1)[0].decode()
    kernel_arch = Path("/proc/sys/kernel/arch")
    assert text.strip() == (kernel_arch.read_text().strip() if kernel_arch.exists() else "")
    cpuinfo = info.numpy().tobytes().split(b"\0", 1)[0].decode()
    assert cpuinfo and open("/proc/cpuinfo").read().startswith(cpuinfo)
    assert not classify(text, cpuinfo, here).emulated
