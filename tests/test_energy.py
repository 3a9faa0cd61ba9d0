"""prom_tvm.energy: counts, kinds, energy and storage against hand-derived formulas."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from prom_tvm.energy import ENERGY_PJ, CostModel, analyze_model
from prom_tvm.energy_layers import is_ternary_per_channel

FP16_MAC = 1.1 + 0.4  # the paper's float16 baseline: one fp16 multiply + one fp16 add
INT8_MAC = 0.2 + 0.1  # int8 multiply + int32 accumulate (the report's default)
TERNARY_MAC = 0.03  # one int8 add (the paper's convention)


# ---------------------------------------------------------------------------------------------
# Small models built with onnx.helper
# ---------------------------------------------------------------------------------------------


class _Net:
    """A tiny graph builder: quantized input, then layers, in QDQ form."""

    def __init__(self, shape: tuple, quantize_input: bool = True, batch=None) -> None:
        self.nodes: list = []
        self.inits: list = []
        dims = list(shape) if batch is None else [batch, *shape[1:]]
        self.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
        self.x = "x"
        self.n = 0
        if quantize_input:
            self.x = self.qdq("x")

    def const(self, arr: np.ndarray, name: str | None = None) -> str:
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def qdq(self, t: str) -> str:
        s = self.const(np.array(0.05, np.float32))
        zp = self.const(np.array(128, np.uint8))
        self.nodes.append(helper.make_node("QuantizeLinear", [t, s, zp], [t + "_q"]))
        self.nodes.append(helper.make_node("DequantizeLinear", [t + "_q", s, zp], [t + "_dq"]))
        return t + "_dq"

    def dq_weight(self, q: np.ndarray, scale: np.ndarray, axis: int = 0) -> str:
        zp = self.const(np.zeros(scale.shape, np.int8))
        qn, sn = self.const(q.astype(np.int8)), self.const(scale.astype(np.float32))
        out = f"w{self.n}"
        self.nodes.append(helper.make_node("DequantizeLinear", [qn, sn, zp], [out], axis=axis))
        return out

    def dq_bias(self, n: int) -> str:
        b = self.const(np.arange(n, dtype=np.int32))
        s = self.const(np.full(n, 0.001, np.float32))
        out = f"b{self.n}"
        self.nodes.append(helper.make_node("DequantizeLinear", [b, s], [out], axis=0))
        return out

    def layer(self, op: str, w: str, b: str | None, quantize_output=True, **attrs) -> str:
        self.n += 1
        out = f"{op.lower()}{self.n}"
        ins = [self.x, w] + ([b] if b else [])
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        self.x = self.qdq(out) if quantize_output else out
        return out

    def model(self) -> onnx.ModelProto:
        y = helper.make_tensor_value_info(self.x, TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, "net", self.inputs, [y], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ternary(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.integers(-1, 2, size=shape).astype(np.int8)


def _conv_out(h: int, k: int, s: int, p: int, d: int) -> int:
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def test_energy_table_is_horowitz_isscc_2014():
    # The numbers the paper relies on (Horowitz, ISSCC 2014, 45 nm), as the issue lists them.
    assert ENERGY_PJ == {
        "int8": {"add": 0.03, "mult": 0.2},
        "int32": {"add": 0.1, "mult": 3.1},
        "fp16": {"add": 0.4, "mult": 1.1},
        "fp32": {"add": 0.9, "mult": 3.7},
    }


# ---------------------------------------------------------------------------------------------
# One conv: MACs, kind, energy, storage for any shape
# ---------------------------------------------------------------------------------------------


@st.composite
def _conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    cin_g = draw(st.sampled_from([1, 2, 3, 8]))
    cout_g = draw(st.sampled_from([1, 2, 5]))
    if draw(st.booleans()):  # depthwise, optionally with a channel multiplier
        groups, cin_g = draw(st.sampled_from([3, 8])), 1
    kh, kw = draw(st.sampled_from([(1, 1), (1, 1), (3, 3), (1, 3), (5, 5)]))
    stride = draw(st.sampled_from([1, 2]))
    pad = draw(st.sampled_from([0, 1]))
    dil = draw(st.sampled_from([1, 1, 2]))
    h = draw(st.integers(dil * (kh - 1) + 1, 12))
    w = draw(st.integers(dil * (kw - 1) + 1, 12))
    return {
        "n": draw(st.integers(1, 2)),
        "cin": cin_g * groups,
        "cout": cout_g * groups,
        "groups": groups,
        "k": (kh, kw),
        "stride": stride,
        "pad": pad,
        "dil": dil,
        "hw": (h, w),
        "encoding": draw(st.sampled_from(["pm1", "pm127", "float", "int8"])),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=30, deadline=None)
@given(_conv_case())
def test_conv_counts_match_formulas(case):
    rng = np.random.default_rng(case["seed"])
    cout, cin, g = case["cout"], case["cin"], case["groups"]
    (kh, kw), (h, w) = case["k"], case["hw"]
    s, p, d = case["stride"], case["pad"], case["dil"]
    wshape = (cout, cin // g, kh, kw)
    net = _Net((case["n"], cin, h, w))
    scale = rng.uniform(0.01, 0.1, cout)
    enc = case["encoding"]
    if enc == "int8":
        q = rng.integers(-128, 128, wshape)
        weight = net.dq_weight(q, scale)
    elif enc == "float":  # ternary values as plain float initializers
        values = _ternary(rng, wshape) * scale.reshape(-1, 1, 1, 1)
        weight = net.const(values.astype(np.float32))
    else:
        weight = net.dq_weight(_ternary(rng, wshape) * (127 if enc == "pm127" else 1), scale)
    net.layer(
        "Conv",
        weight,
        net.dq_bias(cout),
        group=g,
        kernel_shape=[kh, kw],
        strides=[s, s],
        pads=[p, p, p, p],
        dilations=[d, d],
    )
    r = analyze_model(net.model())
    (layer,) = r["layers"]

    ho, wo = _conv_out(h, kh, s, p, d), _conv_out(w, kw, s, p, d)
    macs = case["n"] * cout * (cin // g) * kh * kw * ho * wo
    depthwise = g > 1 and cin // g == 1
    # int8 weights can be ternary by chance (e.g. one weight per output channel)
    ternary = enc != "int8" or all(
        len(set(np.abs(ch[ch != 0]).tolist())) <= 1 for ch in q.reshape(cout, -1)
    )
    one_by_one = (kh, kw) == (1, 1)
    if enc == "float" and not (one_by_one and not depthwise):
        kind = "float"  # plain float weights are integer arithmetic only as ternary 1x1
    elif depthwise:
        kind = "depthwise"
    elif one_by_one and ternary:
        kind = "ternary-1x1"
    else:
        kind = "int8-conv"
    assert layer["kind"] == kind
    assert layer["macs"] == macs
    assert layer["output_shape"] == [case["n"], cout, ho, wo]
    assert layer["weights"] == math.prod(wshape)
    assert layer["params"] == math.prod(wshape) + cout
    assert layer["weights_ternary"] == ternary
    if kind == "ternary-1x1":
        assert (layer["multiplications"], layer["addition_dtype"]) == (0, "int8")
        assert layer["energy_pj"] == pytest.approx(macs * TERNARY_MAC, rel=1e-12)
        weight_bits = 2
    elif kind == "float":
        assert (layer["multiplication_dtype"], layer["addition_dtype"]) == ("fp32", "fp32")
        assert layer["energy_pj"] == pytest.approx(macs * (3.7 + 0.9), rel=1e-12)
        weight_bits = 32
    else:
        assert (layer["multiplication_dtype"], layer["addition_dtype"]) == ("int8", "int32")
        assert layer["multiplications"] == layer["additions"] == macs
        assert layer["energy_pj"] == pytest.approx(macs * INT8_MAC, rel=1e-12)
        weight_bits = 8
    assert layer["fp16_energy_pj"] == pytest.approx(macs * FP16_MAC, rel=1e-12)
    # weights, int32 biases, and what quantizes the weights: a float32 scale per channel
    # (plus an int8 zero point per channel when the weights come through DequantizeLinear)
    if enc != "float":
        side = cout * (32 + 8)
    elif kind == "ternary-1x1":
        side = cout * 32  # the scale a_c that ternary float weights imply
    else:
        side = 0
    assert layer["param_bits"] == math.prod(wshape) * weight_bits + cout * 32 + side
    assert layer["fp16_param_bits"] == (math.prod(wshape) + cout) * 16


def test_ternary_detection_is_exact():
    rng = np.random.default_rng(0)
    t = _ternary(rng, (6, 5, 1, 1)).astype(np.float64) * rng.uniform(0.1, 1, (6, 1, 1, 1))
    t[:, 0, 0, 0] = np.abs(t).max(axis=(1, 2, 3))  # every channel has a nonzero
    assert is_ternary_per_channel(t)
    assert is_ternary_per_channel(np.zeros((2, 3)))  # all-zero channels are {-a, 0, a}
    nudged = t.copy()
    nudged[2, 0, 0, 0] = np.nextafter(nudged[2, 0, 0, 0], np.inf)  # one ulp off
    assert not is_ternary_per_channel(nudged)
    # the per-channel magnitude may differ between channels, not within one
    mixed = np.array([[1.0, -1.0, 0.0], [2.0, 0.0, -2.0], [3.0, 3.0, 1.5]])
    assert is_ternary_per_channel(mixed[:2])
    assert not is_ternary_per_channel(mixed)
    assert is_ternary_per_channel(mixed[:2].T, axis=1)


def test_nearly_ternary_weights_are_int8_or_float():
    rng = np.random.default_rng(1)
    q = _ternary(rng, (8, 4, 1, 1))
    q[3, :, 0, 0] = [1, -1, 2, 0]  # one channel with a 2: not ternary
    net = _Net((1, 4, 5, 5))
    net.layer("Conv", net.dq_weight(q, np.full(8, 0.1)), None)
    assert analyze_model(net.model())["layers"][0]["kind"] == "int8-conv"

    w = (_ternary(rng, (8, 4, 1, 1)) * 0.25).astype(np.float32)
    w[5, :, 0, 0] = [0.25, -0.25, np.nextafter(np.float32(0.25), np.float32(1)), 0]
    net = _Net((1, 4, 5, 5))
    net.layer("Conv", net.const(w), None)
    layer = analyze_model(net.model())["layers"][0]
    assert (layer["kind"], layer["weights_ternary"]) == ("float", False)


def test_ternary_3x3_is_costed_as_int8_and_said_so():
    net = _Net((1, 4, 8, 8))
    net.layer(
        "Conv",
        net.dq_weight(_ternary(np.random.default_rng(2), (4, 4, 3, 3)), np.full(4, 0.1)),
        None,
        kernel_shape=[3, 3],
    )
    r = analyze_model(net.model())
    assert r["layers"][0]["kind"] == "int8-conv"
    assert r["layers"][0]["weights_ternary"]
    assert any("ternary weights" in a and "int8" in a for a in r["assumptions"])


# ---------------------------------------------------------------------------------------------
# Dense layers, weight resolution, shapes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_counts(trans_b):
    m, k, n = 3, 20, 7
    rng = np.random.default_rng(3)
    net = _Net((m, k))
    wshape = (n, k) if trans_b else (k, n)
    weight = net.dq_weight(
        rng.integers(-128, 128, wshape), rng.uniform(0.01, 0.1, n), axis=0 if trans_b else 1
    )
    net.layer("Gemm", weight, net.dq_bias(n), transB=trans_b)
    (layer,) = analyze_model(net.model())["layers"]
    assert layer["kind"] == "dense"
    assert layer["macs"] == m * k * n
    assert layer["params"] == k * n + n
    assert layer["energy_pj"] == pytest.approx(m * k * n * INT8_MAC, rel=1e-12)


def test_matmul_weight_through_constant_node_reshape_identity_transpose():
    """int8 data from a Constant node, reshaped and transposed before its DequantizeLinear."""
    rng = np.random.default_rng(4)
    batch, m, k, n = 2, 3, 6, 4
    net = _Net((batch, m, k))
    q = rng.integers(-128, 128, (n * k,)).astype(np.int8)
    net.nodes.append(helper.make_node("Constant", [], ["qflat"], value=numpy_helper.from_array(q)))
    shape = net.const(np.array([n, k], np.int64))
    net.nodes.append(helper.make_node("Reshape", ["qflat", shape], ["q_nk"]))
    net.nodes.append(helper.make_node("Identity", ["q_nk"], ["q_id"]))
    net.nodes.append(helper.make_node("Transpose", ["q_id"], ["q_kn"], perm=[1, 0]))
    scale = net.const(np.array(0.02, np.float32))
    net.nodes.append(helper.make_node("DequantizeLinear", ["q_kn", scale], ["w_kn"]))
    net.layer("MatMul", "w_kn", None)
    (layer,) = analyze_model(net.model())["layers"]
    assert layer["kind"] == "dense"
    assert layer["macs"] == batch * m * k * n
    assert (layer["weights"], layer["weight_storage_bits"]) == (k * n, 8)
    assert layer["energy_pj"] == pytest.approx(batch * m * k * n * INT8_MAC, rel=1e-12)


def test_matmul_of_two_activations_has_no_parameters():
    net = _Net((1, 5, 7))
    other = net.x
    net.nodes.append(helper.make_node("Transpose", [other], ["xt"], perm=[0, 2, 1]))
    net.layer("MatMul", "xt", None)  # (1,5,7) x (1,7,5): both operands quantized activations
    (layer,) = analyze_model(net.model())["layers"]
    assert (layer["kind"], layer["macs"], layer["params"]) == ("dense", 5 * 7 * 5, 0)


def test_constant_node_weight_and_reshape_resolve_to_int8():
    rng = np.random.default_rng(5)
    net = _Net((1, 8, 4, 4))
    q = _ternary(rng, (16, 8))
    net.nodes.append(helper.make_node("Constant", [], ["q"], value=numpy_helper.from_array(q, "q")))
    s = net.const(np.full(16, 0.05, np.float32))
    net.nodes.append(helper.make_node("DequantizeLinear", ["q", s], ["w2d"], axis=0))
    shape = net.const(np.array([16, 8, 1, 1], np.int64))
    net.nodes.append(helper.make_node("Reshape", ["w2d", shape], ["w4d"]))
    net.nodes.append(helper.make_node("Identity", ["w4d"], ["w"]))
    net.layer("Conv", "w", None)
    (layer,) = analyze_model(net.model())["layers"]
    assert layer["kind"] == "ternary-1x1"
    assert layer["macs"] == 16 * 8 * 4 * 4


def test_dynamic_batch_is_taken_as_one_and_said():
    rng = np.random.default_rng(6)
    net = _Net((1, 4, 6, 6), batch="N")
    net.layer("Conv", net.dq_weight(_ternary(rng, (8, 4, 1, 1)), np.full(8, 0.1)), None)
    r = analyze_model(net.model())
    assert r["layers"][0]["macs"] == 8 * 4 * 6 * 6
    assert r["input_shapes"] == {"x": [1, 4, 6, 6]}
    assert any("dynamic batch" in a and "'x'" in a for a in r["assumptions"])


def test_dynamic_spatial_dimension_is_an_error_naming_the_input():
    net = _Net((1, 4, 6, 6))
    net.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "H", 6])]
    net.layer("Conv", net.dq_weight(np.ones((8, 4, 1, 1)), np.full(8, 0.1)), None)
    with pytest.raises(ValueError, match=r"input 'x' dimension 2 is dynamic \(H\)"):
        analyze_model(net.model())


# ---------------------------------------------------------------------------------------------
# Float models, weight-only quantization
# ---------------------------------------------------------------------------------------------


def _float_net(ternary_1x1: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    net = _Net((1, 3, 16, 16), quantize_input=False)
    w0 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    net.layer(
        "Conv",
        net.const(w0),
        net.const(np.zeros(8, np.float32)),
        quantize_output=False,
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    w1 = _ternary(rng, (16, 8, 1, 1)) * 0.5 if ternary_1x1 else rng.standard_normal((16, 8, 1, 1))
    net.layer("Conv", net.const(w1.astype(np.float32)), None, quantize_output=False)
    return net.model()


@pytest.mark.parametrize("ternary_1x1", [False, True])
def test_float_model_gets_a_float_report(ternary_1x1):
    r = analyze_model(_float_net(ternary_1x1))
    macs = 8 * 3 * 9 * 16 * 16 + 16 * 8 * 16 * 16
    assert [layer["kind"] for layer in r["layers"]] == ["float", "float"]
    assert r["layers"][1]["weights_ternary"] == ternary_1x1  # seen, yet not quantized: float
    assert r["totals"]["macs"] == macs
    assert r["total_energy_pj"] == pytest.approx(macs * (3.7 + 0.9), rel=1e-12)
    assert r["energy_ratio_vs_fp16"] == pytest.approx(FP16_MAC / (3.7 + 0.9), rel=1e-12)
    assert r["storage_ratio_vs_fp16"] == pytest.approx(0.5, rel=1e-12)  # float32 vs float16
    as_fp16 = analyze_model(_float_net(ternary_1x1), CostModel(float_dtype="fp16"))
    assert as_fp16["energy_ratio_vs_fp16"] == pytest.approx(1.0, rel=1e-12)


def test_weight_only_quantized_layer_computes_in_float_but_stores_int8():
    net = _Net((1, 4, 6, 6), quantize_input=False)
    net.layer("Conv", net.dq_weight(np.ones((8, 4, 1, 1)), np.full(8, 0.1)), None)
    (layer,) = analyze_model(net.model())["layers"]
    assert layer["kind"] == "float"
    assert layer["weight_storage_bits"] == 8


# ---------------------------------------------------------------------------------------------
# A whole small network by hand
# ---------------------------------------------------------------------------------------------


def _small_prom_net() -> tuple[onnx.ModelProto, dict]:
    """3x3 stem (int8) -> depthwise (int8) -> ternary 1x1 -> pool -> Gemm (int8)."""
    rng = np.random.default_rng(8)
    net = _Net((1, 3, 16, 16))
    net.layer(
        "Conv",
        net.dq_weight(rng.integers(-128, 128, (8, 3, 3, 3)), np.full(8, 0.01)),
        net.dq_bias(8),
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    )
    net.layer(
        "Conv",
        net.dq_weight(rng.integers(-128, 128, (8, 1, 3, 3)), np.full(8, 0.01)),
        net.dq_bias(8),
        group=8,
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    net.layer(
        "Conv",
        net.dq_weight(_ternary(rng, (24, 8, 1, 1)) * 127, np.full(24, 0.01)),
        net.dq_bias(24),
    )
    net.nodes.append(helper.make_node("GlobalAveragePool", [net.x], ["pool"]))
    net.nodes.append(helper.make_node("Flatten", ["pool"], ["flat"]))
    net.x = net.qdq("flat")
    net.layer(
        "Gemm",
        net.dq_weight(rng.integers(-128, 128, (10, 24)), np.full(10, 0.01)),
        net.dq_bias(10),
        transB=1,
    )
    macs = {
        "int8": 8 * 3 * 9 * 8 * 8 + 8 * 1 * 9 * 8 * 8 + 24 * 10,
        "ternary": 24 * 8 * 8 * 8,
    }
    return net.model(), macs


def test_small_network_totals_by_hand():
    model, macs = _small_prom_net()
    r = analyze_model(model)
    assert [layer["kind"] for layer in r["layers"]] == [
        "int8-conv",
        "depthwise",
        "ternary-1x1",
        "dense",
    ]
    assert r["totals"]["macs"] == macs["int8"] + macs["ternary"]
    assert r["totals"]["additions"] == {"int32": macs["int8"], "int8": macs["ternary"]}
    assert r["totals"]["multiplications"] == {"int8": macs["int8"]}
    energy = macs["int8"] * INT8_MAC + macs["ternary"] * TERNARY_MAC
    fp16 = (macs["int8"] + macs["ternary"]) * FP16_MAC
    assert r["total_energy_pj"] == pytest.approx(energy, rel=1e-12)
    assert r["fp16_energy_pj"] == pytest.approx(fp16, rel=1e-12)
    assert r["energy_ratio_vs_fp16"] == pytest.approx(fp16 / energy, rel=1e-12)

    weights = {"int8": 8 * 27 + 8 * 9 + 10 * 24, "ternary": 24 * 8}
    channels = 8 + 8 + 24 + 10  # one int32 bias, float32 scale and int8 zero point each
    bits = weights["int8"] * 8 + weights["ternary"] * 2 + channels * (32 + 32 + 8)
    assert r["storage_bits"] == bits
    assert r["fp16_storage_bits"] == (weights["int8"] + weights["ternary"] + channels) * 16
    assert r["storage_ratio_vs_fp16"] == pytest.approx(r["fp16_storage_bits"] / bits)
    w_ratio = 16 * sum(weights.values()) / (weights["int8"] * 8 + weights["ternary"] * 2)
    assert r["weight_storage_ratio_vs_fp16"] == pytest.approx(w_ratio, rel=1e-12)

    assert json.loads(json.dumps(r)) == r  # plain JSON types only
    for key in (
        "total_energy_pj",
        "fp16_energy_pj",
        "layers",
        "assumptions",
        "energy_ratio_vs_fp16",
        "storage_ratio_vs_fp16",
    ):
        assert key in r
    assert all(isinstance(a, str) and a for a in r["assumptions"])


def test_cost_model_choices_change_the_energy_as_documented():
    model, macs = _small_prom_net()
    r = analyze_model(model, CostModel(int8_accumulate="int8", ternary_accumulate="int32"))
    energy = macs["int8"] * (0.2 + 0.03) + macs["ternary"] * 0.1
    assert r["total_energy_pj"] == pytest.approx(energy, rel=1e-12)
    unpacked = analyze_model(model, CostModel(ternary_storage_bits=8))
    assert unpacked["layers"][2]["weight_storage_bits"] == 8
    assert unpacked["weight_storage_ratio_vs_fp16"] == pytest.approx(2.0)
    assert any("int8 add" in a and "optimistic" in a for a in r["assumptions"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"int8_accumulate": "int16"},
        {"ternary_accumulate": "fp16"},
        {"float_dtype": "bf16"},
        {"ternary_storage_bits": 0},
    ],
)
def test_cost_model_rejects_unknown_choices(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        CostModel(**kwargs)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_missing_file_and_non_onnx_file_are_named(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        analyze_model(missing)
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a protobuf\n")
    with pytest.raises(ValueError, match=re.escape(f"{junk} is not an ONNX model")):
        analyze_model(junk)


def test_model_without_layers_is_an_error():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    with pytest.raises(ValueError, match="no Conv, Gemm or MatMul"):
        analyze_model(helper.make_model(graph))


# ---------------------------------------------------------------------------------------------
# MobileNetV2 at 224: the paper's network
# ---------------------------------------------------------------------------------------------


def _mobilenet_v2_macs() -> dict[str, int]:
    """MACs of torchvision's MobileNetV2 (224, width 1) by kind, from its layer table."""
    from prom_tvm.models.mobilenet_v2_onnx import INVERTED_RESIDUAL_SETTING

    h = 112
    macs = {"first": 32 * 3 * 9 * h * h, "depthwise": 0, "pointwise": 0}
    cin = 32
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            hidden = cin * t
            if t != 1:
                macs["pointwise"] += hidden * cin * h * h
            h //= s if i == 0 else 1
            macs["depthwise"] += hidden * 9 * h * h
            macs["pointwise"] += c * hidden * h * h
            cin = c
    macs["pointwise"] += 1280 * cin * h * h  # last 1x1 conv, 320 -> 1280 at 7x7
    macs["classifier"] = 1280 * 1000
    return macs


@pytest.fixture(scope="module")
def prom_mobilenet_v2():
    pytest.importorskip("onnxruntime")
    from prom_tvm.models import mobilenet_v2_qdq

    return mobilenet_v2_qdq(input_size=224, calibration=1)


def test_prom_mobilenet_v2_energy_ratio_near_the_paper(prom_mobilenet_v2):
    r = analyze_model(prom_mobilenet_v2)
    m = _mobilenet_v2_macs()
    total = sum(m.values())
    assert 300e6 < total < 301e6  # MobileNetV2's published 300M MACs
    assert r["totals"]["macs"] == total
    kinds = r["totals"]["by_kind"]
    assert kinds["ternary-1x1"]["macs"] == m["pointwise"]
    assert kinds["depthwise"]["macs"] == m["depthwise"]
    assert kinds["int8-conv"]["macs"] == m["first"]
    assert kinds["dense"]["macs"] == m["classifier"]
    int8_macs = total - m["pointwise"]
    expected = total * FP16_MAC / (m["pointwise"] * TERNARY_MAC + int8_macs * INT8_MAC)
    assert r["energy_ratio_vs_fp16"] == pytest.approx(expected, rel=1e-12)
    assert 20 <= r["energy_ratio_vs_fp16"] <= 30  # the paper: 23.9x

    optimistic = analyze_model(prom_mobilenet_v2, CostModel(int8_accumulate="int8"))
    expected = total * FP16_MAC / (m["pointwise"] * TERNARY_MAC + int8_macs * (0.2 + 0.03))
    assert optimistic["energy_ratio_vs_fp16"] == pytest.approx(expected, rel=1e-12)
    assert 20 <= optimistic["energy_ratio_vs_fp16"] <= 30


def test_prom_mobilenet_v2_storage(prom_mobilenet_v2):
    r = analyze_model(prom_mobilenet_v2)
    conv_w = {k: 0 for k in ("ternary", "int8")}
    for layer in r["layers"]:
        shape = next(
            t.dims
            for t in prom_mobilenet_v2.graph.initializer
            if t.name == f"{layer['name']}.weight_quantized"
        )
        kind = "ternary" if layer["kind"] == "ternary-1x1" else "int8"
        conv_w[kind] += math.prod(shape)
    weight_bits = conv_w["ternary"] * 2 + conv_w["int8"] * 8
    assert r["weight_storage_ratio_vs_fp16"] == pytest.approx(
        16 * sum(conv_w.values()) / weight_bits, rel=1e-12
    )
    assert 3.0 < r["storage_ratio_vs_fp16"] < r["weight_storage_ratio_vs_fp16"]
    assert any("2 bits" in a for a in r["assumptions"])


def test_int8_mobilenet_v2_is_five_times_below_fp16():
    pytest.importorskip("onnxruntime")
    from prom_tvm.models import mobilenet_v2_qdq

    r = analyze_model(mobilenet_v2_qdq(input_size=64, ternary_pointwise=False, calibration=1))
    assert "ternary-1x1" not in r["totals"]["by_kind"]
    assert r["energy_ratio_vs_fp16"] == pytest.approx(FP16_MAC / INT8_MAC, rel=1e-12)


@pytest.mark.slow
def test_torchvision_mobilenet_v2_exported_and_quantized_by_onnxruntime(tmp_path):
    """A real torch export (dynamic batch, BN folded by the exporter) quantized by
    onnxruntime's quantize_static, with ternary 1x1 weights set before export."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    for op in ("nms", "qnms"):  # torchvision imports only with these schemas defined
        try:
            torch.library.define(
                f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )
        except RuntimeError:
            pass  # already defined by another test module
    torchvision = pytest.importorskip("torchvision")
    from prom_tvm.models.qdq import quantize_qdq

    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(weights=None).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1:
                a = m.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
                m.weight.copy_(torch.sign(m.weight) * (m.weight.abs() > 0.7 * a) * a)
    path = tmp_path / "mnv2.onnx"
    torch.onnx.export(
        net,
        torch.randn(1, 3, 224, 224),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    m = _mobilenet_v2_macs()
    total = sum(m.values())

    fp32 = analyze_model(path)
    assert set(fp32["totals"]["by_kind"]) == {"float"}
    assert fp32["totals"]["macs"] == total
    assert any("dynamic batch" in a for a in fp32["assumptions"])

    model = onnx.load(path)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch.Clear()
    batch.dim_value = 1  # quantize_static wants a static input
    r = analyze_model(quantize_qdq(model, calibration=1))
    kinds = r["totals"]["by_kind"]
    assert {k: v["layers"] for k, v in kinds.items()} == {
        "int8-conv": 1,
        "depthwise": 17,
        "ternary-1x1": 34,
        "dense": 1,
    }
    assert kinds["ternary-1x1"]["macs"] == m["pointwise"]
    expected = total * FP16_MAC / (m["pointwise"] * TERNARY_MAC + (total - m["pointwise"]) * 0.3)
    assert r["energy_ratio_vs_fp16"] == pytest.approx(expected, rel=1e-12)
