"""prepare: BatchNorm folding, what is quantized where, and the errors a user can act on."""

import re

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from prom_tvm import qat  # noqa: E402
from prom_tvm.models.mobilenet_v2_torch import MobileNetV2  # noqa: E402


def _randomize_batchnorm(model, seed=0):
    """Non-trivial BN statistics and affine parameters, as a trained model has."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return model


def _sqnr_db(reference, test):
    return 10 * torch.log10(reference.pow(2).mean() / (reference - test).pow(2).mean()).item()


def test_folded_parameters_compute_conv_then_batchnorm():
    model = _randomize_batchnorm(MobileNetV2(num_classes=10, width_mult=0.5)).eval()
    qmodel = qat.prepare(model)
    conv, bn = model.features[3].conv[0][0], model.features[3].conv[0][1]
    qconv = qmodel.get_submodule("features.3.conv.0.0")
    assert qconv.bn is not None and qconv.weight_format == "ternary"
    w, b = qconv.folded_parameters()
    x = torch.randn(2, conv.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            nn.functional.conv2d(x, w, b), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_int8_model_tracks_float_model_and_ternary_costs_accuracy():
    """After calibration an int8 model is close to the float one; a PROM one is further off."""
    torch.manual_seed(0)
    model = _randomize_batchnorm(MobileNetV2(num_classes=10, width_mult=0.5, input_size=32))
    model.eval()
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    sqnr = {}
    for fmt in ("int8", "ternary"):
        qmodel = qat.freeze_batchnorm(qat.prepare(model, qat.QATConfig(pointwise_format=fmt)))
        qmodel.train()
        with torch.no_grad():
            qmodel(x)  # calibrate the activation ranges (BN is frozen: no statistics change)
            sqnr[fmt] = _sqnr_db(reference, qmodel.eval()(x))
    print(sqnr)
    assert sqnr["int8"] > 30
    assert sqnr["ternary"] < sqnr["int8"]


def test_layer_formats():
    model = MobileNetV2(num_classes=10, width_mult=0.5)
    qmodel = qat.prepare(model, qat.QATConfig(int8_modules=("features.18.0",)))
    formats = {n: m.weight_format for n, m in qmodel.named_modules()
               if isinstance(m, (qat.QuantConv2d, qat.QuantLinear))}
    originals = dict(model.named_modules())
    for name, fmt in formats.items():
        m = originals[name]
        pointwise = isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1
        expect = "ternary" if pointwise and name != "features.18.0" else "int8"
        assert fmt == expect, name
    assert formats["features.18.0"] == "int8"
    assert len(formats) == 53  # 52 convs + the classifier
    int8_only = qat.prepare(model, qat.QATConfig(pointwise_format="int8"))
    assert {m.weight_format for m in int8_only.modules()
            if isinstance(m, qat.QuantConv2d)} == {"int8"}


def test_original_model_is_untouched():
    model = MobileNetV2(num_classes=10, width_mult=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qat.prepare(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not qat.is_prepared(model)


def test_nothing_to_quantize():
    with pytest.raises(ValueError, match="nothing to quantize in Sequential"):
        qat.prepare(nn.Sequential(nn.ReLU(), nn.Flatten()))


class _WithUnsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.LayerNorm([8, 6, 6])
        self.temporal = nn.Conv1d(8, 8, 3)
        self.fc = nn.Linear(8 * 4, 10)

    def forward(self, x):
        x = self.norm(self.conv(x))
        x = self.temporal(x.flatten(2)[..., :6])
        return self.fc(x.flatten(1))


def test_unsupported_layers_are_named():
    with pytest.raises(ValueError) as err:
        qat.prepare(_WithUnsupported())
    message = str(err.value)
    assert "norm (torch.nn.modules.normalization.LayerNorm)" in message
    assert "temporal (torch.nn.modules.conv.Conv1d)" in message
    assert "float_modules" in message
    qmodel = qat.prepare(_WithUnsupported(), qat.QATConfig(float_modules=("norm", "temporal")))
    assert isinstance(qmodel.get_submodule("conv"), qat.QuantConv2d)
    assert type(qmodel.get_submodule("norm")) is nn.LayerNorm
    assert qmodel(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_functional_conv_is_named():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 3, 3, 3))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(nn.functional.conv2d(x, self.w).mean((2, 3)))

    with pytest.raises(ValueError, match=r"conv2d \(F.conv2d\)"):
        qat.prepare(Functional())


def test_config_names_are_checked():
    model = MobileNetV2(num_classes=10, width_mult=0.5)
    with pytest.raises(ValueError, match=re.escape("does not have: ['features.99']")):
        qat.prepare(model, qat.QATConfig(float_modules=("features.99",)))
    with pytest.raises(ValueError, match=re.escape("features.0.0 (Conv2d) is not a 1x1 conv")):
        qat.prepare(model, qat.QATConfig(int8_modules=("features.0.0",)))
    with pytest.raises(TypeError, match="QATConfig"):
        qat.prepare(model, {"pointwise_format": "int8"})


def test_prepare_twice_is_refused():
    qmodel = qat.prepare(MobileNetV2(num_classes=10, width_mult=0.5))
    with pytest.raises(ValueError, match="already prepared"):
        qat.prepare(qmodel)


def test_untraceable_model_is_explained():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="could not trace Branchy"):
        qat.prepare(Branchy())


def test_dropout_follows_train_and_eval():
    """fx bakes ``self.training`` into functional dropout; prepare makes it follow the mode."""
    class FunctionalDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x):
            return nn.functional.dropout(self.fc(x), 0.5, self.training)

    qmodel = qat.prepare(FunctionalDropout().train())
    x = torch.randn(64, 16)
    qmodel(x)  # calibrate
    qmodel.eval()
    torch.testing.assert_close(qmodel(x), qmodel(x))
    assert not (qmodel(x) == 0).all(dim=1).any()
