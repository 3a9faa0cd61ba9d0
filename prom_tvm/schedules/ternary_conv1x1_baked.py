"""Add-only ternary 1x1 convolution with the weights baked into the code.

For layers with few weights (the early, wide-image layers of MobileNetV2, where most of the
pointwise time goes) the kernel is generated per layer: each output channel becomes a
straight-line expression ``x[i1] + x[i2] + ... - x[j1] - ...`` over a block of pixels held in
a small widened buffer, followed by the requantization with that channel's constants as
immediates.  No index list is read, no padding entries are added, and LLVM keeps the input
rows of a block in vector registers across output channels — the edge no int8 library has.

The function is written as TVMScript (already scheduled: parallel over pixel blocks,
vectorized over pixels), so it bypasses the TE schedule; the index-list TE compute in
``ternary_conv1x1`` remains the tunable form.  Numerics are identical to it and to
``ternary_conv1x1_ref``.
"""

from __future__ import annotations

import numpy as np
import tvm

from .requant import Requant

# Baked when a block of every input channel fits the vector registers (Cin rows of one
# register each): the expand layers of MobileNetV2 run 20-30% faster than with the index-list
# kernel (measured, one thread); wider inputs spill and are faster with index lists.  Code
# and compile time grow with the weights (24 -> 144 takes ~3.5 s to parse and compile), so
# by default only layers up to DEFAULT_BAKED_WEIGHTS are baked (16 -> 96 and 32 -> 16 in
# MobileNetV2, ~1 s together); build(options={"bake_max_weights": N}) moves the limit.
MAX_BAKED_CIN = 32
DEFAULT_BAKED_WEIGHTS = 2048
BLOCK = 32  # pixels per block: one AVX-512 register of int16


def can_bake(cin: int, cout: int, hw: int, one_int16_chunk: bool,
             max_weights: int = DEFAULT_BAKED_WEIGHTS) -> bool:
    return (one_int16_chunk and cin <= MAX_BAKED_CIN and cin * cout <= max_weights
            and hw >= BLOCK)


def _tree(terms: list[str], op: str) -> str:
    """Balanced sum, so that the adds do not form one long dependency chain."""
    while len(terms) > 1:
        nxt = [f"({terms[i]} {op} {terms[i + 1]})" for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def _f32(v: float) -> str:
    return f"T.float32({float(np.float32(v))!r})"


def baked_ternary_source(signs: np.ndarray, n_batch: int, hw: int, x_dtype: str,
                         bias: np.ndarray, rq: Requant, magnitude: np.ndarray | None,
                         float_rescale: bool, acc_dtype: str = "int16") -> str:
    """TVMScript source of the specialized kernel (x: (N, Cin, HW) -> out: (N, Cout, HW))."""
    signs = np.asarray(signs).reshape(signs.shape[0], -1)
    cout, cin = signs.shape
    blocks = -(-hw // BLOCK)
    lines = [
        "@T.prim_func(s_tir=True)",
        f"def main(x: T.Buffer(({n_batch}, {cin}, {hw}), \"{x_dtype}\"), "
        f"out: T.Buffer(({n_batch}, {cout}, {hw}), \"{rq.out_dtype}\")):",
        '    T.func_attr({"tirx.noalias": True})',
        # Relax's analyses expect a root block around a call_tir function's body
        '    with T.sblock("root"):',
        f"      for nb in T.parallel({n_batch * blocks}):",
        f"        n = nb // {blocks}",
        # the last block is shifted back to end at hw: it recomputes a few pixels instead
        # of needing a bounds check
        f"        start = T.min(nb % {blocks} * {BLOCK}, {hw - BLOCK})",
        f"        w = T.decl_buffer(({cin}, {BLOCK}), \"{acc_dtype}\")",
        f"        for c in range({cin}):",
        f"            for i in T.vectorized({BLOCK}):",
        f"                w[c, i] = T.Cast(\"{acc_dtype}\", x[n, c, start + i])",
    ]
    zero = f"T.{acc_dtype}(0)"
    for co in range(cout):
        pos = [f"w[{c}, i]" for c in np.flatnonzero(signs[co] == 1)]
        neg = [f"w[{c}, i]" for c in np.flatnonzero(signs[co] == -1)]
        if pos and neg:
            acc = f"{_tree(pos, '+')} - {_tree(neg, '+')}"
        elif pos:
            acc = _tree(pos, "+")
        elif neg:
            acc = f"{zero} - {_tree(neg, '+')}"
        else:
            acc = zero
        b = int(bias[co])
        if magnitude is not None and float_rescale:
            total = (f"T.Cast(\"float32\", {acc}) * {_f32(magnitude[co])} + {_f32(b)}")
        else:
            total = f"T.Cast(\"int32\", {acc})"
            if magnitude is not None:
                total = f"{total} * {int(magnitude[co])}"
            total = f"T.Cast(\"float32\", {total} + {b})"
        v = f"T.nearbyint(({total}) * {_f32(rq.scale[co])}) + {_f32(rq.zero_point)}"
        v = f"T.max(T.min({v}, {_f32(rq.qmax)}), {_f32(rq.qmin)})"
        lines += [
            f"        for i in T.vectorized({BLOCK}):",
            f"            out[n, {co}, start + i] = T.Cast(\"{rq.out_dtype}\", "
            f"T.Cast(\"int32\", {v}))",
        ]
    return "\n".join(lines) + "\n"


def baked_ternary_primfunc(*args, **kwargs) -> tvm.tirx.PrimFunc:
    """Parse ``baked_ternary_source(...)`` into a scheduled PrimFunc."""
    from tvm.script import tirx as T

    src = baked_ternary_source(*args, **kwargs)
    func = tvm.script.from_source(src, extra_vars={"T": T})
    # the parser names it "main"; the IRModule gives it its own name
    return func.without_attr("global_symbol").with_attr("tirx.is_scheduled", True)
