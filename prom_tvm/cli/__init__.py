"""Command lines: ``python -m prom_tvm <command>`` (or ``prom-tvm <command>``).

Each command is a thin argparse layer over a library function and lives in a module whose
name does not collide with the package's public functions: a module ``prom_tvm/build.py``
would replace the function ``prom_tvm.build`` on the package as soon as anything imported it.
Commands that have no library function of the same name also answer to
``python -m prom_tvm.<command>`` (``prom_tvm.demo``, ``prom_tvm.report``).
"""

from __future__ import annotations

import importlib
import sys

# command -> (module with main(argv), one-line help)
COMMANDS = {
    "build": ("prom_tvm.cli.build", "compile an ONNX model and export the library"),
    "demo": ("prom_tvm.demo", "the main job: PROM MobileNetV2 compiled, checked, benchmarked"),
    "report": ("prom_tvm.report", "per-layer energy and storage of a model"),
    "tune": ("prom_tvm.tune", "measure the add-only kernels' knobs, write a tuning log"),
    "pack": ("prom_tvm.pack", "ternary QDQ weights stored at 2 bits (ONNX INT2, opset 25)"),
    "bench": ("prom_tvm.bench", "PROM vs int8 vs float, timed on a device or here"),
}


def _usage() -> str:
    lines = ["usage: python -m prom_tvm <command> [options]   (--help after a command for its",
             "       options)", "", "commands:"]
    lines += [f"  {name:8s} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"error: unknown command {name!r}{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)
