"""Exact detection of PROM-ternary weights, whatever their encoding.

A layer is ternary when, for every output channel c, its weights take values only in
{-a_c, 0, +a_c} with a_c > 0 (a channel of all zeros also qualifies).  The test is exact:
a nearly-ternary weight is *not* ternary, because rounding it to ternary would silently
change the model.  Encodings seen in practice:

* int8 {-1, 0, 1} with the magnitude in the DequantizeLinear scale (prom_tvm.qat export);
* int8 {-127, 0, 127} from onnxruntime's per-channel symmetric quantizer;
* plain float weights {-a_c, 0, a_c}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ternary:
    """signs: int8 [Cout, ...] in {-1, 0, 1}; magnitude: [Cout] value of the nonzeros
    (in the weight's own units: an integer for integer weights, a float for float ones;
    1 for all-zero channels)."""

    signs: np.ndarray
    magnitude: np.ndarray


def detect_ternary(weight: np.ndarray) -> Ternary | None:
    """Return the sign/magnitude split of ``weight`` (axis 0 = output channels) or None."""
    w = np.asarray(weight)
    if w.ndim < 2 or w.shape[0] == 0 or w.size == 0:
        return None
    flat = w.reshape(w.shape[0], -1)
    if np.issubdtype(flat.dtype, np.floating) and not np.isfinite(flat).all():
        return None
    mag = np.abs(flat).max(axis=1)
    nonzero = flat != 0
    # every nonzero must equal +-max|w| of its channel, exactly
    ok = np.where(nonzero, np.abs(flat) == mag[:, None], True).all()
    if not ok:
        return None
    signs = np.sign(flat).astype(np.int8).reshape(w.shape)
    magnitude = np.where(mag > 0, mag, 1).astype(flat.dtype)
    return Ternary(signs=signs, magnitude=magnitude)
