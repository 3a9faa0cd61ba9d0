"""How far onnxruntime int8 and prom_tvm are from the exact QDQ result on a CPU without VNNI.

The demo's PROM MobileNetV2 (QDQ from onnxruntime's quantizer, {-127, 0, 127} ternary weights)
is compiled natively for ``-mcpu=haswell``; then, under ``qemu-x86_64 -cpu Haswell-v4`` (AVX2, no
AVX-512, no VNNI: what onnxruntime's CPUID dispatch sees on Haswell-Skylake or Zen 1-3), both
onnxruntime's optimized int8 session and the prom_tvm library run the same seeded inputs. The
outputs are compared natively with the exact reference (prom_tvm.reference). Emulated timings
mean nothing and are not recorded.

    python benchmarks/emulated_cpu_agreement.py [--cpu Haswell-v4] [--input-size 224] [--inputs 5]

Needs Debian's qemu-user. Writes benchmarks/results/emulated_cpu_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "emulated_cpu_agreement.json"


def seeded_inputs(size: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(n)]


def child(model_path: str, lib_path: str, out: str, size: int, n: int) -> None:
    """Runs under qemu: onnxruntime int8 and the library on the seeded inputs."""
    import prom_tvm
    from prom_tvm.reference import optimized_session, run

    sess, lib = optimized_session(model_path), prom_tvm.load(lib_path)
    xs = seeded_inputs(size, n)
    np.savez(out, ort=np.stack([run(sess, x) for x in xs]), prom=np.stack([lib(x) for x in xs]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", default="Haswell-v4", help="qemu CPU model (qemu-x86_64 -cpu help)")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child, args.input_size, args.inputs)
        return 0
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        print("needs qemu-x86_64: apt-get install qemu-user", file=sys.stderr)
        return 2

    import onnx

    import prom_tvm
    from prom_tvm.models import mobilenet_v2_float, quantize_qdq
    from prom_tvm.onnx_io import output_step
    from prom_tvm.reference import ExactReference, agreement, int8_mismatch_reason

    size = args.input_size
    qdq = quantize_qdq(mobilenet_v2_float(input_size=size))
    with tempfile.TemporaryDirectory(prefix="prom_tvm_emu_") as tmp:
        model_path, lib_path, out = (str(Path(tmp) / f) for f in ("m.onnx", "m.so", "o.npz"))
        onnx.save(qdq, model_path)
        prom_tvm.build(qdq, "llvm -mcpu=haswell").export_library(lib_path)
        env = dict(os.environ, TVM_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   PYTHONPATH=str(Path(prom_tvm.__file__).parents[1]))
        cmd = [qemu, "-cpu", args.cpu, sys.executable, __file__, "--input-size", str(size),
               "--inputs", str(args.inputs), "--child", model_path, lib_path, out]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            print(res.stderr[-3000:], file=sys.stderr)
            return 1
        got = dict(np.load(out))
    exact = ExactReference(qdq)
    step = output_step(qdq)
    rows = {}
    for name in ("ort", "prom"):
        found = [agreement(y, exact(x), step)
                 for y, x in zip(got[name], seeded_inputs(size, args.inputs), strict=True)]
        rows["onnxruntime int8" if name == "ort" else "prom_tvm (haswell build)"] = {
            "max_lsb_vs_exact": [a.max_lsb for a in found],
            "top1_same": [a.top1_same for a in found]}
    result = {"command": "python benchmarks/emulated_cpu_agreement.py "
                         + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpu": f"qemu-x86_64 -cpu {args.cpu}", "model": f"PROM MobileNetV2 {size}x{size}",
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in rows.items():
        print(f"{name:26s} max LSB vs exact {r['max_lsb_vs_exact']}  "
              f"top-1 same {sum(r['top1_same'])}/{len(r['top1_same'])}")
    if max(rows["onnxruntime int8"]["max_lsb_vs_exact"]) > 4:
        print(f"onnxruntime int8 is off: {int8_mismatch_reason(vnni=False)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
