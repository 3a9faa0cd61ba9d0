"""Our torch MobileNetV2 has torchvision's architecture and state_dict names."""

import pytest

torch = pytest.importorskip("torch")

from prom_tvm.models.mobilenet_v2_torch import MobileNetV2  # noqa: E402


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_state_dict_matches_torchvision(torchvision, width):
    ours = MobileNetV2(num_classes=10, width_mult=width).state_dict()
    theirs = torchvision.models.mobilenet_v2(num_classes=10, width_mult=width).state_dict()
    assert list(ours) == list(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_same_function_as_torchvision(torchvision):
    theirs = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5).eval()
    ours = MobileNetV2(num_classes=10, width_mult=0.5).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_grayscale_changes_only_the_first_conv():
    rgb = MobileNetV2(num_classes=10, width_mult=0.5).state_dict()
    gray_model = MobileNetV2(num_classes=10, width_mult=0.5, in_channels=1, input_size=32)
    gray = gray_model.state_dict()
    differ = [k for k in rgb if rgb[k].shape != gray[k].shape]
    assert differ == ["features.0.0.weight"]
    assert gray["features.0.0.weight"].shape[1] == 1
    assert gray_model(gray_model.example_input(3)).shape == (3, 10)


def test_stem_stride_one_keeps_the_state_dict_and_doubles_the_resolution():
    base = MobileNetV2(num_classes=10, width_mult=0.5)
    small = MobileNetV2(num_classes=10, width_mult=0.5, stem_stride=1)
    assert {k: v.shape for k, v in base.state_dict().items()} == {
        k: v.shape for k, v in small.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    assert base.features(x).shape[-1] == 2 and small.features(x).shape[-1] == 4


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2(width_mult=0)
    with pytest.raises(ValueError, match="in_channels"):
        MobileNetV2(in_channels=0)
    with pytest.raises(ValueError, match="stem_stride"):
        MobileNetV2(stem_stride=3)
