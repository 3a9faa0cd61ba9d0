"""The add-only kernels with the x86 requantization epilogue vs the portable one, kernel alone.

For each MobileNetV2 224 pointwise shape (random ternary weights, ~1/3 nonzero), the kernel
the lowering picks (weight-specialized or table lookup, untuned knobs) is built twice for
this CPU, once with ``requant_x86`` and once with the portable epilogue, checked
bit-identical, and timed interleaved (minimum over rounds: the machine is shared).  Writes
``benchmarks/results/requant_epilogue.json``.

    python benchmarks/requant_epilogue.py [--rounds N] [--layers 0,1,...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mobilenet_v2_shapes import LAYERS

RESULTS = Path(__file__).resolve().parent / "results" / "requant_epilogue.json"


def layer(cin: int, cout: int, hw: int, seed: int = 0):
    from prom_tvm.schedules import ternary_forms as tf
    from prom_tvm.schedules.requant import Requant

    rng = np.random.default_rng(seed)
    signs = rng.choice([-1, 0, 1], size=(cout, cin), p=[1 / 3, 1 / 3, 1 / 3]).astype(np.int8)
    bias = rng.integers(-3000, 3000, cout).astype(np.int32)
    scale = (rng.uniform(0.5, 2, cout) / (16 * np.sqrt(cin))).astype(np.float32)
    return tf.TernaryLayer(signs, 1, hw, hw, "uint8", bias,
                           Requant(scale, 0, 0, 255, "uint8"), None, True)


def kernel(lay, lanes: int, x86_bits):
    from prom_tvm.schedules import ternary_forms as tf

    k = tf.specialized_kernel(lay, lanes, x86_bits=x86_bits)
    return k if k is not None else tf.lut_kernel(lay, lanes, 1, None, x86_bits)


def timed(mods, arrays, out_shape, rounds: int):
    import tvm

    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays]
    outs = [tvm.runtime.tensor(np.zeros(out_shape, "uint8"), dev) for _ in mods]
    for m, o in zip(mods, outs):
        m["main"](*args, o)
    timers = [m.time_evaluator("main", dev, number=20, repeat=3) for m in mods]
    best = [float("inf")] * len(mods)
    for _ in range(rounds):
        for i, (t, o) in enumerate(zip(timers, outs)):
            best[i] = min(best[i], min(t(*args, o).results) * 1e6)
    return best, [o.numpy() for o in outs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--layers", default=None, help="comma list of indices into LAYERS")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import tvm
    from tqdm import tqdm

    from prom_tvm.schedules.requant_x86 import x86_vector_bits
    from prom_tvm.schedules.ternary_specialized import lanes_for
    from prom_tvm.targets import host_target

    target = host_target()
    lanes, bits = lanes_for(target), x86_vector_bits(target)
    if bits is None:
        print("this CPU is not x86: there is no x86 epilogue to compare", file=sys.stderr)
        return 2
    indices = [int(i) for i in args.layers.split(",")] if args.layers else range(len(LAYERS))
    rows = []
    for i in tqdm(indices, unit="layer"):
        name, cin, cout, hw, count = LAYERS[i]
        lay = layer(cin, cout, hw, seed=i)
        portable, x86 = kernel(lay, lanes, None), kernel(lay, lanes, bits)
        mods = [tvm.compile(tvm.IRModule({"main": k.func.with_attr("global_symbol", "main")}),
                            target).mod for k in (portable, x86)]
        x = np.random.default_rng(100 + i).integers(0, 256, (1, cin, hw, hw)).astype(np.uint8)
        (t_p, t_x), (y_p, y_x) = timed(mods, [x, *portable.consts], (1, cout, hw, hw),
                                       args.rounds)
        if not np.array_equal(y_p, y_x):
            raise AssertionError(f"{name}: the two epilogues disagree")
        rows.append({"layer": name, "cin": cin, "cout": cout, "hw": hw, "count": count,
                     "form": portable.details["form"], "portable_us": round(t_p, 2),
                     "x86_us": round(t_x, 2), "ratio": round(t_x / t_p, 3)})
    for r in rows:
        print(f"{r['cin']:>4}->{r['cout']:<4} @{r['hw']:<3} {r['form']:<12} portable "
              f"{r['portable_us']:7.1f} us  x86 {r['x86_us']:7.1f} us  {r['ratio']:.2f}x")
    total = {k: sum(r[k] * r["count"] for r in rows) for k in ("portable_us", "x86_us")}
    print(f"weighted total: {total['portable_us']:.0f} -> {total['x86_us']:.0f} us "
          f"({total['x86_us'] / total['portable_us']:.2f}x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": __doc__.split("\n")[0], "target": str(target), "rounds": args.rounds,
        "command": "python benchmarks/requant_epilogue.py", "layers": rows,
        "weighted_total_us": total}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
