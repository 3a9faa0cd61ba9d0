"""export_onnx: the exported integers are the weights that ran; layout; errors."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from qat_helpers import run_exported, train_steps  # noqa: E402
from qdq_checks import (  # noqa: E402
    check_prom_weights,
    check_residual_adds_quantized,
    conv_weight_codes,
)

from prom_tvm import qat  # noqa: E402
from prom_tvm.models.mobilenet_v2_torch import MobileNetV2  # noqa: E402


def _trained(config=None, seed=0):
    torch.manual_seed(seed)
    model = MobileNetV2(num_classes=10, width_mult=0.35, in_channels=1, input_size=32)
    qmodel = qat.prepare(model, config)
    x = torch.randn(16, 1, 32, 32)
    train_steps(qmodel, x, torch.arange(16) % 10, steps=3)
    return qmodel.eval(), x


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    qmodel, x = _trained()
    path = tmp_path_factory.mktemp("prom") / "prom.onnx"
    return qmodel, x, path, qat.export_onnx(qmodel, x[:1], path)


def test_exported_integers_are_the_weights_that_ran(prom):
    qmodel, _, _, proto = prom
    codes = conv_weight_codes(proto)
    layers = {n: m for n, m in qmodel.named_modules()
              if isinstance(m, (qat.QuantConv2d, qat.QuantLinear))}
    assert set(codes) == set(layers)  # Conv / Gemm nodes carry the torch module names
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for name, m in layers.items():
        w_codes, w_scale = m.weight_codes()
        np.testing.assert_array_equal(codes[name][1], w_codes.numpy().astype(np.int8))
        np.testing.assert_array_equal(inits[f"{name}.weight_scale"], w_scale.numpy())


def test_prom_layout_and_onnxruntime_parity(prom):
    qmodel, x, path, proto = prom
    assert proto.opset_import[0].version == 17
    assert check_prom_weights(proto) == (34, 19)
    assert check_residual_adds_quantized(proto) == 10
    got = run_exported(path, x.numpy())
    with torch.no_grad():
        expect = qmodel(x).numpy()
    assert np.linalg.norm(got - expect) / np.linalg.norm(expect) < 0.02
    np.testing.assert_array_equal(got.argmax(1), expect.argmax(1))


def test_activations_are_uint8_qdq_pairs(prom):
    proto = prom[3]
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    quants = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert quants and all(inits[n.input[2]].dtype == np.uint8 for n in quants)
    assert not [n for n in proto.graph.node if n.op_type == "Constant"]


def test_int8_config_has_no_ternary_layer(tmp_path):
    qmodel, x = _trained(qat.QATConfig(pointwise_format="int8"))
    proto = qat.export_onnx(qmodel, x[:2], tmp_path / "int8.onnx", dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    for name, (_, codes) in conv_weight_codes(proto).items():
        assert np.abs(codes.reshape(codes.shape[0], -1)).max(1).min() == 127, name


def test_export_of_an_unprepared_model_is_refused(tmp_path):
    model = MobileNetV2(num_classes=10, width_mult=0.35)
    with pytest.raises(ValueError, match="MobileNetV2 was never prepared"):
        qat.export_onnx(model, model.example_input(), tmp_path / "x.onnx")


def test_export_before_any_training_is_refused(tmp_path):
    qmodel = qat.prepare(MobileNetV2(num_classes=10, width_mult=0.35))
    with pytest.raises(ValueError, match="never saw data"):
        qat.export_onnx(qmodel, torch.randn(1, 3, 32, 32), tmp_path / "x.onnx")


def test_old_opset_is_refused(prom, tmp_path):
    with pytest.raises(ValueError, match="opset must be >= 13"):
        qat.export_onnx(prom[0], prom[1][:1], tmp_path / "x.onnx", opset=11)


def test_file_on_disk_is_the_returned_model(prom):
    _, _, path, proto = prom
    assert onnx.load(str(path)).SerializeToString() == proto.SerializeToString()


def test_equal_initializers_keep_their_own_names(tmp_path):
    """torch's exporter would merge two all-zero biases into one initializer."""

    class TwoZeroBiases(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.b = torch.nn.Conv2d(8, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 4)
            for conv in (self.a, self.b):
                torch.nn.init.zeros_(conv.bias)

        def forward(self, x):
            return self.fc(self.b(torch.relu(self.a(x))).mean((2, 3)))

    qmodel = qat.prepare(TwoZeroBiases())
    x = torch.randn(4, 3, 8, 8)
    qmodel(x)  # calibrate
    qmodel.eval()
    proto = qat.export_onnx(qmodel, x, tmp_path / "zero_bias.onnx")
    assert set(conv_weight_codes(proto)) == {"a", "b", "fc"}
    assert [i.name for i in proto.graph.input] == ["input"]
    np.testing.assert_allclose(run_exported(tmp_path / "zero_bias.onnx", x.numpy()),
                               qmodel(x).detach().numpy(), rtol=0, atol=1e-6)
