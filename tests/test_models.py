"""prom_tvm.models: the seeded PROM MobileNetV2 / tiny CNN and their QDQ versions."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from prom_tvm.models import (
    mobilenet_v2_float,
    mobilenet_v2_qdq,
    quantize_qdq,
    tiny_float_cnn,
    tiny_qdq_cnn,
)
from prom_tvm.models.mobilenet_v2_onnx import make_divisible
from prom_tvm.models.qdq import calibration_samples
from prom_tvm.reference import ExactReference

ort = pytest.importorskip("onnxruntime")


def _session(model: onnx.ModelProto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def _conv_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Conv name → weight: the float initializer, or the int8 behind its DequantizeLinear."""
    inits = _inits(model)
    out = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w = node.input[1]
        out[node.name] = inits[w] if w in inits else inits[_producer(model, w).input[0]]
    return out


def _is_ternary_per_channel(w: np.ndarray) -> bool:
    """Every output channel's values lie in {-a, 0, +a} for one a > 0 (exact)."""
    for row in w.reshape(w.shape[0], -1):
        mags = np.unique(np.abs(row[row != 0]))
        if len(mags) > 1:
            return False
    return True


def _pointwise(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: w for k, w in weights.items() if w.shape[2:] == (1, 1)}


@pytest.fixture(scope="module")
def mnv2_float() -> onnx.ModelProto:
    return mobilenet_v2_float()


@pytest.fixture(scope="module")
def mnv2_qdq(mnv2_float) -> onnx.ModelProto:
    return quantize_qdq(mnv2_float)


@pytest.fixture(scope="module")
def inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(123)
    return [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(3)]


# -- architecture ----------------------------------------------------------------------------------


def test_mobilenet_v2_layer_inventory(mnv2_float):
    ops = [n.op_type for n in mnv2_float.graph.node]
    assert ops.count("Conv") == 52
    assert ops.count("Add") == 10  # stride-1 blocks with cin == cout
    assert ops.count("Clip") == 35  # ReLU6 after first conv, expands, depthwise, last conv
    assert [o for o in ops if o not in ("Conv", "Add", "Clip")] == [
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
    ]
    weights = _conv_weights(mnv2_float)
    assert len(_pointwise(weights)) == 34
    assert weights["features.0.0"].shape == (32, 3, 3, 3)
    assert weights["features.3.conv.2"].shape == (24, 144, 1, 1)
    assert weights["features.18.0"].shape == (1280, 320, 1, 1)
    assert _inits(mnv2_float)["classifier.1.weight"].shape == (1000, 1280)
    onnx.checker.check_model(mnv2_float, full_check=True)
    out = mnv2_float.graph.output[0]
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 1000]


def test_width_and_size_options():
    m = mobilenet_v2_float(input_size=96, width=0.5, num_classes=7)
    weights = _conv_weights(m)
    assert weights["features.0.0"].shape[0] == make_divisible(32 * 0.5)
    assert weights["features.18.0"].shape[0] == 1280  # torchvision keeps 1280 for width < 1
    assert _session(m).run(None, {"input": np.zeros((1, 3, 96, 96), np.float32)})[0].shape == (
        1,
        7,
    )
    with pytest.raises(ValueError, match="multiple of 32"):
        mobilenet_v2_float(input_size=100)


def test_matches_torchvision_mobilenet_v2():
    """Same layers, names, strides, groups and numbers as torchvision with our weights loaded."""
    torch = pytest.importorskip("torch")
    for op in ("nms", "qnms"):  # torchvision's C++ ops are absent in this environment
        try:
            torch.library.define(
                f"torchvision::{op}",
                "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            )
        except RuntimeError:
            pass  # already defined
    tv = pytest.importorskip("torchvision")
    net = tv.models.mobilenet_v2(num_classes=10).eval()
    model = mobilenet_v2_float(input_size=64, num_classes=10, seed=3)
    inits = _inits(model)
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    tv_convs = {k: m for k, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert list(convs) == list(tv_convs)
    modules = dict(net.named_modules())
    with torch.no_grad():
        for name, conv in tv_convs.items():
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in convs[name].attribute}
            assert tuple(attrs["strides"]) == conv.stride
            assert attrs["group"] == conv.groups
            conv.weight.copy_(torch.from_numpy(inits[f"{name}.weight"]))
            # the BN after each conv becomes the identity plus our folded bias
            prefix, idx = name.rsplit(".", 1)
            bn = modules[f"{prefix}.{int(idx) + 1}"]
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(inits[f"{name}.bias"]))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        net.classifier[1].weight.copy_(torch.from_numpy(inits["classifier.1.weight"]))
        net.classifier[1].bias.copy_(torch.from_numpy(inits["classifier.1.bias"]))
        x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
        expected = net(torch.from_numpy(x)).numpy()
    got = _session(model).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


# -- weights ---------------------------------------------------------------------------------------


def test_pointwise_weights_are_exactly_ternary(mnv2_float):
    weights = _conv_weights(mnv2_float)
    for name, w in _pointwise(weights).items():
        assert _is_ternary_per_channel(w), name
        assert np.count_nonzero(w) / w.size == pytest.approx(2 / 3, abs=0.1), name
    # 3x3 convs are ordinary int8 candidates, not ternary
    assert not _is_ternary_per_channel(weights["features.0.0"])


def test_without_ternary_no_pointwise_is_ternary():
    weights = _conv_weights(mobilenet_v2_float(input_size=64, ternary_pointwise=False))
    assert not any(_is_ternary_per_channel(w) for w in _pointwise(weights).values())


def test_seed_changes_weights_and_is_reproducible():
    a, b, c = (tiny_float_cnn(seed=s) for s in (0, 0, 1))
    assert a.SerializeToString() == b.SerializeToString()
    assert a.SerializeToString() != c.SerializeToString()


def test_logits_are_sane(mnv2_float, inputs):
    session = _session(mnv2_float)
    for x in inputs:
        y = session.run(None, {"input": x})[0]
        assert np.isfinite(y).all()
        assert 0.1 < y.std() < 100.0  # neither collapsed to all-equal nor exploding
        assert np.abs(y).max() < 1e3


# -- QDQ -------------------------------------------------------------------------------------------


def test_qdq_pointwise_weights_are_plus_minus_127(mnv2_qdq):
    weights = _conv_weights(mnv2_qdq)
    pointwise = _pointwise(weights)
    assert len(pointwise) == 34
    for name, w in pointwise.items():
        assert w.dtype == np.int8
        assert set(np.unique(w).tolist()) <= {-127, 0, 127}, name
        assert _is_ternary_per_channel(w)
    depthwise = weights["features.2.conv.1.0"]
    assert len(np.unique(depthwise)) > 3


def test_qdq_without_ternary_has_no_ternary_pointwise():
    q = mobilenet_v2_qdq(input_size=64, num_classes=10, ternary_pointwise=False)
    pointwise = _pointwise(_conv_weights(q))
    assert not any(set(np.unique(w).tolist()) <= {-127, 0, 127} for w in pointwise.values())


def test_qdq_runs_and_agrees_with_float(mnv2_float, mnv2_qdq, inputs):
    # the QDQ model's own numbers (exact reference), not onnxruntime's int8 kernels: those
    # saturate on CPUs without VNNI (microsoft/onnxruntime#16105)
    f, q = _session(mnv2_float), ExactReference(mnv2_qdq)
    _session(mnv2_qdq).run(None, {"input": inputs[0]})  # onnxruntime accepts the file
    for x in inputs:
        yf = f.run(None, {"input": x})[0]
        yq = q(x)
        assert yq.argmax() == yf.argmax()
        assert np.abs(yq - yf).max() < 0.25 * yf.std()


def test_qdq_graph_shape(mnv2_qdq):
    """The pattern docs/qdq_patterns.md describes: Q/DQ around every op, Clip folded away."""
    ops = [n.op_type for n in mnv2_qdq.graph.node]
    assert "Clip" not in ops
    assert ops.count("Conv") == 52 and ops.count("Add") == 10
    inits = _inits(mnv2_qdq)
    for node in mnv2_qdq.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            w_dq = _producer(mnv2_qdq, node.input[1])
            b_dq = _producer(mnv2_qdq, node.input[2])
            x_dq = _producer(mnv2_qdq, node.input[0])
            assert w_dq.op_type == b_dq.op_type == x_dq.op_type == "DequantizeLinear"
            assert inits[b_dq.input[0]].dtype == np.int32
            s_x, s_w = inits[x_dq.input[1]], inits[w_dq.input[1]]
            np.testing.assert_array_equal(inits[b_dq.input[1]], (s_x * s_w).astype(np.float32))


def test_int8_activations_and_given_calibration():
    fp = tiny_float_cnn()
    calib = np.random.default_rng(9).standard_normal((4, 1, 3, 16, 16)).astype(np.float32)
    q = quantize_qdq(fp, calib, activation_type="int8")
    zps = [
        v
        for k, v in _inits(q).items()
        if k.endswith("_zero_point") and v.ndim == 0 and "weight" not in k
    ]
    assert zps and all(z.dtype == np.int8 for z in zps)
    x = calib[0]
    yf = _session(fp).run(None, {"input": x})[0]
    yq = ExactReference(q)(x)
    assert yq.argmax() == yf.argmax()


def test_calibration_forms_and_errors():
    fp = tiny_float_cnn()
    assert len(calibration_samples(fp, 3)) == 3
    batch = np.zeros((5, 3, 16, 16), np.float32)
    assert [s.shape for s in calibration_samples(fp, batch)] == [(1, 3, 16, 16)] * 5
    with pytest.raises(ValueError, match="does not fit"):
        calibration_samples(fp, np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="at least one"):
        calibration_samples(fp, 0)
    with pytest.raises(ValueError, match="activation_type"):
        quantize_qdq(fp, activation_type="int4")


def test_missing_onnxruntime_is_a_clear_import_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        quantize_qdq(tiny_float_cnn())


def test_tiny_qdq_cnn_has_every_layer_kind():
    q = tiny_qdq_cnn()
    ops = {n.op_type for n in q.graph.node}
    assert {"Conv", "Add", "GlobalAveragePool", "Flatten", "Gemm"} <= ops
    weights = _conv_weights(q)
    groups = {
        n.name: onnx.helper.get_attribute_value(next(a for a in n.attribute if a.name == "group"))
        for n in q.graph.node
        if n.op_type == "Conv"
    }
    assert any(g > 1 for g in groups.values())  # depthwise
    pointwise = _pointwise(weights)
    assert len(pointwise) == 4
    assert all(set(np.unique(w).tolist()) <= {-127, 0, 127} for w in pointwise.values())
    y = ExactReference(q)(np.ones((1, 3, 16, 16), np.float32))
    assert y.shape == (1, 10) and np.isfinite(y).all()
