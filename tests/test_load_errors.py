"""prom_tvm.load on things that are not a prom_tvm library: a ValueError naming the file."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import onnx
import pytest
import tvm

import prom_tvm
from prom_tvm.compiled_model import META_SUFFIX
from prom_tvm.models import tiny_qdq_cnn

X = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A good library and its metadata, built once; tests copy them and break the copy."""
    lib = prom_tvm.build(tiny_qdq_cnn(16))
    path = tmp_path_factory.mktemp("lib") / "tiny.so"
    lib.export_library(path)
    return path, lib(X)


def _copy(exported, tmp_path, name="m.so"):
    src, _ = exported
    dst = tmp_path / name
    shutil.copy(src, dst)
    shutil.copy(str(src) + META_SUFFIX, str(dst) + META_SUFFIX)
    return dst


def _meta(path):
    return type(path)(str(path) + META_SUFFIX)


def test_good_library_loads_and_runs(exported):
    path, expected = exported
    np.testing.assert_array_equal(prom_tvm.load(path)(X), expected)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.so: no such library"):
        prom_tvm.load(tmp_path / "nope.so")


def test_random_bytes(exported, tmp_path):
    path = _copy(exported, tmp_path, "random.so")
    path.write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(ValueError, match=r"random\.so is not a prom_tvm library.*rebuild"):
        prom_tvm.load(path)


def test_onnx_file(exported, tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(tiny_qdq_cnn(16), path)
    shutil.copy(str(exported[0]) + META_SUFFIX, str(path) + META_SUFFIX)
    with pytest.raises(ValueError, match=r"model\.onnx is not a prom_tvm library"):
        prom_tvm.load(path)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build an unrelated .so")
def test_unrelated_shared_library(exported, tmp_path):
    src = tmp_path / "f.c"
    src.write_text("int add_one(int x) { return x + 1; }\n")
    path = _copy(exported, tmp_path, "other.so")
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(path)], check=True)
    with pytest.raises(ValueError, match=r"other\.so is not a prom_tvm library"):
        prom_tvm.load(path)


def test_metadata_missing(exported, tmp_path):
    path = _copy(exported, tmp_path)
    _meta(path).unlink()
    with pytest.raises(ValueError, match=r"m\.so.*prom\.json is missing"):
        prom_tvm.load(path)


@pytest.mark.parametrize("content", [b"", b"{\"target\": ", b"\xff\xfe garbage", b"[1, 2]"])
def test_metadata_corrupt_or_empty(exported, tmp_path, content):
    path = _copy(exported, tmp_path)
    _meta(path).write_bytes(content)
    with pytest.raises(ValueError, match=r"m\.so: metadata m\.so\.prom\.json .*rebuild"):
        prom_tvm.load(path)


@pytest.mark.parametrize("key", ["target", "inputs", "outputs", "layers"])
def test_metadata_missing_key(exported, tmp_path, key):
    path = _copy(exported, tmp_path)
    meta = json.loads(_meta(path).read_text())
    del meta[key]
    _meta(path).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"m\.so: metadata .* lacks \['{key}'\]"):
        prom_tvm.load(path)


def test_metadata_malformed_entries(exported, tmp_path):
    path = _copy(exported, tmp_path)
    meta = json.loads(_meta(path).read_text())
    del meta["inputs"][0]["dtype"]
    _meta(path).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"m\.so: metadata .* malformed.*dtype"):
        prom_tvm.load(path)
    meta["inputs"] = "input"
    _meta(path).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"m\.so: metadata .* malformed"):
        prom_tvm.load(path)


def test_metadata_invalid_target(exported, tmp_path):
    path = _copy(exported, tmp_path)
    meta = json.loads(_meta(path).read_text())
    meta["target"] = {"kind": "no-such-kind"}
    _meta(path).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"m\.so: metadata has an invalid target"):
        prom_tvm.load(path)


@pytest.mark.parametrize(
    "target",
    [
        {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"},
        {"kind": "llvm", "mtriple": "riscv64-linux-gnu"},
    ],
)
def test_library_for_another_architecture_is_refused(exported, tmp_path, target):
    """The metadata says aarch64 (riscv64): refuse before dlopen, naming both machines."""
    from prom_tvm.targets import _host_triple, is_host_compatible

    if is_host_compatible(tvm.target.Target(target)):
        pytest.skip(f"this host ({_host_triple()}) can run {target}")
    path = _copy(exported, tmp_path)
    meta = json.loads(_meta(path).read_text())
    meta["target"] = target
    _meta(path).write_text(json.dumps(meta))
    with pytest.raises(ValueError) as info:
        prom_tvm.load(path)
    msg = str(info.value)
    assert "m.so was compiled for" in msg and target["mtriple"] in msg
    assert "load it there" in msg

