"""How far prom_tvm, onnxruntime's float32 QDQ run and its int8 kernels are from the exact result.

The figures behind ``prom_tvm.reference.TOLERANCE_LSB``: for the tiny CNN, MobileNetV2-0.5 at
96x96 and the demo's MobileNetV2 224, on seeded N(0, 1) inputs, the max output difference (in
LSB) and top-1 agreement with the exact QDQ reference of prom_tvm (this CPU's build),
onnxruntime with graph optimizations off (the QDQ graph in float32) and onnxruntime's optimized
int8 session.

    python benchmarks/reference_agreement.py [--inputs 12]

Writes benchmarks/results/reference_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results" / "reference_agreement.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=12)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import prom_tvm
    from prom_tvm.models import mobilenet_v2_float, mobilenet_v2_qdq, quantize_qdq, tiny_qdq_cnn
    from prom_tvm.onnx_io import output_step
    from prom_tvm.reference import (
        ExactReference,
        agreement,
        optimized_session,
        run,
        unfused_session,
    )

    models = {
        "tiny CNN 16x16": (lambda: tiny_qdq_cnn(16), 16),
        "MobileNetV2-0.5 96x96": (
            lambda: mobilenet_v2_qdq(input_size=96, width=0.5, num_classes=100), 96),
        "MobileNetV2 224x224 (demo)": (
            lambda: quantize_qdq(mobilenet_v2_float(input_size=224)), 224),
    }
    rows = {}
    for name, (make, size) in tqdm(models.items(), desc="models"):
        model = make()
        exact, step = ExactReference(model), output_step(model)
        unfused, optimized = unfused_session(model), optimized_session(model)
        engines = {"prom_tvm": prom_tvm.build(model),
                   "onnxruntime float32 (unfused)": lambda x, s=unfused: run(s, x),
                   "onnxruntime int8": lambda x, s=optimized: run(s, x)}
        rng = np.random.default_rng(7)
        found: dict[str, list] = {k: [] for k in engines}
        for _ in range(args.inputs):
            x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
            ref = exact(x)
            for k, engine in engines.items():
                found[k].append(agreement(engine(x), ref, step))
        rows[name] = {k: {"max_lsb": [a.max_lsb for a in v],
                          "top1_same": sum(a.top1_same for a in v)} for k, v in found.items()}
    result = {"command": "python benchmarks/reference_agreement.py "
                         + " ".join(argv if argv is not None else sys.argv[1:]),
              "inputs": args.inputs, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in rows.items():
        for k, v in r.items():
            print(f"{name:28s} {k:30s} max {max(v['max_lsb']):3d} LSB, "
                  f"top-1 {v['top1_same']}/{args.inputs}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
