"""``prom_tvm.pack``: ternary QDQ weights as ONNX INT2, numbers unchanged bit for bit.

Checked on PROM MobileNetV2 (ours, numpy-built, quantized by onnxruntime) and on torchvision's
MobileNetV2 with ternary 1x1 weights quantized by onnxruntime's ``quantize_static``: the packed
file's exact paths (onnxruntime unfused, ``ExactReference``) give the same bytes as the
original's, ``prom_tvm.build`` compiles the same kernels with the same outputs, and the sizes.
Then the edges: malformed INT2 tensors, folds that would change a value, INT4, shared scales,
opset conversion, the command line.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import prom_tvm
from prom_tvm import onnx_io
from prom_tvm.pack import (
    INT2_IR,
    INT2_OPSET,
    ORT_WORKAROUND,
    main,
    onnxruntime_default_session_error,
    pack_ternary,
)

ort = pytest.importorskip("onnxruntime")
ort.set_default_logger_severity(3)  # quantized models' unused-initializer warnings

from prom_tvm.reference import ExactReference, unfused_session  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INT2_NP = helper.tensor_dtype_to_np_dtype(TensorProto.INT2)


def _inputs(model: onnx.ModelProto, n: int = 2) -> list[np.ndarray]:
    (shape,) = onnx_io.input_shapes(model).values()
    return [np.random.default_rng(s).standard_normal(shape).astype(np.float32) for s in range(n)]


def _assert_exact_paths_identical(a: onnx.ModelProto, b: onnx.ModelProto) -> None:
    """onnxruntime unfused and the numpy exact reference: the same bytes from both files."""
    sa, sb = unfused_session(a), unfused_session(b)
    ra, rb = ExactReference(a), ExactReference(b)
    for x in _inputs(a):
        ya, yb = sa.run(None, {"input": x})[0], sb.run(None, {"input": x})[0]
        assert ya.tobytes() == yb.tobytes()
        assert ra(x).tobytes() == rb(x).tobytes()


def _assert_builds_identical(a: onnx.ModelProto, b: onnx.ModelProto) -> None:
    la, lb = prom_tvm.build(a), prom_tvm.build(b)
    assert [(r["name"], r["kernel"]) for r in la.summary()] == \
        [(r["name"], r["kernel"]) for r in lb.summary()]
    assert any(r["kernel"] == "ternary-add" for r in lb.summary())
    for x in _inputs(a):
        np.testing.assert_array_equal(la(x), lb(x))


def _int2_weights(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for t in model.graph.initializer if t.data_type == TensorProto.INT2]


# ---------------------------------------------------------------------------------------------
# PROM MobileNetV2 (ours)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ours():
    from prom_tvm.models import mobilenet_v2_float, quantize_qdq

    model = quantize_qdq(mobilenet_v2_float(input_size=32, width=0.35, num_classes=10), 1)
    packed, report = pack_ternary(model)
    return model, packed, report


def test_ours_every_pointwise_weight_is_int2_and_nothing_else_changes_type(ours):
    model, packed, report = ours
    kinds = report.by_kind()
    assert kinds["pointwise"]["layers"] == kinds["pointwise"]["packed"] == 34
    assert all(kinds[k]["packed"] == 0 for k in ("depthwise", "conv", "dense"))
    assert all(r.dtype_before == "INT8" and r.folded == 127 and r.same_build
               for r in report.packed)
    assert len(_int2_weights(packed)) == 34  # all-zero zero points are dropped
    for t in _int2_weights(packed):
        assert len(t.raw_data) == math.ceil(math.prod(t.dims) / 4)  # four values per byte
    assert packed.opset_import[0].version == INT2_OPSET and packed.ir_version == INT2_IR
    onnx.checker.check_model(packed, full_check=True)
    assert report.model_bytes == (model.ByteSize(), packed.ByteSize())
    pw = kinds["pointwise"]
    assert pw["bytes_after"] * 4 <= pw["bytes_before"] + 4 * 34  # 2 bits, rounded up per layer
    assert model.graph.initializer[0].data_type != TensorProto.INT2  # the input is not modified


def test_ours_exact_paths_bit_identical(ours):
    model, packed, _ = ours
    _assert_exact_paths_identical(model, packed)


def test_ours_build_gives_the_same_kernels_and_outputs(ours):
    model, packed, _ = ours
    _assert_builds_identical(model, packed)


def test_ours_224_storage():
    """The paper's network: the packed file is >= 3.2x below its float16 parameters."""
    from prom_tvm.models import mobilenet_v2_float, quantize_qdq

    model = quantize_qdq(mobilenet_v2_float(224), 1)
    packed, report = pack_ternary(model)
    fp16 = 2 * 3_487_816  # MobileNetV2's weights and biases, 2 bytes each
    assert report.fp16_weight_bytes == fp16
    assert fp16 / model.ByteSize() < 1.81  # onnxruntime's QDQ file
    assert fp16 / packed.ByteSize() >= 3.2
    assert sum(math.prod(t.dims) for t in _int2_weights(packed)) == 2_124_672  # 1x1 weights


# ---------------------------------------------------------------------------------------------
# torchvision's MobileNetV2, quantized by onnxruntime
# ---------------------------------------------------------------------------------------------


def torchvision_mobilenet_v2(torchvision, size: int = 64, batchnorm: bool = True):
    """torchvision's MobileNetV2 (weights=None) with every 1x1 conv weight exactly ternary per
    output channel, exported at ``size`` and quantized by onnxruntime's quantize_static.
    ``batchnorm``: give the BatchNorms non-trivial statistics, as a trained network has (with
    torchvision's init every folded bias is 0, the exporter shares one zero initializer
    through Identity nodes, and onnxruntime leaves those biases float)."""
    import torch

    from prom_tvm.models import quantize_qdq

    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(weights=None).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1:
                a = m.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
                m.weight.copy_(torch.sign(m.weight) * (m.weight.abs() > 0.7 * a) * a)
            elif isinstance(m, torch.nn.BatchNorm2d) and batchnorm:
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    buf = io.BytesIO()
    torch.onnx.export(net, torch.randn(1, 3, size, size), buf, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    return quantize_qdq(onnx.load_from_string(buf.getvalue()), 1)


@pytest.fixture(scope="module")
def torchvision_qdq(torchvision, tmp_path_factory):
    path = tmp_path_factory.mktemp("pack") / "mnv2_tv.onnx"
    onnx.save(torchvision_mobilenet_v2(torchvision), path)
    return path


def test_torchvision_packed_by_the_command_is_3_2x_below_float16(torchvision_qdq, tmp_path,
                                                                  capsys):
    out = tmp_path / "packed.onnx"
    assert main([str(torchvision_qdq), "-o", str(out)]) == 0  # metadata dropped by default
    text = capsys.readouterr().out
    fp16 = 2 * 3_487_816
    before, after = os.path.getsize(torchvision_qdq), os.path.getsize(out)
    assert fp16 / before == pytest.approx(1.79, abs=0.01)  # the QDQ file of issue 10
    assert fp16 / after >= 3.2
    assert f"{before:,} -> {after:,} bytes on disk" in text and "3.20x smaller" in text
    assert "pointwise       34     34" in text and "outputs identical: onnxruntime" in text
    packed = onnx.load(out)
    assert len(_int2_weights(packed)) == 34
    original = onnx.load(torchvision_qdq)
    _assert_exact_paths_identical(original, packed)
    _, report = pack_ternary(original)  # without --strip
    assert fp16 / report.model_bytes[1] > 3.15
    assert all(r.same_build for r in report.packed)  # every 1x1 bias is int32 behind DQ


def test_torchvision_packed_runs_in_onnxruntime_with_the_workaround(torchvision_qdq, tmp_path):
    """onnxruntime 1.32's QDQ fusion has no INT2 QLinearConv: default options refuse the
    file; without that fusion it runs, with the same outputs as the int8 file."""
    packed, _ = pack_ternary(torchvision_qdq)
    why = onnxruntime_default_session_error(packed)
    if why is None:  # a newer onnxruntime fuses (or skips) INT2 weights: nothing to work around
        return
    assert "int2" in why
    x = _inputs(packed, 1)[0]
    s = ort.InferenceSession(packed.SerializeToString(), providers=["CPUExecutionProvider"],
                             **ORT_WORKAROUND)
    ref = unfused_session(torchvision_qdq).run(None, {"input": x})[0]
    assert s.run(None, {"input": x})[0].tobytes() == ref.tobytes()


def test_torchvision_build_gives_the_same_kernels_and_outputs(torchvision_qdq):
    original = onnx.load(torchvision_qdq)
    packed, _ = pack_ternary(original, strip=True)
    _assert_builds_identical(original, packed)


@pytest.mark.slow
def test_torchvision_224_packed_build_and_size(torchvision):
    original = torchvision_mobilenet_v2(torchvision, size=224)
    packed, report = pack_ternary(original, strip=True)
    assert report.fp16_weight_bytes / packed.ByteSize() >= 3.2
    _assert_exact_paths_identical(original, packed)
    _assert_builds_identical(original, packed)


@pytest.mark.slow
def test_torchvision_zero_biases_are_float_and_build_rescales(torchvision):
    """torchvision's untrained BatchNorms fold into zero biases that onnxruntime leaves float:
    those layers cannot be read back in the int8 file's units, and the report says so."""
    original = torchvision_mobilenet_v2(torchvision, batchnorm=False)
    packed, report = pack_ternary(original)
    rescaled = [r for r in report.packed if not r.same_build]
    assert 0 < len(rescaled) < 34
    assert f"{len(rescaled)} packed layers have no int32 DequantizeLinear bias" in report.format()
    _assert_exact_paths_identical(original, packed)
    la, lb = prom_tvm.build(original), prom_tvm.build(packed)
    assert [r["kernel"] for r in la.summary()] == [r["kernel"] for r in lb.summary()]
    step = onnx_io.output_step(original)
    for x in _inputs(original):
        assert np.abs(la(x) - lb(x)).max() <= 2 * step  # a requantization tie, at most


# ---------------------------------------------------------------------------------------------
# small hand-made models: the edges
# ---------------------------------------------------------------------------------------------


def _qdq_conv(w_codes, w_scale, *, elem=TensorProto.INT8, bias=True, opset=17, ir=8,
              zero_point=True, extra_nodes=(), k=1):
    """input (float) -> Q/DQ -> Conv(DQ(weight), DQ(int32 bias)) -> Q/DQ -> output."""
    w_codes = np.asarray(w_codes)
    cout, cin = w_codes.shape[:2]
    x_scale, y_scale = np.float32(0.02), np.float32(0.05)
    np_elem = helper.tensor_dtype_to_np_dtype(elem)
    inits = [numpy_helper.from_array(w_codes.astype(np_elem), "w_q"),
             numpy_helper.from_array(np.asarray(w_scale, np.float32), "w_s"),
             numpy_helper.from_array(x_scale, "x_s"), numpy_helper.from_array(np.uint8(128), "x_z"),
             numpy_helper.from_array(y_scale, "y_s"), numpy_helper.from_array(np.uint8(100), "y_z")]
    w_inputs = ["w_q", "w_s"]
    if zero_point:
        inits.append(numpy_helper.from_array(np.zeros(cout, np_elem), "w_z"))
        w_inputs.append("w_z")
    nodes = [helper.make_node("QuantizeLinear", ["input", "x_s", "x_z"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["x"], name="dq_in"),
             helper.make_node("DequantizeLinear", w_inputs, ["w"], name="dq_w", axis=0)]
    conv_in = ["x", "w"]
    if bias:
        b_scale = (x_scale * np.asarray(w_scale, np.float32)).astype(np.float32)
        inits += [numpy_helper.from_array(np.arange(cout, dtype=np.int32) * 7 - 5, "b_q"),
                  numpy_helper.from_array(b_scale, "b_s")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b"], name="dq_b",
                                      axis=0))
        conv_in.append("b")
    nodes += [helper.make_node("Conv", conv_in, ["y"], name="conv", kernel_shape=[k, k]),
              helper.make_node("QuantizeLinear", ["y", "y_s", "y_z"], ["yq"], name="q_out"),
              helper.make_node("DequantizeLinear", ["yq", "y_s", "y_z"], ["out"], name="dq_out"),
              *extra_nodes]
    out_name = extra_nodes[-1].output[0] if extra_nodes else "out"
    graph = helper.make_graph(
        nodes, "qdq_conv", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                          [1, cin, 8, 8])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=ir)
    return onnx.shape_inference.infer_shapes(model)


def _ternary(cout=8, cin=16, a=127, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(-1, 2, (cout, cin, 1, 1)) * a).astype(np.int8)


def _run(model, x=None):
    x = np.random.default_rng(5).standard_normal((1, 16, 8, 8)).astype(np.float32) \
        if x is None else x
    return unfused_session(model).run(None, {"input": x})[0]


def test_small_ternary_conv_packs_and_reads_back_into_the_int8_units():
    scale = np.random.default_rng(1).uniform(1e-3, 1e-2, 8).astype(np.float32) / 127
    model = _qdq_conv(_ternary(), scale)
    packed, report = pack_ternary(model)
    (row,) = report.layers
    assert (row.dtype_before, row.dtype_after, row.kind, row.folded) == ("INT8", "INT2",
                                                                       "pointwise", 127)
    assert row.same_build and row.bytes_before == 8 * 16 + 8 and row.bytes_after == 8 * 16 // 4
    assert _run(model).tobytes() == _run(packed).tobytes()
    inits = {t.name: numpy_helper.to_array(t) for t in packed.graph.initializer}
    assert set(np.unique(inits["w_q"].astype(np.int8))) <= {-1, 0, 1}
    np.testing.assert_array_equal(inits["w_s"], (np.float32(127) * scale).astype(np.float32))
    wide = {t.name: numpy_helper.to_array(t)
            for t in onnx_io.unpack_subbyte_weights(packed).graph.initializer}
    np.testing.assert_array_equal(wide["w_q"], _ternary())  # build sees the int8 file again
    np.testing.assert_array_equal(wide["w_s"], scale)


def test_small_conv_without_bias_is_packed_but_read_back_folded():
    model = _qdq_conv(_ternary(), np.full(8, 0.01 / 127, np.float32), bias=False)
    packed, report = pack_ternary(model)
    assert report.packed[0].same_build is False
    assert "no int32 DequantizeLinear bias" in report.format()
    assert _run(model).tobytes() == _run(packed).tobytes()


def test_fold_that_would_change_a_value_is_refused_with_the_reason(tmp_path, capsys):
    """127 * 3e38 overflows float32: the weight stays int8 and the command says why."""
    model = _qdq_conv(_ternary(), np.full(8, 3e38, np.float32), bias=False)
    packed, report = pack_ternary(model)
    assert packed is model and not report.packed
    assert "overflows float32" in report.layers[0].note
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(SystemExit) as info:
        main([str(path), "-o", str(tmp_path / "out.onnx")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "nothing to pack" in err and "overflows float32" in err
    assert not (tmp_path / "out.onnx").exists()


def test_qat_encoding_minus_one_zero_one_keeps_its_scale():
    scale = np.linspace(0.01, 0.08, 8).astype(np.float32)
    model = _qdq_conv(_ternary(a=1), scale)
    packed, report = pack_ternary(model)
    assert report.packed[0].folded == 1 and report.packed[0].same_build
    inits = {t.name: numpy_helper.to_array(t) for t in packed.graph.initializer}
    np.testing.assert_array_equal(inits["w_s"], scale)
    assert _run(model).tobytes() == _run(packed).tobytes()


def test_int4_option_packs_weights_that_fit_4_bits():
    rng = np.random.default_rng(3)
    codes = (rng.integers(-2, 3, (8, 16, 3, 3)) * 3).astype(np.int8)  # {-6, -3, 0, 3, 6}
    wide = rng.integers(-100, 100, (8, 16, 3, 3)).astype(np.int8)
    scale = np.full(8, 0.004, np.float32)
    for w, packed_as in ((codes, "INT4"), (wide, "INT8")):
        model = _qdq_conv(w, scale, k=3)
        assert not pack_ternary(model)[1].packed  # not ternary: nothing without --int4
        packed, report = pack_ternary(model, int4=True)
        assert report.layers[0].dtype_after == packed_as
        if packed_as == "INT4":
            assert report.layers[0].kind == "conv"
            assert packed.opset_import[0].version == 21 and packed.ir_version == 10
            assert _run(model).tobytes() == _run(packed).tobytes()


def test_shared_scale_gets_a_copy_of_its_own():
    model = _qdq_conv(_ternary(), np.full(8, 0.01 / 127, np.float32), bias=False)
    # a second DequantizeLinear reads the same scale (as some exporters share constants)
    model.graph.initializer.append(numpy_helper.from_array(np.ones((8, 1, 1, 1), np.int8), "w2"))
    model.graph.node.append(helper.make_node("DequantizeLinear", ["w2", "w_s"], ["w2f"],
                                             name="dq_w2", axis=0))
    model.graph.output.append(helper.make_tensor_value_info("w2f", TensorProto.FLOAT,
                                                                [8, 1, 1, 1]))
    packed, report = pack_ternary(model)
    assert [r.weight for r in report.packed] == ["w_q"]  # w2 is no layer's weight
    dq = {n.name: n for n in packed.graph.node}
    assert dq["dq_w"].input[1] != "w_s" and dq["dq_w2"].input[1] == "w_s"
    sa, sb = unfused_session(model), unfused_session(packed)
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    for ya, yb in zip(sa.run(None, {"input": x}), sb.run(None, {"input": x}), strict=True):
        assert ya.tobytes() == yb.tobytes()


def test_opset_13_model_with_reducemean_axes_attribute_is_converted():
    """ReduceMean's ``axes`` became an input at opset 18: the version converter moves it."""
    mean = helper.make_node("ReduceMean", ["out"], ["pooled"], name="pool", axes=[2, 3])
    model = _qdq_conv(_ternary(), np.full(8, 0.01 / 127, np.float32), opset=13, ir=7,
                      extra_nodes=(mean,))
    packed, _ = pack_ternary(model)
    (pool,) = [n for n in packed.graph.node if n.op_type == "ReduceMean"]
    assert len(pool.input) == 2 and not pool.attribute  # axes as an input now
    onnx.checker.check_model(packed, full_check=True)
    assert _run(model).tobytes() == _run(packed).tobytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: setattr(t, "raw_data", t.raw_data[:-1]), r"has 3 bytes of raw_data for 16 "
         r"values; INT2 packs 4 values per byte, so it needs 4"),
        (lambda t: setattr(t, "raw_data", t.raw_data + b"\0"), r"has 5 bytes of raw_data"),
        (lambda t: (t.ClearField("raw_data"), t.int32_data.extend([0] * 5)),
         r"has 5 int32_data entries for 16 values"),
        (lambda t: (t.ClearField("raw_data"), t.int32_data.extend([300] * 4)),
         r"int32_data entries must be packed bytes 0..255"),
        (lambda t: (t.ClearField("dims"), t.dims.extend([2, 2, 1, 1])),
         r"has 4 bytes of raw_data for 4 values"),
    ],
    ids=["short", "long", "int32-data-long", "int32-data-not-bytes", "wrong-dims"],
)
def test_malformed_int2_is_an_error_naming_the_tensor(change, message):
    model = _qdq_conv(_ternary(cout=4, cin=4, a=1), np.full(4, 0.01, np.float32),
                      elem=TensorProto.INT2, opset=25, ir=13, zero_point=False, bias=False)
    w = next(t for t in model.graph.initializer if t.name == "w_q")
    change(w)
    named = r"initializer 'w_q' \(INT2, dims \[.*\]\):? "
    for read in (pack_ternary, onnx_io.unpack_subbyte_weights, prom_tvm.build):
        with pytest.raises(ValueError, match=named + message):
            read(model)


def test_int2_scale_of_the_wrong_length_is_an_error_naming_the_tensor():
    model = _qdq_conv(_ternary(cout=4, cin=4, a=1), np.full(4, 0.01, np.float32),
                      elem=TensorProto.INT2, opset=25, ir=13, zero_point=False, bias=False)
    s = next(t for t in model.graph.initializer if t.name == "w_s")
    s.CopyFrom(numpy_helper.from_array(np.full(3, 0.01, np.float32), "w_s"))
    with pytest.raises(ValueError, match=r"DequantizeLinear node 'dq_w' of 'w_q' \(dims "
                                         r"\[4, 4, 1, 1\]\): 3 scale values 'w_s' for 4 channels"):
        onnx_io.unpack_subbyte_weights(model)


def test_float_model_is_refused_with_what_to_do(tmp_path, capsys):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 2, 2])
    w = numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"])], "f", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])],
                              [w])
    path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(SystemExit):
        main([str(path), "-o", str(tmp_path / "out.onnx")])
    assert "no DequantizeLinear weights found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(path), "-o", str(path)])
    assert "-o must name a new file" in capsys.readouterr().err


def test_command_line_as_a_user_runs_it(tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "packed.onnx"
    onnx.save(_qdq_conv(_ternary(), np.full(8, 0.01 / 127, np.float32)), src)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-m", "prom_tvm", "pack", str(src), "-o", str(out),
                          "--json"], capture_output=True, text=True, env=env, timeout=120,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["by_kind"]["pointwise"] == {"layers": 1, "packed": 1, "bytes_before": 136,
                                              "bytes_after": 32}
    assert report["file_bytes"] == [os.path.getsize(src), os.path.getsize(out)]
    assert report["outputs_checked"].startswith("onnxruntime (unfused)")
    assert len(_int2_weights(onnx.load(out))) == 1


def test_metadata_dropped_by_default_kept_on_request(tmp_path, capsys):
    from prom_tvm.pack import main

    model = _qdq_conv(_ternary(), np.full(8, 0.01 / 127, np.float32))
    model = onnx.shape_inference.infer_shapes(model)
    assert len(model.graph.value_info) > 0
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    for flags, kept in (([], False), (["--keep-metadata"], True)):
        out = tmp_path / f"p{len(flags)}.onnx"
        assert main([str(src), "-o", str(out), *flags]) == 0
        assert (len(onnx.load(out).graph.value_info) > 0) == kept
    with pytest.raises(SystemExit):
        main([str(src), "-o", str(tmp_path / "x.onnx"), "--strip", "--keep-metadata"])
    assert "contradict" in capsys.readouterr().err
