"""Whole-network latency: PROM MobileNetV2 224, batch 1, prom_tvm vs onnxruntime vs stock TVM.

Engines, all called the same way (numpy in, numpy out, from Python):

- ``prom_tvm``          ``prom_tvm.build(qdq_model)`` for this CPU, with the tuning log shipped
                        for it if there is one (``prom_tvm/tuning_logs/``: tuned)
- ``prom_tvm-untuned``  the same with ``tuning_log=False`` (the hand-written defaults)
- ``prom_tvm-avx2``     built for ``{"kind": "llvm", "mcpu": "haswell"}`` (AVX2, no AVX-512: what
                        a Haswell..Zen 3 CPU would run; it runs here too; its shipped log applies)
- ``onnxruntime-int8``  the same QDQ model, ORT_ENABLE_ALL (QLinearConv / MLAS)
- ``onnxruntime-fp32``  the float model it was quantized from
- ``tvm-stock-fp32``    the float model through ``tvm.relax.frontend.onnx.from_onnx`` and
                        ``tvm.compile`` with the host target and TVM's default pipeline

They run interleaved (round-robin, one batch of calls per engine per round) in one process, so
load from other processes hits all of them alike. Each thread setting runs in its own
subprocess, because TVM's thread pool reads ``TVM_NUM_THREADS`` once, at first use. With more
than one thread, each batch starts after ``GAP_MS`` of sleep: both runtimes' pool threads spin
for a while after a call, and without the pause they would steal cores from the next engine.

    python benchmarks/latency.py [--quick] [--threads 1,all] [--engines ...] [--out PATH]

Writes ``benchmarks/results/latency.json`` and ``latency.png`` (median ms per engine, error bars
p10..p90, log scale) and prints median, p10 and p90 per engine and the ratio of medians to
onnxruntime int8.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
ENGINES = ("prom_tvm", "prom_tvm-untuned", "prom_tvm-avx2", "onnxruntime-int8", "onnxruntime-fp32",
           "tvm-stock-fp32")
AVX2 = {"kind": "llvm", "mcpu": "haswell"}
BASELINE = "onnxruntime-int8"  # ratios are medians over this engine's median
GAP_MS = 20.0  # sleep before each batch when threads > 1 (pool threads stop spinning)
# Correctness of the int8 engines is judged against the exact QDQ reference (prom_tvm.reference),
# never against onnxruntime's int8 kernels, which saturate on CPUs without VNNI.
REFERENCE = "exact-qdq"


@dataclass
class Engine:
    """A callable under test and the model whose reference output it should match."""

    name: str
    run: Callable[[np.ndarray], np.ndarray]
    reference: str  # engine whose output this one is checked against
    info: dict = field(default_factory=dict)


# -- engines ------------------------------------------------------------------------------------


def _ort_engine(name: str, model, threads: int) -> Engine:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    ref = REFERENCE if name.endswith("int8") else name
    return Engine(
        name,
        lambda x: sess.run(None, {input_name: x})[0],
        ref,
        {"onnxruntime": ort.__version__, "intra_op_num_threads": threads},
    )


def _prom_tvm_engine(qdq_model, threads: int, name: str = "prom_tvm", target=None,
                     tuning_log=None) -> Engine:
    """``prom_tvm.build`` for ``target`` (None: this CPU); ``tuning_log`` None: the shipped
    log for the target if any, False: untuned."""
    import prom_tvm

    start = time.perf_counter()
    compiled = prom_tvm.build(qdq_model, target=target, tuning_log=tuning_log)
    info = {"build_s": round(time.perf_counter() - start, 2),
            "tuned_layers": sum(bool(r.get("tuned")) for r in compiled.summary())}
    if hasattr(compiled, "kernel_counts"):
        info["kernels"] = compiled.kernel_counts()
    if hasattr(compiled, "target"):
        from prom_tvm.targets import target_summary

        info["target"] = target_summary(compiled.target)
    return Engine(name, lambda x: np.asarray(compiled(x)), REFERENCE, info)


def _tvm_stock_engine(float_model, threads: int) -> Engine:
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from prom_tvm.onnx_io import input_shapes
    from prom_tvm.targets import parse_target, target_summary

    target = parse_target(None)  # the host target dict: TVM's default pipeline, no tuning
    start = time.perf_counter()
    mod = from_onnx(float_model, shape_dict=input_shapes(float_model))
    executable = tvm.compile(mod, target=target)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    info = {"build_s": round(time.perf_counter() - start, 2), "target": target_summary(target)}
    return Engine(
        "tvm-stock-fp32",
        lambda x: vm["main"](tvm.runtime.tensor(x)).numpy(),
        "onnxruntime-fp32",
        info,
    )


def make_engines(names, float_model, qdq_model, threads: int) -> tuple[list[Engine], dict]:
    factories = {
        "prom_tvm": lambda: _prom_tvm_engine(qdq_model, threads),
        "prom_tvm-untuned": lambda: _prom_tvm_engine(qdq_model, threads, "prom_tvm-untuned",
                                                     tuning_log=False),
        "prom_tvm-avx2": lambda: _prom_tvm_engine(qdq_model, threads, "prom_tvm-avx2", AVX2),
        "onnxruntime-int8": lambda: _ort_engine("onnxruntime-int8", qdq_model, threads),
        "onnxruntime-fp32": lambda: _ort_engine("onnxruntime-fp32", float_model, threads),
        "tvm-stock-fp32": lambda: _tvm_stock_engine(float_model, threads),
    }
    engines, skipped = [], {}
    for name in names:
        try:
            engines.append(factories[name]())
        except Exception as err:  # an engine that cannot build is reported, not fatal
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            print(f"[threads={threads}] skipping {name}: {reason}", file=sys.stderr)
            if os.environ.get("PROM_TVM_BENCH_DEBUG"):
                traceback.print_exc()
            skipped[name] = reason
    return engines, skipped


# -- measuring ----------------------------------------------------------------------------------


def check_outputs(engines: list[Engine], x: np.ndarray, qdq_model) -> dict:
    """Each engine's output against its reference (an engine, or the exact QDQ reference):
    top-1 and max |difference|, in output LSBs where the reference is the exact one."""
    from prom_tvm.onnx_io import output_step
    from prom_tvm.reference import ExactReference

    outputs = {e.name: e.run(x) for e in engines}
    outputs[REFERENCE] = ExactReference(qdq_model)(x)
    step = output_step(qdq_model)
    checks = {}
    for e in engines:
        ref = outputs.get(e.reference)
        if ref is None or e.reference == e.name:
            continue
        out = outputs[e.name]
        checks[e.name] = {
            "reference": e.reference,
            "top1_equal": bool(out.argmax() == ref.argmax()),
            "max_abs_diff": float(np.abs(out.astype(np.float64) - ref).max()),
        }
        if e.reference == REFERENCE:
            checks[e.name]["max_diff_lsb"] = int(np.rint(checks[e.name]["max_abs_diff"] / step))
    return checks


def measure(
    engines: list[Engine], x: np.ndarray, rounds: int, round_ms: float, warmup: int, label: str,
    gap_ms: float = 0.0,
) -> dict[str, list[float]]:
    """Per-call latencies (ms), engines interleaved round by round, ``gap_ms`` of sleep before
    each batch."""
    from tqdm import tqdm

    calls = {}
    for e in engines:  # warm up, then size each engine's batch to about round_ms
        for _ in range(warmup):
            e.run(x)
        start = time.perf_counter()
        e.run(x)
        one = (time.perf_counter() - start) * 1e3
        calls[e.name] = max(1, int(round_ms / max(one, 1e-3)))
    samples: dict[str, list[float]] = {e.name: [] for e in engines}
    for r in tqdm(range(rounds), desc=label, unit="round", file=sys.stderr):
        order = engines[r % len(engines) :] + engines[: r % len(engines)]  # rotate who goes first
        for e in order:
            time.sleep(gap_ms / 1e3)
            for _ in range(calls[e.name]):
                start = time.perf_counter_ns()
                e.run(x)
                samples[e.name].append((time.perf_counter_ns() - start) / 1e6)
    return samples


def statistics(samples: dict[str, list[float]]) -> dict[str, dict]:
    stats = {}
    for name, values in samples.items():
        v = np.asarray(values)
        stats[name] = {
            "median_ms": float(np.median(v)),
            "p10_ms": float(np.percentile(v, 10)),
            "p90_ms": float(np.percentile(v, 90)),
            "calls": len(v),
        }
    ref = stats.get(BASELINE, {}).get("median_ms")
    for s in stats.values():
        s[f"ratio_vs_{BASELINE}"] = s["median_ms"] / ref if ref else None
    return stats


# -- worker: one thread setting -------------------------------------------------------------------


def worker(args: argparse.Namespace) -> dict:
    from prom_tvm.models import mobilenet_v2_float, quantize_qdq

    threads = int(args.worker_threads)
    float_model = mobilenet_v2_float(input_size=args.input_size, seed=args.seed)
    qdq_model = quantize_qdq(float_model, calibration=8, seed=args.seed)
    x = (
        np.random.default_rng(args.seed + 1)
        .standard_normal((1, 3, args.input_size, args.input_size))
        .astype(np.float32)
    )
    engines, skipped = make_engines(args.engines.split(","), float_model, qdq_model, threads)
    checks = check_outputs(engines, x, qdq_model)
    load_before = os.getloadavg()[0]
    gap_ms = GAP_MS if threads > 1 else 0.0
    samples = measure(
        engines, x, args.rounds, args.round_ms, args.warmup, f"threads={args.worker_label}",
        gap_ms,
    )
    return {
        "threads": threads,
        "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
        "gap_ms": gap_ms,
        # other processes on the machine slow every engine alike, but widen p10..p90
        "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "engines": {e.name: {**statistics(samples)[e.name], **e.info} for e in engines},
        "skipped": skipped,
        "checks": checks,
    }


# -- parent: run workers, write JSON, print table ----------------------------------------------


def _thread_settings(spec: str) -> list[tuple[str, int]]:
    from prom_tvm.targets import available_physical_cores

    out = []
    for item in spec.split(","):
        item = item.strip()
        if item == "all":
            out.append(("all", available_physical_cores()))
        elif item.isdigit() and int(item) > 0:
            out.append((item, int(item)))
        else:
            raise SystemExit(
                f"--threads takes a comma list of positive ints and 'all', got {item!r}"
            )
    return out


def run_worker(args: argparse.Namespace, label: str, threads: int) -> dict:
    env = dict(os.environ)
    env["TVM_NUM_THREADS"] = str(threads)  # read once by TVM's thread pool, hence a subprocess
    env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="prom_tvm_latency_") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable, __file__, "--worker-threads", str(threads), "--worker-label", label,
            "--worker-out", str(out), "--engines", args.engines, "--rounds", str(args.rounds),
            "--round-ms", str(args.round_ms), "--warmup", str(args.warmup),
            "--input-size", str(args.input_size), "--seed", str(args.seed),
        ]  # fmt: skip
        subprocess.run(cmd, env=env, check=True)
        return json.loads(out.read_text())


def machine_info() -> dict:
    import onnxruntime
    import tvm

    from prom_tvm.targets import available_physical_cores, parse_target, target_summary

    return {
        "host_target": target_summary(parse_target(None)),
        "physical_cores_available": available_physical_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tvm": tvm.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def format_table(results: dict) -> str:
    lines = []
    header = (
        f"{'threads':>7}  {'engine':<18} {'median ms':>10} {'p10':>9} {'p90':>9} "
        f"{'vs ORT int8':>12}"
    )
    for label, res in results["runs"].items():
        lines += ["", header, "-" * len(header)]
        for name, s in res["engines"].items():
            ratio = s.get(f"ratio_vs_{BASELINE}")
            ratio_text = f"{ratio:.2f}x" if ratio else "-"
            lines.append(
                f"{label:>7}  {name:<18} {s['median_ms']:>10.3f} {s['p10_ms']:>9.3f} "
                f"{s['p90_ms']:>9.3f} {ratio_text:>12}"
            )
        for name, reason in res["skipped"].items():
            lines.append(f"{label:>7}  {name:<18} skipped: {reason}")
        for name, c in res["checks"].items():
            if not c["top1_equal"]:
                lines.append(f"{label:>7}  WARNING {name}: top-1 differs from {c['reference']}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
    """Median ms per engine, one group per thread setting, error bars p10..p90 (log scale)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import plots

    plt = plots.pyplot()
    runs = results["runs"]
    names = [e for e in ENGINES if any(e in r["engines"] for r in runs.values())]
    groups = [f"threads={label} ({r['threads']})" for label, r in runs.items()]
    series, errors = {}, {}
    for e in names:
        stats = [r["engines"].get(e) for r in runs.values()]
        series[e] = [s["median_ms"] if s else None for s in stats]
        errors[e] = ([s["median_ms"] - s["p10_ms"] if s else 0 for s in stats],
                     [s["p90_ms"] - s["median_ms"] if s else 0 for s in stats])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    plots.grouped_bars(ax, groups, series, errors)
    for j, e in enumerate(series):  # ratio to onnxruntime int8 above each bar
        for k, r in enumerate(runs.values()):
            s = r["engines"].get(e)
            if s and s.get(f"ratio_vs_{BASELINE}"):
                x = k - 0.4 + 0.8 / len(series) * (j + 0.5)
                ax.text(x, s["p90_ms"] * 1.08, f"{s[f'ratio_vs_{BASELINE}']:.2f}x",
                        ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_yscale("log")
    low = min(v for vs in series.values() for v in vs if v)
    high = max(s["p90_ms"] for r in runs.values() for s in r["engines"].values())
    ax.set_ylim(low / 3, high * 3)
    plots.plain_log_ticks(ax)
    ax.set_ylabel("ms per inference (median, p10..p90)")
    size = results["model"]["input_size"]
    ax.set_title(f"PROM MobileNetV2 {size}, batch 1: ratio to {BASELINE} in the bars",
                 fontsize=10)
    ax.legend(fontsize=8)
    return plots.save(fig, path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few short rounds (smoke test)")
    p.add_argument("--threads", default="1,all", help="comma list: numbers and/or 'all'")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"subset of {','.join(ENGINES)}")
    p.add_argument("--rounds", type=int, default=None, help="round-robin rounds (default 30)")
    p.add_argument("--round-ms", type=float, default=None, help="time per engine per round")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per engine")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker-threads", help=argparse.SUPPRESS)
    p.add_argument("--worker-label", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 30)
    args.round_ms = args.round_ms or (20.0 if args.quick else 100.0)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 10)
    unknown = set(args.engines.split(",")) - set(ENGINES)
    if unknown:
        p.error(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    return args


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.worker_out:
        Path(args.worker_out).write_text(json.dumps(worker(args)))
        return None
    results = {
        "benchmark": "PROM MobileNetV2, batch 1, untuned, interleaved round-robin",
        "model": {
            "input_size": args.input_size,
            "seed": args.seed,
            "weights": "seeded random; 1x1 convs ternary per output channel",
            "quantization": "onnxruntime quantize_static QDQ, per-channel int8 weights, "
            "uint8 activations, 8 seeded N(0,1) calibration inputs",
        },
        "settings": {
            "rounds": args.rounds,
            "round_ms": args.round_ms,
            "warmup": args.warmup,
            "quick": args.quick,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        },
        "machine": machine_info(),
        "runs": {},
    }
    for label, threads in _thread_settings(args.threads):
        results["runs"][label] = run_worker(args, label, threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    png = plot(results, args.out.with_suffix(".png"))
    print(format_table(results))
    print(f"\nwrote {args.out} and {png}")
    return results


if __name__ == "__main__":
    main()
