"""The other producer of QDQ models: prom_tvm.qat's export, compiled by prom_tvm.build."""

from __future__ import annotations

import pytest
from model_harness import check_against_exact

import prom_tvm

torch = pytest.importorskip("torch")


def test_qat_exported_mobilenet_v2_compiles_add_only_and_matches_exact_reference(tmp_path):
    from prom_tvm import qat
    from prom_tvm.models.mobilenet_v2_torch import MobileNetV2

    torch.manual_seed(0)
    model = MobileNetV2(num_classes=10, width_mult=0.35)
    x = torch.randn(8, 3, 64, 64)
    qmodel = qat.prepare(model)
    qmodel.train()
    with torch.no_grad():
        for _ in range(3):  # let the activation observers see data
            qmodel(x)
    qmodel.eval()
    path = tmp_path / "mnv2_prom.onnx"
    qat.export_onnx(qmodel, x[:1], path, dynamic_batch=False)
    import onnx

    onnx_model = onnx.load(path)
    lib = prom_tvm.build(onnx_model)
    rows = lib.summary()
    pointwise = [r for r in rows if r["op"] == "Conv" and r["weight_shape"][2:] == (1, 1)]
    assert pointwise and all(r["kernel"] == "ternary-add" for r in pointwise), rows
    assert all(r["kernel"] == "int8" for r in rows if r not in pointwise), rows
    check_against_exact(lib, onnx_model, [x[i:i + 1].numpy() for i in range(4)])
