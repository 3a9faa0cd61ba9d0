"""prepare -> a few training steps -> export_onnx on torchvision models; onnxruntime agrees."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from qat_helpers import run_exported, train_steps  # noqa: E402
from qdq_checks import check_prom_weights, check_residual_adds_quantized  # noqa: E402

from prom_tvm import qat  # noqa: E402


def _batch(n=8, size=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % classes


def _train_export_compare(model, tmp_path, steps=8, lr=3e-3, max_rel_error=0.02):
    torch.manual_seed(0)
    x, y = _batch()
    qmodel = qat.prepare(model)
    losses = train_steps(qmodel, x, y, steps, lr)
    assert np.mean(losses[-3:]) < losses[0], losses
    qmodel.eval()
    path = tmp_path / "model.onnx"
    proto = qat.export_onnx(qmodel, x[:1], path)
    x_new = torch.cat([x, _batch(seed=1)[0]])  # seen and unseen inputs
    with torch.no_grad():
        expect = qmodel(x_new).numpy()
    got = run_exported(path, x_new.numpy())
    rel = np.linalg.norm(got - expect) / np.linalg.norm(expect)
    print(f"relative error {rel:.4f}, top-1 agreement {np.mean(got.argmax(1) == expect.argmax(1))}")
    assert rel < max_rel_error
    np.testing.assert_array_equal(got.argmax(1), expect.argmax(1))
    return proto


def test_mobilenet_v2(torchvision, tmp_path):
    model = torchvision.models.mobilenet_v2(width_mult=0.5, num_classes=10)
    proto = _train_export_compare(model, tmp_path)
    ternary, int8 = check_prom_weights(proto)
    assert ternary == 34  # 17 blocks: expand (16 of them) + project 1x1, and the last 1x1 conv
    assert int8 == 52 - 34 + 1  # first conv, 17 depthwise convs, the classifier
    assert check_residual_adds_quantized(proto) == 10


def test_mobilenet_v3_small(torchvision, tmp_path):
    """Hardswish, squeeze-excitation (1x1 convs with bias, a float multiply)."""
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    proto = _train_export_compare(model, tmp_path, steps=10)
    ternary, _ = check_prom_weights(proto)
    modules = dict(model.named_modules())
    pointwise = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)
                 and m.kernel_size == (1, 1) and m.groups == 1]
    assert ternary == len(pointwise)
    assert check_residual_adds_quantized(proto) > 0


@pytest.mark.slow
def test_efficientnet_b0(torchvision, tmp_path):
    """SiLU, squeeze-excitation, stochastic depth."""
    model = torchvision.models.efficientnet_b0(num_classes=10)
    proto = _train_export_compare(model, tmp_path, steps=12, lr=1e-3)
    check_prom_weights(proto)
    check_residual_adds_quantized(proto)
