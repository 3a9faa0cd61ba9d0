"""benchmarks/latency.py and benchmarks/pointwise_layers.py: their models and numbers.

The end-to-end runs compile and are marked slow; the model helpers are checked fast.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCH / "latency.py"
POINTWISE = BENCH / "pointwise_layers.py"


@pytest.fixture(scope="module")
def pw():
    spec = importlib.util.spec_from_file_location("pointwise_layers", POINTWISE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layers_are_mobilenet_v2_pointwise_shapes(pw):
    """LAYERS holds every 1x1 conv shape of MobileNetV2 224 once, with how often it occurs."""
    from prom_tvm.models import mobilenet_v2_float

    m = onnx.shape_inference.infer_shapes(mobilenet_v2_float(224))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*m.graph.value_info, *m.graph.input]}
    inits = {t.name: t.dims for t in m.graph.initializer}
    seen, first = Counter(), {}
    for n in m.graph.node:
        w = inits.get(n.input[1]) if n.op_type == "Conv" else None
        if w is not None and list(w[2:]) == [1, 1]:
            key = (w[1], w[0], shapes[n.input[0]][2])
            seen[key] += 1
            first.setdefault(key, n.name)
    assert sum(seen.values()) == 34
    assert {(c, o, hw): n for _, c, o, hw, n in pw.LAYERS} == dict(seen)
    assert [name for name, *_ in pw.LAYERS] == [first[(c, o, hw)] for _, c, o, hw, _ in pw.LAYERS]


def test_float_layer_has_prom_weights(pw):
    """Ternary per output channel with 2/3 nonzero, as the PROM MobileNetV2's 1x1 convs."""
    m = pw.float_layer(96, 576, 2)
    w = onnx.numpy_helper.to_array(m.graph.initializer[0]).reshape(576, 96)
    scale = np.abs(w).max(axis=1, keepdims=True)
    assert np.isin(np.round(w / scale), (-1, 0, 1)).all()
    assert abs(np.count_nonzero(w) / w.size - 2 / 3) < 0.01
    assert [n.op_type for n in m.graph.node] == ["Conv", "Relu"]  # an expand layer
    assert [n.op_type for n in pw.float_layer(96, 24, 2).graph.node] == ["Conv"]


def test_int8_layer_is_uint8_in_out_and_one_qlinearconv(pw, tmp_path):
    """No float (de)quantize at the graph's ends; onnxruntime runs the channels-last form as one
    QLinearConv, with the same numbers as the NCHW form (which adds two Transposes)."""
    ort = pytest.importorskip("onnxruntime")
    from prom_tvm.models.qdq import quantize_qdq

    cal = np.random.default_rng(0).standard_normal((2, 1, 16, 6, 6)).astype(np.float32)
    model, scale, zp = pw.integer_io(quantize_qdq(pw.float_layer(16, 48, 6), cal))
    u8 = onnx.TensorProto.UINT8
    assert [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)] \
        == [u8, u8]
    assert [n.op_type for n in model.graph.node if n.input[0] == "x"] == ["DequantizeLinear"]
    assert 100 < zp < 156 and scale > 0  # signed input of an expand layer
    nhwc = pw.channels_last(model)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    s_nhwc = ort.InferenceSession(nhwc.SerializeToString(), so,
                                  providers=["CPUExecutionProvider"])
    assert [n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node] == ["QLinearConv"]
    x = np.random.default_rng(1).integers(0, 256, (1, 16, 6, 6)).astype(np.uint8)
    y = pw.ort_session(model, 1).run(None, {"x": x})[0]
    y_nhwc = s_nhwc.run(None, {"x": np.ascontiguousarray(x.transpose(0, 2, 3, 1))})[0]
    np.testing.assert_array_equal(y_nhwc.transpose(0, 3, 1, 2), y)


def test_totals_weight_layers_by_count(pw):
    def build(form):
        keys = ("adds_per_output", "nnz_per_output", "weight_bytes", "code_bytes", "data_bytes")
        return {"prom_tvm": {"form": form, **dict.fromkeys(keys, 1)}}

    static = {0: {"layer": "a", "count": 1, "builds": build("specialized")},
              1: {"layer": "b", "count": 3, "builds": build("table-lookup")}}
    us = [{"onnxruntime-int8": 10.0, "prom_tvm": 5.0}, {"onnxruntime-int8": 10.0,
                                                        "prom_tvm": 20.0}]
    run = {"layers": [{"index": i, "us": u, "max_lsb_vs_exact": {}} for i, u in enumerate(us)]}
    res = pw.assemble(static, run)
    assert res["totals"]["us_weighted"] == {"onnxruntime-int8": 40.0, "prom_tvm": 65.0}
    assert res["totals"]["ratio_vs_onnxruntime-int8"]["prom_tvm"] == 65 / 40
    assert res["layers"][0]["ratio_vs_onnxruntime-int8"]["prom_tvm"] == 0.5
    assert res["totals_by_form"]["table-lookup"]["us_weighted"]["prom_tvm"] == 60.0
    assert res["layers"][1]["form"] == {"prom_tvm": "table-lookup"}


@pytest.mark.slow
def test_pointwise_benchmark_quick_run(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "pw.json"
    cmd = [sys.executable, str(POINTWISE), "--layers", "0,5", "--threads", "1", "--rounds", "2",
           "--round-ms", "1", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads(out.read_text())["runs"]["1"]
    assert run["TVM_NUM_THREADS"] == "1"
    assert [r["form"]["prom_tvm"] for r in run["layers"]] == ["specialized", "table-lookup"]
    for r in run["layers"]:
        assert r["max_lsb_vs_exact"]["prom_tvm"] == r["max_lsb_vs_exact"]["prom_tvm-avx2"] == 0
        assert r["adds_per_output"]["prom_tvm"] < r["nnz_per_output"]["prom_tvm"]
        assert r["ratio_vs_onnxruntime-int8"]["onnxruntime-int8"] == 1.0
        assert all(v > 0 for v in r["us"].values())
    assert run["totals"]["layers"] == 2
    assert out.with_suffix(".png").stat().st_size > 10_000


@pytest.mark.slow
def test_latency_benchmark_quick_run(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "latency.json"
    engines = "prom_tvm,prom_tvm-avx2,onnxruntime-int8,onnxruntime-fp32,tvm-stock-fp32"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--input-size", "32", "--threads", "1",
           "--engines", engines, "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    run = result["runs"]["1"]
    assert run["TVM_NUM_THREADS"] == "1"
    measured = set(run["engines"])
    assert measured | set(run["skipped"]) == set(engines.split(","))
    assert {"prom_tvm", "prom_tvm-avx2", "onnxruntime-int8", "onnxruntime-fp32",
            "tvm-stock-fp32"} <= measured
    for stats in run["engines"].values():
        assert 0 < stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"]
    assert run["engines"]["onnxruntime-int8"]["ratio_vs_onnxruntime-int8"] == 1.0
    assert "haswell" in run["engines"]["prom_tvm-avx2"]["target"]
    # both prom_tvm builds are judged against the exact QDQ reference
    for name in ("prom_tvm", "prom_tvm-avx2"):
        assert run["checks"][name]["reference"] == "exact-qdq"
        assert run["checks"][name]["max_diff_lsb"] <= 4
    # stock TVM on the float model computes the same function as onnxruntime fp32
    assert run["checks"]["tvm-stock-fp32"]["max_abs_diff"] < 1e-3
    assert "onnxruntime-int8" in proc.stdout and "vs ORT int8" in proc.stdout
    assert out.with_suffix(".png").stat().st_size > 10_000
