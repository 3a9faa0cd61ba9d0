"""PROM quantization-aware training for torch CNNs and export to QDQ ONNX.

Needs torch (``pip install prom-tvm[torch]``); the rest of ``prom_tvm`` does not. ::

    from prom_tvm import qat
    qmodel = qat.prepare(float_model)     # ternary 1x1, int8 elsewhere, 8-bit activations
    ...                                   # fine-tune qmodel as usual (train() mode)
    qat.export_onnx(qmodel.eval(), example_batch, "model_prom.onnx")  # for prom_tvm.build

See docs/qat.md.
"""

try:
    import torch  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "prom_tvm.qat needs torch: pip install 'prom-tvm[torch]' (or pip install torch)"
    ) from err

from prom_tvm.qat.config import QATConfig
from prom_tvm.qat.export import export_onnx
from prom_tvm.qat.modules import ActivationQuant, QuantConv2d, QuantLinear, freeze_batchnorm
from prom_tvm.qat.prepare import is_prepared, prepare, quantized_layers

__all__ = [
    "ActivationQuant",
    "QATConfig",
    "QuantConv2d",
    "QuantLinear",
    "export_onnx",
    "freeze_batchnorm",
    "is_prepared",
    "prepare",
    "quantized_layers",
]
