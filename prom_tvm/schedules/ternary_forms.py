"""The add-only kernel of one ternary layer, in the code shape the rule or a tuning record picks.

Shared by the lowering (``passes/lower_quantized_ops.py``) and the tuner (``prom_tvm.tune``),
so that a knob measured by the tuner builds exactly the kernel ``build`` then uses.  Knobs:

* table lookup (``ternary_lut``): ``g`` (input channels per table), ``table_bytes`` (tables
  per block), ``vectors`` (pixel vectors sharing each index load), ``co_split`` (tasks per
  pixel vector), ``word_loads`` (indices 4 per 32-bit load), ``co_unroll`` (outputs per
  iteration);
* weight-specialized (``ternary_specialized``): ``rows`` ("ssa" / "buffer": where inputs and
  sub-sums live), ``epilogue`` ("inline" / "loop").

A layer's *workload key* names what its knobs depend on: form, shape, input dtype and lanes
(the weights change the specialized code but not which knobs suit it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .requant import Requant

LUT_DEFAULT = {"g": 3}
SPECIALIZED_DEFAULT: dict = {}


@dataclass
class TernaryLayer:
    """Everything a ternary 1x1 layer's kernel is built from."""

    signs: np.ndarray  # [Cout, Cin] in {-1, 0, 1}
    n: int
    h: int
    w: int
    x_dtype: str
    bias: np.ndarray  # int32 [Cout], zero-point correction folded in
    rq: Requant
    magnitude: np.ndarray | None  # int32 [Cout] or None for {-1, 0, 1}
    float_rescale: bool

    @property
    def cout(self) -> int:
        return int(self.signs.shape[0])

    @property
    def cin(self) -> int:
        return int(self.signs.shape[1])

    @property
    def hw(self) -> int:
        return self.h * self.w


def workload_key(layer: TernaryLayer, form: str, lanes: int) -> str:
    return (f"{form}/n{layer.n}/cin{layer.cin}/cout{layer.cout}/{layer.h}x{layer.w}/"
            f"{layer.x_dtype}/lanes{lanes}")


@dataclass
class Kernel:
    """A built kernel: the PrimFunc, its constant arguments after x, and summary details."""

    func: object
    consts: list[np.ndarray]
    details: dict


def x86_epilogue_bits(layer: TernaryLayer, x86_bits: int | None, lanes: int) -> int | None:
    """``x86_bits`` where the x86 requantization applies to ``layer`` (its vectors fill the
    register and ``requant_x86.fits`` holds), else None: the portable epilogue."""
    from .requant_x86 import fits
    from .ternary_lut import signs_sum_bound

    if x86_bits is None or lanes * 16 != x86_bits or layer.hw < lanes:
        return None
    bound = signs_sum_bound(layer.signs, layer.cin, layer.x_dtype)
    if not fits(bound, layer.bias, layer.magnitude, layer.rq.scale):
        return None
    if layer.magnitude is not None and not layer.float_rescale:
        return None
    return x86_bits


def lut_kernel(layer: TernaryLayer, lanes: int, cores: int, knobs: dict | None = None,
               x86_bits: int | None = None) -> Kernel:
    """``x86_bits``: the target's x86 vector width (``requant_x86.x86_vector_bits``), None
    for other CPUs."""
    from . import ternary_lut as tl

    k = {**LUT_DEFAULT, **(knobs or {})}
    cfg = tl.choose_config(layer.cin, layer.cout, layer.hw, layer.x_dtype, lanes, layer.signs,
                           g=int(k["g"]), table_bytes=int(k.get("table_bytes", tl.TABLE_BYTES)),
                           vectors=k.get("vectors"), co_split=k.get("co_split"),
                           min_tasks=cores, word_loads=bool(k.get("word_loads", False)),
                           co_unroll=int(k.get("co_unroll", 2)))
    idx = tl.pack_indices(layer.signs, cfg)
    mag = layer.magnitude
    uniform = mag is not None and bool(np.all(mag == mag[0]))
    mag_arg = None if mag is None else int(mag[0]) if uniform else "per-channel"
    func = tl.lut_primfunc(cfg, layer.n, layer.cin, layer.cout, layer.hw, layer.x_dtype,
                           layer.rq, mag_arg, layer.float_rescale, spatial=(layer.h, layer.w),
                           x86_bits=x86_epilogue_bits(layer, x86_bits, cfg.lanes))
    consts = [idx, layer.bias, layer.rq.scale] + ([mag] if mag_arg == "per-channel" else [])
    details = tl.summary_details(cfg, layer.signs)
    details["note"] = f"table lookup, {cfg.g} channels per add, acc {cfg.acc_dtype}"
    return Kernel(func, consts, details)


def specialized_kernel(layer: TernaryLayer, lanes: int, knobs: dict | None = None,
                       max_bytes_per_pixel: float | None = None,
                       x86_bits: int | None = None) -> Kernel | None:
    """The weight-specialized kernel, or None where the code-size rule declines the layer
    (a tuning record does not override the rule: it is about storage, not speed)."""
    from . import ternary_specialized as ts

    k = {**SPECIALIZED_DEFAULT, **(knobs or {})}
    budget = ts.MAX_CODE_BYTES_PER_PIXEL if max_bytes_per_pixel is None else max_bytes_per_pixel
    nnz = int(np.count_nonzero(layer.signs))
    if not ts.should_specialize(layer.cin, layer.cout, layer.hw, nnz, lanes, budget):
        return None
    plan = ts.SpecializedPlan.build(layer.signs, layer.x_dtype)
    func = ts.specialized_primfunc(plan, layer.n, layer.hw, layer.bias, layer.rq,
                                   layer.magnitude, layer.float_rescale, lanes,
                                   epilogue=k.get("epilogue", "inline"), rows=k.get("rows"),
                                   spatial=(layer.h, layer.w),
                                   x86_bits=x86_epilogue_bits(layer, x86_bits, lanes))
    consts = [] if k.get("epilogue", "inline") == "inline" else (
        [layer.bias, layer.rq.scale] + ([] if layer.magnitude is None else [layer.magnitude]))
    d = ts.kernel_details(plan, nnz, layer.cout, lanes)
    d["note"] = f"specialized, acc {d['acc_dtype']}, {d['adds']} adds for {d['nnz']} nonzeros"
    return Kernel(func, consts, d)


def knob_space(form: str, layer: TernaryLayer) -> list[dict]:
    """Candidate knobs of a layer, the default first (so a tuned build is never slower than the
    default: the default is measured like any candidate)."""
    if form == "table-lookup":
        space = [dict(LUT_DEFAULT)]
        for g, tb, v in itertools.product((3, 2, 4), (16384, 24576, 40960), (1, 2)):
            cand = {"g": g, "table_bytes": tb, "vectors": v}
            if cand not in space and not (v == 2 and -(-layer.hw // 32) < 2):
                space.append(cand)
        space += [{**LUT_DEFAULT, "word_loads": True}, {**LUT_DEFAULT, "co_unroll": 1},
                  {**LUT_DEFAULT, "co_unroll": 4}]
        return space
    if form == "specialized":
        return [dict(SPECIALIZED_DEFAULT), {"rows": "ssa"}, {"rows": "buffer"},
                {"epilogue": "loop"}]
    raise ValueError(f"no knobs for form {form!r}")
