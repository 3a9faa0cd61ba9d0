"""CompiledModel.__call__: inputs are checked, never wrapped, truncated or dropped silently."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import prom_tvm


def _model(inputs, nodes, output, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, [output], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def uint8_lib():
    """y = dequantize(x_u8) * 1.0 + float input f: one uint8 and one float input."""
    scale = numpy_helper.from_array(np.array(1.0, np.float32), "scale")
    zp = numpy_helper.from_array(np.array(0, np.uint8), "zp")
    model = _model(
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [3]),
         helper.make_tensor_value_info("f", TensorProto.FLOAT, [3])],
        [helper.make_node("DequantizeLinear", ["x", "scale", "zp"], ["xf"], name="dq"),
         helper.make_node("Add", ["xf", "f"], ["y"], name="add")],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]), [scale, zp])
    return prom_tvm.build(model)


@pytest.fixture(scope="module")
def scalar_lib():
    """y = s + [1, 2, 3] with a 0-d float input s."""
    c = numpy_helper.from_array(np.array([1, 2, 3], np.float32), "c")
    model = _model([helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
                   [helper.make_node("Add", ["s", "c"], ["y"], name="add")],
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]), [c])
    return prom_tvm.build(model)


F = np.zeros(3, np.float32)


def test_valid_uint8_values_run_in_every_calling_form(uint8_lib):
    x = np.array([0, 7, 255], np.uint8)
    want = np.array([0, 7, 255], np.float32)
    np.testing.assert_array_equal(uint8_lib(x, F), want)
    np.testing.assert_array_equal(uint8_lib({"x": x, "f": F}), want)
    np.testing.assert_array_equal(uint8_lib(x=x, f=F), want)
    np.testing.assert_array_equal(uint8_lib(x, f=F), want)
    # integral values of another dtype are fine: int64 lists, integral floats
    np.testing.assert_array_equal(uint8_lib([0, 7, 255], F), want)
    np.testing.assert_array_equal(uint8_lib(np.array([0.0, 7.0, 255.0]), F), want)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ([300, -5, 3], r"'x' is uint8 \(range 0\.\.255\) but got values in -5\.\.300"),
        ([256, 0, 0], r"'x' is uint8 \(range 0\.\.255\)"),
        ([1.0, 2.0, 3.7], r"'x' is uint8 but got the non-integral value 3\.7"),
        ([np.nan, 0, 0], r"'x' is uint8 but contains NaN"),
        ([np.inf, 0, 0], r"'x' is uint8 but contains NaN or inf"),
        (["a", "b", "c"], r"'x' \(uint8\) got an array of <U1"),
    ],
)
def test_bad_integer_values_are_errors(uint8_lib, value, match):
    with pytest.raises(ValueError, match=match):
        uint8_lib(value, F)


def test_float_input_is_cast(uint8_lib):
    """float64 and int arrays for a float32 input are cast, as numpy would."""
    x = np.zeros(3, np.uint8)
    np.testing.assert_array_equal(uint8_lib(x, np.array([0.5, 1.5, 2.5])), [0.5, 1.5, 2.5])
    np.testing.assert_array_equal(uint8_lib(x, [1, 2, 3]), [1, 2, 3])


def test_unknown_keyword_lists_the_inputs(uint8_lib):
    x = np.zeros(3, np.uint8)
    with pytest.raises(ValueError, match=r"inputs are \['x', 'f'\]; unknown \['bogus'\]"):
        uint8_lib(x, F, bogus=1)
    with pytest.raises(ValueError, match=r"unknown \['bogus'\]"):
        uint8_lib({"x": x, "f": F}, bogus=1)
    with pytest.raises(ValueError, match=r"'x' is given twice"):
        uint8_lib(x, F, x=x)
    with pytest.raises(ValueError, match=r"missing \['f'\]"):
        uint8_lib(x)
    with pytest.raises(ValueError, match=r"expected 2 input\(s\)"):
        uint8_lib(x, F, F)


def test_wrong_shape_names_the_input(uint8_lib):
    with pytest.raises(ValueError, match=r"'f' has shape \(4,\).*compiled for \(3,\)"):
        uint8_lib(np.zeros(3, np.uint8), np.zeros(4, np.float32))


@pytest.mark.parametrize("value", [2, 2.0, np.float32(2), np.float64(2), np.array(2.0)])
def test_scalar_input(scalar_lib, value):
    assert scalar_lib.input_shapes == {"s": ()}
    np.testing.assert_array_equal(scalar_lib(value), [3, 4, 5])
    np.testing.assert_array_equal(scalar_lib(s=value), [3, 4, 5])


def test_scalar_input_rejects_arrays(scalar_lib):
    with pytest.raises(ValueError, match=r"'s' has shape \(1,\).*compiled for \(\)"):
        scalar_lib(np.array([2.0]))


def test_scalar_input_after_export_and_load(scalar_lib, tmp_path):
    scalar_lib.export_library(tmp_path / "s.so")
    loaded = prom_tvm.load(tmp_path / "s.so")
    np.testing.assert_array_equal(loaded(2.0), [3, 4, 5])
