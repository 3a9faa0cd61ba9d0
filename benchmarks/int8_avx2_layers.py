"""MobileNetV2's int8 conv / dense layers built for a CPU without AVX-512 VNNI (default
``haswell``: AVX2), one thread, optionally against a baseline copy of the schedule modules.

    python benchmarks/int8_avx2_layers.py [--mcpu haswell] [--rounds 10] [--only NAME]
        [--baseline-conv OLD_int8_conv2d.py --baseline-dense OLD_int8_dense.py]

Each layer is the TE compute of ``prom_tvm.schedules.int8_*`` with its default schedule,
checked bit for bit against the numpy reference, then timed (``time_evaluator``, minimum of
20 runs) round by round, interleaved with the baseline build when one is given, keeping the
minimum per build (the machine is shared: noise only adds). Prints a markdown table and the
MobileNetV2 int8 conv total (each layer times its occurrences in the network).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_layers import build_tvm  # one way to build and time a kernel
from mobilenet_v2_shapes import INT8_CONVS

CONV_LAYERS = INT8_CONVS  # (name, cin, cout, hw, k, stride, groups, occurrences)
DENSE_LAYERS = [("classifier 1280->1000", 1, 1280, 1000)]
X_ZP = 7


def _load(path: str | None, name: str):
    if path is None:
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def conv_case(mod, cin, cout, hw, k, stride, groups, rng):
    from tvm import te

    from prom_tvm.schedules.int8_conv2d import int8_conv2d_ref
    from prom_tvm.schedules.requant import Requant

    w = rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8)
    bias = rng.integers(-20000, 20000, cout).astype(np.int32)
    rq = Requant((rng.random(cout) * 2e-3 + 1e-5).astype(np.float32), 3, 0, 255, "uint8")
    params = {"strides": (stride, stride), "padding": (k // 2,) * 4, "dilation": (1, 1),
              "groups": groups, "x_zero_point": X_ZP}
    x = te.placeholder((1, cin, hw, hw), "uint8", name="x")
    ph = [x, te.placeholder(w.shape, "int8", name="w"),
          te.placeholder((cout,), "int32", name="bias"),
          te.placeholder((cout,), "float32", name="scale")]
    y = mod.int8_conv2d_compute(*ph, rq=rq, **params)
    x_np = rng.integers(0, 256, (1, cin, hw, hw)).astype(np.uint8)
    arrays = [x_np, w, bias, rq.scale]
    return ph, y, arrays, int8_conv2d_ref(x_np, w, bias, rq, **params)


def dense_case(mod, m, k, n, rng):
    from tvm import te

    from prom_tvm.schedules.int8_dense import int8_dense_ref
    from prom_tvm.schedules.requant import Requant

    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    bias = rng.integers(-50000, 50000, n).astype(np.int32)
    rq = Requant((rng.random(n) * 1e-3 + 1e-6).astype(np.float32), 3, 0, 255, "uint8")
    ph = [te.placeholder((m, k), "uint8", name="x"), te.placeholder((n, k), "int8", name="w"),
          te.placeholder((n,), "int32", name="bias"),
          te.placeholder((n,), "float32", name="scale")]
    y = mod.int8_dense_compute(*ph, x_zero_point=X_ZP, rq=rq, transpose_w=True)
    x_np = rng.integers(0, 256, (m, k)).astype(np.uint8)
    return ph, y, [x_np, w, bias, rq.scale], int8_dense_ref(x_np, w, bias, rq)


def _schedule(mod):
    return getattr(mod, "schedule_int8_conv2d", None) or mod.schedule_int8_dense


def build(placeholders, y, schedule, target, arrays, want):
    """Microseconds per call of the kernel, after checking it bit for bit against ``want``."""
    run, time_s = build_tvm(placeholders, y, schedule, arrays, target)
    np.testing.assert_array_equal(run(), want)
    return lambda: time_s() * 1e6


def main(argv=None) -> int:
    import tvm

    from prom_tvm.schedules import int8_conv2d, int8_dense

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mcpu", default="haswell")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", help="substring of the layer names to run")
    parser.add_argument("--baseline-conv")
    parser.add_argument("--baseline-dense")
    args = parser.parse_args(argv)
    target = tvm.target.Target({"kind": "llvm", "mcpu": args.mcpu, "num-cores": 1})
    base_conv = _load(args.baseline_conv, "base_int8_conv2d")
    base_dense = _load(args.baseline_dense, "base_int8_dense")
    cases = [(n, occ, conv_case, p, int8_conv2d, base_conv) for n, *p, occ in CONV_LAYERS]
    cases += [(n, 1, dense_case, p, int8_dense, base_dense) for n, *p in DENSE_LAYERS]
    if args.only:
        cases = [c for c in cases if args.only in c[0]]
    rows = []
    for name, occ, make, params, new, base in cases:
        # the same seed for both builds: the same layer, compute and schedule of each module
        timers = {}
        for key, mod in (("new", new), ("base", base)):
            if mod is not None:
                ph, y, arrays, want = make(mod, *params, np.random.default_rng(len(name)))
                timers[key] = build(ph, y, _schedule(mod), target, arrays, want)
        best = dict.fromkeys(timers, np.inf)
        for _ in range(args.rounds):
            for key, timer in timers.items():
                best[key] = min(best[key], timer())
        rows.append((name, occ, best))
        print(name, {k: round(v, 1) for k, v in best.items()}, flush=True)
    print(f"\n| layer ({args.mcpu}, 1 thread) | before µs | after µs | speed-up |")
    print("|---|---|---|---|")
    for name, occ, best in rows:
        base = best.get("base", np.nan)
        times = f" (x{occ})" if occ > 1 else ""
        print(f"| {name}{times} | {base:.1f} | {best['new']:.1f} | {base / best['new']:.2f} |")
    conv = [r for r in rows if not r[0].startswith("classifier")]
    for key in ("base", "new"):
        if all(key in r[2] for r in conv):
            total = sum(r[2][key] * r[1] for r in conv)
            print(f"int8 conv total ({key}): {total:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
