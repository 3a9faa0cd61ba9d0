"""The command lines: python -m prom_tvm <command> (build, demo, report)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

import prom_tvm
import prom_tvm.cli
from prom_tvm.models import tiny_qdq_cnn


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def tiny_path(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_qdq_cnn(16), path)
    return path


def test_build_stays_a_function_after_every_cli_module_is_imported():
    modules = [m for _, m, _ in pkgutil.iter_modules(prom_tvm.cli.__path__, "prom_tvm.cli.")]
    modules += [m for m, _ in prom_tvm.cli.COMMANDS.values()] + ["prom_tvm.__main__"]
    for name in modules:
        importlib.import_module(name)
    assert callable(prom_tvm.build) and prom_tvm.build.__module__ == "prom_tvm.compiler"
    res = subprocess.run([sys.executable, "-c", "import prom_tvm, prom_tvm.cli.build, "
                          "prom_tvm.demo, prom_tvm.report; assert callable(prom_tvm.build)"])
    assert res.returncode == 0


def test_build_cli_writes_a_loadable_library(tiny_path, tmp_path):
    out = tmp_path / "tiny.so"
    res = run("prom_tvm", "build", str(tiny_path), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "ternary-add" in res.stdout and "kernels:" in res.stdout
    lib = prom_tvm.load(out)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(lib(x), prom_tvm.build(tiny_path)(x))


def test_build_cli_output_into_a_folder(tiny_path, tmp_path):
    folder = tmp_path / "libs"
    folder.mkdir()
    res = run("prom_tvm", "build", str(tiny_path), "-o", str(folder), "--quiet")
    assert res.returncode == 0, res.stderr
    assert (folder / "tiny.so").is_file() and (folder / "tiny.so.prom.json").is_file()


def test_build_cli_refuses_bad_outputs_before_compiling(tiny_path, tmp_path):
    before = tiny_path.read_bytes()
    res = run("prom_tvm", "build", str(tiny_path), "-o", str(tiny_path))
    assert res.returncode == 2 and "suffix" in res.stderr and "Traceback" not in res.stderr
    assert tiny_path.read_bytes() == before  # the model is never overwritten
    res = run("prom_tvm", "build", str(tiny_path), "-o", str(tmp_path / "no" / "x.so"))
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_build_cli_reports_bad_input(tmp_path, tiny_path):
    res = run("prom_tvm", "build", str(tmp_path / "missing.onnx"))
    assert res.returncode == 2 and "missing.onnx" in res.stderr
    res = run("prom_tvm", "build", str(tiny_path), "--target", "llvm -bogus=1")
    assert res.returncode == 2 and "-bogus" in res.stderr


def test_unknown_command_suggests_the_right_one():
    res = run("prom_tvm", "bild")
    assert res.returncode == 2 and "did you mean 'build'" in res.stderr
    res = run("prom_tvm", "--help")
    assert res.returncode == 0 and all(c in res.stdout for c in prom_tvm.cli.COMMANDS)


@pytest.mark.slow
def test_demo_end_to_end():
    res = run("prom_tvm.demo", "--repeats", "5", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "-> OK" in res.stdout and "onnxruntime int8" in res.stdout


def test_demo_small_input():
    res = run("prom_tvm", "demo", "--input-size", "64", "--repeats", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "prom_tvm          top-1 identical on 5/5" in res.stdout and "-> OK" in res.stdout
