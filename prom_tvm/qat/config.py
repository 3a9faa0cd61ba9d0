"""What ``prom_tvm.qat.prepare`` quantizes and how, as one validated, frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

POINTWISE_FORMATS = ("ternary", "int8")
TERNARY_METHODS = ("twn", "absmean")


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training settings.

    Parameters
    ----------
    pointwise_format : str
        ``"ternary"`` (PROM: every 1x1, ``groups == 1`` conv gets weights in
        ``{-a_c, 0, +a_c}``) or ``"int8"`` (every conv int8: the usual int8 QAT baseline).
    ternary_method : str
        ``"twn"``: Ternary Weight Networks (Li et al., 2016). Per output channel c, weights with
        ``|w| > twn_threshold * mean|w_c|`` become ``sign(w)``, the rest 0, and
        ``a_c = mean |w|`` over the kept weights (the least-squares scale for that pattern).
        ``"absmean"``: BitNet b1.58 (Ma et al., 2024): ``a_c = mean|w_c|``,
        codes ``clip(round(w / a_c), -1, 1)``. TWN is the default because its scale is fitted
        to the weights it keeps, which loses less when fine-tuning from a float model.
    twn_threshold : float
        Threshold factor of ``"twn"`` (0.7 in the TWN paper: the optimum for Gaussian weights).
    activation_momentum : float
        Weight of the newest batch in the exponential moving average of each activation's
        min / max (the observer that sets the 8-bit activation scale and zero point).
    int8_modules : tuple of str
        Qualified names of 1x1 convs to keep int8 instead of ternary (for example the last
        1x1 conv, ``"features.18.0"`` in MobileNetV2).
    float_modules : tuple of str
        Qualified names of modules to leave in float, unquantized: the way past a layer type
        ``prepare`` does not support (it names them).
    """

    pointwise_format: str = "ternary"
    ternary_method: str = "twn"
    twn_threshold: float = 0.7
    activation_momentum: float = 0.01
    int8_modules: tuple[str, ...] = ()
    float_modules: tuple[str, ...] = ()

    def __post_init__(self):
        if self.pointwise_format not in POINTWISE_FORMATS:
            raise ValueError(
                f"pointwise_format must be one of {POINTWISE_FORMATS}, "
                f"got {self.pointwise_format!r}")
        if self.ternary_method not in TERNARY_METHODS:
            raise ValueError(
                f"ternary_method must be one of {TERNARY_METHODS}, got {self.ternary_method!r}"
            )
        if not 0.0 < self.twn_threshold < 1.5:
            raise ValueError(f"twn_threshold must lie in (0, 1.5), got {self.twn_threshold}")
        if not 0.0 < self.activation_momentum <= 1.0:
            raise ValueError(
                f"activation_momentum must lie in (0, 1], got {self.activation_momentum}"
            )
        for field in ("int8_modules", "float_modules"):
            names = getattr(self, field)
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{field} must be a sequence of module names, got {names!r}")
            object.__setattr__(self, field, tuple(names))
