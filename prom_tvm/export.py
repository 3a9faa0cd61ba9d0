"""Write a compiled executable as a shared library, cross-compiling for the target's triple."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import tvm

# Debian cross toolchains by triple prefix (apt-get install gcc-aarch64-linux-gnu ...)
CROSS_COMPILERS = {
    "aarch64": "aarch64-linux-gnu-gcc",
    "arm": "arm-linux-gnueabihf-gcc",
    "riscv64": "riscv64-linux-gnu-gcc",
    "x86_64": "x86_64-linux-gnu-gcc",
}
DEBIAN_PACKAGES = {
    "aarch64": "gcc-aarch64-linux-gnu",
    "arm": "gcc-arm-linux-gnueabihf",
    "riscv64": "gcc-riscv64-linux-gnu",
    "x86_64": "gcc-x86-64-linux-gnu",
}


def _arch(triple: str) -> str:
    head = triple.split("-")[0]
    return "arm" if head.startswith(("arm", "thumb")) else head


def compiler_for(target: tvm.target.Target, cc: str | None = None) -> str | None:
    """The C compiler that links for ``target``: None = TVM's default (host gcc)."""
    if cc is not None:
        return cc
    if target.kind.name != "llvm" and target.host is not None:
        target = target.host  # a GPU library is linked for the CPU that launches its kernels
    triple = str(target.attrs.get("mtriple", "")) if target.kind.name == "llvm" else ""
    if not triple or _arch(triple) == platform.machine():
        return None
    arch = _arch(triple)
    name = CROSS_COMPILERS.get(arch)
    if name is None:
        raise ValueError(f"no cross-compiler known for triple {triple!r}; pass cc=")
    if shutil.which(name) is None:
        raise ValueError(
            f"exporting for {triple} needs the cross-compiler {name}: "
            f"apt-get install {DEBIAN_PACKAGES[arch]} (or pass cc=)"
        )
    return name


# What a device stores is the library: LLVM's DWARF (line tables, variable locations of the
# generated kernels: ~0.4 MB for MobileNetV2) is not needed to run it, so the linker drops it.
# The dynamic symbol table, which the loader needs, is kept.
LINK_OPTIONS = ["-Wl,--strip-debug"]


def export_executable(executable, target: tvm.target.Target, path: Path,
                      cc: str | None = None) -> None:
    compiler = compiler_for(target, cc)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compiler is None:
        executable.export_library(str(path), options=LINK_OPTIONS)
    else:
        executable.export_library(str(path), fcompile=tvm.support.cc.cross_compiler(compiler),
                                  options=LINK_OPTIONS)
