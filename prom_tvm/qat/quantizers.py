"""Fake quantizers: ternary and int8 per-channel weights, int32 bias, 8-bit activations.

Each weight quantizer returns integer *codes* and a per-output-channel float32 *scale*; the
weight that runs is ``codes * scale``, computed the same way by training (here) and by
``export_onnx`` (``DequantizeLinear(codes, scale, axis=0)``), so what is exported is what was
trained.  Gradients pass straight through (STE): the float "shadow" weight is updated as if
the quantizer were the identity.

>>> import torch
>>> w = torch.tensor([[0.9, -0.1, -1.1, 0.05]])
>>> codes, scale = ternary_codes(w, method="twn", threshold=0.7)
>>> codes.tolist(), [round(s, 4) for s in scale.tolist()]
([[1.0, 0.0, -1.0, 0.0]], [1.0])
>>> codes, scale = int8_codes(w)
>>> codes.tolist()
[[104.0, -12.0, -127.0, 6.0]]
"""

from __future__ import annotations

import torch

INT32_MAX = 2**31 - 1


def _per_channel(w: torch.Tensor) -> torch.Tensor:
    return w.detach().reshape(w.shape[0], -1)


def _safe_scale(scale: torch.Tensor) -> torch.Tensor:
    """A channel whose weights are all zero gets scale 1 (its codes are 0 whatever the scale)."""
    return torch.where(scale > 0, scale, torch.ones_like(scale)).to(torch.float32)


def ternary_codes(
    w: torch.Tensor, method: str = "twn", threshold: float = 0.7
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ternary codes in {-1, 0, 1} (same shape as ``w``) and a float32 scale per output channel.

    ``method`` is ``"twn"`` or ``"absmean"``; see ``QATConfig`` for both rules.
    """
    flat = _per_channel(w)
    mag = flat.abs()
    if method == "twn":
        keep = mag > threshold * mag.mean(dim=1, keepdim=True)
        codes = torch.where(keep, torch.sign(flat), torch.zeros_like(flat))
        scale = (mag * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
    elif method == "absmean":
        scale = mag.mean(dim=1)
        codes = torch.clamp(torch.round(flat / _safe_scale(scale)[:, None]), -1, 1) + 0.0  # no -0
    else:
        raise ValueError(f"unknown ternary method {method!r}; use 'twn' or 'absmean'")
    return codes.reshape(w.shape), _safe_scale(scale)


def int8_codes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8 codes in [-127, 127] and their float32 scale."""
    flat = _per_channel(w)
    scale = _safe_scale(flat.abs().amax(dim=1) / 127.0)
    codes = torch.clamp(torch.round(flat / scale[:, None]), -127, 127)
    return codes.reshape(w.shape), scale


def dequantize_weight(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``codes * scale`` broadcast over the output-channel axis, in float32 (as ONNX DQ does)."""
    return codes.to(torch.float32) * scale.reshape(-1, *([1] * (codes.dim() - 1)))


def bias_codes(bias: torch.Tensor, bias_scale: torch.Tensor) -> torch.Tensor:
    """int32 bias codes for scale ``s_x * s_w[c]`` (onnxruntime's QDQ bias convention)."""
    return torch.clamp(torch.round(bias.detach() / bias_scale), -INT32_MAX, INT32_MAX)


def straight_through(w: torch.Tensor, w_quantized: torch.Tensor) -> torch.Tensor:
    """Forward ``w_quantized``, backward as if identity (the straight-through estimator)."""
    return w + (w_quantized - w).detach()


def activation_qparams(
    min_val: torch.Tensor, max_val: torch.Tensor, qmin: int = 0, qmax: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric scale (float32) and zero point (int32) for the range [min_val, max_val].

    The range is widened to include 0 so that 0 (ReLU outputs, padding) is exact.
    """
    lo = torch.clamp(min_val, max=0.0)
    hi = torch.clamp(max_val, min=0.0)
    scale = torch.clamp((hi - lo) / (qmax - qmin), min=1e-8).to(torch.float32)
    zero_point = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax).to(torch.int32)
    return scale, zero_point
