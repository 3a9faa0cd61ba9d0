"""One quantized op at a time, as quantize_static wraps it: DQ -> op -> Q.

Data movement (Pad in every mode and with any value, MaxPool, nearest Resize, Concat of equal
scales, Reshape / Flatten / Transpose / Squeeze) must run on the integer tensor and be
bit-exact; the rest (average pools, Sigmoid, HardSigmoid, HardSwish, Mul, Concat of different
scales, linear Resize) stays float and is within 1 LSB (one float32 vs float64 rounding tie
before the final QuantizeLinear).
"""

from __future__ import annotations

import pytest
from qdq_graphs import QdqGraph, lowered, op_dtypes, worst_agreement

S, Z = 0.03, 120  # input quantization (uint8)


def _graph(opset=17):
    g = QdqGraph((1, 4, 8, 8), opset=opset)
    return g, g.q_dq("x", S, Z)


def _pad(mode, value=None, opset=17):
    g, x = _graph(opset)
    ins = [x, g.const([0, 0, 1, 2, 0, 0, 2, 1], "int64")]
    if value is not None:  # onnxruntime quantizes the pad value: DQ(Q(v))
        ins.append(g.q_dq(g.const(value), S, Z))
    y = g.node("Pad", ins, mode=mode)
    g.q_dq(y, S, Z)
    return g.model((1, 4, 11, 11)), "nn.pad"


def _maxpool():
    g, x = _graph()
    g.q_dq(g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), S, Z)
    return g.model((1, 4, 4, 4)), "nn.max_pool2d"


def _resize(mode):
    g, x = _graph()
    y = g.node("Resize", [x, "", g.const([1, 1, 2, 2])], mode=mode,
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    g.q_dq(y, S, Z)
    return g.model((1, 4, 16, 16)), "image.resize2d"


def _concat(other_scale):
    g, x = _graph()
    x2 = g.q_dq("x", other_scale, Z)
    g.q_dq(g.node("Concat", [x, x2], axis=1), S, Z)
    return g.model((1, 8, 8, 8)), "concat"


def _reshape_like(op):
    g, x = _graph()
    if op == "Flatten":
        y, shape, name = g.node("Flatten", [x], axis=1), (1, 256), "reshape"
    elif op == "Transpose":
        y, shape, name = g.node("Transpose", [x], perm=[0, 2, 3, 1]), (1, 8, 8, 4), "permute_dims"
    elif op == "Reshape":
        y = g.node("Reshape", [x, g.const([1, 4, 64], "int64")])
        shape, name = (1, 4, 64), "reshape"
    elif op == "Slice":
        starts, ends = g.const([1, 2], "int64"), g.const([3, 8], "int64")
        y = g.node("Slice", [x, starts, ends, g.const([1, 3], "int64"), g.const([1, 2], "int64")])
        shape, name = (1, 2, 8, 3), "strided_slice"
    elif op == "Unsqueeze":
        y = g.node("Unsqueeze", [x, g.const([0], "int64")])
        shape, name = (1, 1, 4, 8, 8), "expand_dims"
    else:  # Squeeze of a pooled tensor
        x = g.q_dq(g.node("MaxPool", [x], kernel_shape=[8, 8]), S, Z)
        y, shape, name = g.node("Squeeze", [x, g.const([2, 3], "int64")]), (1, 4), "squeeze"
    g.q_dq(y, S, Z)
    return g.model(shape), name


def _identity():
    g, x = _graph()
    g.q_dq(g.node("Identity", [x]), S, Z)
    return g.model((1, 4, 8, 8)), "dequantize"


INTEGER = {
    "pad-zero": lambda: _pad("constant"),
    "pad-value": lambda: _pad("constant", 0.5),
    "pad-value-saturating": lambda: _pad("constant", 100.0),
    "pad-reflect": lambda: _pad("reflect"),
    "pad-edge": lambda: _pad("edge"),
    "pad-wrap": lambda: _pad("wrap", opset=19),
    "maxpool": _maxpool,
    "resize-nearest": lambda: _resize("nearest"),
    "concat-same-scale": lambda: _concat(S),
    "flatten": lambda: _reshape_like("Flatten"),
    "transpose": lambda: _reshape_like("Transpose"),
    "reshape": lambda: _reshape_like("Reshape"),
    "squeeze": lambda: _reshape_like("Squeeze"),
    "slice": lambda: _reshape_like("Slice"),
    "unsqueeze": lambda: _reshape_like("Unsqueeze"),
    "identity": _identity,
}


@pytest.mark.parametrize("case", sorted(INTEGER))
def test_data_movement_is_integer_and_exact(case):
    model, op = INTEGER[case]()
    mod, _ = lowered(model)
    if op == "dequantize":  # Q(DQ(x)) is x: only the graph output's DQ is left
        assert len(op_dtypes(mod, "dequantize")) == 1 and len(op_dtypes(mod, "quantize")) == 1
    else:
        dtypes = op_dtypes(mod, op)
        assert dtypes and set(dtypes) == {"uint8"}, (case, dtypes)
    assert worst_agreement(model) == (0, True)


def _unary(op, out_scale=0.004, out_zp=0, **attrs):
    g, x = _graph()
    g.q_dq(g.node(op, [x], **attrs), out_scale, out_zp)
    shape = (1, 4, 1, 1) if op == "GlobalAveragePool" else (1, 4, 4, 4) if "Pool" in op else (
        1, 4, 8, 8)
    return g.model(shape)


def _mul():
    g, x = _graph()
    s = g.q_dq(g.node("Sigmoid", [x]), 1 / 255, 0)
    g.q_dq(g.node("Mul", [x, s]), 0.02, 100)
    return g.model((1, 4, 8, 8))


FLOAT = {
    "averagepool": lambda: _unary("AveragePool", S, Z, kernel_shape=[2, 2], strides=[2, 2]),
    "globalaveragepool": lambda: _unary("GlobalAveragePool", S, Z),
    "sigmoid": lambda: _unary("Sigmoid", 1 / 255, 0),
    "hardsigmoid": lambda: _unary("HardSigmoid", 1 / 255, 0),
    "hardswish": lambda: _unary("HardSwish", 0.02, 30),
    "mul": _mul,
    "concat-other-scale": lambda: _concat(2 * S)[0],
    "resize-linear": lambda: _resize("linear")[0],
}


@pytest.mark.parametrize("case", sorted(FLOAT))
def test_float_ops_match_within_one_lsb(case):
    model = FLOAT[case]()
    lsb, top1 = worst_agreement(model)
    assert lsb <= 1 and top1, (case, lsb)
    if case.startswith(("concat", "resize")):  # they stay float: scales differ / interpolate
        mod, _ = lowered(model)
        op = "concat" if case.startswith("concat") else "image.resize2d"
        assert set(op_dtypes(mod, op)) == {"float32"}
