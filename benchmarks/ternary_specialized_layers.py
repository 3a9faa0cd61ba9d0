"""MobileNetV2's pointwise layers: weight-specialized TIR vs the index-list kernel vs onnxruntime.

Per layer (random 50%-density ternary weights, {-127, 0, 127} encoding as onnxruntime's
quantizer stores them, uint8 activations, ReLU clamp), interleaved in one process, 1 thread:

* ``specialized``: ``ternary_specialized`` (sub-sums shared, lanes from the host target, inline
  epilogue); ``specialized_loop``: the same with the grouped-loop epilogue (smaller code);
* ``index_lists``: today's ``ternary_conv1x1`` kernel with its default schedule;
* ``ort_int8``: onnxruntime's QLinearConv (MLAS) on the same uint8 tensors (``sess.run``, so
  it includes onnxruntime's per-call overhead of a few µs).

Both TVM kernels are checked bit-exact against ``ternary_conv1x1_ref`` (never against
onnxruntime's output).  Code size: the kernel's symbol in an exported one-layer ``.so``.
Totals weight each shape by how often MobileNetV2 has it (34 layers, 19 shapes).

    python benchmarks/ternary_specialized_layers.py [--quick] [--layers 0,1,3]
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

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import s_tir, te

# (name, cin, cout, hw, how many MobileNetV2 layers have this shape)
LAYERS = [
    ("features.1.conv.1", 32, 16, 112, 1), ("features.2.conv.0.0", 16, 96, 112, 1),
    ("features.2.conv.2", 96, 24, 56, 1), ("features.3.conv.0.0", 24, 144, 56, 2),
    ("features.3.conv.2", 144, 24, 56, 1), ("features.4.conv.2", 144, 32, 28, 1),
    ("features.5.conv.0.0", 32, 192, 28, 3), ("features.5.conv.2", 192, 32, 28, 2),
    ("features.7.conv.2", 192, 64, 14, 1), ("features.8.conv.0.0", 64, 384, 14, 4),
    ("features.8.conv.2", 384, 64, 14, 3), ("features.11.conv.2", 384, 96, 14, 1),
    ("features.12.conv.0.0", 96, 576, 14, 3), ("features.12.conv.2", 576, 96, 14, 2),
    ("features.14.conv.2", 576, 160, 7, 1), ("features.15.conv.0.0", 160, 960, 7, 3),
    ("features.15.conv.2", 960, 160, 7, 2), ("features.17.conv.2", 960, 320, 7, 1),
    ("features.18.0", 320, 1280, 7, 1),
]


def host_target():
    cpu = tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")()
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
    so.intra_op_num_threads = 1
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


def main(argv=None) -> int:
    from prom_tvm.schedules.ternary_conv1x1 import ternary_conv1x1_ref

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--layers", default=None, help="comma-separated layer indices")
    ap.add_argument("--out", default="benchmarks/results/ternary_specialized_layers.json")
    args = ap.parse_args(argv)
    target = host_target()
    dev = tvm.cpu()
    idx = range(len(LAYERS)) if args.layers is None else [int(i) for i in args.layers.split(",")]
    glue = baseline_text(target)
    rows = []
    for i in idx:
        name, cin, cout, hw, count = LAYERS[i]
        hw2 = hw * hw
        layer = random_layer(cin, cout, hw)
        ref = ternary_conv1x1_ref(layer["x"].reshape(1, cin, hw, hw), layer["signs"],
                                  layer["bias"], layer["rq"], layer["mag"]).reshape(1, cout, hw2)
        spec, plan, t_plan, t_spec = build_specialized(layer, hw2, target)
        inl, _, _, t_inl = build_specialized(layer, hw2, target, epilogue="loop")
        idxl, consts, t_idx = build_index_lists(layer, hw2, target)
        sess = ort_session(layer, cin, cout, hw)
        x_t = tvm.runtime.tensor(layer["x"], dev)
        y_s = tvm.runtime.tensor(np.zeros((1, cout, hw2), np.uint8), dev)
        y_i = tvm.runtime.tensor(np.zeros((1, cout, hw2), np.uint8), dev)
        y_n = tvm.runtime.tensor(np.zeros((1, cout, hw2), np.uint8), dev)
        c_t = [tvm.runtime.tensor(c, dev) for c in consts]
        s_t = [c_t[2], c_t[3], c_t[4]]  # bias, scale, magnitude
        spec["main"](x_t, y_s)
        inl["main"](x_t, *s_t, y_n)
        idxl["main"](x_t, *c_t, y_i)
        exact_s = bool((y_s.numpy() == ref).all() and (y_n.numpy() == ref).all())
        exact_i = bool((y_i.numpy() == ref).all())
        feed = {"x": layer["x"].reshape(1, cin, hw, hw)}
        ort_y = sess.run(None, feed)[0].reshape(1, cout, hw2)
        ort_lsb = int(np.abs(ort_y.astype(int) - ref.astype(int)).max())
        number = 30 if args.quick else 100
        ev_s = spec.mod.time_evaluator("main", dev, number=number)
        ev_i = idxl.mod.time_evaluator("main", dev, number=number)
        ev_n = inl.mod.time_evaluator("main", dev, number=number)
        t_s, t_i, t_o, t_n = [], [], [], []
        for _ in range(5 if args.quick else 9):  # interleaved repeats
            t_s.append(ev_s(x_t, y_s).mean)
            t_n.append(ev_n(x_t, *s_t, y_n).mean)
            t_i.append(ev_i(x_t, *c_t, y_i).mean)
            t0 = time.perf_counter()
            for _ in range(number):
                sess.run(None, feed)
            t_o.append((time.perf_counter() - t0) / number)
        med = {k: float(np.median(v) * 1e6) for k, v in
               (("specialized_us", t_s), ("index_lists_us", t_i), ("ort_int8_us", t_o),
                 ("specialized_loop_us", t_n))}
        size_s, size_i, size_n = code_bytes(spec), code_bytes(idxl), code_bytes(inl)
        row = {"layer": name, "cin": cin, "cout": cout, "hw": hw, "count": count, **med,
               "nnz": plan.subsums.nnz, "adds": plan.adds, "temps": len(plan.subsums.temps),
               "int32_outputs": plan.int32_outputs,
               "specialized_exact": exact_s, "index_lists_exact": exact_i,
               "ort_max_diff_lsb_vs_ref": ort_lsb,
               "specialized_build_s": t_spec, "cse_plan_s": t_plan, "index_lists_build_s": t_idx,
               "specialized_code_bytes": size_s["text_bytes"] - glue,
               "specialized_so_bytes": size_s["so_bytes"],
               "index_lists_code_bytes": size_i["text_bytes"] - glue,
               "specialized_loop_code_bytes": size_n["text_bytes"] - glue,
               "specialized_loop_build_s": t_inl,
               "index_lists_so_bytes": size_i["so_bytes"]}
        rows.append(row)
        print(f"{name:22s} {cin:4d}->{cout:4d}@{hw:3d} spec {med['specialized_us']:7.1f} "
              f"loop {med['specialized_loop_us']:7.1f} idx {med['index_lists_us']:7.1f} "
              f"ort {med['ort_int8_us']:7.1f} us | "
              f"adds/nnz {plan.adds}/{plan.subsums.nnz} | code {row['specialized_code_bytes']} "
              f"loop {row['specialized_loop_code_bytes']} B "
              f"| build {t_spec:.2f}s | exact {exact_s} {exact_i}", flush=True)
    tot = {k: sum(r[k] * r["count"] for r in rows)
           for k in ("specialized_us", "index_lists_us", "ort_int8_us")}
    best = sum(min(r["specialized_us"], r["index_lists_us"]) * r["count"] for r in rows)
    print(f"total (weighted): spec {tot['specialized_us']:.0f} idx {tot['index_lists_us']:.0f} "
          f"ort {tot['ort_int8_us']:.0f} us; best-of per layer {best:.0f} us "
          f"({best / tot['ort_int8_us']:.2f}x ort)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": 1, "target": str(target.attrs.get("mcpu", "")),
                               "layers": rows, "totals_weighted_us": tot,
                               "best_of_weighted_us": best}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
