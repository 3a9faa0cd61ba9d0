"""MobileNetV2 224 layer shapes, shared by the per-layer benchmarks."""

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

# the int8 convs of the PROM network (its 1x1 convs are ternary):
# (name, cin, cout, hw, k, stride, groups, layers of MobileNetV2 224 with it)
INT8_CONVS = [
    ("features.0 3->32 3x3 s2 @224", 3, 32, 224, 3, 2, 1, 1),
    ("dw 32 s1 @112", 32, 32, 112, 3, 1, 32, 1),
    ("dw 96 s2 @112", 96, 96, 112, 3, 2, 96, 1),
    ("dw 144 s1 @56", 144, 144, 56, 3, 1, 144, 1),
    ("dw 144 s2 @56", 144, 144, 56, 3, 2, 144, 1),
    ("dw 192 s1 @28", 192, 192, 28, 3, 1, 192, 2),
    ("dw 192 s2 @28", 192, 192, 28, 3, 2, 192, 1),
    ("dw 384 s1 @14", 384, 384, 14, 3, 1, 384, 4),
    ("dw 576 s1 @14", 576, 576, 14, 3, 1, 576, 2),
    ("dw 576 s2 @14", 576, 576, 14, 3, 2, 576, 1),
    ("dw 960 s1 @7", 960, 960, 7, 3, 1, 960, 3),
]
