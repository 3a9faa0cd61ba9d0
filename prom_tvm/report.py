"""``python -m prom_tvm.report model.onnx [--json] [--plot out.png]``: energy and storage report.

A thin layer over ``prom_tvm.energy.analyze_model``: it prints a per-layer table, the totals
against a float16 baseline and every assumption behind them, or the same as JSON, and can draw
the per-layer energy (float16 vs this model) with matplotlib. No torch needed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

from prom_tvm.energy import KINDS, CostModel, analyze_model

__all__ = ["format_report", "main", "plot_energy"]

_PLOT_SUFFIXES = (".png", ".svg")
_KIND_COLORS = {
    "ternary-1x1": "#2ca02c",
    "int8-conv": "#1f77b4",
    "depthwise": "#9467bd",
    "dense": "#ff7f0e",
    "float": "#d62728",
}


def _si(n: float) -> str:
    """1234567 -> '1.23M': counts readable at a glance."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:g}"


def _energy(pj: float) -> str:
    for div, unit in ((1e6, "uJ"), (1e3, "nJ")):
        if pj >= div:
            return f"{pj / div:.2f} {unit}"
    return f"{pj:.2f} pJ"


def _bytes(bits: float) -> str:
    n = bits / 8
    for div, unit in ((1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"


def _short(name: str, width: int) -> str:
    """Keep the end of a long layer name: that is where the layers differ."""
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def format_report(report: dict[str, Any]) -> str:
    """The report as a readable text table with totals and assumptions."""
    layers = report["layers"]
    width = min(40, max(len("layer"), *(len(r["name"]) for r in layers)))
    head = (
        f"{'layer':<{width}}  {'kind':<11}  {'MACs':>8}  {'additions':<14}  "
        f"{'multiplications':<15}  {'params':>8}  {'bits/w':>6}  {'energy':>10}  {'fp16':>10}"
    )
    lines = [f"Energy and storage report: {report['model']}"]
    shapes = ", ".join(f"{k} {v}" for k, v in report["input_shapes"].items())
    lines += [f"input: {shapes}", "", head, "-" * len(head)]
    for r in layers:
        mults = "-"
        if r["multiplications"]:
            mults = f"{_si(r['multiplications']):>8} {r['multiplication_dtype']:<5}"
        lines.append(
            f"{_short(r['name'], width):<{width}}  {r['kind']:<11}  {_si(r['macs']):>8}  "
            f"{_si(r['additions']):>8} {r['addition_dtype']:<5}  {mults:<15}  "
            f"{_si(r['params']):>8}  {r['weight_storage_bits']:>6g}  "
            f"{_energy(r['energy_pj']):>10}  {_energy(r['fp16_energy_pj']):>10}"
        )
    t = report["totals"]
    kinds = ", ".join(f"{v['layers']} {k}" for k, v in t["by_kind"].items())
    adds = ", ".join(f"{_si(n)} {d}" for d, n in t["additions"].items())
    mults = ", ".join(f"{_si(n)} {d}" for d, n in t["multiplications"].items()) or "none"
    lines += [
        "-" * len(head),
        f"layers: {t['layers']} ({kinds})",
        f"MACs: {_si(t['macs'])}; additions: {adds}; multiplications: {mults}",
        f"parameters: {_si(t['params'])} ({_si(t['weights'])} weights)",
        f"energy:  {_energy(report['total_energy_pj'])} vs float16 "
        f"{_energy(report['fp16_energy_pj'])}: "
        f"energy_ratio_vs_fp16 = {report['energy_ratio_vs_fp16']:.2f}x",
        f"storage: {_bytes(report['storage_bits'])} vs float16 "
        f"{_bytes(report['fp16_storage_bits'])}: "
        f"storage_ratio_vs_fp16 = {report['storage_ratio_vs_fp16']:.2f}x "
        f"(weights alone {report['weight_storage_ratio_vs_fp16']:.2f}x)",
        _measured_line(report),
        "",
        "assumptions:",
    ]
    for a in report["assumptions"]:
        lines.append(textwrap.fill(a, 100, initial_indent="  - ", subsequent_indent="    "))
    from prom_tvm.energy_compiled import format_compiled

    lines += format_compiled(report)
    return "\n".join(lines)


def _measured_line(report: dict[str, Any]) -> str:
    """The bytes the model really takes, beside the computed storage line above it."""
    m = report["measured"]
    where = "file" if m["file_bytes"] is not None else "serialized"
    size = m["file_bytes"] if m["file_bytes"] is not None else m["model_bytes"]
    return (f"measured: {_bytes(size * 8)} {where} ({size:,} B; layer initializers "
            f"{m['layer_initializer_bytes']:,} B): measured_storage_ratio_vs_fp16 = "
            f"{report['measured_storage_ratio_vs_fp16']:.2f}x")


def plot_energy(report: dict[str, Any], path: str | Path) -> Path:
    """Per-layer energy, float16 next to this model, as a grouped bar chart (PNG or SVG).

    The y axis is logarithmic: PROM layers are ~50x below their float16 bars.
    """
    path = Path(path)
    if path.suffix.lower() not in _PLOT_SUFFIXES:
        raise ValueError(f"plot file {path} must end in {' or '.join(_PLOT_SUFFIXES)}")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError as err:
        raise ImportError(
            "--plot needs matplotlib: pip install matplotlib (or prom-tvm[plot])"
        ) from err
    layers = report["layers"]
    x = range(len(layers))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.28 * len(layers)), 4.8))
    ax.bar([i - 0.2 for i in x], [r["fp16_energy_pj"] for r in layers], 0.4, color="#b0b0b0")
    colors = [_KIND_COLORS.get(r["kind"], "black") for r in layers]
    ax.bar([i + 0.2 for i in x], [max(r["energy_pj"], 1e-3) for r in layers], 0.4, color=colors)
    ax.set_yscale("log")
    ax.set_ylabel("energy per layer (pJ, 45 nm)")
    ax.set_xticks(list(x))
    ax.set_xticklabels([r["name"] for r in layers], rotation=90, fontsize=6)
    present = [k for k in KINDS if any(r["kind"] == k for r in layers)]
    handles = [Patch(color="#b0b0b0", label="float16 baseline")]
    handles += [Patch(color=_KIND_COLORS[k], label=f"this model: {k}") for k in present]
    ax.legend(handles=handles, fontsize=7, loc="upper center", ncol=len(handles))
    ax.set_title(
        f"{Path(str(report['model'])).name}: {_energy(report['total_energy_pj'])} vs "
        f"{_energy(report['fp16_energy_pj'])} float16 "
        f"({report['energy_ratio_vs_fp16']:.1f}x less)",
        fontsize=9,
    )
    top = max(max(r["fp16_energy_pj"], r["energy_pj"]) for r in layers)
    ax.set_ylim(
        bottom=10 ** math.floor(math.log10(max(1e-3, _smallest(layers)))), top=top * 30
    )  # headroom for the legend
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _smallest(layers: list[dict[str, Any]]) -> float:
    values = [v for r in layers for v in (r["energy_pj"], r["fp16_energy_pj"]) if v > 0]
    return min(values) if values else 1.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m prom_tvm.report",
        description="Per-layer operations, energy (45 nm, Horowitz ISSCC 2014) and storage "
        "of an ONNX CNN, against a float16 baseline.",
    )
    p.add_argument("model", help="ONNX model (QDQ or float) with a fixed input shape")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--plot", metavar="OUT", help="draw per-layer energy to OUT (.png or .svg)")
    p.add_argument(
        "--int8-accumulate",
        choices=("int32", "int8"),
        default="int32",
        help="add of an int8 MAC (default int32: what int8 kernels accumulate in)",
    )
    p.add_argument(
        "--ternary-accumulate",
        choices=("int8", "int32"),
        default="int8",
        help="add of a ternary MAC (default int8, the paper's convention)",
    )
    p.add_argument(
        "--float-dtype",
        choices=("fp16", "fp32"),
        default=None,
        help="price float layers at this width (default: their width in the file)",
    )
    p.add_argument(
        "--ternary-bits",
        type=float,
        default=2.0,
        help="storage bits per ternary weight (default 2; 8 = unpacked int8)",
    )
    p.add_argument(
        "--build",
        action="store_true",
        help="also compile it with prom_tvm.build: the adds its kernels really run and the "
        "bytes each layer takes in the exported library",
    )
    p.add_argument("--target", default=None, help="target for --build (default: this CPU)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.plot and Path(args.plot).suffix.lower() not in _PLOT_SUFFIXES:
        parser.error(f"--plot {args.plot}: the file must end in .png or .svg")
    try:
        cost = CostModel(
            int8_accumulate=args.int8_accumulate,
            ternary_accumulate=args.ternary_accumulate,
            float_dtype=args.float_dtype,
            ternary_storage_bits=args.ternary_bits,
        )
        report = analyze_model(args.model, cost)
        if args.build:
            from prom_tvm.compiler import build
            from prom_tvm.energy_compiled import with_compiled

            lib = build(args.model, args.target)
            report = with_compiled(report, lib, lib.storage())
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    if args.plot:
        try:
            plot_energy(report, args.plot)
        except ImportError as err:
            parser.error(str(err))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if args.plot and not args.json:
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
