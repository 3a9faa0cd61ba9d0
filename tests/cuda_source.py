"""Checks on generated CUDA C: cut out one kernel, and prove an add-only kernel multiplies no
data.

The add-only check is a taint analysis over the kernel's statements: values loaded through the
kernel's 8-bit data pointers (activations; weights too, if a kernel had any) are tainted, and so
is every variable assigned from a tainted expression. Index arithmetic is removed before looking
(subscripts ``p[...]`` and pointer offsets ``(p + ...)``), so address multiplies are allowed. A
tainted statement must not multiply before the reduction is finished: the statements up to the
end of the loop that reads data (the add chain) may contain no ``*`` on values, and the kernel may
call no multiplying intrinsic (``__dp4a``, ``__dp2a``, ``fma``, ``__mul``...) at all. After the
chain, the finished sum may be rescaled (the magnitude and float scale of the epilogue).
"""

from __future__ import annotations

import re

_DATA_PARAM = re.compile(r"(?:uchar|signed char|char)\*\s+__restrict__\s+(\w+)")
_MUL_INTRINSICS = re.compile(r"__dp4a|__dp2a|__[u]?mul|\bfmaf?\(|__fmaf|__imul|\bmad")


def kernel_source(source: str, name: str) -> str:
    """The definition (signature and body) of kernel ``name`` in a CUDA module's source."""
    m = re.search(rf"__global__ void[^;{{]*\b{re.escape(name)}\(([^)]*)\)\s*{{", source)
    if m is None:
        raise AssertionError(f"kernel {name} not found in the CUDA source")
    start, depth = m.end(), 1
    i = start
    while depth:
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    return source[m.start():i]


def _strip(expr: str, pointers: list[str]) -> str:
    """``expr`` without subscripts and pointer offsets (address arithmetic)."""
    out, depth = [], 0
    for ch in expr:
        depth -= ch == "]"
        if depth == 0:
            out.append(ch)
        depth += ch == "["
    expr = "".join(out)
    for p in pointers:
        while True:
            m = re.search(rf"\(\s*{p}\s*\+", expr)
            if not m:
                break
            depth, i = 1, m.start() + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(expr[i], 0)
                i += 1
            expr = expr[:m.start()] + p + expr[i:]
    return expr


def _has_value_multiply(expr: str) -> bool:
    """A ``*`` that is not a dereference or a pointer cast (``*(uint*)p``, ``(int*)``)."""
    expr = re.sub(r"<[\w ]+\*\s*>", "", expr)  # reinterpret_cast<const unsigned char*>
    expr = re.sub(r"\(\s*[\w ]+\*\s*\)", "", expr)  # pointer casts
    expr = re.sub(r"(^|[=(,?:+\-])\s*\*", r"\1", expr)  # unary dereference
    return "*" in expr


def _block_end(body: str, open_at: int) -> int:
    depth, i = 1, open_at + 1
    while depth:
        depth += {"{": 1, "}": -1}.get(body[i], 0)
        i += 1
    return i


def check_add_only(kernel: str) -> None:
    """Raise AssertionError if the kernel multiplies loaded data before its sum is complete.

    The add chain ends with the outermost ``for`` loop around the last data load (or at that
    load where the chain is fully unrolled); after it, the finished sum may be rescaled."""
    sig, body = kernel.split("{", 1)
    pointers = [p for p in _DATA_PARAM.findall(sig) if not p.startswith("requant")]
    if not pointers:
        raise AssertionError("no 8-bit data pointer in the kernel signature")
    if m := _MUL_INTRINSICS.search(body):
        raise AssertionError(f"add-only kernel calls a multiplying intrinsic: {m.group(0)}")
    loads = [m.start() for p in pointers for m in re.finditer(rf"\b{p}\b", body)]
    if not loads:
        raise AssertionError("the kernel reads none of its data pointers")
    chain_end = max(loads)
    for loop in re.finditer(r"\bfor\s*\([^)]*\)\s*{", body):
        end = _block_end(body, loop.end() - 1)
        if loop.start() < max(loads) < end:
            chain_end = max(chain_end, end)
            break  # the first (outermost) loop around it
    tainted: set[str] = set(pointers)
    pos = 0
    for stmt in re.split(r"[;{}]", body):
        at, pos = pos, pos + len(stmt) + 1
        stmt = stmt.strip()
        lhs, eq, rhs = stmt.partition("=")
        if not eq or rhs.startswith("=") or lhs.rstrip().endswith(("<", ">", "!")):
            continue
        stripped = _strip(rhs, pointers)
        if not set(re.findall(r"[A-Za-z_]\w*", stripped)) & tainted:
            continue
        base = re.findall(r"[A-Za-z_]\w*", lhs.split("[")[0].split(".")[0])
        if base:
            tainted.add(base[-1])
        if at <= chain_end and _has_value_multiply(stripped):
            raise AssertionError(f"add-only kernel multiplies data in its add chain: {stmt}")
