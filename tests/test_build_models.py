"""Whole models: prom_tvm.build against onnxruntime on QDQ models the tests make."""

from __future__ import annotations

import numpy as np
import pytest
from model_harness import lsb_diff, ort_run, output_step

import prom_tvm
from prom_tvm.models import mobilenet_v2_qdq, tiny_float_cnn, tiny_qdq_cnn


def inputs(shape, n=3, seed=7):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("activation_type", ["uint8", "int8"])
@pytest.mark.parametrize("ternary", [True, False])
def test_tiny_cnn_matches_onnxruntime(activation_type, ternary):
    model = tiny_qdq_cnn(16, ternary_pointwise=ternary, activation_type=activation_type)
    lib = prom_tvm.build(model)
    kernels = {r["name"]: r["kernel"] for r in lib.summary()}
    pointwise = [n for n in kernels if n.endswith((".conv.0.0", ".conv.2"))]
    assert pointwise and all(kernels[n] == ("ternary-add" if ternary else "int8")
                             for n in pointwise), kernels
    assert kernels["features.1.conv.1.0"] == "int8"  # depthwise
    assert kernels["classifier.1"] == "int8"
    step = output_step(model)
    for x in inputs((1, 3, 16, 16)):
        ref = ort_run(model, x)
        got = lib(x)
        assert lsb_diff(got, ref, step) <= 2
        assert got.argmax() == ref.argmax()


def test_mobilenet_v2_ternary_layers_and_agreement():
    model = mobilenet_v2_qdq(input_size=96, width=0.5, num_classes=100)
    lib = prom_tvm.build(model)
    rows = lib.summary()
    one_by_one = [r for r in rows if r["op"] == "Conv" and r["weight_shape"][2:] == (1, 1)]
    assert len(one_by_one) == 34
    assert all(r["kernel"] == "ternary-add" for r in one_by_one)
    assert all(r["kernel"] == "int8" for r in rows if r not in one_by_one)
    step = output_step(model)
    for x in inputs((1, 3, 96, 96), n=2):
        ref = ort_run(model, x)
        got = lib(x)
        assert got.argmax() == ref.argmax()
        assert lsb_diff(got, ref, step) <= 3


def test_mobilenet_v2_without_ternary_weights_reports_none():
    model = mobilenet_v2_qdq(input_size=64, width=0.35, num_classes=10,
                             ternary_pointwise=False)
    lib = prom_tvm.build(model)
    kernels = [r["kernel"] for r in lib.summary()]
    assert "ternary-add" not in kernels and set(kernels) == {"int8"}
    x = inputs((1, 3, 64, 64), n=1)[0]
    assert lsb_diff(lib(x), ort_run(model, x), output_step(model)) <= 3


def test_float_model_compiles_and_says_float():
    model = tiny_float_cnn(16)
    lib = prom_tvm.build(model)
    assert {r["kernel"] for r in lib.summary()} == {"float"}
    assert all("reason" in r for r in lib.summary())
    x = inputs((1, 3, 16, 16), n=1)[0]
    np.testing.assert_allclose(lib(x), ort_run(model, x), rtol=1e-4, atol=1e-4)


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
