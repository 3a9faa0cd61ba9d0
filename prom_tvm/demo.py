"""``python -m prom_tvm.demo``: the main job, end to end, without torch.

Makes a PROM MobileNetV2 (224x224, seeded ternary 1x1 weights, BN folded) as ONNX,
quantizes it to QDQ with onnxruntime, compiles it for this CPU with prom_tvm, checks it
against the exact QDQ reference (``prom_tvm.reference``: the same answer on every CPU), says
how far onnxruntime's int8 kernels are from it on this CPU, prints the per-layer summary and
the latency next to onnxruntime int8 (the speed baseline) and fp32.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .reference import TOLERANCE_LSB


def _time(fn, repeats: int) -> float:
    """Median seconds per call over ``repeats`` calls (after one warm-up)."""
    import numpy as np

    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prom_tvm.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for prom_tvm and onnxruntime (default 1; 0 = all cores)")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--checks", type=int, default=5, help="random inputs checked")
    ap.add_argument("--tolerance", type=int, default=TOLERANCE_LSB,
                    help="output LSBs allowed from the exact reference (default %(default)s)")
    ap.add_argument("--save", default=None, help="also save the QDQ model here")
    args = ap.parse_args(argv)
    if args.threads > 0:  # TVM's thread pool reads this once, at first use
        os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import onnx

    try:
        import onnxruntime  # noqa: F401 - the baseline; prom_tvm.reference imports it lazily
    except ImportError:
        print("the demo compares against onnxruntime: pip install 'prom-tvm[demo]'",
              file=sys.stderr)
        return 2

    from .cli.build import format_summary
    from .compiler import build
    from .models import mobilenet_v2_float, quantize_qdq
    from .onnx_io import output_step
    from .reference import ExactReference, agreement, int8_mismatch_reason, optimized_session, run

    size = args.input_size
    print(f"[1/4] PROM MobileNetV2 {size}x{size}: float ONNX, then QDQ via onnxruntime")
    fp32 = mobilenet_v2_float(input_size=size)
    qdq = quantize_qdq(fp32)
    if args.save:
        onnx.save(qdq, args.save)
    print("[2/4] compiling for this CPU")
    t0 = time.perf_counter()
    lib = build(qdq)
    print(f"      {time.perf_counter() - t0:.1f} s, target {lib.target}")
    print(format_summary(lib.summary()))

    print("[3/4] checking against the exact QDQ reference (onnx.reference, float64; any CPU)")
    exact = ExactReference(qdq)
    int8 = optimized_session(qdq, args.threads)
    fp = optimized_session(fp32, args.threads)
    step = output_step(qdq)
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for _ in range(args.checks):
        x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
        ref = exact(x)
        ours.append(agreement(lib(x), ref, step))
        theirs.append(agreement(run(int8, x), ref, step))
    ok = all(a.ok(args.tolerance) for a in ours)
    for name, rows in (("prom_tvm", ours), ("onnxruntime int8", theirs)):
        same = sum(a.top1_same for a in rows)
        worst = max(a.max_lsb for a in rows)
        print(f"      {name:17s} top-1 identical on {same}/{len(rows)} inputs, "
              f"max difference {worst} LSB")
    print(f"      prom_tvm -> {'OK' if ok else 'MISMATCH'} (tolerance {args.tolerance} LSB)")
    if not all(a.ok(args.tolerance) for a in theirs):
        print(f"      onnxruntime int8 is off the exact result: {int8_mismatch_reason()}")

    print(f"[4/4] latency, batch 1, {args.threads or 'all'} thread(s), median of {args.repeats}")
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    t_prom = _time(lambda: lib(x), args.repeats)
    t_int8 = _time(lambda: run(int8, x), args.repeats)
    t_fp32 = _time(lambda: run(fp, x), args.repeats)
    for name, t in (("prom_tvm (untuned)", t_prom), ("onnxruntime int8", t_int8),
                    ("onnxruntime fp32", t_fp32)):
        print(f"      {name:20s} {t * 1e3:8.2f} ms   {t / t_int8:5.2f}x onnxruntime int8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
