"""Every MobileNetV2 pointwise layer: prom_tvm's add-only kernel vs onnxruntime int8.

Each layer is a one-node QDQ model (ternary weights, uint8 activations) quantized by
onnxruntime's quantize_static; onnxruntime runs it with QLinearConv (MLAS), prom_tvm compiles
it with ``prom_tvm.build`` (untuned).  Both single-threaded, interleaved in this process.

    python benchmarks/pointwise_layers.py [--quick] [--out benchmarks/results/pointwise_layers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np
from tqdm import tqdm

# (name, cin, cout, hw) of torchvision MobileNetV2 at 224x224
LAYERS = [
    ("features.1.conv.1", 32, 16, 112), ("features.2.conv.0.0", 16, 96, 112),
    ("features.2.conv.2", 96, 24, 56), ("features.3.conv.0.0", 24, 144, 56),
    ("features.3.conv.2", 144, 24, 56), ("features.4.conv.2", 144, 32, 28),
    ("features.5.conv.0.0", 32, 192, 28), ("features.5.conv.2", 192, 32, 28),
    ("features.7.conv.2", 192, 64, 14), ("features.8.conv.0.0", 64, 384, 14),
    ("features.8.conv.2", 384, 64, 14), ("features.11.conv.2", 384, 96, 14),
    ("features.12.conv.0.0", 96, 576, 14), ("features.12.conv.2", 576, 96, 14),
    ("features.14.conv.2", 576, 160, 7), ("features.15.conv.0.0", 160, 960, 7),
    ("features.15.conv.2", 960, 160, 7), ("features.17.conv.2", 960, 320, 7),
    ("features.18.0", 320, 1280, 7),
]


def time_fn(fn, number: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 6 layers, fewer repeats")
    ap.add_argument("--out", default="benchmarks/results/pointwise_layers.json")
    args = ap.parse_args(argv)

    import prom_tvm
    from prom_tvm.models.pointwise_layer import pointwise_qdq
    from prom_tvm.onnx_io import output_step
    from prom_tvm.reference import ExactReference, agreement, optimized_session

    layers = LAYERS[:6] if args.quick else LAYERS
    rows = []
    for name, cin, cout, hw in tqdm(layers, desc="layers"):
        model, x = pointwise_qdq(cin, cout, hw)
        sess = optimized_session(model, threads=1)
        lib = prom_tvm.build(model)
        kernel = lib.summary()[0]["kernel"]
        # agreement with the exact QDQ reference, not with onnxruntime's int8 kernels (those
        # saturate on CPUs without VNNI); onnxruntime's distance from it is recorded too
        ref = ExactReference(model)(x)
        step = output_step(model)
        lsb = agreement(lib(x), ref, step).max_lsb
        ort_lsb = agreement(sess.run(None, {"x": x})[0], ref, step).max_lsb
        number = 20 if args.quick else 100
        t_ort, t_tvm = [], []
        for _ in range(5 if args.quick else 9):  # interleaved repeats
            t_ort.append(time_fn(lambda: sess.run(None, {"x": x}), number))
            t_tvm.append(time_fn(lambda: lib(x), number))
        rows.append({"layer": name, "cin": cin, "cout": cout, "hw": hw, "kernel": kernel,
                     "ort_int8_us": float(np.median(t_ort) * 1e6),
                     "prom_tvm_us": float(np.median(t_tvm) * 1e6),
                     "max_diff_lsb_vs_exact": lsb, "ort_int8_max_diff_lsb_vs_exact": ort_lsb})
        rows[-1]["ratio_vs_ort"] = rows[-1]["prom_tvm_us"] / rows[-1]["ort_int8_us"]
    print(f"{'layer':24s} {'shape':>16s} {'kernel':>12s} {'ORT us':>8s} {'prom us':>8s} "
          f"{'ratio':>6s}")
    for r in rows:
        shape = f"{r['cin']}->{r['cout']}@{r['hw']}"
        print(f"{r['layer']:24s} {shape:>16s} {r['kernel']:>12s} {r['ort_int8_us']:8.1f} "
              f"{r['prom_tvm_us']:8.1f} {r['ratio_vs_ort']:6.2f}")
    tot_o = sum(r["ort_int8_us"] for r in rows)
    tot_p = sum(r["prom_tvm_us"] for r in rows)
    print(f"{'total':24s} {'':>16s} {'':>12s} {tot_o:8.1f} {tot_p:8.1f} {tot_p / tot_o:6.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": 1, "layers": rows, "total_ort_us": tot_o,
                               "total_prom_tvm_us": tot_p}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
