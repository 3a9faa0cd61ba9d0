"""Bad input to prom_tvm.build: errors that name the file, op, node, flag or input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import prom_tvm
from prom_tvm.models import tiny_qdq_cnn


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.onnx"):
        prom_tvm.build(tmp_path / "nope.onnx")


def test_not_onnx_and_truncated(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a model")
    with pytest.raises(ValueError, match=r"junk\.onnx"):
        prom_tvm.build(junk)
    data = tiny_qdq_cnn(16).SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.onnx"):
        prom_tvm.build(cut)


def test_unsupported_op_names_op_and_node():
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.uint8), "w")
    zero = numpy_helper.from_array(np.array(0, np.uint8), "zp")
    node = helper.make_node("ConvInteger", ["x", "w", "zp", "zp"], ["y"], name="my_conv_int")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 4, 4, 4])], [w, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ValueError, match=r"ConvInteger.*my_conv_int"):
        prom_tvm.build(model)


def test_dynamic_dims_need_input_shapes():
    model = tiny_qdq_cnn(16)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_value")
    dim.dim_param = "batch"
    with pytest.raises(ValueError, match="input_shapes"):
        prom_tvm.build(model)
    lib = prom_tvm.build(model, input_shapes={"input": (1, 3, 16, 16)})
    assert lib(np.zeros((1, 3, 16, 16), np.float32)).shape == (1, 10)


def test_unknown_target_flag_is_named():
    with pytest.raises(ValueError, match="-mfoo"):
        prom_tvm.build(tiny_qdq_cnn(16), target="llvm -mfoo=bar")


def test_cross_target_builds_and_refuses_to_run_here():
    lib = prom_tvm.build(tiny_qdq_cnn(16), target="llvm -mcpu=cortex-a72")
    assert "aarch64" in str(lib.target)
    assert {r["kernel"] for r in lib.summary()} == {"ternary-add", "int8"}
    with pytest.raises(RuntimeError, match="cannot run on this machine"):
        lib(np.zeros((1, 3, 16, 16), np.float32))


def test_onnx_checker_failure_is_reported(tmp_path):
    model = tiny_qdq_cnn(16)
    model.graph.node[-1].input[0] = "does_not_exist"
    path = tmp_path / "broken.onnx"
    onnx.save(model, path)
    with pytest.raises(ValueError, match=r"broken\.onnx"):
        prom_tvm.build(path)
