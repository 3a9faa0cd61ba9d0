"""prom_tvm.onnx_io: loading with clear errors, input shapes and dtypes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from prom_tvm.models import tiny_float_cnn
from prom_tvm.onnx_io import input_dtypes, input_shapes, load_onnx, unpack_subbyte_weights


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return tiny_float_cnn()


@pytest.fixture(scope="module")
def model_bytes(model) -> bytes:
    return model.SerializeToString()


def _relu_model(shape, name="x", elem=TensorProto.FLOAT, extra_inputs=()) -> onnx.ModelProto:
    """Relu on one input with the given dims (ints, strings for dim_param, None for unknown)."""
    inp = helper.make_tensor_value_info(name, elem, shape)
    out = helper.make_tensor_value_info("y", elem, None)
    graph = helper.make_graph(
        [helper.make_node("Relu", [name], ["y"], name="relu")],
        "relu",
        [inp, *extra_inputs],
        [out],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# -- load_onnx ----------------------------------------------------------------------------------


def test_loads_a_path_and_a_model(tmp_path, model):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    for source in (path, str(path)):
        loaded = load_onnx(source)
        assert loaded.SerializeToString() == model.SerializeToString()
    assert load_onnx(model) is model


def test_missing_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(ValueError, match="does not exist") as info:
        load_onnx(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="directory") as info:
        load_onnx(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_onnx(path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\n" * 20)
    with pytest.raises(ValueError, match="not an ONNX model") as info:
        load_onnx(path)
    assert "notes.onnx" in str(info.value)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(min_size=1, max_size=2000))
def test_random_bytes_are_a_value_error_naming_the_file(tmp_path, data):
    path = tmp_path / "random.onnx"
    path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        load_onnx(path)
    assert "random.onnx" in str(info.value)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fraction=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_truncated_file_is_a_value_error(tmp_path, model_bytes, fraction):
    cut = max(1, int(len(model_bytes) * fraction))
    path = tmp_path / "cut.onnx"
    path.write_bytes(model_bytes[:cut])
    with pytest.raises(ValueError) as info:
        load_onnx(path)
    assert "cut.onnx" in str(info.value)


def test_last_byte_missing_is_caught(tmp_path, model_bytes):
    path = tmp_path / "cut.onnx"
    path.write_bytes(model_bytes[:-1])
    with pytest.raises(ValueError, match=r"cut\.onnx"):
        load_onnx(path)


def test_invalid_model_fails_the_checker(tmp_path):
    bad = _relu_model([1, 4])
    bad.graph.node[0].input[0] = "does_not_exist"
    path = tmp_path / "bad.onnx"
    onnx.save(bad, path)
    with pytest.raises(ValueError, match="invalid ONNX model") as info:
        load_onnx(path)
    assert "bad.onnx" in str(info.value)
    with pytest.raises(ValueError, match="invalid ONNX model"):
        load_onnx(bad)


def test_model_without_graph_or_opsets():
    with pytest.raises(ValueError, match="no graph"):
        load_onnx(onnx.ModelProto())
    no_opset = _relu_model([1, 4])
    del no_opset.opset_import[:]
    with pytest.raises(ValueError, match="opset_import"):
        load_onnx(no_opset)


def test_wrong_type():
    with pytest.raises(TypeError, match="ModelProto or a path"):
        load_onnx(42)


# -- input_shapes / input_dtypes ------------------------------------------------------------------


def test_static_inputs_and_initializers_excluded(model):
    # tiny_float_cnn has one input; put its weights in graph.input too, as old exporters do
    legacy = onnx.ModelProto()
    legacy.CopyFrom(model)
    w = legacy.graph.initializer[0]
    legacy.graph.input.append(helper.make_tensor_value_info(w.name, w.data_type, list(w.dims)))
    assert input_shapes(legacy) == {"input": (1, 3, 16, 16)}
    assert input_dtypes(legacy) == {"input": np.dtype("float32")}


def test_dynamic_dim_names_input_and_dim():
    m = _relu_model(["batch", 3, 8, 8])
    with pytest.raises(ValueError) as info:
        input_shapes(m)
    msg = str(info.value)
    assert "'x'" in msg and "dim 0" in msg and "'batch'" in msg and "input_shapes=" in msg
    unknown = _relu_model([1, None, 8, 8])
    with pytest.raises(ValueError, match="dim 1"):
        input_shapes(unknown)


def test_overrides_fill_dynamic_dims():
    m = _relu_model(["batch", 3, "h", "w"])
    assert input_shapes(m, {"x": (2, 3, 32, 16)}) == {"x": (2, 3, 32, 16)}
    assert input_shapes(m, {"x": [2, 3, 32, 16]}) == {"x": (2, 3, 32, 16)}


def test_override_errors():
    m = _relu_model(["batch", 3, 8, 8])
    with pytest.raises(ValueError, match="not inputs of the model") as info:
        input_shapes(m, {"y_typo": (1, 3, 8, 8)})
    assert "'x'" in str(info.value)
    with pytest.raises(ValueError, match="rank 3"):
        input_shapes(m, {"x": (1, 3, 8)})
    with pytest.raises(ValueError, match="fixes it at 3"):
        input_shapes(m, {"x": (1, 4, 8, 8)})
    with pytest.raises(ValueError, match=">= 1"):
        input_shapes(m, {"x": (0, 3, 8, 8)})
    with pytest.raises(ValueError, match="sequence of ints"):
        input_shapes(m, {"x": ("a", 3, 8, 8)})


def test_input_without_shape_needs_override():
    m = _relu_model(None)
    with pytest.raises(ValueError, match="no shape"):
        input_shapes(m)
    assert input_shapes(m, {"x": (5,)}) == {"x": (5,)}


def test_dtypes_of_several_inputs():
    extra = helper.make_tensor_value_info("mask", TensorProto.UINT8, [1, 4])
    m = _relu_model([1, 4], elem=TensorProto.FLOAT16, extra_inputs=[extra])
    assert input_dtypes(m) == {"x": np.dtype("float16"), "mask": np.dtype("uint8")}
    assert input_shapes(m) == {"x": (1, 4), "mask": (1, 4)}


@settings(max_examples=25, deadline=None)
@given(
    dims=st.lists(
        st.one_of(st.integers(1, 64), st.sampled_from(["n", "h", "w", None])),
        min_size=1,
        max_size=5,
    ),
    fill=st.lists(st.integers(1, 64), min_size=5, max_size=5),
)
def test_shapes_property(dims, fill):
    """Static dims come back as is; dynamic ones only from an override, which must agree."""
    m = _relu_model(dims)
    dynamic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    if dynamic:
        with pytest.raises(ValueError, match=f"dim {dynamic[0]}"):
            input_shapes(m)
    else:
        assert input_shapes(m) == {"x": tuple(dims)}
    override = tuple(d if isinstance(d, int) else fill[i] for i, d in enumerate(dims))
    assert input_shapes(m, {"x": override}) == {"x": override}
    static = [i for i, d in enumerate(dims) if isinstance(d, int)]
    if static:
        wrong = list(override)
        wrong[static[0]] += 1
        with pytest.raises(ValueError, match="fixes it at"):
            input_shapes(m, {"x": tuple(wrong)})


def test_input_shapes_must_be_a_mapping():
    m = _relu_model(["batch", 3, 8, 8])
    for wrong in ([(1, 3, 8, 8)], (1, 3, 8, 8)):
        with pytest.raises(ValueError, match=r"must be a dict \{input name: shape\}") as info:
            input_shapes(m, wrong)
        assert "inputs: ['x']" in str(info.value)


# -- sub-byte (INT4 / UINT4 / INT2 / UINT2) weights ---------------------------------------------


def _dq_model(elem, values, zero, opset=25, consumer="DequantizeLinear"):
    """y = DequantizeLinear(w, 0.5, zp) + x with a sub-byte weight w (consumer: which op reads
    the zero point, to test refusals)."""
    w = helper.make_tensor("w", elem, [len(values)], values)
    zp = helper.make_tensor("zp", elem, [], [zero])
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "scale")
    if consumer == "DequantizeLinear":
        nodes = [helper.make_node("DequantizeLinear", ["w", "scale", "zp"], ["wf"], name="dq_w")]
    else:  # a QuantizeLinear to 4 bits: widening its zero point would change its saturation
        nodes = [helper.make_node("Constant", [], ["wf"], value=numpy_helper.from_array(
                     np.zeros(len(values), np.float32))),
                 helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["xq"], name="q_x"),
                 helper.make_node("DequantizeLinear", ["xq", "scale", "zp"], ["xd"], name="dq_x")]
    nodes.append(helper.make_node("Add", ["wf", "x"], ["y"], name="add"))
    graph = helper.make_graph(
        nodes, "subbyte", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [len(values)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(values)])], [w, zp, scale])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=12)


@pytest.mark.parametrize(
    ("elem", "values", "zero", "wide"),
    [
        (TensorProto.INT4, [-8, -1, 0, 7], -3, np.int8),
        (TensorProto.UINT4, [0, 1, 8, 15], 8, np.uint8),
        (TensorProto.INT2, [-2, -1, 0, 1], 0, np.int8),
        (TensorProto.UINT2, [0, 1, 2, 3], 2, np.uint8),
    ],
)
def test_subbyte_weights_are_widened_with_the_same_values(elem, values, zero, wide):
    from onnx.reference import ReferenceEvaluator

    m = _dq_model(elem, values, zero)
    onnx.checker.check_model(m, full_check=True)
    out = unpack_subbyte_weights(m)
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert inits["w"].dtype == wide and inits["zp"].dtype == wide
    assert inits["w"].tolist() == values and int(inits["zp"]) == zero
    onnx.checker.check_model(out, full_check=True)
    x = np.arange(len(values), dtype=np.float32)
    before = ReferenceEvaluator(m).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ReferenceEvaluator(out).run(None, {"x": x})[0], before)
    assert m.graph.initializer[0].data_type == elem  # the caller's model is not modified


def test_model_without_subbyte_tensors_is_returned_as_is(model):
    assert unpack_subbyte_weights(model) is model


def test_subbyte_activation_quantization_is_refused_by_name():
    m = _dq_model(TensorProto.INT4, [1, 2], 0, opset=21, consumer="QuantizeLinear")
    with pytest.raises(ValueError) as info:
        unpack_subbyte_weights(m)
    msg = str(info.value)
    assert "'zp' (INT4)" in msg and "QuantizeLinear node 'q_x'" in msg and "int8/uint8" in msg


def test_subbyte_graph_input_is_refused_by_name():
    m = _relu_model([1, 4], name="packed", elem=TensorProto.INT4)
    with pytest.raises(ValueError, match=r"input 'packed' is INT4"):
        unpack_subbyte_weights(m)


def test_float8_weights_are_refused_by_name():
    """TVM's importer fails on them with a TypeError about the zero point's dtype."""
    w = helper.make_tensor("w8", TensorProto.FLOAT8E4M3FN, [2], [1.0, -0.5])
    zp = helper.make_tensor("zp8", TensorProto.FLOAT8E4M3FN, [], [0.0])
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "scale")
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w8", "scale", "zp8"], ["y"], name="dq_f8")],
        "f8", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [w, zp, scale])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    with pytest.raises(ValueError) as info:
        unpack_subbyte_weights(m)
    msg = str(info.value)
    assert "'w8' (FLOAT8E4M3FN)" in msg and "DequantizeLinear node 'dq_f8'" in msg
