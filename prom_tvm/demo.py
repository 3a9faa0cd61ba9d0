"""``python -m prom_tvm.demo``: the main job, end to end, without torch.

Makes a PROM MobileNetV2 (224x224, seeded ternary 1x1 weights, BN folded) as ONNX,
quantizes it to QDQ with onnxruntime, compiles it for this CPU with prom_tvm, checks it
against onnxruntime on the same QDQ model, prints the per-layer summary and the latency
next to onnxruntime int8 and fp32.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


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
    ap.add_argument("--save", default=None, help="also save the QDQ model here")
    args = ap.parse_args(argv)
    if args.threads > 0:  # TVM's thread pool reads this once, at first use
        os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import onnx

    try:
        import onnxruntime as ort
    except ImportError:
        print("the demo compares against onnxruntime: pip install 'prom-tvm[demo]'",
              file=sys.stderr)
        return 2

    from .build import format_summary
    from .compiler import build
    from .models import mobilenet_v2_float, quantize_qdq
    from .onnx_io import output_step

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

    print("[3/4] checking against onnxruntime on the same QDQ model")
    so = ort.SessionOptions()
    if args.threads > 0:
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
    int8 = ort.InferenceSession(qdq.SerializeToString(), so, providers=["CPUExecutionProvider"])
    fp = ort.InferenceSession(fp32.SerializeToString(), so, providers=["CPUExecutionProvider"])
    step = output_step(qdq)
    rng = np.random.default_rng(0)
    worst = 0
    same = 0
    trials = 5
    for _ in range(trials):
        x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
        ref = int8.run(None, {"input": x})[0]
        got = lib(x)
        worst = max(worst, int(np.rint(np.abs(got - ref).max() / step)))
        same += int(got.argmax() == ref.argmax())
    ok = same == trials and worst <= 3
    print(f"      top-1 identical on {same}/{trials} inputs, max difference {worst} LSB "
          f"-> {'OK' if ok else 'MISMATCH'}")

    print(f"[4/4] latency, batch 1, {args.threads or 'all'} thread(s), median of {args.repeats}")
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    t_prom = _time(lambda: lib(x), args.repeats)
    t_int8 = _time(lambda: int8.run(None, {"input": x}), args.repeats)
    t_fp32 = _time(lambda: fp.run(None, {"input": x}), args.repeats)
    for name, t in (("prom_tvm (untuned)", t_prom), ("onnxruntime int8", t_int8),
                    ("onnxruntime fp32", t_fp32)):
        print(f"      {name:20s} {t * 1e3:8.2f} ms   {t / t_int8:5.2f}x onnxruntime int8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
