"""Shared test setup: helper modules on sys.path, the torchvision and tiny-model fixtures."""

import sys
from pathlib import Path

import pytest

# tests import small shared helpers (kernel_harness) from this folder
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def torchvision():
    """torchvision, importable once its two C++ op schemas exist. The wheel here is a CUDA
    build whose C++ ops are missing; defining their schemas is a test-setup workaround only,
    never something the package does."""
    torch = pytest.importorskip("torch")
    for op in ("nms", "qnms"):
        try:
            torch.library.define(
                f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # already defined by another test module
    return pytest.importorskip("torchvision")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """The tiny QDQ CNN (16x16 input) saved as an ONNX file, shared by the tests that read it."""
    import onnx

    from prom_tvm.models.tiny_cnn import tiny_qdq_cnn

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(tiny_qdq_cnn(16), path)
    return path
