"""Seeded PROM example models as ONNX, built from numpy and onnx alone (no torch)."""

from prom_tvm.models.mobilenet_v2_onnx import mobilenet_v2_float, mobilenet_v2_qdq
from prom_tvm.models.qdq import quantize_qdq
from prom_tvm.models.tiny_cnn import tiny_float_cnn, tiny_qdq_cnn

__all__ = [
    "mobilenet_v2_float",
    "mobilenet_v2_qdq",
    "quantize_qdq",
    "tiny_float_cnn",
    "tiny_qdq_cnn",
]
