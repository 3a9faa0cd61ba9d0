"""summary() names are the ONNX node names; Conv -> Clip -> Q folds into the int8 clamp;
a layer left in float says the true reason."""

from __future__ import annotations

import numpy as np
import pytest
from qdq_graphs import QdqGraph, lowered, op_dtypes, worst_agreement

import prom_tvm


def _conv(g, x, w, name, bias=True):
    ins = [x, g.weight(w)]
    if bias:
        ins.append(g.const(np.linspace(-0.2, 0.2, w.shape[0])))
    return g.node("Conv", ins, name=name, kernel_shape=list(w.shape[2:]),
                  pads=[1, 1, 1, 1] if w.shape[2] == 3 else [0, 0, 0, 0])


def test_identical_weights_shared_initializer_and_matmul_keep_their_node_names():
    g = QdqGraph((1, 4, 8, 8))
    w = g.rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3
    x = g.q_dq("x", 0.03, 128)
    x = g.q_dq(_conv(g, x, w, "conv_a"), 0.05, 128)
    x = g.q_dq(_conv(g, x, w, "conv_b"), 0.05, 128)  # same values, own initializer
    # a third conv reads conv_b's weight DQ output itself (one initializer, two nodes)
    shared = [n for n in g.nodes if n.op_type == "Conv"][-1].input[1]
    x = g.q_dq(g.node("Conv", [x, shared], name="conv_c", kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1]), 0.05, 128)
    x = g.q_dq(g.node("Flatten", [x], axis=1), 0.05, 128)
    mm_w = g.rng.standard_normal((256, 10)).astype(np.float32) * 0.05
    g.q_dq(g.node("MatMul", [x, g.weight(mm_w, axis=1)], name="head_matmul"), 0.1, 128)
    model = g.model((1, 10))
    lib = prom_tvm.build(model)
    rows = [(r["name"], r["op"], r["kernel"]) for r in lib.summary()]
    assert rows == [("conv_a", "Conv", "int8"), ("conv_b", "Conv", "int8"),
                    ("conv_c", "Conv", "int8"), ("head_matmul", "MatMul", "int8")]
    lsb, top1 = worst_agreement(model, lib)
    assert lsb <= 1 and top1


@pytest.mark.parametrize("kept_qdq", [False, True], ids=["clip-before-q", "q-dq-clip-q"])
def test_conv_clip_quantize_is_int8(kept_qdq):
    """Conv -> Clip(0, 6) -> Q, and Conv -> Q -> DQ -> Clip -> Q (QDQKeepRemovableActivations)."""
    g = QdqGraph((1, 4, 8, 8))
    w = g.rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.4
    y = _conv(g, g.q_dq("x", 0.03, 128), w, "conv")
    if kept_qdq:
        y = g.q_dq(y, 0.04, 100)
    y = g.node("Clip", [y, g.const(0.0), g.const(6.0)])
    g.q_dq(y, 0.04 if kept_qdq else 6 / 255, 100 if kept_qdq else 0)
    model = g.model((1, 8, 8, 8))
    mod, layers = lowered(model)
    assert [(r.name, r.kernel) for r in layers] == [("conv", "int8")]
    if kept_qdq:  # the kept Clip clamps the integer tensor
        assert set(op_dtypes(mod, "maximum") + op_dtypes(mod, "minimum")) == {"uint8"}
    else:  # folded into the conv's output clamp
        assert not op_dtypes(mod, "maximum") and not op_dtypes(mod, "minimum")
    lsb, top1 = worst_agreement(model)
    assert lsb <= 1 and top1  # one int8 conv: its requantization may round a tie the other way


def test_float_layers_give_the_true_reason():
    g = QdqGraph((1, 4, 8, 8))
    w = g.rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3
    x = _conv(g, "x", w, "float_input_conv")  # float input, quantized output
    x = g.q_dq(x, 0.05, 128)
    x = g.node("Sigmoid", [_conv(g, x, w, "sigmoid_conv")])  # float op before the Q
    g.q_dq(x, 1 / 255, 0)
    _, layers = lowered(g.model((1, 4, 8, 8)))
    reasons = {r.name: r.details["reason"] for r in layers}
    assert [r.kernel for r in layers] == ["float", "float"]
    assert "not a DequantizeLinear output" in reasons["float_input_conv"]
    assert "output is not quantized" in reasons["sigmoid_conv"]
