"""Fixtures for the prom_tvm.qat tests (torch and torchvision are optional here)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def torchvision():
    """torchvision, importable once its two C++ op schemas exist (absent in this environment)."""
    torch = pytest.importorskip("torch")
    for op in ("nms", "qnms"):
        try:
            torch.library.define(
                f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # already defined by another test module
    return pytest.importorskip("torchvision")
