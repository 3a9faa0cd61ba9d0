"""onnx_cleanup drops a Relu / Clip only where the next QuantizeLinear clamps the same way."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from prom_tvm.qat.onnx_cleanup import constants_to_initializers, drop_redundant_activations

ort = pytest.importorskip("onnxruntime")


def _model(act: str, y_scale: float, y_zp: int, lo=0.0, hi=6.0) -> onnx.ModelProto:
    """x -> Conv(1x1, 4->4) -> act -> Q(y_scale, y_zp uint8) -> DQ -> y."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 4, 1, 1)).astype(np.float32) * 3, "w"),
        numpy_helper.from_array(np.float32(y_scale), "ys"),
        numpy_helper.from_array(np.uint8(y_zp), "yz"),
        numpy_helper.from_array(np.float32(lo), "lo"),
        numpy_helper.from_array(np.float32(hi), "hi"),
    ]
    act_node = (helper.make_node("Relu", ["c"], ["a"]) if act == "Relu"
                else helper.make_node("Clip", ["c", "lo", "hi"], ["a"]))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        act_node,
        helper.make_node("QuantizeLinear", ["a", "ys", "yz"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "ys", "yz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize(
    ("act", "y_scale", "y_zp", "hi", "dropped"),
    [
        ("Relu", 0.05, 0, 6.0, 1),  # uint8 zero point 0: Q saturates at 0 like ReLU
        ("Relu", 0.05, 10, 6.0, 0),  # zero point 10: negative values would survive
        ("Clip", 6 / 255, 0, 6.0, 1),  # ReLU6 with the range observed on its outputs
        ("Clip", 5 / 255, 0, 6.0, 1),  # range below 6: Q saturates first
        ("Clip", 8 / 255, 0, 6.0, 0),  # range above 6: the clamp at 6 matters
    ],
)
def test_only_exactly_redundant_activations_go(act, y_scale, y_zp, hi, dropped):
    model = _model(act, y_scale, y_zp, hi=hi)
    x = np.random.default_rng(1).normal(size=(1, 4, 8, 8)).astype(np.float32) * 4
    expect = _run(model, x)
    assert drop_redundant_activations(model.graph) == dropped
    assert sum(n.op_type in ("Relu", "Clip") for n in model.graph.node) == 1 - dropped
    np.testing.assert_array_equal(_run(model, x), expect)


def test_constants_become_initializers():
    node = helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
        np.float32(0.5), "ignored"))
    add = helper.make_node("Add", ["x", "k"], ["y"])
    graph = helper.make_graph(
        [node, add], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    constants_to_initializers(graph)
    assert [n.op_type for n in graph.node] == ["Add"]
    assert [t.name for t in graph.initializer] == ["k"]
    assert numpy_helper.to_array(graph.initializer[0]) == np.float32(0.5)
