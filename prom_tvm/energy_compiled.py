"""What the compiled model really does and stores, beside the paper's counting.

``analyze_model`` counts like the paper: one add per MAC of a ternary layer (or per nonzero
weight, ``energy_pj_zeros_skipped``).  prom_tvm's kernels spend fewer: the weight-specialized
code shares sub-sums between output channels, the table-lookup kernel adds one table row
per 3 input channels (building each table once for all outputs).  ``with_compiled`` adds,
for a model built by ``prom_tvm.build``, the scalar adds its add-only kernels execute (a
vector add of L lanes is L adds; recomputed lanes of the last pixel vector included) and
the bytes each layer takes in the exported library (code + data, measured on the file).
"""

from __future__ import annotations

from typing import Any

# Horowitz, ISSCC 2014 (45 nm): a 16-bit integer add; the kernels' partial sums are int16
INT16_ADD_PJ = 0.05


def adds_run(details: dict, output_shape: list[int]) -> int | None:
    """Scalar adds per inference of one add-only layer from its ``summary()`` details."""
    if "adds" not in details or "lanes" not in details:
        return None
    n, _, h, w = (int(d) for d in output_shape)
    lanes = int(details["lanes"])
    vectors = -(-(h * w) // lanes)
    return int(details["adds"]) * lanes * vectors * n


def with_compiled(report: dict[str, Any], lib, storage: dict | None = None) -> dict[str, Any]:
    """``report`` (from ``analyze_model``) with per-layer ``adds_run``, ``nonzero_adds``,
    ``adds_run_energy_pj``, ``library_bytes`` and a ``compiled`` summary."""
    details = {row["name"]: row for row in lib.summary()}
    lib_rows = {r["name"]: r for r in storage["layers"]} if storage else {}
    run = nz = 0
    energy_nz = energy_run = 0.0
    for row in report["layers"]:
        d = details.get(row["name"])
        if d is None:
            continue
        row["prom_tvm_kernel"] = d["kernel"]
        row["prom_tvm_form"] = d.get("form")
        if row["name"] in lib_rows:
            s = lib_rows[row["name"]]
            row["library_bytes"] = s["code_bytes"] + s["data_bytes"]
        a = adds_run(d, row["output_shape"])
        if a is None or row["kind"] != "ternary-1x1":
            continue
        pixels = row["macs"] // row["weights"] if row["weights"] else 0
        row["nonzero_adds"] = row["nonzero_weights"] * pixels
        row["adds_run"] = a
        row["adds_run_energy_pj"] = a * INT16_ADD_PJ
        run += a
        nz += row["nonzero_adds"]
        energy_run += a * INT16_ADD_PJ
        energy_nz += row["nonzero_adds"] * INT16_ADD_PJ
    report["compiled"] = {
        "target": str(lib.target),
        "ternary_adds_paper": sum(r["additions"] for r in report["layers"]
                                  if r["kind"] == "ternary-1x1"),
        "ternary_nonzero_adds": nz,
        "ternary_adds_run": run,
        "adds_run_per_nonzero": run / nz if nz else None,
        "adds_run_energy_pj_int16": energy_run,
        "nonzero_adds_energy_pj_int16": energy_nz,
    }
    if storage:
        fp16_bytes = report["fp16_storage_bits"] / 8
        report["compiled"].update(
            library_bytes=storage["file_bytes"],
            library_ratio_vs_fp16=fp16_bytes / storage["file_bytes"],
            layer_code_bytes=storage["layer_code_bytes"],
            layer_data_bytes=storage["layer_data_bytes"])
    return report


def format_compiled(report: dict[str, Any]) -> list[str]:
    """Text lines: per ternary layer the paper's adds, nonzero adds, adds run, and library
    bytes per layer beside the computed storage; then the totals."""
    c = report.get("compiled")
    if not c:
        return []
    from .report import _bytes, _si

    lines = ["", f"compiled by prom_tvm for {c['target']}:",
             f"{'layer':<26}  {'form':<13}  {'paper adds':>10}  {'nonzero':>8}  {'run':>8}  "
             f"{'computed':>9}  {'library':>9}"]
    for r in report["layers"]:
        if "library_bytes" not in r and "adds_run" not in r:
            continue
        lines.append(
            f"{r['name'][-26:]:<26}  {r.get('prom_tvm_form') or r['prom_tvm_kernel']!s:<13}  "
            f"{_si(r['additions']) if 'adds_run' in r else '':>10}  "
            f"{_si(r['nonzero_adds']) if 'adds_run' in r else '':>8}  "
            f"{_si(r['adds_run']) if 'adds_run' in r else '':>8}  "
            f"{_bytes(r['param_bits']):>9}  {_bytes(8 * r.get('library_bytes', 0)):>9}")
    if c["ternary_nonzero_adds"]:
        lines.append(
            f"ternary adds per inference: paper {_si(c['ternary_adds_paper'])} (every MAC), "
            f"nonzero weights {_si(c['ternary_nonzero_adds'])}, run {_si(c['ternary_adds_run'])}"
            f" = {c['adds_run_per_nonzero']:.2f} per nonzero (shared sub-sums, table lookups)")
    if "library_bytes" in c:
        lines.append(
            f"library: {_bytes(8 * c['library_bytes'])} (layers' code "
            f"{_bytes(8 * c['layer_code_bytes'])}, data {_bytes(8 * c['layer_data_bytes'])}): "
            f"library_ratio_vs_fp16 = {c['library_ratio_vs_fp16']:.2f}x "
            f"(computed storage above: {report['storage_ratio_vs_fp16']:.2f}x)")
    return lines
