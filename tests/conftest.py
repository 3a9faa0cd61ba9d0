"""Shared test setup: helper modules on sys.path, the torchvision fixture."""

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
