"""What each AArch64 CPU class gets for the int8 kernels: instructions executed and code size.

Builds every int8 layer of the PROM MobileNetV2 224 (first conv, the 17 depthwise convs as
their 11 distinct shapes, classifier; plus two 1x1 convs as an int8-only build has them) for
``cortex-a72`` (NEON, no dotprod: widening multiply-accumulate), ``cortex-a76`` (dotprod:
udot with offset weights) and ``cortex-a76 +i8mm`` (usdot). Each build runs under
qemu-aarch64 (``-cpu cortex-a72`` / ``-cpu max``), is checked bit-exact against the kernel's
numpy reference, and its executed instructions per call are counted by the emulator; the
total is the network's int8 part (PROM layers only, each shape times its count). These are
instruction counts, not timings: qemu says nothing about a Cortex core's speed.

    python benchmarks/aarch64_kernels.py

Writes benchmarks/results/aarch64_kernels.json. Needs qemu-user and gcc-aarch64-linux-gnu.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "aarch64_kernels.json"
A64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 4}
TARGETS = {
    "cortex-a72": ({**A64, "mcpu": "cortex-a72"}, "cortex-a72"),
    "cortex-a76": ({**A64, "mcpu": "cortex-a76"}, "max"),
    "cortex-a76+i8mm": ({**A64, "mcpu": "cortex-a76", "mattr": ["+i8mm"]}, "max"),
}
# (label, cin, cout, input hw, k, stride, groups, layers of this shape in the PROM network)
CONVS = [
    ("first conv 3->32 3x3 s2 @224", 3, 32, 224, 3, 2, 1, 1),
    ("depthwise 32 s1 @112", 32, 32, 112, 3, 1, 32, 1),
    ("depthwise 96 s2 @112", 96, 96, 112, 3, 2, 96, 1),
    ("depthwise 144 s1 @56", 144, 144, 56, 3, 1, 144, 1),
    ("depthwise 144 s2 @56", 144, 144, 56, 3, 2, 144, 1),
    ("depthwise 192 s1 @28", 192, 192, 28, 3, 1, 192, 2),
    ("depthwise 192 s2 @28", 192, 192, 28, 3, 2, 192, 1),
    ("depthwise 384 s1 @14", 384, 384, 14, 3, 1, 384, 4),
    ("depthwise 576 s1 @14", 576, 576, 14, 3, 1, 576, 2),
    ("depthwise 576 s2 @14", 576, 576, 14, 3, 2, 576, 1),
    ("depthwise 960 s1 @7", 960, 960, 7, 3, 1, 960, 3),
    # not in the PROM network (its 1x1 convs are ternary): what an int8-only build runs
    ("int8-only 1x1 24->144 @56", 24, 144, 56, 1, 1, 1, 0),
    ("int8-only 1x1 320->1280 @7", 320, 1280, 7, 1, 1, 1, 0),
]
DENSE = ("classifier 1280->1000", 1280, 1000, 1)


def text_bytes(lib, emu) -> int:
    with tempfile.TemporaryDirectory() as d:
        so = emu.export(lib, Path(d) / "k.so")
        out = subprocess.run(["aarch64-linux-gnu-size", "-A", str(so)], capture_output=True,
                             text=True, check=True).stdout
    return int(re.search(r"^\.text\s+(\d+)", out, re.M).group(1))


def dot_instructions(lib) -> dict[str, int]:
    asm = lib.mod.inspect_source("asm")
    kinds = ("udot", "sdot", "usdot", "mla", "smlal", "smlal2", "umlal", "umlal2", "tbl")
    return {k: n for k in kinds if (n := len(re.findall(rf"\t{k}\t", asm)))}


def main() -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "schedules")]
    import aarch64_emulator as emu
    import numpy as np
    import tvm
    from test_int8_conv2d import _build as build_conv
    from test_int8_conv2d import _layer, _random_weights
    from test_int8_dense import _build as build_dense

    from prom_tvm.schedules.int8_conv2d import int8_conv2d_ref
    from prom_tvm.schedules.int8_dense import int8_dense_ref

    if emu.missing():
        sys.exit(emu.missing())
    rows = []
    for label, cin, cout, hw, k, stride, groups, count in CONVS:
        case = {"n": 1, "cin": cin, "cout": cout, "groups": groups, "kernel": (k, k),
                "strides": (stride, stride), "dilation": (1, 1), "padding": (k // 2,) * 4,
                "h": hw, "w": hw, "x_dtype": "uint8", "y_dtype": "uint8", "x_zero_point": 3,
                "clamp": True, "weights": _random_weights, "seed": 0}
        placeholders, y, arrays, rq, params = _layer(case)
        shape = [int(v) for v in y.shape]
        macs = int(np.prod(shape)) * cin // groups * k * k
        want = int8_conv2d_ref(arrays[0], arrays[1], arrays[2], rq, **params)
        rows.append({"layer": label, "macs": macs, "in_network": count, "builds": {}})
        for name, (target, cpu) in TARGETS.items():
            lib = build_conv(placeholders, y, tvm.target.Target(target))
            rows[-1]["builds"][name] = measure(emu, lib, arrays, shape, want, cpu, macs)
        print_row(rows[-1])
    label, k, n, count = DENSE
    rows.append({"layer": label, "macs": k * n, "in_network": count, "builds": {}})
    for name, (target, cpu) in TARGETS.items():
        lib, arrays, rq = build_dense(1, n, k, True, "uint8", "int8", 0,
                                      target=tvm.target.Target(target))
        want = int8_dense_ref(arrays[0], arrays[1], arrays[2], rq)
        rows[-1]["builds"][name] = measure(emu, lib, arrays, (1, n), want, cpu, k * n)
    print_row(rows[-1])
    total = {name: sum(r["in_network"] * r["builds"][name]["instructions"] for r in rows)
             for name in TARGETS}
    macs = sum(r["in_network"] * r["macs"] for r in rows)
    print(f"{'PROM MobileNetV2 224, int8 layers':42s} " + " | ".join(
        f"{k}: {v / 1e6:.1f}M ({v / macs:.3f}/MAC)" for k, v in total.items()))
    RESULTS.write_text(json.dumps({
        "what": "AArch64 int8 kernels: instructions executed per call (qemu-aarch64 count, "
                "not time) and .text bytes, each build checked bit-exact under qemu",
        "targets": {k: v[0] for k, v in TARGETS.items()}, "layers": rows,
        "prom_mobilenet_v2_int8": {"macs": macs, "instructions": total}}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


def measure(emu, lib, arrays, shape, want, cpu, macs) -> dict:
    import numpy as np

    got = emu.run(lib, arrays, shape, want.dtype, cpu=cpu)
    np.testing.assert_array_equal(got, want)
    n = emu.executed_instructions(lib, arrays, shape, want.dtype, cpu=cpu)
    return {"instructions": n, "per_mac": round(n / macs, 3), "text_bytes": text_bytes(lib, emu),
            "static": dot_instructions(lib), "bit_exact": True}


def print_row(row: dict) -> None:
    b = row["builds"]
    a72 = b["cortex-a72"]["instructions"]
    cells = [f"{k}: {v['per_mac']:.3f}/MAC {v['text_bytes'] / 1024:.1f} KiB "
             f"({a72 / v['instructions']:.2f}x)" for k, v in b.items()]
    print(f"{row['layer']:42s} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
