"""The modules ``prepare`` puts into a model: quantized conv / linear and the activation quantizer.

``QuantConv2d`` and ``QuantLinear`` hold BN-folded float weights (the trained "shadow" weights)
and run them fake-quantized: ternary or int8 per output channel, bias as int32 codes with scale
``s_x * s_w[c]``.  They take the input activation's scale as a second argument because the bias
scale depends on it, exactly as in the QDQ ONNX they export to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prom_tvm.qat.quantizers import (
    activation_qparams,
    bias_codes,
    dequantize_weight,
    int8_codes,
    straight_through,
    ternary_codes,
)

WEIGHT_FORMATS = ("ternary", "int8")


class ActivationQuant(nn.Module):
    """8-bit asymmetric (uint8) fake quantization of one activation tensor.

    The range is an exponential moving average of each training batch's min and max (the first
    batch sets it): simple, needs no extra parameters, and is what onnxruntime's calibration
    would have found on training data.  In ``eval()`` the range is frozen.  The gradient is the
    straight-through estimator, zero outside the range (``torch.fake_quantize_per_tensor_affine``).
    """

    def __init__(self, momentum: float = 0.01):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("min_val", torch.tensor(0.0))
        self.register_buffer("max_val", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int32))
        self.register_buffer("observed", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = torch.aminmax(x.detach())
                m = torch.where(self.observed, self.momentum, 1.0)
                self.min_val.mul_(1 - m).add_(m * lo)
                self.max_val.mul_(1 - m).add_(m * hi)
                self.observed.fill_(True)
                scale, zero_point = activation_qparams(self.min_val, self.max_val)
                self.scale.copy_(scale)
                self.zero_point.copy_(zero_point)
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255)

    def extra_repr(self) -> str:
        return (f"momentum={self.momentum}, scale={self.scale.item():.6g}, "
                f"zero_point={self.zero_point.item()}")


def _copy_parameters(src: nn.Module, dst: nn.Module) -> None:
    """Copy weight and bias, keeping the memory format (``channels_last`` stays)."""
    dst.weight = nn.Parameter(src.weight.detach().clone(), src.weight.requires_grad)
    if src.bias is not None:
        dst.bias = nn.Parameter(src.bias.detach().clone(), src.bias.requires_grad)


class _QuantWeightMixin:
    """Weight and bias quantization shared by ``QuantConv2d`` and ``QuantLinear``."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    weight_format: str
    ternary_method: str
    twn_threshold: float

    def _setup(self, weight_format: str, ternary_method: str, twn_threshold: float) -> None:
        if weight_format not in WEIGHT_FORMATS:
            raise ValueError(
                f"weight_format must be one of {WEIGHT_FORMATS}, got {weight_format!r}")
        self.weight_format = weight_format
        self.ternary_method = ternary_method
        self.twn_threshold = twn_threshold

    def folded_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float weight and bias with BatchNorm (if any) folded in: what gets quantized."""
        return self.weight, self.bias

    def _codes(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.weight_format == "ternary":
            return ternary_codes(weight, self.ternary_method, self.twn_threshold)
        return int8_codes(weight)

    def weight_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer weight codes (float tensor) and float32 per-output-channel scale."""
        return self._codes(self.folded_parameters()[0])

    def bias_codes(
        self, input_scale: torch.Tensor, weight_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """int32 bias codes (float tensor) and their float32 scale ``s_x * s_w``, or None."""
        bias = self.folded_parameters()[1]
        if bias is None:
            return None
        b_scale = (input_scale.detach().to(torch.float32) * weight_scale).to(torch.float32)
        return bias_codes(bias, b_scale), b_scale

    def quantized_parameters(
        self, input_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias that run (fake-quantized, gradients straight through)."""
        weight, bias = self.folded_parameters()
        codes, scale = self._codes(weight)
        weight = straight_through(weight, dequantize_weight(codes, scale))
        if bias is not None:
            b_scale = (input_scale.detach().to(torch.float32) * scale).to(torch.float32)
            bias = straight_through(bias, bias_codes(bias, b_scale) * b_scale)
        return weight, bias


class QuantConv2d(_QuantWeightMixin, nn.Conv2d):
    """``nn.Conv2d`` (+ BatchNorm) with ternary or int8 per-channel weights.

    Call as ``conv(x_q, input_scale)``.  With a BatchNorm, training uses the simulated folding
    of Jacob et al. (2018) as torch's own QAT does: the weight is folded with BN's running
    statistics and quantized, the conv output is unscaled again and normalized with the batch
    statistics, which keeps training stable (also from scratch).  In ``eval()``, or after
    ``freeze_batchnorm``, the folded weight and bias run directly: the exported computation.
    """

    bn: nn.BatchNorm2d | None
    bn_frozen: bool

    @classmethod
    def from_float(
        cls, conv: nn.Conv2d, weight_format: str, ternary_method: str = "twn",
        twn_threshold: float = 0.7, bn: nn.BatchNorm2d | None = None,
    ) -> QuantConv2d:
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None, padding_mode=conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype,
        )
        new._setup(weight_format, ternary_method, twn_threshold)
        _copy_parameters(conv, new)
        new.bn = bn
        new.bn_frozen = False
        new.train(conv.training)
        return new

    def _bn_factor(self) -> torch.Tensor:
        factor = torch.rsqrt(self.bn.running_var + self.bn.eps)
        return factor * self.bn.weight if self.bn.weight is not None else factor

    def folded_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.bn is None:
            return self.weight, self.bias
        factor = self._bn_factor()
        bias = -self.bn.running_mean * factor
        if self.bias is not None:
            bias = bias + self.bias * factor
        if self.bn.bias is not None:
            bias = bias + self.bn.bias
        return self.weight * factor.reshape(-1, 1, 1, 1), bias

    def forward(self, x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
        if self.bn is not None and self.training and not self.bn_frozen:
            factor = self._bn_factor()
            folded = self.weight * factor.reshape(-1, 1, 1, 1)
            codes, scale = self._codes(folded)
            y = self._conv_forward(x, straight_through(folded, dequantize_weight(codes, scale)),
                                   None)
            y = y / factor.reshape(1, -1, 1, 1)
            if self.bias is not None:
                y = y + self.bias.reshape(1, -1, 1, 1)
            return self.bn(y)
        weight, bias = self.quantized_parameters(input_scale)
        return self._conv_forward(x, weight, bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_format={self.weight_format}"


class QuantLinear(_QuantWeightMixin, nn.Linear):
    """``nn.Linear`` with int8 per-output-channel weights; call as ``fc(x_q, input_scale)``."""

    @classmethod
    def from_float(cls, fc: nn.Linear, weight_format: str = "int8", **_: object) -> QuantLinear:
        new = cls(fc.in_features, fc.out_features, bias=fc.bias is not None,
                  device=fc.weight.device, dtype=fc.weight.dtype)
        new._setup(weight_format, "twn", 0.7)
        _copy_parameters(fc, new)
        new.train(fc.training)
        return new

    def forward(self, x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
        weight, bias = self.quantized_parameters(input_scale)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_format={self.weight_format}"


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Stop using batch statistics in training: from now on, train the exported computation.

    Useful for the last epochs of QAT (as torch's ``freeze_bn_stats``); returns ``model``.
    """
    for m in model.modules():
        if isinstance(m, QuantConv2d) and m.bn is not None:
            m.bn_frozen = True
    return model
