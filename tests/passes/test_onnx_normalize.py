"""ONNX normalization before import: names, constant folding, unshared weights."""

from __future__ import annotations

import numpy as np
from qdq_graphs import QdqGraph

from prom_tvm.passes.onnx_normalize import fold_constants, name_nodes, unshare_layer_weights
from prom_tvm.reference import ExactReference


def _pad_model():
    """A torch-style pads chain (Concat/Reshape/Cast) and a DQ(Q(v)) pad value before a Conv."""
    g = QdqGraph((1, 4, 8, 8))
    x = g.q_dq("x", 0.03, 120)
    pads = g.node("Cast", [g.node("Concat", [g.const([0, 0, 1], "int64"),
                                             g.const([1, 0, 0, 1, 1], "int64")], axis=0)], to=7)
    y = g.node("Pad", [x, pads, g.q_dq(g.const(np.float32(0.5)), 0.03, 120)])
    w = g.rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    g.q_dq(g.node("Conv", [g.q_dq(y, 0.03, 120), g.weight(w)], name="conv"), 0.1, 128)
    return g.model((1, 4, 8, 8))


def test_fold_constants_folds_parameters_but_keeps_weight_dequantize():
    model = _pad_model()
    folded = fold_constants(model)
    ops = [n.op_type for n in folded.graph.node]
    assert "Concat" not in ops and "Cast" not in ops
    pad = next(n for n in folded.graph.node if n.op_type == "Pad")
    inits = {t.name for t in folded.graph.initializer}
    assert pad.input[1] in inits and pad.input[2] in inits  # pads and value are constants now
    conv = next(n for n in folded.graph.node if n.op_type == "Conv")
    weight_dq = next(n for n in folded.graph.node if n.output[0] == conv.input[1])
    assert weight_dq.op_type == "DequantizeLinear"  # the matcher needs the int8 weight
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(ExactReference(folded)(x), ExactReference(model)(x))


def test_name_nodes_and_unshare_weights():
    g = QdqGraph((1, 4, 8, 8))
    x = g.q_dq("x", 0.03, 120)
    w = g.weight(g.rng.standard_normal((4, 4, 1, 1)).astype(np.float32))
    y = g.q_dq(g.node("Conv", [x, w], name="same"), 0.05, 128)
    g.q_dq(g.node("Conv", [y, w], name="same"), 0.05, 128)  # duplicate name, shared weight
    g.nodes[1].name = ""
    model = g.model((1, 4, 8, 8))
    named = name_nodes(model)
    names = [n.name for n in named.graph.node]
    assert len(set(names)) == len(names) and all(names) and names[1] == "DequantizeLinear_1"
    out = unshare_layer_weights(named)
    convs = [n for n in out.graph.node if n.op_type == "Conv"]
    assert convs[0].input[1] != convs[1].input[1]
    producers = {o: n for n in out.graph.node for o in n.output}
    srcs = {producers[c.input[1]].input[0] for c in convs}
    assert len(srcs) == 2  # two initializers
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(ExactReference(out)(x), ExactReference(model)(x))
