"""The command lines: python -m prom_tvm.build and python -m prom_tvm.demo."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

import prom_tvm
from prom_tvm.models import tiny_qdq_cnn


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_build_cli_writes_a_loadable_library(tmp_path):
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_qdq_cnn(16), model)
    out = tmp_path / "tiny.so"
    res = run("prom_tvm.build", str(model), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "ternary-add" in res.stdout and "kernels:" in res.stdout
    lib = prom_tvm.load(out)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(lib(x), prom_tvm.build(model)(x))


def test_build_cli_reports_bad_input(tmp_path):
    res = run("prom_tvm.build", str(tmp_path / "missing.onnx"))
    assert res.returncode == 2 and "missing.onnx" in res.stderr
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_qdq_cnn(16), model)
    res = run("prom_tvm.build", str(model), "--target", "llvm -bogus=1")
    assert res.returncode == 2 and "-bogus" in res.stderr


@pytest.mark.slow
def test_demo_end_to_end():
    res = run("prom_tvm.demo", "--repeats", "5", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "-> OK" in res.stdout and "onnxruntime int8" in res.stdout


def test_demo_small_input():
    res = run("prom_tvm.demo", "--input-size", "64", "--repeats", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "top-1 identical on 5/5" in res.stdout and "-> OK" in res.stdout
