"""Energy and storage of a (PROM-)quantized CNN, per layer, against a float16 baseline.

PROM's case is arithmetic: with 8-bit activations, a 1x1 convolution with ternary weights needs
additions only. ``analyze_model`` counts the multiply-accumulates (MACs) of every Conv, Gemm and
MatMul in an ONNX model, says what they become (int8 multiplies, int8 / int32 additions, float
operations), prices them with the 45 nm energy table the paper uses, and counts the bits the
parameters take. Every costing choice is returned as a sentence in ``assumptions``. No torch.

Example
-------
>>> from prom_tvm.energy import analyze_model
>>> r = analyze_model("mnv2_prom.onnx")                          # doctest: +SKIP
>>> r["energy_ratio_vs_fp16"], r["storage_ratio_vs_fp16"]       # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from prom_tvm.energy_layers import KINDS, LayerCensus, census, load_model, measured_storage

__all__ = [
    "ENERGY_PJ",
    "ENERGY_TABLE_SOURCE",
    "KINDS",
    "TERNARY_STORAGE_BITS",
    "CostModel",
    "analyze_model",
]

ENERGY_TABLE_SOURCE = (
    "M. Horowitz, 'Computing's energy problem (and what we can do about it)', "
    "ISSCC 2014, 45 nm, 0.9 V"
)
# Energy per operation in picojoules, by operand type (ENERGY_TABLE_SOURCE).
ENERGY_PJ: dict[str, dict[str, float]] = {
    "int8": {"add": 0.03, "mult": 0.2},
    "int32": {"add": 0.1, "mult": 3.1},
    "fp16": {"add": 0.4, "mult": 1.1},
    "fp32": {"add": 0.9, "mult": 3.7},
}
TERNARY_STORAGE_BITS = 2  # {-1, 0, +1} packed four to a byte
_ACCUMULATE_CHOICES = ("int8", "int32")
_FP16_MAC_PJ = ENERGY_PJ["fp16"]["mult"] + ENERGY_PJ["fp16"]["add"]


@dataclass(frozen=True)
class CostModel:
    """The costing choices of the report; the defaults reproduce the paper's reading.

    Parameters
    ----------
    int8_accumulate : {"int32", "int8"}
        The add of an int8 MAC. ``"int32"`` (default): the product of two int8 values is
        16 bits and every int8 kernel accumulates in int32. ``"int8"``: the optimistic reading.
    ternary_accumulate : {"int8", "int32"}
        The add a ternary MAC turns into. ``"int8"`` (default) is the paper's convention.
    float_dtype : {None, "fp16", "fp32"}
        Arithmetic of float layers. None (default): their width in the file (fp32 for a
        float32 model); ``"fp16"`` prices a float model as the paper's float16 baseline.
    ternary_storage_bits : float
        Bits per stored ternary weight: 2 (default, four to a byte); 8 reads the weights as
        the int8 the ONNX file holds; log2(3) ~ 1.58 is the entropy bound.
    """

    int8_accumulate: str = "int32"
    ternary_accumulate: str = "int8"
    float_dtype: str | None = None
    ternary_storage_bits: float = TERNARY_STORAGE_BITS

    def __post_init__(self) -> None:
        for name in ("int8_accumulate", "ternary_accumulate"):
            value = getattr(self, name)
            if value not in _ACCUMULATE_CHOICES:
                raise ValueError(f"{name} must be one of {_ACCUMULATE_CHOICES}, got {value!r}")
        if self.float_dtype not in (None, "fp16", "fp32"):
            raise ValueError(
                f"float_dtype must be None, 'fp16' or 'fp32', got {self.float_dtype!r}"
            )
        if not self.ternary_storage_bits > 0:
            raise ValueError(f"ternary_storage_bits must be > 0, got {self.ternary_storage_bits!r}")


def analyze_model(
    model: onnx.ModelProto | str | Path, cost: CostModel | None = None
) -> dict[str, Any]:
    """Per-layer operation counts, energy and storage of an ONNX model, vs float16.

    Parameters
    ----------
    model : onnx.ModelProto or path
        QDQ ONNX (DequantizeLinear on constant weights, per-channel scales), or a float model
        (which gets a float report). The input shape must be static except for the batch,
        which is then taken as 1.
    cost : CostModel, optional
        Costing choices; ``CostModel()`` when omitted.

    Returns
    -------
    dict
        JSON-serializable: ``layers`` (one dict per Conv / Gemm / MatMul), ``totals``,
        ``total_energy_pj``, ``fp16_energy_pj``, ``energy_ratio_vs_fp16``, ``storage_bits``,
        ``fp16_storage_bits``, ``storage_ratio_vs_fp16``, ``weight_storage_ratio_vs_fp16``,
        ``cost_model``, ``energy_table_pj``, ``energy_table_source``, ``measured`` (bytes of
        the file, the serialized model, all initializers and the layers' initializers, as
        stored: ``energy_layers.measured_storage``), ``measured_storage_ratio_vs_fp16`` (float16
        parameters over the file's bytes) and ``assumptions`` (list of str, every choice
        behind the numbers).
    """
    cost = cost or CostModel()
    proto, label = load_model(model)
    found, inputs, notes = census(proto, label)
    if not found:
        raise ValueError(f"{label}: no Conv, Gemm or MatMul found; nothing to report")
    layers = [_cost(c, cost) for c in found]

    total = sum(row["energy_pj"] for row in layers)
    fp16 = sum(row["fp16_energy_pj"] for row in layers)
    bits = sum(row["param_bits"] for row in layers)
    fp16_bits = sum(row["fp16_param_bits"] for row in layers)
    weight_bits = sum(row["weights"] * row["weight_storage_bits"] for row in layers)
    fp16_weight_bits = sum(row["weights"] * 16 for row in layers)
    totals = _totals(found, layers)
    report = {
        "model": label,
        "input_shapes": {k: list(v) if v else None for k, v in inputs.items()},
        "cost_model": asdict(cost),
        "energy_table_pj": ENERGY_PJ,
        "energy_table_source": ENERGY_TABLE_SOURCE,
        "layers": layers,
        "totals": totals,
        "total_energy_pj": total,
        "fp16_energy_pj": fp16,
        "energy_ratio_vs_fp16": _ratio(fp16, total),
        "storage_bits": bits,
        "fp16_storage_bits": fp16_bits,
        "storage_ratio_vs_fp16": _ratio(fp16_bits, bits),
        "weight_storage_ratio_vs_fp16": _ratio(fp16_weight_bits, weight_bits),
    }
    measured = measured_storage(proto, None if isinstance(model, onnx.ModelProto) else model)
    report["measured"] = measured
    on_disk = measured["file_bytes"] or measured["model_bytes"]
    report["measured_storage_ratio_vs_fp16"] = _ratio(fp16_bits / 8, on_disk)
    report["assumptions"] = _assumptions(report, found, notes)
    return report


def _uj(pj: float) -> str:
    return f"{pj / 1e6:.4g} uJ"


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("inf")


def _cost(c: LayerCensus, cost: CostModel) -> dict[str, Any]:
    """Operation types, energy and storage of one layer."""
    wide = (c.act_bits or 0) > 8 or (c.kind != "ternary-1x1" and (c.weight_bits or 0) > 8)
    if c.kind == "ternary-1x1":
        add_t, mult_t, mults = ("int32" if wide else cost.ternary_accumulate), None, 0
        storage_each = cost.ternary_storage_bits
    elif c.kind == "float":
        add_t = mult_t = cost.float_dtype or ("fp16" if c.float_bits <= 16 else "fp32")
        mults = c.macs
        storage_each = c.weight_bits or 0
    else:
        add_t = "int32" if wide else cost.int8_accumulate
        mult_t = "int32" if wide else "int8"
        mults = c.macs
        storage_each = c.weight_bits or 0
    energy = c.macs * ENERGY_PJ[add_t]["add"] + (mults * ENERGY_PJ[mult_t]["mult"] if mults else 0)
    param_bits = c.weights * storage_each + c.bias_bits + c.side_bits
    return {
        "name": c.name,
        "op": c.op,
        "kind": c.kind,
        "output_shape": list(c.output_shape),
        "macs": c.macs,
        "additions": c.macs,
        "addition_dtype": add_t,
        "multiplications": mults,
        "multiplication_dtype": mult_t,
        "activation_bits": c.act_bits,
        "weights": c.weights,
        "biases": c.biases,
        "params": c.weights + c.biases,
        "weights_ternary": c.weights_ternary,
        "nonzero_weights": c.nonzero_weights,
        "weight_storage_bits": storage_each,
        "param_bits": param_bits,
        "fp16_param_bits": (c.weights + c.biases) * 16,
        "energy_pj": energy,
        "fp16_energy_pj": c.macs * _FP16_MAC_PJ,
    }


def _totals(found: list[LayerCensus], layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums over layers, by kind and by operation type, plus the two side estimates."""
    adds: dict[str, int] = {}
    mults: dict[str, int] = {}
    by_kind: dict[str, dict[str, float]] = {}
    for row in layers:
        adds[row["addition_dtype"]] = adds.get(row["addition_dtype"], 0) + row["additions"]
        if row["multiplications"]:
            t = row["multiplication_dtype"]
            mults[t] = mults.get(t, 0) + row["multiplications"]
        k = by_kind.setdefault(
            row["kind"], {"layers": 0, "macs": 0, "energy_pj": 0.0, "fp16_energy_pj": 0.0}
        )
        k["layers"] += 1
        k["macs"] += row["macs"]
        k["energy_pj"] += row["energy_pj"]
        k["fp16_energy_pj"] += row["fp16_energy_pj"]

    # An add-only kernel skips zero weights: each weight is used outputs / out_channels times.
    skipped = 0.0
    ternary_w = ternary_nz = 0
    for c, row in zip(found, layers):
        if c.kind == "ternary-1x1":
            uses = c.outputs // c.out_channels
            saved = (c.weights - c.nonzero_weights) * uses
            skipped += saved * ENERGY_PJ[row["addition_dtype"]]["add"]
            ternary_w += c.weights
            ternary_nz += c.nonzero_weights
    # Per-output epilogue: requantize (int32 multiply) and add the bias (int32 add) in an
    # integer layer, one bias add in a float layer and in the fp16 baseline.
    epilogue = fp16_epilogue = 0.0
    for c, row in zip(found, layers):
        if c.kind == "float":
            if c.biases:
                epilogue += c.outputs * ENERGY_PJ[row["addition_dtype"]]["add"]
        else:
            epilogue += c.outputs * (ENERGY_PJ["int32"]["mult"] + ENERGY_PJ["int32"]["add"])
        if c.biases:
            fp16_epilogue += c.outputs * ENERGY_PJ["fp16"]["add"]
    total = sum(row["energy_pj"] for row in layers)
    return {
        "layers": len(layers),
        "macs": sum(row["macs"] for row in layers),
        "additions": adds,
        "multiplications": mults,
        "weights": sum(row["weights"] for row in layers),
        "params": sum(row["params"] for row in layers),
        "by_kind": by_kind,
        "ternary_zero_fraction": (1 - ternary_nz / ternary_w) if ternary_w else None,
        "energy_pj_zeros_skipped": total - skipped,
        "epilogue_energy_pj": epilogue,
        "fp16_epilogue_energy_pj": fp16_epilogue,
    }


def _assumptions(r: dict[str, Any], found: list[LayerCensus], notes: list[str]) -> list[str]:
    """Every choice behind the numbers, as sentences printed with them."""
    t = r["totals"]
    table = ", ".join(
        f"{dtype} {op} {pj:g}" for dtype, ops in ENERGY_PJ.items() for op, pj in ops.items()
    )
    opts = r["cost_model"]
    out = [
        f"Energy per operation in pJ from {ENERGY_TABLE_SOURCE}: {table}.",
        "Counted: Conv, Gemm and MatMul, one multiply and one add per multiply-accumulate (MAC). "
        "Not counted (the paper's convention): bias adds, requantization, activations "
        "(ReLU/Clip), pooling, residual Adds, Quantize/DequantizeLinear, data movement.",
        f"float16 baseline: the same network with every MAC one fp16 multiply + one fp16 add "
        f"({_FP16_MAC_PJ:g} pJ).",
        f"ternary-1x1: a 1x1 conv with an 8-bit quantized input whose weights are exactly "
        f"{{-a_c, 0, +a_c}} per output channel (int8 {{-1,0,1}} or {{-127,0,127}} behind "
        f"DequantizeLinear, or plain floats); no multiply, each MAC one "
        f"{opts['ternary_accumulate']} add (the paper counts an int8 add), zero weights "
        "included (dense count, as the paper).",
        f"int8-conv, depthwise, dense: each MAC one int8 multiply + one "
        f"{opts['int8_accumulate']} add"
        + (
            " (an int8 x int8 product is 16 bits; int8 kernels accumulate in int32)."
            if opts["int8_accumulate"] == "int32"
            else " (optimistic: real int8 kernels accumulate in int32)."
        ),
        "A layer is integer only when its input comes from a DequantizeLinear (quantized "
        "activations) and its weights are quantized or ternary 1x1; otherwise it is 'float' and "
        "each MAC is one multiply + one add at "
        + (
            f"{opts['float_dtype']} (as asked)"
            if opts["float_dtype"]
            else "its float width in the file (fp32 for a float32 model)"
        )
        + ". So a float model whose 1x1 weights happen to be ternary-valued is still float.",
        f"Storage: ternary-1x1 weights at {opts['ternary_storage_bits']:g} bits each, other "
        "weights at "
        "their stored width (int8: 8, float32: 32), biases as stored (int32 in QDQ), plus the "
        "stored per-channel scales and zero points; baseline: weights and biases at 16 bits. "
        f"Weights alone: {r['weight_storage_ratio_vs_fp16']:.2f}x smaller than float16.",
    ]
    other_ternary = [
        c for c in found if c.weights_ternary and c.kind not in ("ternary-1x1", "float")
    ]
    if other_ternary:
        out.append(
            f"{len(other_ternary)} non-1x1 or dense layers have ternary weights; they are "
            "costed and stored as int8, as prom_tvm compiles only 1x1 convs add-only."
        )
    if t["ternary_zero_fraction"] is not None:
        skipped = t["energy_pj_zeros_skipped"]
        out.append(
            f"{t['ternary_zero_fraction']:.1%} of ternary weights are 0; an add-only kernel "
            f"that skips them would cost {_uj(skipped)} "
            f"({_ratio(r['fp16_energy_pj'], skipped):.1f}x less than float16)."
        )
    with_epi = r["total_energy_pj"] + t["epilogue_energy_pj"]
    fp16_epi = r["fp16_energy_pj"] + t["fp16_epilogue_energy_pj"]
    out.append(
        "Epilogue estimate (not in the totals): one int32 multiply + one int32 add per output of "
        "an integer layer (requantize, bias), one add per output of a float layer with bias and "
        f"in the fp16 baseline, adds {_uj(t['epilogue_energy_pj'])} and "
        f"{_uj(t['fp16_epilogue_energy_pj'])}: the ratio would be "
        f"{_ratio(fp16_epi, with_epi):.1f}x."
    )
    out.extend(notes)
    return out
