"""QATConfig validation: every bad value is refused with a message naming what is allowed."""

import pytest

pytest.importorskip("torch")

from prom_tvm.qat import QATConfig


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pointwise_format": "binary"}, "pointwise_format must be one of"),
        ({"ternary_method": "lsq"}, "ternary_method must be one of"),
        ({"twn_threshold": 0.0}, "twn_threshold"),
        ({"activation_momentum": 0.0}, "activation_momentum"),
        ({"activation_momentum": 1.5}, "activation_momentum"),
        ({"int8_modules": "features.18.0"}, "int8_modules must be a sequence"),
        ({"float_modules": [1]}, "float_modules must be a sequence"),
    ],
)
def test_bad_values_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QATConfig(**kwargs)


def test_lists_become_tuples():
    config = QATConfig(int8_modules=["a"], float_modules=["b", "c"])
    assert config.int8_modules == ("a",)
    assert config.float_modules == ("b", "c")
    hash(config)  # frozen and hashable
