"""Helpers shared by the prom_tvm.qat tests."""

from __future__ import annotations

import numpy as np
import pytest


def train_steps(model, x, y, steps: int, lr: float = 3e-3) -> list[float]:
    """A few Adam steps on one batch; returns the loss of each step."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def run_exported(path, x: np.ndarray) -> np.ndarray:
    """The exported file's numbers from the exact QDQ reference (prom_tvm.reference), after
    checking that onnxruntime loads and runs it. onnxruntime's own int8 numbers are not used:
    its fused kernels saturate on CPUs without VNNI (microsoft/onnxruntime#16105)."""
    pytest.importorskip("onnxruntime")
    from prom_tvm.reference import ExactReference, optimized_session, run

    assert run(optimized_session(path), x).shape[0] == x.shape[0]
    return ExactReference(path)(x)
