"""MobileNetV2 in torch with torchvision's architecture and state_dict names, without torchvision.

For examples and tests that should not depend on torchvision: a ``state_dict`` of
``torchvision.models.mobilenet_v2(width_mult=w, num_classes=n)`` loads into
``MobileNetV2(width_mult=w, num_classes=n)`` and vice versa (same keys, same shapes).  Extras:
``in_channels`` (1 for grayscale data such as Fashion-MNIST, which changes only the first
conv's weight shape) and ``input_size``, the nominal input resolution used by
``example_input``; the network itself runs on any size (global average pooling).

Needs torch (``pip install prom-tvm[torch]``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InvertedResidual", "MobileNetV2", "conv_bn_relu6"]

# torchvision's table: expansion t, output channels c, repeats n, first stride s.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count as torchvision does (never more than 10% below ``v``)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn_relu6(inp: int, oup: int, kernel_size: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU6, laid out as torchvision's Conv2dNormActivation."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 -> project 1x1, with a residual add when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(inp, hidden, kernel_size=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (Sandler et al., 2018).

    Parameters
    ----------
    num_classes : int
        Outputs of the classifier.
    width_mult : float
        Channel multiplier (channels rounded to multiples of 8, as torchvision does).
    in_channels : int
        Image channels (3 for RGB, 1 for grayscale).
    input_size : int
        Nominal square input resolution (``example_input``); at least 1.
    dropout : float
        Dropout before the classifier (torchvision: 0.2).
    stem_stride : int
        Stride of the first conv: 2 as in torchvision; 1 for small images (28x28, 32x32) as
        CIFAR-style adaptations do, so the last feature map is not 1x1.  Names and shapes of
        the state_dict do not change.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
                 input_size: int = 224, dropout: float = 0.2, stem_stride: int = 2):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if in_channels < 1 or num_classes < 1 or input_size < 1:
            raise ValueError("in_channels, num_classes and input_size must be >= 1, got "
                             f"{in_channels}, {num_classes}, {input_size}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.in_channels = in_channels
        self.input_size = input_size
        channels = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [conv_bn_relu6(in_channels, channels, stride=stem_stride)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(conv_bn_relu6(channels, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                        nn.Linear(self.last_channel, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialization."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A random NCHW batch of the nominal input size (for tracing / ONNX export)."""
        return torch.randn(batch, self.in_channels, self.input_size, self.input_size)
