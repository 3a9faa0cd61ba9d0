"""``python -m prom_tvm build model.onnx --target ... -o model.so``: compile and export.

Prints the per-layer summary (which kernel each Conv / Gemm / MatMul got) and writes the
library plus its metadata (``model.so.prom.json``) for ``prom_tvm.load``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]] | None:
    """``name=1,3,224,224`` -> {"name": (1, 3, 224, 224)}."""
    if not items:
        return None
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            if not sep:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise SystemExit(f"--input-shape {item!r}: expected NAME=D0,D1,... "
                             "e.g. input=1,3,224,224") from None
    return shapes


def _kb(n: float) -> str:
    return f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def format_summary(rows: list[dict], storage: dict | None = None) -> str:
    """The per-layer table: kernel and code form, vector adds per output beside nonzero
    weights per output (the paper's count), and, given ``storage`` (``lib.storage()``), the
    bytes each layer adds to the library (code + data)."""
    code = {r["name"]: r["code_bytes"] for r in storage["layers"]} if storage else {}
    lines = [f"{'layer':26s} {'kernel':11s} {'form':13s} {'weight':>14s} {'adds/out':>9s} "
             f"{'nnz/out':>8s} {'data B':>7s}" + (f" {'code B':>7s}" if storage else "")
             + "  notes"]
    for r in rows:
        notes = r.get("reason") or r.get("note") or (
            f"acc {r['acc_dtype']}" if "acc_dtype" in r else "")
        shape = "x".join(str(d) for d in r["weight_shape"])
        adds = f"{r['adds_per_output']:.1f}" if "adds_per_output" in r else ""
        nnz = f"{r['nnz_per_output']:.1f}" if "nnz_per_output" in r else ""
        line = (f"{r['name'][:26]:26s} {r['kernel']:11s} {r.get('form') or ''!s:13s} "
                f"{shape:>14s} {adds:>9s} {nnz:>8s} {_kb(r.get('data_bytes', 0)):>7s}")
        if storage:
            line += f" {_kb(code.get(r['name'], 0)):>7s}"
        lines.append(f"{line}  {notes}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["kernel"]] = counts.get(r["kernel"], 0) + 1
    lines.append("kernels: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    adds = [r for r in rows if "adds" in r and "nnz" in r]
    if adds:
        a, z = sum(r["adds"] for r in adds), sum(r["nnz"] for r in adds)
        lines.append(f"add-only layers: {a / z:.2f} vector adds per nonzero weight "
                     f"({a} adds for {z} nonzeros per pixel vector)")
    if storage:
        lines.append(f"library: {storage['file_bytes'] / 1e6:.2f} MB = layers' code "
                     f"{storage['layer_code_bytes'] / 1e6:.2f} + data "
                     f"{storage['layer_data_bytes'] / 1e6:.2f} + runtime and other ops "
                     f"{storage['other_bytes'] / 1e6:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prom_tvm build",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("model", help="QDQ (or float) ONNX model")
    ap.add_argument("--target", default=None,
                    help='TVM target, e.g. "llvm -mcpu=cortex-a72" (default: this CPU)')
    ap.add_argument("-o", "--output", default=None, help="library to write (default: MODEL.so)")
    ap.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                    help="fix a dynamic input shape (repeatable)")
    ap.add_argument("--cc", default=None, help="C compiler / cross-compiler used to link")
    ap.add_argument("--tuning-log", default=None, metavar="DIR",
                    help="apply a log written by python -m prom_tvm tune (default: a shipped "
                    "log for the target, if any)")
    ap.add_argument("--no-tuning-log", action="store_true", help="ignore shipped logs too")
    ap.add_argument("--quiet", action="store_true", help="do not print the layer summary")
    args = ap.parse_args(argv)

    from ..compiler import build

    try:
        out = output_path(args.model, args.output)
        log = False if args.no_tuning_log else args.tuning_log
        lib = build(args.model, args.target, input_shapes=parse_shapes(args.input_shape),
                    tuning_log=log)
        lib.export_library(out, cc=args.cc)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        from ..library_size import layer_storage

        print(format_summary(lib.summary(), layer_storage(lib.layers, out)))
    print(f"wrote {out} (+ {out.name}.prom.json) for {lib.target}")
    return 0


LIBRARY_SUFFIXES = (".so", ".dylib", ".dll", ".tar")


def output_path(model: str, output: str | None) -> Path:
    """Where the library goes: ``-o`` (a file, or a directory to put MODEL.so in), checked
    before compiling so that a bad path never costs a build or overwrites the model."""
    model_path = Path(model)
    out = Path(output) if output else model_path.with_suffix(".so")
    if out.is_dir():
        out = out / model_path.with_suffix(".so").name
    if out.suffix not in LIBRARY_SUFFIXES:
        raise ValueError(f"-o {out}: a library needs one of the suffixes "
                         f"{', '.join(LIBRARY_SUFFIXES)} (e.g. -o {out.with_suffix('.so')})")
    if model_path.exists() and out.exists() and out.resolve() == model_path.resolve():
        raise ValueError(f"-o {out} is the input model; choose another output file")
    if not out.parent.is_dir():
        raise ValueError(f"-o {out}: folder {out.parent} does not exist")
    return out


if __name__ == "__main__":
    sys.exit(main())
