"""Whole models: prom_tvm.build against the exact QDQ reference, for every x86 code path.

The reference is the QDQ graph evaluated in numpy (prom_tvm.reference), never onnxruntime's int8
kernels: those saturate on CPUs without VNNI (microsoft/onnxruntime#16105).
"""

from __future__ import annotations

import numpy as np
import pytest
from model_harness import X86_TARGETS, check_against_exact, inputs

import prom_tvm
from prom_tvm.models import mobilenet_v2_qdq, tiny_float_cnn, tiny_qdq_cnn
from prom_tvm.reference import ExactReference


@pytest.mark.parametrize("target", X86_TARGETS)
@pytest.mark.parametrize("activation_type", ["uint8", "int8"])
@pytest.mark.parametrize("ternary", [True, False])
def test_tiny_cnn_matches_exact_reference(activation_type, ternary, target):
    model = tiny_qdq_cnn(16, ternary_pointwise=ternary, activation_type=activation_type)
    lib = prom_tvm.build(model, X86_TARGETS[target])
    kernels = {r["name"]: r["kernel"] for r in lib.summary()}
    pointwise = [n for n in kernels if n.endswith((".conv.0.0", ".conv.2"))]
    assert pointwise and all(kernels[n] == ("ternary-add" if ternary else "int8")
                             for n in pointwise), kernels
    assert kernels["features.1.conv.1.0"] == "int8"  # depthwise
    assert kernels["classifier.1"] == "int8"
    found = check_against_exact(lib, model, inputs((1, 3, 16, 16)))
    assert max(a.max_lsb for a in found) <= 1, found  # a shallow net: at most one rounding tie


@pytest.fixture(scope="module")
def mobilenet_v2():
    return mobilenet_v2_qdq(input_size=96, width=0.5, num_classes=100)


@pytest.mark.parametrize("target", X86_TARGETS)
def test_mobilenet_v2_ternary_layers_and_agreement(mobilenet_v2, target):
    lib = prom_tvm.build(mobilenet_v2, X86_TARGETS[target])
    rows = lib.summary()
    one_by_one = [r for r in rows if r["op"] == "Conv" and r["weight_shape"][2:] == (1, 1)]
    assert len(one_by_one) == 34
    assert all(r["kernel"] == "ternary-add" for r in one_by_one)
    assert all(r["kernel"] == "int8" for r in rows if r not in one_by_one)
    check_against_exact(lib, mobilenet_v2, inputs((1, 3, 96, 96), n=3))


def test_mobilenet_v2_without_ternary_weights_reports_none():
    model = mobilenet_v2_qdq(input_size=64, width=0.35, num_classes=10,
                             ternary_pointwise=False)
    lib = prom_tvm.build(model)
    kernels = [r["kernel"] for r in lib.summary()]
    assert "ternary-add" not in kernels and set(kernels) == {"int8"}
    check_against_exact(lib, model, inputs((1, 3, 64, 64), n=2))


def test_float_model_compiles_and_says_float():
    model = tiny_float_cnn(16)
    lib = prom_tvm.build(model)
    assert {r["kernel"] for r in lib.summary()} == {"float"}
    assert all("reason" in r for r in lib.summary())
    x = inputs((1, 3, 16, 16), n=1)[0]
    np.testing.assert_allclose(lib(x), ExactReference(model)(x), rtol=1e-4, atol=1e-4)


def test_calling_conventions_and_export_roundtrip(tmp_path):
    model = tiny_qdq_cnn(16)
    lib = prom_tvm.build(model)
    x = inputs((1, 3, 16, 16), n=1)[0]
    y = lib(x)
    np.testing.assert_array_equal(lib({"input": x}), y)
    np.testing.assert_array_equal(lib(input=x), y)
    path = lib.export_library(tmp_path / "tiny.so")
    again = prom_tvm.load(path)
    np.testing.assert_array_equal(again(x), y)
    assert again.summary() == lib.summary()
    with pytest.raises(ValueError, match="shape"):
        lib(x[:, :, :8])
    with pytest.raises(ValueError, match="unknown"):
        lib({"nope": x})
