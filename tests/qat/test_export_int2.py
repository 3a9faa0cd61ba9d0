"""export_onnx(..., opset=25): ternary weights as ONNX INT2, the same model as the int8 file."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import prom_tvm  # noqa: E402
from prom_tvm import qat  # noqa: E402
from prom_tvm.models.mobilenet_v2_torch import MobileNetV2  # noqa: E402
from prom_tvm.pack import pack_ternary  # noqa: E402
from prom_tvm.reference import ExactReference, unfused_session  # noqa: E402


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    torch.manual_seed(0)
    model = MobileNetV2(num_classes=10, width_mult=0.35, in_channels=1, input_size=32)
    qmodel = qat.prepare(model)
    x = torch.randn(8, 1, 32, 32)
    qmodel.train()
    with torch.no_grad():  # calibration only: the export reads what ran, trained or not
        qmodel(x)
    qmodel.eval()
    tmp = tmp_path_factory.mktemp("int2")
    int8 = qat.export_onnx(qmodel, x[:1], tmp / "int8.onnx")
    int2 = qat.export_onnx(qmodel, x[:1], tmp / "int2.onnx", opset=25)
    return qmodel, x.numpy()[:2], int8, int2, tmp


def _by_type(proto):
    out = {}
    for t in proto.graph.initializer:
        out.setdefault(TensorProto.DataType.Name(t.data_type), []).append(t.name)
    return out


def test_ternary_weights_and_zero_points_are_int2_at_opset_25(exports):
    _, _, int8, int2, tmp = exports
    assert (int2.opset_import[0].version, int2.ir_version) == (25, 13)
    onnx.checker.check_model(int2, full_check=True)
    ternary = sorted(n for n in _by_type(int2)["INT2"] if n.endswith("_quantized"))
    assert len(ternary) == 34 and len(_by_type(int2)["INT2"]) == 68  # codes + zero points
    assert all(n.endswith(".weight_quantized") or n.endswith(".weight_zero_point")
               for n in _by_type(int2)["INT2"])
    a = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in int2.graph.initializer}
    assert a.keys() == b.keys()
    for name in a:  # same values, scales unchanged (the QAT codes are {-1, 0, 1} already)
        np.testing.assert_array_equal(a[name].astype(np.float64), b[name].astype(np.float64))
    assert (tmp / "int2.onnx").stat().st_size < 0.6 * (tmp / "int8.onnx").stat().st_size
    assert onnx.load(tmp / "int2.onnx").SerializeToString() == int2.SerializeToString()


def test_int2_file_computes_the_same_numbers(exports):
    _, x, int8, int2, _ = exports
    ya = unfused_session(int8).run(None, {"input": x})[0]
    yb = unfused_session(int2).run(None, {"input": x})[0]
    assert ya.tobytes() == yb.tobytes()
    assert ExactReference(int8)(x).tobytes() == ExactReference(int2)(x).tobytes()


def test_pack_of_the_int8_export_gives_the_int2_export_weights(exports):
    _, _, int8, int2, _ = exports
    packed, report = pack_ternary(int8)
    assert len(report.packed) == 34 and all(r.folded == 1 for r in report.packed)
    a = {t.name: t for t in int2.graph.initializer}
    for t in packed.graph.initializer:
        if t.data_type == TensorProto.INT2:
            assert t.raw_data == a[t.name].raw_data


def test_build_of_the_int2_file_matches_the_int8_file(exports):
    _, x, int8, int2, _ = exports
    shapes = {"input": (1, 1, 32, 32)}
    la, lb = (prom_tvm.build(m, input_shapes=shapes) for m in (int8, int2))
    assert [r["kernel"] for r in la.summary()] == [r["kernel"] for r in lb.summary()]
    assert sum(r["kernel"] == "ternary-add" for r in lb.summary()) == 34
    for i in range(len(x)):
        np.testing.assert_array_equal(la(x[i:i + 1]), lb(x[i:i + 1]))


def test_ternary_dtype_choices(exports):
    qmodel, x, _, _, tmp = exports
    with pytest.raises(ValueError, match=r"ternary_dtype='int2' needs opset >= 25 .* got "
                                         r"opset=17: pass opset=25, or ternary_dtype='int8'"):
        qat.export_onnx(qmodel, torch.from_numpy(x[:1]), tmp / "x.onnx", ternary_dtype="int2")
    with pytest.raises(ValueError, match=r"ternary_dtype must be one of \('auto', 'int8', "
                                         r"'int2'\), got 'int4'"):
        qat.export_onnx(qmodel, torch.from_numpy(x[:1]), tmp / "x.onnx", ternary_dtype="int4")
    at25 = qat.export_onnx(qmodel, torch.from_numpy(x[:1]), tmp / "int8_25.onnx", opset=25,
                           ternary_dtype="int8")
    assert at25.opset_import[0].version == 25 and "INT2" not in _by_type(at25)
