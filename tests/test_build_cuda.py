"""prom_tvm.build for CUDA (no GPU here): the executable has a CUDA module, nvcc compiles its
source, ternary kernels are add-only, int8 kernels use __dp4a; a GPU build without GPU code is
refused. The kernels' numerics are checked on the CPU in schedules/test_cuda_kernels_on_cpu.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tvm
from cuda_source import check_add_only, kernel_source
from tvm import te

import prom_tvm
from prom_tvm.models import mobilenet_v2_qdq, tiny_qdq_cnn
from prom_tvm.passes.cuda_pipeline import check_gpu_module, device_modules
from prom_tvm.targets import parse_target

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")


def _cuda_source(lib) -> str:
    mods = [m for m in device_modules(lib.executable) if m.kind == "cuda"]
    assert len(mods) == 1, [m.kind for m in device_modules(lib.executable)]
    return mods[0].inspect_source("")


def _nvcc(source: str, arch: str) -> bytes:
    from tvm.support import nvcc

    with tvm.target.Target({"kind": "cuda", "arch": arch}):
        return nvcc.compile_cuda(source, target_format="cubin", arch=arch, compiler="nvcc")


def _check_kernels(lib, source: str) -> dict:
    """Every ternary layer's kernel is add-only; returns {layer kind: count}."""
    seen = {"ternary-add": 0, "int8": 0, "dp4a": 0}
    for row in lib.summary():
        kernel = kernel_source(source, f"{row['kernel_symbol']}_kernel")
        seen[row["kernel"]] += 1
        if row["kernel"] == "ternary-add":
            assert row["form"] == "cuda-index-lists"
            check_add_only(kernel)
        seen["dp4a"] += "__dp4a(" in kernel
    return seen


@pytest.fixture(scope="module")
def tiny_lib():
    return prom_tvm.build(tiny_qdq_cnn(16), target="cuda -arch=sm_80")


def test_tiny_cnn_builds_a_cuda_module(tiny_lib):
    source = _cuda_source(tiny_lib)
    seen = _check_kernels(tiny_lib, source)
    assert seen["ternary-add"] == 4 and seen["int8"] == 4
    assert seen["dp4a"] == 1  # the classifier (K=16); the convs have 3 or 1 input channels
    assert tiny_lib.target.kind.name == "cuda" and tiny_lib.target.host.kind.name == "llvm"


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_90"])
def test_tiny_cnn_cuda_source_compiles_with_nvcc(tiny_lib, arch):
    assert len(_nvcc(_cuda_source(tiny_lib), arch)) > 1000


def test_int8_activations_per_tensor_build_for_cuda():
    lib = prom_tvm.build(tiny_qdq_cnn(16, activation_type="int8", per_channel=False),
                         target="cuda -arch=sm_90")
    seen = _check_kernels(lib, _cuda_source(lib))
    assert seen["ternary-add"] == 4 and seen["dp4a"] == 1  # s8 x s8 in the classifier


def test_dict_target_with_llvm_host():
    host = {"kind": "llvm", "mcpu": tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")()}
    lib = prom_tvm.build(tiny_qdq_cnn(8), target={"kind": "cuda", "arch": "sm_86", "host": host})
    assert "__global__" in _cuda_source(lib)


@needs_nvcc
def test_mobilenet_v2_builds_and_compiles_for_sm80():
    lib = prom_tvm.build(mobilenet_v2_qdq(), target="cuda -arch=sm_80")
    source = _cuda_source(lib)
    seen = _check_kernels(lib, source)
    assert seen["ternary-add"] == 34  # every pointwise conv
    assert seen["dp4a"] >= 1  # the 1280 -> 1000 classifier
    assert len(_nvcc(source, "sm_80")) > 10000


def test_add_only_check_fails_on_kernels_that_multiply(tiny_lib):
    source = _cuda_source(tiny_lib)
    rows = {r["kernel"]: r["kernel_symbol"] for r in tiny_lib.summary()}
    conv = kernel_source(source, f"{rows['int8']}_kernel")
    with pytest.raises(AssertionError, match="multipl"):
        check_add_only(conv)  # the int8 classifier: __dp4a
    first_conv = kernel_source(source, "prom_int8_conv2d_1_kernel")
    with pytest.raises(AssertionError, match="multiplies data"):
        check_add_only(first_conv)  # x * w multiply-adds
    ternary = kernel_source(source, f"{rows['ternary-add']}_kernel")
    check_add_only(ternary)
    # the same kernel with one data term doubled by a multiply is caught
    mutated = ternary.replace("+condval.x)", "+(condval.x * 3))", 1)
    assert mutated != ternary
    with pytest.raises(AssertionError, match="multiplies data in its add chain"):
        check_add_only(mutated)


def test_gpu_build_without_gpu_code_is_refused():
    """TVM compiles an unscheduled function for cuda into host code only: the guard refuses."""
    a = te.placeholder((64,), "float32", name="a")
    b = te.compute((64,), lambda i: a[i] + 1.0, name="b")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    target = parse_target("cuda -arch=sm_80")
    ex = tvm.compile(mod, target=target)
    assert not [m for m in device_modules(ex) if m.kind == "cuda"]
    with pytest.raises(RuntimeError, match="produced no cuda module"):
        check_gpu_module(ex, target)
    check_gpu_module(_scheduled(mod, target), target)  # the same function scheduled: accepted


def _scheduled(mod, target):
    from tvm.s_tir import dlight as dl

    with target:
        return tvm.compile(dl.ApplyDefaultSchedule(dl.gpu.Fallback())(mod), target=target)


@pytest.mark.skipif(tvm.cuda(0).exist, reason="this machine has a CUDA GPU")
def test_cuda_library_exports_here_and_says_where_it_runs(tiny_lib, tmp_path):
    path = tmp_path / "tiny_cuda.so"
    tiny_lib.export_library(path)  # host code linked for this CPU, kernels as CUDA C inside
    assert path.stat().st_size > 10000
    with pytest.raises(ValueError, match="compiled for CUDA sm_80; this machine has no CUDA GPU"):
        prom_tvm.load(path)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        tiny_lib(np.zeros((1, 3, 16, 16), np.float32))


@needs_nvcc
def test_prom_kernels_keep_everything_in_registers(tiny_lib, tmp_path):
    """ptxas's report for sm_80: no stack frame and no spills in any prom_tvm kernel (the
    accumulators are registers, not local memory), at most 64 registers per thread."""
    import re
    import subprocess

    src = tmp_path / "tiny.cu"
    src.write_text(_cuda_source(tiny_lib))
    log = subprocess.run(["nvcc", "-arch=sm_80", "-cubin", "-O3", "-Xptxas", "-v", str(src),
                          "-o", str(tmp_path / "tiny.cubin")], capture_output=True, text=True,
                         check=True).stderr
    parts = re.split(r"Compiling entry function '(\w+)'", log)[1:]
    kernels = {n: body for n, body in zip(parts[::2], parts[1::2], strict=True)
               if n.startswith("prom_")}
    assert len(kernels) == 8
    for name, body in kernels.items():
        assert "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" in body, name
        assert int(re.search(r"Used (\d+) registers", body).group(1)) <= 64, name
