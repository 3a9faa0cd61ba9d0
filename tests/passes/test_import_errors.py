"""A model TVM's importer (or prom_tvm) cannot take is ONE ValueError naming the ONNX node and
op and saying what to do; never a bare TVMError / AttributeError from inside TVM."""

from __future__ import annotations

import numpy as np
import pytest
from qdq_graphs import QdqGraph, worst_agreement

import prom_tvm


def _model(build, out_shape, opset=17):
    g = QdqGraph((1, 4, 8, 8), opset=opset)
    build(g, g.q_dq("x", 0.03, 120))
    return g.model(out_shape)


def _pads(g):
    return g.const([0, 0, 1, 1, 0, 0, 1, 1], "int64")


def test_invalid_pad_mode_names_the_node():
    model = _model(lambda g, x: g.node("Pad", [x, _pads(g)], name="bad_pad", mode="foo"),
                   (1, 4, 10, 10))
    with pytest.raises(ValueError, match=r"ONNX node 'bad_pad' \(Pad\): pad mode 'foo'.*Use one"):
        prom_tvm.build(model)


def test_negative_pads_name_the_node():
    model = _model(lambda g, x: g.node("Pad", [x, g.const([0, 0, -1, 0, 0, 0, 0, 0], "int64")],
                                       name="crop_pad"), (1, 4, 7, 8))
    with pytest.raises(ValueError, match=r"'crop_pad' \(Pad\): negative pads.*Slice"):
        prom_tvm.build(model)


def test_run_time_pad_value_names_the_node():
    def build(g, x):
        v = g.node("ReduceMax", [g.node("Flatten", [x], axis=0)], keepdims=0)
        g.node("Pad", [x, _pads(g), v], name="dyn_value_pad")

    with pytest.raises(ValueError, match=r"'dyn_value_pad' \(Pad\): the constant_value input"):
        prom_tvm.build(_model(build, (1, 4, 10, 10)))


def test_tvm_converter_failure_is_one_value_error_naming_the_node():
    """TVM's Resize converter raises on run-time scales; the error names the node."""
    def build(g, x):
        top = g.node("ReduceMax", [g.node("Abs", [g.node("Flatten", [x], axis=0)])], keepdims=0,
                     axes=[1])
        scales = g.node("Concat", [g.const([1.0, 1.0]), top, g.const([2.0])], axis=0)
        g.node("Resize", [x, "", scales], name="dyn_resize", mode="nearest")

    with pytest.raises(ValueError, match=r"ONNX node 'dyn_resize' \(Resize\): TVM's ONNX importer "
                                         r"failed: .*scale") as info:
        prom_tvm.build(_model(build, (1, 4, 8, 16)))
    assert info.value.__cause__ is not None  # TVM's own error stays attached for debugging


def test_dequantized_pad_value_and_wrap_mode_compile():
    """The two Pad forms TVM's importer used to reject: a DQ(Q(v)) value and mode='wrap'."""
    def build(g, x):
        y = g.node("Pad", [x, _pads(g), g.q_dq(g.const(np.float32(0.7)), 0.03, 120)])
        g.q_dq(g.node("Pad", [g.q_dq(y, 0.03, 120), _pads(g)], mode="wrap"), 0.03, 120)

    lsb, top1 = worst_agreement(_model(build, (1, 4, 12, 12), opset=19))
    assert lsb == 0 and top1
