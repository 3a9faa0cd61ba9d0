"""What a user without AVX-512 gets: the PROM MobileNetV2 compiled for each x86 code path.

Builds the demo's QDQ MobileNetV2 for this CPU (AVX-512 VNNI here), for an AVX2-only CPU
(``-mcpu=haswell``: Haswell-Skylake client, Zen 1-3) and for generic x86-64 (SSE2), runs every
build on this machine (an AVX-512 CPU runs all three), checks each against the exact QDQ
reference and times them interleaved with onnxruntime int8 and fp32 (1 thread). onnxruntime
picks its kernels by CPUID at run time and cannot be told to use AVX2 here, so its figures are
this CPU's; ``shared/MEASUREMENTS.md``-style figures from a real AVX2 machine are the other half.
A per-kernel breakdown (TVM's VM profiler, grouped by prom_tvm kernel kind) shows where each
build spends its time.

    python benchmarks/x86_code_paths.py [--input-size 224] [--rounds 15]

Writes benchmarks/results/x86_code_paths.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")  # read once, when TVM's thread pool starts

import numpy as np
from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results" / "x86_code_paths.json"
BUILDS = {"host": None, "avx2 (haswell)": "llvm -mcpu=haswell",
          "x86-64 (sse2)": "llvm -mcpu=x86-64"}


def time_ms(fn, number: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) / number * 1e3


def kernel_kind(name: str) -> str:
    """Profiler row name -> prom_tvm kernel kind (what a schedule change would move)."""
    for pat, kind in (("ternary", "ternary-add"), ("int8_conv2d", "int8 conv"),
                      ("int8_dense", "int8 dense"), ("int8_add", "int8 add"),
                      ("quantize|dequantize", "quantize"), ("pool|mean", "pool")):
        if re.search(pat, name):
            return kind
    return "other"


def profile(lib, x, repeats: int = 5) -> dict[str, float]:
    """Microseconds per kernel kind (min over ``repeats`` runs), timed around every VM call
    with the VM's instrument hook (TVM 0.27's Relax VM has no profiler of its own)."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(lib.executable, tvm.cpu())
    best: dict[str, float] = {}
    for _ in range(repeats):
        totals: dict[str, float] = {}
        start: dict[str, float] = {}

        def instrument(func, symbol, before_run, ret, *args, totals=totals, start=start):
            if before_run:
                start[symbol] = time.perf_counter()
            elif not symbol.startswith("vm.builtin"):
                kind = kernel_kind(symbol)
                totals[kind] = totals.get(kind, 0.0) + (time.perf_counter() - start[symbol]) * 1e6
            return 0  # VMInstrumentReturnKind.NO_OP: go on

        vm.set_instrument(instrument)
        vm["main"](tvm.runtime.tensor(x))
        best = {k: min(v, best.get(k, v)) for k, v in totals.items()}
    return {k: round(v, 1) for k, v in sorted(best.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--number", type=int, default=10, help="calls per round")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import prom_tvm
    from prom_tvm.models import mobilenet_v2_float, quantize_qdq
    from prom_tvm.onnx_io import output_step
    from prom_tvm.reference import ExactReference, agreement, optimized_session, run

    size = args.input_size
    fp32 = mobilenet_v2_float(input_size=size)
    qdq = quantize_qdq(fp32)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(3)]
    exact = ExactReference(qdq)
    refs = [exact(x) for x in xs]
    step = output_step(qdq)
    engines, info = {}, {}
    for name, target in tqdm(BUILDS.items(), desc="builds"):
        t0 = time.perf_counter()
        lib = prom_tvm.build(qdq, target)
        found = [agreement(lib(x), r, step) for x, r in zip(xs, refs, strict=True)]
        info[name] = {"target": str(lib.target), "build_s": round(time.perf_counter() - t0, 1),
                      "max_lsb_vs_exact": max(a.max_lsb for a in found),
                      "top1_same": all(a.top1_same for a in found),
                      "kernel_us": profile(lib, xs[0])}
        engines[name] = lambda lib=lib: lib(xs[0])
    i8, f32 = optimized_session(qdq), optimized_session(fp32)
    found = [agreement(run(i8, x), r, step) for x, r in zip(xs, refs, strict=True)]
    info["onnxruntime int8"] = {"max_lsb_vs_exact": max(a.max_lsb for a in found),
                                "top1_same": all(a.top1_same for a in found)}
    engines["onnxruntime int8"] = lambda: run(i8, xs[0])
    engines["onnxruntime fp32"] = lambda: run(f32, xs[0])
    samples = {k: [] for k in engines}
    for _ in tqdm(range(args.rounds), desc="timing rounds"):
        for k, fn in engines.items():
            samples[k].append(time_ms(fn, args.number))
    med = {k: float(np.median(v)) for k, v in samples.items()}
    rows = {k: {"median_ms": round(med[k], 3), "min_ms": round(min(samples[k]), 3),
                "vs_onnxruntime_int8": round(med[k] / med["onnxruntime int8"], 2),
                "vs_onnxruntime_fp32": round(med[k] / med["onnxruntime fp32"], 2),
                "vs_host_build": round(med[k] / med["host"], 2), **info.get(k, {})}
            for k in engines}
    result = {"command": "python benchmarks/x86_code_paths.py " + " ".join(argv or sys.argv[1:]),
              "model": f"PROM MobileNetV2 {size}x{size} (prom_tvm.models, onnxruntime QDQ)",
              "threads": 1, "machine": {"cpu": _cpu_name(), "python": platform.python_version(),
                                        "load_average": list(os.getloadavg())},
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'engine':18s} {'ms':>8s} {'/ort int8':>10s} {'/ort fp32':>10s} {'/host':>7s}  "
          "exact LSB  per kernel kind (us)")
    for k, r in rows.items():
        lsb = r.get("max_lsb_vs_exact", "")
        print(f"{k:18s} {r['median_ms']:8.2f} {r['vs_onnxruntime_int8']:10.2f} "
              f"{r['vs_onnxruntime_fp32']:10.2f} {r['vs_host_build']:7.2f}  {lsb!s:>9}  "
              f"{r.get('kernel_us', '')}")
    print(f"wrote {args.out}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
