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


def run_onnxruntime(path, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]
