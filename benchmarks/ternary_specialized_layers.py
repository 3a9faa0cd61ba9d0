"""MobileNetV2's pointwise layers: weight-specialized TIR vs the index-list kernel vs onnxruntime.

Per layer (random 50%-density ternary weights, {-127, 0, 127} encoding as onnxruntime's
quantizer stores them, uint8 activations, ReLU clamp), interleaved in one process, 1 thread
(``--threads=N``: N for both):

* ``specialized``: ``ternary_specialized`` (sub-sums shared, lanes from the host target, inline
  epilogue); ``specialized_loop``: the same with the grouped-loop epilogue (smaller code);
* ``index_lists``: today's ``ternary_conv1x1`` kernel with its default schedule;
* ``ort_int8``: onnxruntime's QLinearConv (MLAS) on the same uint8 tensors: ``sess.run``
  time minus that of a one-byte Identity model (the per-call overhead, a few µs).

TVM kernels are timed with ``time_evaluator`` (no Python call overhead).

Both TVM kernels are checked bit-exact against ``ternary_conv1x1_ref`` (never against
onnxruntime's output).  Code size: the kernel's symbol in an exported one-layer ``.so``.
Totals weight each shape by how often MobileNetV2 has it (34 layers, 19 shapes).

    python benchmarks/ternary_specialized_layers.py [--quick] [--layers 0,1,3] [--mcpu haswell]
        [--threads=2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

# read once, when TVM's thread pool starts: set before tvm is imported
os.environ["TVM_NUM_THREADS"] = next(
    (a.split("=")[1] for a in sys.argv if a.startswith("--threads=")), "1")

import numpy as np
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import s_tir, te

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mobilenet_v2_shapes import LAYERS

THREADS = int(os.environ["TVM_NUM_THREADS"])


def host_target(mcpu: str | None = None):
    cpu = mcpu or tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")()
    return tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": 1})


def random_layer(cin: int, cout: int, hw: int, seed: int = 0):
    from prom_tvm.schedules.requant import Requant

    rng = np.random.default_rng(seed)
    signs = rng.choice([-1, 0, 1], size=(cout, cin), p=[0.25, 0.5, 0.25]).astype(np.int8)
    x = rng.integers(0, 256, (1, cin, hw * hw)).astype(np.uint8)
    x_zp, x_scale, y_scale = 3, 0.02, 0.05
    w_scale = (rng.uniform(0.5, 1.5, cout) / 127 / np.sqrt(cin)).astype(np.float32)
    qbias = rng.integers(-2000, 2000, cout).astype(np.int32)
    mag = np.full(cout, 127, np.int64)
    bias = (qbias - x_zp * mag * signs.sum(axis=1)).astype(np.int32)
    scale = (np.float32(x_scale) * w_scale / np.float32(y_scale)).astype(np.float32)
    rq = Requant(scale=scale, zero_point=0, qmin=0, qmax=255, out_dtype="uint8")
    return dict(signs=signs, x=x, bias=bias, qbias=qbias, rq=rq, mag=mag.astype(np.int32),
                x_zp=x_zp, x_scale=x_scale, w_scale=w_scale, y_scale=y_scale)


def ort_session(layer, cin: int, cout: int, hw: int):
    import onnxruntime as ort

    w = (layer["signs"].astype(np.int8) * 127).reshape(cout, cin, 1, 1)
    inits = [numpy_helper.from_array(np.float32(layer["x_scale"]), "xs"),
             numpy_helper.from_array(np.uint8(layer["x_zp"]), "xz"),
             numpy_helper.from_array(w.astype(np.int8), "w"),
             numpy_helper.from_array(layer["w_scale"], "ws"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "wz"),
             numpy_helper.from_array(np.float32(layer["y_scale"]), "ys"),
             numpy_helper.from_array(np.uint8(0), "yz"),
             numpy_helper.from_array(layer["qbias"], "b")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"])
    g = helper.make_graph([node], "pw",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8,
                                                         [1, cin, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8,
                                                         [1, cout, hw, hw])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def build_specialized(layer, hw2: int, target, epilogue: str = "inline"):
    from prom_tvm.schedules.ternary_specialized import (
        SpecializedPlan,
        lanes_for,
        specialized_primfunc,
    )

    t0 = time.perf_counter()
    plan = SpecializedPlan.build(layer["signs"], "uint8")
    t_plan = time.perf_counter() - t0
    func = specialized_primfunc(plan, 1, hw2, layer["bias"], layer["rq"], layer["mag"], True,
                                lanes_for(target), epilogue=epilogue)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    return lib, plan, t_plan, time.perf_counter() - t0


def build_index_lists(layer, hw2: int, target):
    from prom_tvm.schedules.ternary_conv1x1 import (
        TernaryLists,
        accumulation_plan,
        schedule_ternary_conv1x1,
        ternary_conv1x1_compute,
    )

    t0 = time.perf_counter()
    lists = TernaryLists.from_signs(layer["signs"])
    plan = accumulation_plan(lists, "uint8")
    lists = lists.padded_to(plan.length)
    cout, cin = layer["signs"].shape
    xs = te.placeholder((1, cin, hw2), "uint8", "x")
    ps = [te.placeholder(lists.pos.shape, "int32", "pos"),
          te.placeholder(lists.neg.shape, "int32", "neg"),
          te.placeholder((cout,), "int32", "bias"), te.placeholder((cout,), "float32", "scale"),
          te.placeholder((cout,), "int32", "magnitude")]
    out = ternary_conv1x1_compute(xs, *ps, rq=layer["rq"], plan=plan, float_rescale=True)
    sch = s_tir.Schedule(te.create_prim_func([xs, *ps, out]))
    schedule_ternary_conv1x1(sch)
    lib = tvm.compile(sch.mod, target=target)
    consts = [lists.pos, lists.neg, layer["bias"], layer["rq"].scale, layer["mag"]]
    return lib, consts, time.perf_counter() - t0


def code_bytes(lib) -> dict:
    """Size of the exported .so and of its .text section (the kernel's machine code plus a
    fixed ~20 kB of runtime glue that ``baseline_text`` measures)."""
    with tempfile.TemporaryDirectory() as d:
        so = Path(d) / "k.so"
        lib.export_library(str(so))
        out = subprocess.run(["size", "-A", str(so)], capture_output=True, text=True).stdout
        text = next(int(line.split()[1]) for line in out.splitlines()
                    if line.startswith(".text"))
        return {"so_bytes": so.stat().st_size, "text_bytes": text}


def baseline_text(target) -> int:
    """.text bytes of a trivial (1 -> 1 channel) specialized kernel: the glue to subtract."""
    layer = random_layer(1, 1, 8)
    layer["signs"][:] = 1
    lib, *_ = build_specialized(layer, 64, target)
    return code_bytes(lib)["text_bytes"]


def timed(fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def session_overhead() -> float:
    """Seconds onnxruntime's ``sess.run`` takes around a kernel: an Identity on one byte."""
    import onnxruntime as ort

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"x": np.zeros(1, np.uint8)}
    return float(np.median([timed(lambda: sess.run(None, feed), 200) for _ in range(5)]))


def measure_layer(i: int, target, glue: int, quick: bool, max_weights: int,
                  ort_overhead: float) -> dict:
    """Build, check and time every candidate of one layer (interleaved repeats)."""
    from prom_tvm.schedules.ternary_conv1x1 import ternary_conv1x1_ref
    from prom_tvm.schedules.ternary_specialized import lanes_for, should_specialize

    name, cin, cout, hw, count = LAYERS[i]
    hw2 = hw * hw
    dev = tvm.cpu()
    layer = random_layer(cin, cout, hw)
    ref = ternary_conv1x1_ref(layer["x"].reshape(1, cin, hw, hw), layer["signs"],
                              layer["bias"], layer["rq"], layer["mag"]).reshape(1, cout, hw2)
    nnz = int(np.count_nonzero(layer["signs"]))
    row = {"layer": name, "cin": cin, "cout": cout, "hw": hw, "count": count, "nnz": nnz,
           "rule_specializes": should_specialize(cin, cout, hw2, nnz, lanes_for(target))}
    x_t = tvm.runtime.tensor(layer["x"], dev)

    def out():
        return tvm.runtime.tensor(np.zeros((1, cout, hw2), np.uint8), dev)

    runs = {}  # name -> (callable, output tensor)
    idxl, consts, row["index_lists_build_s"] = build_index_lists(layer, hw2, target)
    c_t = [tvm.runtime.tensor(c, dev) for c in consts]
    y = out()
    runs["index_lists"] = (partial(idxl["main"], x_t, *c_t, y), y, idxl)
    if cin * cout <= max_weights:
        spec, plan, row["cse_plan_s"], row["specialized_build_s"] = build_specialized(
            layer, hw2, target)
        loop, _, _, row["specialized_loop_build_s"] = build_specialized(layer, hw2, target,
                                                                        epilogue="loop")
        row.update(adds=plan.adds, shared_subsums=len(plan.subsums.temps),
                   int32_outputs=plan.int32_outputs)
        y, y2 = out(), out()
        runs["specialized"] = (partial(spec["main"], x_t, y),
                               y, spec)
        runs["specialized_loop"] = (partial(loop["main"],
                                            x_t, *c_t[2:5], y2), y2, loop)
    for key, (fn, y, lib) in runs.items():
        fn()
        row[f"{key}_exact"] = bool((y.numpy() == ref).all())
        row[f"{key}_code_bytes"] = code_bytes(lib)["text_bytes"] - glue
    sess = ort_session(layer, cin, cout, hw)
    feed = {"x": layer["x"].reshape(1, cin, hw, hw)}
    ort_y = sess.run(None, feed)[0].reshape(1, cout, hw2)
    row["ort_max_diff_lsb_vs_ref"] = int(np.abs(ort_y.astype(int) - ref.astype(int)).max())
    number = 30 if quick else 100
    times: dict[str, list] = {k: [] for k in [*runs, "ort_int8"]}
    for _ in range(5 if quick else 9):  # interleaved repeats
        for key, (fn, _, lib) in runs.items():  # the kernel alone, no Python call overhead
            times[key].append(lib.mod.time_evaluator("main", dev, number=number)(
                *fn.args).mean)
        times["ort_int8"].append(timed(lambda: sess.run(None, feed), number) - ort_overhead)
    for key, ts in times.items():
        row[f"{key}_us"] = float(np.median(ts) * 1e6)
    row["chosen_us"] = row["specialized_us" if row["rule_specializes"] else "index_lists_us"]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--layers", default=None, help="comma-separated layer indices")
    ap.add_argument("--max-weights", type=int, default=24576,
                    help="build the specialized kernels only up to Cin*Cout (their build time "
                         "grows fast: 384->64 takes ~20 s)")
    ap.add_argument("--mcpu", default=None,
                    help="build the TVM kernels for this CPU, e.g. haswell (AVX2; onnxruntime "
                         "still uses the host's instructions)")
    ap.add_argument("--threads", default="1", help="threads for TVM and onnxruntime "
                    "(give it as --threads=N)")
    ap.add_argument("--out", default="benchmarks/results/ternary_specialized_layers.json")
    args = ap.parse_args(argv)
    target = host_target(args.mcpu)
    idx = range(len(LAYERS)) if args.layers is None else [int(i) for i in args.layers.split(",")]
    glue = baseline_text(target)
    overhead = session_overhead()
    print(f"onnxruntime sess.run overhead {overhead * 1e6:.1f} us (subtracted below)")
    rows = []
    for i in idx:
        r = measure_layer(i, target, glue, args.quick, args.max_weights, overhead)
        rows.append(r)
        spec = (f"spec {r['specialized_us']:7.1f} loop {r['specialized_loop_us']:7.1f} "
                f"adds/nnz {r['adds']:5d}/{r['nnz']:5d} code {r['specialized_code_bytes']:6d} B"
                if "specialized_us" in r else f"{'(not built)':>57s}")
        print(f"{r['layer']:21s} {r['cin']:3d}->{r['cout']:4d}@{r['hw']:3d} idx "
              f"{r['index_lists_us']:6.1f} ort {r['ort_int8_us']:6.1f} {spec} "
              f"{'*' if r['rule_specializes'] else ' '}", flush=True)
    tot = {k: sum(r[k] * r["count"] for r in rows)
           for k in ("chosen_us", "index_lists_us", "ort_int8_us")}
    print(f"total over {sum(r['count'] for r in rows)} layers: rule's choice (*) "
          f"{tot['chosen_us']:.0f} us = {tot['chosen_us'] / tot['ort_int8_us']:.2f}x onnxruntime "
          f"int8 ({tot['ort_int8_us']:.0f} us); index lists everywhere "
          f"{tot['index_lists_us'] / tot['ort_int8_us']:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": THREADS, "target": str(target.attrs.get("mcpu", "")),
                               "ort_session_overhead_us_subtracted": overhead * 1e6,
                               "layers": rows, "totals_weighted_us": tot}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
