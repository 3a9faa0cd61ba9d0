"""MobileNetV2's pointwise layers one by one: prom_tvm (host and AVX2 builds) vs onnxruntime.

Each of the 19 pointwise shapes of MobileNetV2 224 is a one-layer model whose graph input and
output are uint8, so nobody times float (de)quantization around the kernel:
``DequantizeLinear -> Conv -> (Relu) -> QuantizeLinear``, written by onnxruntime's
``quantize_static`` (per-channel int8 weights {-127, 0, 127}, uint8 activations) from a float
conv with the PROM MobileNetV2's weights (``ternary_weight``: signs uniform over {-1, 0, 1},
2/3 nonzero, one scale per output channel). Expand layers (and ``features.18.0``) end in a
ReLU and read signed activations (input zero point ~128); projections are linear and read
post-ReLU ones (zero point 0).

Engines, interleaved round by round in one process (a new random order each round; with more
than one thread, 20 ms of sleep before each batch, since both runtimes' pool threads spin
for a while after a call and would take cores from whoever runs next):

* ``prom_tvm``          ``prom_tvm.build(model)``, this machine's CPU
* ``prom_tvm-avx2``     ``prom_tvm.build(model, target={"kind": "llvm", "mcpu": "haswell"})``
* ``onnxruntime-int8``  ORT_ENABLE_ALL: one QLinearConv. The model is given channels-last
  (NHWC in and out, a Transpose on each side of the QDQ conv), which onnxruntime's NHWC
  transformer cancels: in a whole network it keeps QLinearConv in NHWC and transposes only at
  the ends, while an NCHW one-layer model would time two uint8 transposes with the conv
  (30-70 us here, 40-60% of the layer at 1 thread, measured when this was written).
* ``onnxruntime-fp32``  the float conv (+ Relu) on float input: the faster per layer of
  ORT_ENABLE_ALL (NCHWc kernel, whose input/output reorders stay in the timing) and
  ORT_ENABLE_EXTENDED (plain NCHW conv); both are in the JSON.

Per-call overhead is subtracted on both sides, each measured on a trivial model the same way:
onnxruntime is timed around ``sess.run`` minus an Identity on one byte; prom_tvm with the VM's
``time_evaluator("invoke_stateful")`` (C++ loop, no Python, no input copies) minus the same for
a 1->1-channel, 1-pixel prom_tvm model. Times are medians over rounds.

Every prom_tvm output is checked against the exact QDQ reference (``prom_tvm.reference``), not
onnxruntime's int8 kernels (which saturate on CPUs without VNNI). Each thread setting
(``--threads 1,all``) runs in its own subprocess (TVM reads TVM_NUM_THREADS once); the parent
builds every layer once and the workers load the same libraries. Totals weight each shape by
how many of the 34 pointwise layers have it.

    python benchmarks/pointwise_layers.py [--quick] [--threads 1,all] [--layers 0,3]

Writes ``benchmarks/results/pointwise_layers.json`` and ``.png`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plots
from mobilenet_v2_shapes import LAYERS

RESULTS = Path(__file__).resolve().parent / "results" / "pointwise_layers.json"
AVX2 = {"kind": "llvm", "mcpu": "haswell"}
BASE = "onnxruntime-int8"
ENGINES = ("prom_tvm", "prom_tvm-avx2", BASE, "onnxruntime-fp32")
TIMED = ("prom_tvm", "prom_tvm-avx2", BASE, "onnxruntime-fp32-nchwc", "onnxruntime-fp32-nchw")
QUICK_LAYERS = (0, 3, 6, 15)  # 112x112 .. 7x7, both forms
GAP_MS = 20.0  # sleep before each batch when threads > 1 (see interleaved)


# -- the layer as ONNX -------------------------------------------------------------------------


def float_layer(cin: int, cout: int, hw: int, seed: int = 0) -> onnx.ModelProto:
    """Float 1x1 conv with PROM MobileNetV2 weights; a ReLU after expand layers (cout > cin)."""
    from prom_tvm.models.onnx_builder import IR_VERSION, OPSET, ternary_weight

    rng = np.random.default_rng(seed)
    relu = cout > cin
    w = ternary_weight(rng, cout, cin, gain=2.0 if relu else 1.0)
    b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if relu else "y"], name="pw")]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    g = helper.make_graph(
        nodes, "pw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, hw, hw])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    return m


def integer_io(qdq: onnx.ModelProto) -> tuple[onnx.ModelProto, float, int]:
    """The QDQ model without its input QuantizeLinear and output DequantizeLinear (uint8 in and
    out), and the input's scale and zero point."""
    g = qdq.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    x, y = g.input[0].name, g.output[0].name
    q_in = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == x)
    dq_out = next(n for n in g.node if n.op_type == "DequantizeLinear" and n.output[0] == y)
    for n in g.node:
        n.input[:] = [x if i == q_in.output[0] else i for i in n.input]
        n.output[:] = [y if o == dq_out.input[0] else o for o in n.output]
    g.node.remove(q_in)
    g.node.remove(dq_out)
    g.input[0].type.tensor_type.elem_type = TensorProto.UINT8
    g.output[0].type.tensor_type.elem_type = TensorProto.UINT8
    onnx.checker.check_model(qdq)
    return qdq, float(inits[q_in.input[1]]), int(inits[q_in.input[2]])


def channels_last(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same layer with NHWC input and output (a Transpose on each side)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for v, perm, inner in ((g.input[0], [0, 3, 1, 2], "x_nchw"), (g.output[0], [0, 2, 3, 1],
                                                                   "y_nchw")):
        for n in g.node:
            n.input[:] = [inner if i == v.name else i for i in n.input]
            n.output[:] = [inner if o == v.name else o for o in n.output]
        pair = ([v.name], [inner]) if v is g.input[0] else ([inner], [v.name])
        node = helper.make_node("Transpose", *pair, perm=perm)
        g.node.insert(0, node) if v is g.input[0] else g.node.append(node)
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        v.type.tensor_type.shape.ClearField("dim")
        for i in (0, 2, 3, 1):
            v.type.tensor_type.shape.dim.add().dim_value = dims[i]
    onnx.checker.check_model(m)
    return m


def prepare(i: int, seed: int, out: Path) -> dict:
    """Models, input, exact reference and both prom_tvm libraries of layer ``i``, in ``out``."""
    import prom_tvm
    from prom_tvm.models.qdq import quantize_qdq
    from prom_tvm.reference import ExactReference

    name, cin, cout, hw, count = LAYERS[i]
    fp32 = float_layer(cin, cout, hw, seed + i)
    rng = np.random.default_rng(seed + 100 + i)
    shape = (4, 1, cin, hw, hw)  # expand layers read signed values, projections post-ReLU ones
    cal = (rng.standard_normal(shape) if cout > cin else rng.uniform(0, 2, shape))
    model, x_scale, x_zp = integer_io(quantize_qdq(fp32, cal.astype(np.float32)))
    x = np.clip(np.rint(cal[0] / x_scale) + x_zp, 0, 255).astype(np.uint8)
    onnx.save(model, out / f"{i}.int8.onnx")
    onnx.save(channels_last(model), out / f"{i}.int8_nhwc.onnx")
    onnx.save(fp32, out / f"{i}.fp32.onnx")
    np.save(out / f"{i}.x.npy", x)
    np.save(out / f"{i}.ref.npy", ExactReference(model)(x))
    row = {"layer": name, "cin": cin, "cout": cout, "hw": hw, "count": count, "relu": cout > cin,
           "x_zero_point": x_zp, "int8_weight_bytes": cin * cout, "builds": {}}
    for engine, target in (("prom_tvm", None), ("prom_tvm-avx2", AVX2)):
        t0 = time.perf_counter()
        lib = prom_tvm.build(model, target=target)
        build_s = time.perf_counter() - t0
        storage = lib.storage(out / f"{i}.{engine}.so")["layers"][0]  # exports the library
        s = lib.summary()[0]
        row["builds"][engine] = {
            "kernel": s["kernel"], "form": s.get("form"), "build_s": round(build_s, 2),
            **{k: s.get(k) for k in ("adds_per_output", "nnz_per_output", "nnz", "adds",
                                     "weight_bytes", "acc_dtype", "lanes")},
            "code_bytes": storage["code_bytes"], "data_bytes": storage["data_bytes"]}
    return row


def prepare_trivial(out: Path) -> None:
    """A 1->1-channel, 1-pixel prom_tvm model: the VM's per-call overhead."""
    import prom_tvm
    from prom_tvm.models.qdq import quantize_qdq

    fp32 = float_layer(1, 1, 1)
    cal = np.random.default_rng(0).uniform(0, 2, (2, 1, 1, 1, 1)).astype(np.float32)
    prom_tvm.build(integer_io(quantize_qdq(fp32, cal))[0]).export_library(out / "trivial.so")


# -- timing (worker: one thread setting) ---------------------------------------------------------


def ort_session(model, threads: int, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    src = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def ort_timer(sess, x: np.ndarray):
    feed = {sess.get_inputs()[0].name: x}

    def per_call(number: int) -> float:
        sess.run(None, feed)  # untimed, like time_evaluator's first call
        t0 = time.perf_counter()
        for _ in range(number):
            sess.run(None, feed)
        return (time.perf_counter() - t0) / number

    return per_call


def tvm_timer(lib, x: np.ndarray):
    import tvm

    dev = tvm.cpu()
    lib.vm.set_input("main", tvm.runtime.tensor(x, dev))

    def per_call(number: int) -> float:
        f = lib.vm.time_evaluator("invoke_stateful", dev, number=number, repeat=1,
                                  min_repeat_ms=0)
        return f("main").mean

    return per_call


def interleaved(timers: dict, rounds: int, round_ms: float, gap_ms: float = 0.0
                ) -> dict[str, float]:
    """Median seconds per call of each timer, interleaved: one batch of about ``round_ms``
    per timer per round, in a new (seeded) random order each round, so that no engine always
    follows the same one; ``gap_ms`` of sleep before each batch lets the previous engine's
    pool threads stop spinning."""
    numbers = {}
    for k, t in timers.items():
        t(3)  # warm up
        numbers[k] = max(1, int(round_ms / 1e3 / max(t(3), 1e-7)))
    samples: dict[str, list] = {k: [] for k in timers}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for k in rng.permutation(list(timers)):
            time.sleep(gap_ms / 1e3)
            samples[k].append(timers[k](numbers[k]))
    return {k: float(np.median(v)) for k, v in samples.items()}


def identity_model() -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def worker(cases: Path, indices: list[int], threads: int, rounds: int, round_ms: float) -> dict:
    from tqdm import tqdm

    import prom_tvm
    from prom_tvm.reference import agreement

    one = np.zeros(1, np.uint8)
    gap_ms = GAP_MS if threads > 1 else 0.0
    overhead = interleaved({
        "onnxruntime": ort_timer(ort_session(identity_model(), threads), one),
        "prom_tvm": tvm_timer(prom_tvm.load(cases / "trivial.so"), np.zeros((1, 1, 1, 1),
                                                                            np.uint8)),
    }, rounds, round_ms, gap_ms)
    load_before = os.getloadavg()[0]
    rows = []
    for i in tqdm(indices, desc=f"threads={threads}", unit="layer", file=sys.stderr):
        x, ref = np.load(cases / f"{i}.x.npy"), np.load(cases / f"{i}.ref.npy")
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        xs, xz = _x_quant(cases / f"{i}.int8.onnx")
        x_f = ((x.astype(np.float32) - xz) * xs).astype(np.float32)
        libs = {e: prom_tvm.load(cases / f"{i}.{e}.so") for e in ("prom_tvm", "prom_tvm-avx2")}
        int8 = ort_session(cases / f"{i}.int8_nhwc.onnx", threads)
        fp32 = {lv: ort_session(cases / f"{i}.fp32.onnx", threads, lv)
                for lv in ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED")}
        lsb = {e: agreement(lib(x), ref, 1.0).max_lsb for e, lib in libs.items()}
        y8 = int8.run(None, {"x": x_nhwc})[0].transpose(0, 3, 1, 2)
        lsb[BASE] = agreement(y8, ref, 1.0).max_lsb
        timers = {e: tvm_timer(lib, x) for e, lib in libs.items()}
        timers[BASE] = ort_timer(int8, x_nhwc)
        timers["onnxruntime-fp32-nchwc"] = ort_timer(fp32["ORT_ENABLE_ALL"], x_f)
        timers["onnxruntime-fp32-nchw"] = ort_timer(fp32["ORT_ENABLE_EXTENDED"], x_f)
        t = interleaved(timers, rounds, round_ms, gap_ms)
        us = {k: (v - overhead["prom_tvm" if k.startswith("prom") else "onnxruntime"]) * 1e6
              for k, v in t.items()}
        us["onnxruntime-fp32"] = min(us["onnxruntime-fp32-nchwc"], us["onnxruntime-fp32-nchw"])
        rows.append({"index": i, "us": us, "max_lsb_vs_exact": lsb})
    return {"threads": threads, "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
            "gap_ms": gap_ms,
            "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "overhead_us_subtracted": {k: v * 1e6 for k, v in overhead.items()}, "layers": rows}


def _x_quant(path: Path) -> tuple[float, int]:
    m = onnx.load(path)
    dq = next(n for n in m.graph.node if n.input[0] == m.graph.input[0].name)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return float(inits[dq.input[1]]), int(inits[dq.input[2]])


# -- parent: build, run the workers, write JSON and PNG ----------------------------------------


def run_worker(args, cases: Path, indices: list[int], label: str, threads: int) -> dict:
    env = {**os.environ, "TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = cases / f"run_{label}.json"
    cmd = [sys.executable, __file__, "--worker-cases", str(cases), "--worker-out", str(out),
           "--worker-threads", str(threads), "--layers", ",".join(map(str, indices)),
           "--rounds", str(args.rounds), "--round-ms", str(args.round_ms)]
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text())


def assemble(static: dict[int, dict], run: dict) -> dict:
    """Per-layer rows (static facts + this run's times) and totals weighted by layer counts."""
    layers = []
    for r in run.pop("layers"):
        row = {k: v for k, v in static[r["index"]].items() if k != "builds"}
        us = r["us"]
        row["us"] = us
        row[f"ratio_vs_{BASE}"] = {k: v / us[BASE] for k, v in us.items()}
        b = static[r["index"]]["builds"]
        for key in ("form", "adds_per_output", "nnz_per_output", "weight_bytes", "code_bytes",
                    "data_bytes"):
            row[key] = {e: b[e][key] for e in b}
        row["max_lsb_vs_exact"] = r["max_lsb_vs_exact"]
        layers.append(row)
    run["layers"] = layers
    run["totals"] = _totals(layers)
    run["totals_by_form"] = {  # by the host build's form
        form: _totals([r for r in layers if r["form"]["prom_tvm"] == form])
        for form in sorted({r["form"]["prom_tvm"] for r in layers}, key=str)}
    return run


def _totals(layers: list[dict]) -> dict:
    total = {e: sum(r["us"][e] * r["count"] for r in layers) for e in layers[0]["us"]}
    return {"layers": sum(r["count"] for r in layers), "us_weighted": total,
            f"ratio_vs_{BASE}": {e: v / total[BASE] for e, v in total.items()}}


def plot(results: dict, path: Path) -> Path:
    plt = plots.pyplot()
    runs = results["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(17, 4.2 * len(runs)), squeeze=False)
    for ax, (label, run) in zip(axes[:, 0], runs.items(), strict=True):
        rows = run["layers"]
        groups = [f"{r['cin']}>{r['cout']}\n@{r['hw']} x{r['count']}" for r in rows]
        groups.append(f"total\n({run['totals']['layers']})")
        series = {e: [r[f"ratio_vs_{BASE}"][e] for r in rows]
                  + [run["totals"][f"ratio_vs_{BASE}"][e]] for e in ENGINES}
        centres = plots.grouped_bars(ax, groups, series)
        top = max(max(v) for v in series.values())
        low = min(min(v) for v in series.values())
        for c, r in zip(centres, rows, strict=False):
            forms = [_abbrev(r["form"][e]) for e in ("prom_tvm", "prom_tvm-avx2")]
            note = (forms[0] if forms[0] == forms[1] else "/".join(forms)) + \
                f"\n{r['adds_per_output']['prom_tvm']:g}/{r['nnz_per_output']['prom_tvm']:g}"
            ax.text(c, top * 1.15, note, ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="k", lw=0.7)
        ax.set_yscale("log", base=2)
        ax.set_ylim(min(low, 1.0) / 1.5, top * 2.2)
        ax.set_ylabel(f"time / {BASE} (log)")
        ax.set_title(f"MobileNetV2 224 pointwise layers, threads={label} ({run['threads']}); "
                     "above bars: form (S specialized, T table-lookup), adds/nonzeros per output",
                     fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
        plots.plain_log_ticks(ax)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return plots.save(fig, path)


def _abbrev(form: str | None) -> str:
    return {"specialized": "S", "table-lookup": "T"}.get(form or "", form or "?")


def print_table(results: dict) -> None:
    for label, run in results["runs"].items():
        print(f"\nthreads={label}: us per call (overhead subtracted), ratio vs {BASE}")
        print(f"{'layer':21s} {'shape':>14s} {'n':>2s} {'form':>4s} {'add/nz':>11s} "
              f"{'prom':>7s} {'avx2':>7s} {'ort8':>7s} {'ort32':>7s} {'prom/8':>6s} "
              f"{'avx2/8':>6s} {'lsb':>3s}")
        for r in run["layers"]:
            us, q = r["us"], r[f"ratio_vs_{BASE}"]
            form = "/".join(_abbrev(f) for f in r["form"].values())
            nz = f"{r['adds_per_output']['prom_tvm']:g}/{r['nnz_per_output']['prom_tvm']:g}"
            print(f"{r['layer']:21s} {r['cin']:>5d}>{r['cout']:<4d}@{r['hw']:<3d} "
                  f"{r['count']:2d} {form:>4s} {nz:>11s} {us['prom_tvm']:7.1f} "
                  f"{us['prom_tvm-avx2']:7.1f} {us[BASE]:7.1f} {us['onnxruntime-fp32']:7.1f} "
                  f"{q['prom_tvm']:6.2f} {q['prom_tvm-avx2']:6.2f} "
                  f"{max(r['max_lsb_vs_exact'][e] for e in ('prom_tvm', 'prom_tvm-avx2')):3d}")
        for what, t in [("all", run["totals"]), *run["totals_by_form"].items()]:
            print(f"total, {what}, {t['layers']} layers (us): " + ", ".join(
                f"{e} {t['us_weighted'][e]:.0f} ({t[f'ratio_vs_{BASE}'][e]:.2f}x)"
                for e in ENGINES))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 layers, few short rounds")
    p.add_argument("--threads", default="1,all", help="comma list: numbers and/or 'all'")
    p.add_argument("--layers", default=None, help="comma list of indices into LAYERS")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 21)")
    p.add_argument("--round-ms", type=float, default=None, help="ms per engine per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON path; the PNG goes beside it")
    for hidden in ("--worker-cases", "--worker-out", "--worker-threads"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (5 if args.quick else 21)
    args.round_ms = args.round_ms or (5.0 if args.quick else 25.0)
    if args.layers is None:
        args.indices = list(QUICK_LAYERS if args.quick else range(len(LAYERS)))
    else:
        args.indices = [int(i) for i in args.layers.split(",")]
        bad = [i for i in args.indices if not 0 <= i < len(LAYERS)]
        if bad:
            p.error(f"--layers {bad} out of range 0..{len(LAYERS) - 1}")
    return args


def main(argv=None) -> dict | None:
    from tqdm import tqdm

    args = parse_args(argv)
    if args.worker_out:
        res = worker(Path(args.worker_cases), args.indices, int(args.worker_threads),
                     args.rounds, args.round_ms)
        Path(args.worker_out).write_text(json.dumps(res))
        return None
    from latency import _thread_settings, machine_info

    settings = _thread_settings(args.threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prom_tvm_pointwise_") as tmp:
        cases = Path(tmp)
        prepare_trivial(cases)
        static = {i: prepare(i, args.seed, cases)
                  for i in tqdm(args.indices, desc="build", unit="layer", file=sys.stderr)}
        build_s = time.perf_counter() - t0
        runs = {label: assemble(static, run_worker(args, cases, args.indices, label, n))
                for label, n in settings}
    results = {
        "benchmark": "MobileNetV2 224 pointwise layers, one-layer uint8-in/uint8-out QDQ "
                     "models, interleaved rounds, medians, per-call overhead subtracted",
        "engines": {"prom_tvm": "prom_tvm.build, host CPU", "prom_tvm-avx2":
                    f"prom_tvm.build target={AVX2}", BASE: "ORT_ENABLE_ALL, NHWC QLinearConv",
                    "onnxruntime-fp32": "faster of -nchwc (ORT_ENABLE_ALL, with reorders) "
                    "and -nchw (ORT_ENABLE_EXTENDED)"},
        "settings": {"rounds": args.rounds, "round_ms": args.round_ms, "seed": args.seed,
                     "quick": args.quick, "build_s": round(build_s, 1),
                     "wall_s": None, "command": " ".join([Path(sys.executable).name, *sys.argv])},
        "machine": machine_info(),
        "runs": runs,
    }
    results["settings"]["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    png = plot(results, args.out.with_suffix(".png"))
    print_table(results)
    print(f"\nwrote {args.out} and {png} in {results['settings']['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
