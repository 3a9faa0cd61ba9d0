"""The pointwise (1x1) layer shapes of MobileNetV2 224, shared by the per-layer benchmarks."""

# (name of the first layer with the shape, cin, cout, hw, layers of MobileNetV2 224 with it)
LAYERS = [
    ("features.1.conv.1", 32, 16, 112, 1), ("features.2.conv.0.0", 16, 96, 112, 1),
    ("features.2.conv.2", 96, 24, 56, 1), ("features.3.conv.0.0", 24, 144, 56, 2),
    ("features.3.conv.2", 144, 24, 56, 1), ("features.4.conv.2", 144, 32, 28, 1),
    ("features.5.conv.0.0", 32, 192, 28, 3), ("features.5.conv.2", 192, 32, 28, 2),
    ("features.7.conv.2", 192, 64, 14, 1), ("features.8.conv.0.0", 64, 384, 14, 4),
    ("features.8.conv.2", 384, 64, 14, 3), ("features.11.conv.2", 384, 96, 14, 1),
    ("features.12.conv.0.0", 96, 576, 14, 3), ("features.12.conv.2", 576, 96, 14, 2),
    ("features.14.conv.2", 576, 160, 7, 1), ("features.15.conv.0.0", 160, 960, 7, 3),
    ("features.15.conv.2", 960, 160, 7, 2), ("features.17.conv.2", 960, 320, 7, 1),
    ("features.18.0", 320, 1280, 7, 1),
]  # fmt: skip
