"""Checks on an exported QDQ ONNX model shared by the qat tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def producers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: n for n in proto.graph.node for out in n.output}


def conv_weight_codes(proto: onnx.ModelProto) -> dict[str, tuple[onnx.NodeProto, np.ndarray]]:
    """Each Conv / Gemm node name -> (node, integer weight codes), asserting the QDQ layout.

    Layout: the weight comes from ``DequantizeLinear(int8 initializer, float32 scale [Cout],
    int8 zero point 0, axis=0)``; the activation from a ``DequantizeLinear``; the bias (if any)
    from ``DequantizeLinear(int32, scale == x_scale * w_scale in float32, 0, axis=0)``.
    """
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    made_by = producers(proto)
    out = {}
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        x_dq, w_dq = made_by[node.input[0]], made_by[node.input[1]]
        assert x_dq.op_type == "DequantizeLinear", node.name
        assert w_dq.op_type == "DequantizeLinear", node.name
        codes, w_scale, w_zp = (inits[i] for i in w_dq.input)
        axis = {a.name: a.i for a in w_dq.attribute}.get("axis", 1)
        assert codes.dtype == np.int8 and w_zp.dtype == np.int8 and not w_zp.any()
        assert axis == 0 and w_scale.dtype == np.float32 and w_scale.shape == (codes.shape[0],)
        if len(node.input) > 2 and node.input[2]:
            b_dq = made_by[node.input[2]]
            b_codes, b_scale, b_zp = (inits[i] for i in b_dq.input)
            x_scale = inits[x_dq.input[1]]
            assert b_codes.dtype == np.int32 and b_zp.dtype == np.int32 and not b_zp.any()
            np.testing.assert_array_equal(b_scale, (x_scale * w_scale).astype(np.float32))
        out[node.name] = (node, codes)
    return out


def check_prom_weights(proto: onnx.ModelProto) -> tuple[int, int]:
    """Every 1x1 group-1 conv is ternary, every other conv / gemm int8; returns the counts."""
    ternary = int8 = 0
    for name, (node, codes) in conv_weight_codes(proto).items():
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        pointwise = node.op_type == "Conv" and codes.shape[2:] == (1, 1) and attrs.get(
            "group", 1) == 1
        if pointwise:
            assert set(np.unique(codes)) <= {-1, 0, 1}, name
            ternary += 1
        else:
            assert codes.min() >= -127, name
            # int8 per-channel symmetric: each channel's largest code is 127 in magnitude
            assert np.all(np.abs(codes.reshape(codes.shape[0], -1)).max(1) == 127), name
            int8 += 1
    return ternary, int8


def check_residual_adds_quantized(proto: onnx.ModelProto) -> int:
    """Every Add reads two DequantizeLinear outputs and feeds one QuantizeLinear."""
    made_by = producers(proto)
    users = {}
    for n in proto.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    adds = [n for n in proto.graph.node if n.op_type == "Add"]
    for add in adds:
        assert [made_by[i].op_type for i in add.input] == ["DequantizeLinear"] * 2, add.name
        assert [u.op_type for u in users[add.output[0]]] == ["QuantizeLinear"], add.name
    return len(adds)
