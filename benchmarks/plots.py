"""Bar plots shared by the benchmarks (matplotlib, Agg backend; PNG files).

One colour per engine in every figure, so prom_tvm and onnxruntime read the same way in
``latency.png`` and ``pointwise_layers.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

COLORS = {
    "prom_tvm-untuned": "#9ecae1",
    "prom_tvm": "#1f5fa8",
    "prom_tvm-avx2": "#78aee0",
    "onnxruntime-int8": "#c8352b",
    "onnxruntime-fp32": "#f0a090",
    "tvm-stock-fp32": "#8c8c8c",
}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grouped_bars(
    ax,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    errors: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    width: float = 0.8,
) -> list[float]:
    """One group of bars per entry of ``groups``, one bar per series (engine) in each.

    ``errors[name]`` = (below, above) distances for error bars. A None value leaves a gap.
    Returns the x position of each group's centre.
    """
    n = max(1, len(series))
    bar = width / n
    centres = list(range(len(groups)))
    for k, (name, values) in enumerate(series.items()):
        xs = [c - width / 2 + bar * (k + 0.5) for c in centres]
        pts = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        yerr = None
        if errors and name in errors:
            lo, hi = errors[name]
            keep = [i for i, v in enumerate(values) if v is not None]
            yerr = [[lo[i] for i in keep], [hi[i] for i in keep]]
        ax.bar([x for x, _ in pts], [v for _, v in pts], bar, label=name, yerr=yerr,
               color=COLORS.get(name), capsize=2 if yerr else 0, linewidth=0)
    ax.set_xticks(centres)
    ax.set_xticklabels(groups)
    return centres


def plain_log_ticks(ax) -> None:
    """Tick labels on a log y axis as plain numbers (0.5, 1, 2), not powers."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
