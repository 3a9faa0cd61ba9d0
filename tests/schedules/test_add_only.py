"""The ternary kernel is add-only: no multiply in the generated code but the rescale.

Reads the optimized LLVM IR and the x86 assembly of the scheduled kernel.  Integer data
lives in vectors (pixels are the lanes), so any integer multiply on a vector type would be a
multiply on data; scalar i32/i64 multiplies are index / address arithmetic (row offsets,
thread chunking).  The only float multiply is the per-output rescale of the epilogue.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from kernel_harness import build_kernel
from tvm import te

from prom_tvm.schedules.requant import Requant
from prom_tvm.schedules.ternary_conv1x1 import (
    TernaryLists,
    accumulation_plan,
    accumulator_dtype,
    schedule_ternary_conv1x1,
    ternary_conv1x1_compute,
)

MUL = re.compile(r"= (f?mul(?: [a-z]+)*) (<\d+ x [a-z0-9]+>|[a-z0-9]+) ")
VECTOR_INT_MUL_ASM = re.compile(r"^\s+(v?pmul\w*|v?pmadd\w*|vpdp\w*)\s", re.M)


def kernel_code(cin: int, cout: int, hw: int, with_magnitude: bool, seed: int = 0,
                float_rescale: bool = False):
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1, 0, 1], (cout, cin))
    lists = TernaryLists.from_signs(signs)
    acc_dtype = accumulator_dtype(lists, "uint8")
    plan = accumulation_plan(lists, "uint8")
    lists = lists.padded_to(plan.length)
    rq = Requant(np.full(cout, 0.01, np.float32), 0, 0, 255, "uint8")
    x = te.placeholder((1, cin, hw), "uint8", "x")
    ps = [te.placeholder(lists.pos.shape, "int32", "pos"),
          te.placeholder(lists.neg.shape, "int32", "neg"),
          te.placeholder((cout,), "int32", "bias"), te.placeholder((cout,), "float32", "scale")]
    if with_magnitude:
        ps.append(te.placeholder((cout,), "int32", "magnitude"))
    out = ternary_conv1x1_compute(x, *ps, rq=rq, plan=plan, float_rescale=float_rescale)
    lib = build_kernel([x, *ps], out, schedule_ternary_conv1x1)
    return lib.mod.inspect_source("ll"), lib.mod.inspect_source("asm"), acc_dtype


@pytest.mark.parametrize("cin,cout,hw", [(96, 24, 3136), (24, 144, 196), (960, 16, 49)])
def test_no_multiply_but_the_rescale(cin, cout, hw):
    ll, asm, _ = kernel_code(cin, cout, hw, with_magnitude=False)
    muls = Counter((op.split()[0], ty) for op, ty in MUL.findall(ll))
    data_muls = {k: n for k, n in muls.items() if k[0] == "mul" and k[1].startswith("<")}
    assert not data_muls, f"integer multiply on data vectors: {data_muls}"
    narrow = {k: n for k, n in muls.items() if k[0] == "mul" and k[1] in ("i8", "i16")}
    assert not narrow, f"multiply on 8/16-bit values: {narrow}"
    rescale = {k: n for k, n in muls.items() if k[0] == "fmul"}
    assert rescale and all("float" in ty for _, ty in rescale), muls  # rescale identifiable
    assert not VECTOR_INT_MUL_ASM.findall(asm)
    assert re.search(r"^\s+vmulps\s", asm, re.M), "the float rescale should be visible"
    # the accumulate really is a chain of int16 vector adds/subtracts (int32 across chunks)
    assert re.search(r"= (add|sub) <\d+ x i16>", ll)


def test_onnxruntime_encoding_multiplies_only_after_widening():
    """{-127,0,127} weights: the magnitude multiply is on the finished int32 sum, once per
    output, never inside the int16 add chain."""
    ll, _, acc_dtype = kernel_code(96, 24, 3136, with_magnitude=True)
    assert acc_dtype == "int16"
    muls = Counter(ty for op, ty in MUL.findall(ll) if op.split()[0] == "mul")
    assert not [ty for ty in muls if ty.endswith("i16>") or ty == "i16"], muls
    assert any(ty.endswith("i32>") for ty in muls), muls  # the rescale's integer factor


def test_float_rescale_has_no_integer_multiply_at_all():
    """With the bound proven, magnitude and bias go into the float rescale (fma / fmul)."""
    ll, asm, _ = kernel_code(96, 24, 3136, with_magnitude=True, float_rescale=True)
    int_vector_muls = [ty for op, ty in MUL.findall(ll) if op.split()[0] == "mul"
                       and ty.startswith("<")]
    assert not int_vector_muls
    assert not VECTOR_INT_MUL_ASM.findall(asm)
