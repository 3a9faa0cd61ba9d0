"""What a device stores: the bytes of an exported library, per kernel and per layer.

PROM's storage promise is about the deployed artifact, so prom_tvm measures the ``.so`` that
``export_library`` writes rather than counting parameters: each kernel's machine code is the
span of its functions in ``.text`` (the entry, its parallel-lambda bodies, up to the next
function), read from the ELF symbol table; each layer's data is the constants its kernel
reads (weights, packed indices, per-channel bias / scale), recorded by the lowering as
``data_bytes``.  Kernels shared by several layers (the table-lookup kernel of one shape)
are split evenly between them.  Only ELF64 little-endian files are read (x86-64, AArch64).
"""

from __future__ import annotations

import os
import re
import struct
from collections import defaultdict
from pathlib import Path

_FUNC = 2  # STT_FUNC


def _sections(data: bytes):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = secs[shstrndx]

    def name(off: int) -> str:
        start = names[4] + off
        return data[start:data.index(b"\0", start)].decode()

    return [(name(s[0]), s) for s in secs]


def function_spans(path: str | os.PathLike) -> dict[str, int]:
    """{function symbol: bytes from its start to the next function (or end of .text)}."""
    data = Path(path).read_bytes()
    secs = _sections(data)
    by_name = dict(secs)
    text = by_name.get(".text")
    symtab = by_name.get(".symtab") or by_name.get(".dynsym")
    if text is None or symtab is None:
        raise ValueError(f"{path}: no .text or symbol table")
    strtab = secs[symtab[6]][1]  # sh_link: the string table
    funcs = {}
    for i in range(symtab[5] // 24):
        st_name, st_info, _, _, value, _ = struct.unpack_from("<IBBHQQ", data,
                                                                 symtab[4] + i * 24)
        if st_info & 0xF != _FUNC or not (text[3] <= value < text[3] + text[5]):
            continue
        start = strtab[4] + st_name
        funcs[data[start:data.index(b"\0", start)].decode()] = value
    order = sorted(funcs.items(), key=lambda kv: kv[1])
    end = text[3] + text[5]
    return {name: (order[i + 1][1] if i + 1 < len(order) else end) - addr
            for i, (name, addr) in enumerate(order)}


def kernel_code_bytes(path: str | os.PathLike) -> dict[str, int]:
    """Machine code per kernel (its entry ``__tvm_ffi_<k>``, body ``<k>`` and lambdas)."""
    out: dict[str, int] = defaultdict(int)
    for name, size in function_spans(path).items():
        kernel = re.sub(r"_compute_(\d+)?$", "", name.removeprefix("__tvm_ffi_"))
        out[kernel] += size
    return dict(out)


def layer_storage(layers, path: str | os.PathLike) -> dict:
    """Per layer {name, kernel, form, code_bytes, data_bytes} and the file's totals.

    ``layers``: the CompiledModel's LayerInfo list (details carry ``kernel_symbol`` and
    ``data_bytes`` from the lowering).  ``other_bytes``: everything the layers do not
    account for (TVM's glue and runtime metadata, TVM-legalized ops, ELF headers).
    """
    code = kernel_code_bytes(path)
    users: dict[str, int] = defaultdict(int)
    for layer in layers:
        sym = layer.details.get("kernel_symbol")
        if sym:
            users[sym] += 1
    rows = []
    for layer in layers:
        sym = layer.details.get("kernel_symbol")
        c = code.get(sym, 0) / users[sym] if sym else 0
        rows.append({"name": layer.name, "kernel": layer.kernel,
                     "form": layer.details.get("form"), "code_bytes": round(c),
                     "data_bytes": int(layer.details.get("data_bytes", 0)),
                     "shared_by": users[sym] if sym else 0})
    size = Path(path).stat().st_size
    code_t = sum(r["code_bytes"] for r in rows)
    data_t = sum(r["data_bytes"] for r in rows)
    return {"file_bytes": size, "layers": rows, "layer_code_bytes": code_t,
            "layer_data_bytes": data_t, "other_bytes": size - code_t - data_t,
            "text_bytes": sum(function_spans(path).values())}
