"""MobileNetV2's int8 (non-ternary) layers: prom_tvm's int8 kernels vs onnxruntime int8.

Every layer is a one-node QDQ model (uint8 activations, per-channel int8 weights, int32 bias)
built with onnx.helper: the first conv, every depthwise shape, the classifier and the
residual adds, plus three non-ternary pointwise convs for reference. onnxruntime runs it with
one thread (QLinearConv / QGemm / QLinearAdd from its QDQ fusion); prom_tvm runs the TE
compute of ``prom_tvm.schedules.int8_*`` with its default schedule, built for this CPU, with
``TVM_NUM_THREADS=1`` and the bias / zero-point folding that the QDQ pass does. Timings are
interleaved round by round in this process and the minimum per engine is kept (a shared
machine adds noise, never removes it). onnxruntime is reported twice: the whole session call
(which for a conv includes the NCHW <-> NHWC transposes it inserts around a lone node) and its
profiler's kernel time of the quantized node alone; the ratio uses the kernel time.

    python benchmarks/int8_layers.py [--rounds 15] [--only conv|dw|dense|add|pw] [--out PATH]

Writes ``benchmarks/results/int8_layers.json`` and prints a markdown table (also the largest
output difference in LSB against onnxruntime, which must be 0 for the kernels that match
QLinearConv / QLinearAdd exactly).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mobilenet_v2_shapes import INT8_CONVS

RESULTS = Path(__file__).resolve().parent / "results" / "int8_layers.json"

# (group, name, cin, cout, hw, k, stride, groups) at torchvision MobileNetV2 224x224
CONV_LAYERS = [("conv" if g == 1 else "dw", n, *p, g) for n, *p, g, _ in INT8_CONVS] + [
    ("pw", "pw 24->144 @56 (int8)", 24, 144, 56, 1, 1, 1),
    ("pw", "pw 144->24 @56 (int8)", 144, 24, 56, 1, 1, 1),
    ("pw", "pw 320->1280 @7 (int8)", 320, 1280, 7, 1, 1, 1),
]
# how many times each layer occurs in MobileNetV2 (for the per-network total)
OCCURRENCES = {n: count for n, *_, count in INT8_CONVS} | {
    "add 32 @28": 2, "add 64 @14": 3, "add 96 @14": 2, "add 160 @7": 2}
DENSE_LAYERS = [("dense", "classifier 1280->1000", 1, 1280, 1000)]
ADD_LAYERS = [("add", f"add {c} @{hw}", c, hw) for c, hw in
              [(24, 56), (32, 28), (64, 14), (96, 14), (160, 7)]]

X_SCALE, X_ZP, Y_SCALE, Y_ZP = 0.02, 7, 0.05, 3


def _model(nodes, inits, inputs, out_shape):
    graph = helper.make_graph(
        nodes, "one_layer",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime wheels lag onnx's newest IR version
    return model


def _quant_inits(cout, rng, w_shape):
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    sw = (rng.random(cout) * 0.01 + 0.001).astype(np.float32)
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    inits = [
        numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(sw, "w_s"),
        numpy_helper.from_array(np.zeros(cout, np.int8), "w_z"),
        numpy_helper.from_array(np.array(X_SCALE, np.float32), "x_s"),
        numpy_helper.from_array(np.array(X_ZP, np.uint8), "x_z"),
        numpy_helper.from_array(np.array(Y_SCALE, np.float32), "y_s"),
        numpy_helper.from_array(np.array(Y_ZP, np.uint8), "y_z"),
        numpy_helper.from_array(bias, "b_q"),
        numpy_helper.from_array((np.float32(X_SCALE) * sw).astype(np.float32), "b_s"),
        numpy_helper.from_array(np.zeros(cout, np.int32), "b_z"),
    ]
    deq = [helper.make_node("DequantizeLinear", ["x", "x_s", "x_z"], ["x_f"]),
           helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_f"], axis=0),
           helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b_f"], axis=0)]
    return w, sw, bias, inits, deq


def conv_case(cin, cout, hw, k, stride, groups, rng):
    from tvm import te

    from prom_tvm.schedules.int8_conv2d import int8_conv2d_compute, schedule_int8_conv2d
    from prom_tvm.schedules.requant import Requant, ort_scale

    w, sw, bias, inits, deq = _quant_inits(cout, rng, (cout, cin // groups, k, k))
    pad = k // 2
    nodes = [*deq, helper.make_node("Conv", ["x_f", "w_f", "b_f"], ["y_f"], group=groups,
                                    kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4),
             helper.make_node("QuantizeLinear", ["y_f", "y_s", "y_z"], ["y"])]
    ho = (hw + 2 * pad - k) // stride + 1
    model = _model(nodes, inits, [("x", [1, cin, hw, hw])], [1, cout, ho, ho])
    # what the QDQ pass hands the kernel: bias with -x_zp * sum(w) folded in
    folded = (bias.astype(np.int64) - X_ZP * w.reshape(cout, -1).astype(np.int64).sum(1))
    rq = Requant(ort_scale(X_SCALE, sw, Y_SCALE), Y_ZP, 0, 255, "uint8")
    x = te.placeholder((1, cin, hw, hw), "uint8", name="x")
    wt = te.placeholder(w.shape, "int8", name="w")
    bt = te.placeholder((cout,), "int32", name="bias")
    st = te.placeholder((cout,), "float32", name="scale")
    y = int8_conv2d_compute(x, wt, bt, st, strides=(stride, stride), padding=(pad,) * 4,
                            dilation=(1, 1), groups=groups, x_zero_point=X_ZP, rq=rq)
    x_np = rng.integers(0, 256, (1, cin, hw, hw)).astype(np.uint8)
    consts = [w, folded.astype(np.int32), rq.scale]
    return model, {"x": x_np}, [x, wt, bt, st], y, [x_np, *consts], schedule_int8_conv2d


def dense_case(m, k, n, rng):
    from tvm import te

    from prom_tvm.schedules.int8_dense import int8_dense_compute, schedule_int8_dense
    from prom_tvm.schedules.requant import Requant, ort_scale

    w, sw, bias, inits, deq = _quant_inits(n, rng, (n, k))
    nodes = [*deq, helper.make_node("Gemm", ["x_f", "w_f", "b_f"], ["y_f"], transB=1),
             helper.make_node("QuantizeLinear", ["y_f", "y_s", "y_z"], ["y"])]
    model = _model(nodes, inits, [("x", [m, k])], [m, n])
    folded = bias.astype(np.int64) - X_ZP * w.astype(np.int64).sum(1)
    rq = Requant(ort_scale(X_SCALE, sw, Y_SCALE), Y_ZP, 0, 255, "uint8")
    x = te.placeholder((m, k), "uint8", name="x")
    wt = te.placeholder((n, k), "int8", name="w")
    bt = te.placeholder((n,), "int32", name="bias")
    st = te.placeholder((n,), "float32", name="scale")
    y = int8_dense_compute(x, wt, bt, st, x_zero_point=X_ZP, rq=rq, transpose_w=True)
    x_np = rng.integers(0, 256, (m, k)).astype(np.uint8)
    return (model, {"x": x_np}, [x, wt, bt, st], y,
            [x_np, w, folded.astype(np.int32), rq.scale], schedule_int8_dense)


def add_case(c, hw, rng):
    from tvm import te

    from prom_tvm.schedules.int8_add import int8_add_compute, schedule_int8_add

    q = {"a_scale": 0.021, "a_zp": 120, "b_scale": 0.034, "b_zp": 131, "y_scale": 0.041,
         "y_zp": 125}
    inits = [numpy_helper.from_array(np.array(q[f"{t}_scale"], np.float32), f"{t}_s")
             for t in "aby"]
    inits += [numpy_helper.from_array(np.array(q[f"{t}_zp"], np.uint8), f"{t}_z") for t in "aby"]
    nodes = [helper.make_node("DequantizeLinear", ["a", "a_s", "a_z"], ["a_f"]),
             helper.make_node("DequantizeLinear", ["b", "b_s", "b_z"], ["b_f"]),
             helper.make_node("Add", ["a_f", "b_f"], ["s"]),
             helper.make_node("QuantizeLinear", ["s", "y_s", "y_z"], ["y"])]
    shape = [1, c, hw, hw]
    model = _model(nodes, inits, [("a", shape), ("b", shape)], shape)
    a = te.placeholder(shape, "uint8", name="a")
    b = te.placeholder(shape, "uint8", name="b")
    y = int8_add_compute(a, b, out_dtype="uint8", **q)
    a_np, b_np = (rng.integers(0, 256, shape).astype(np.uint8) for _ in range(2))
    return model, {"a": a_np, "b": b_np}, [a, b], y, [a_np, b_np], schedule_int8_add


def build_tvm(placeholders, y, schedule, arrays, target=None):
    """(run, time) of the scheduled kernel for ``target`` (default: this CPU, one core)."""
    import tvm
    from tvm import s_tir, te

    if target is None:
        cpu = tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")()
        target = tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": 1})
    sch = s_tir.Schedule(te.create_prim_func([*placeholders, y]))
    schedule(sch, target)
    lib = tvm.compile(sch.mod, target=target)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays]
    out = tvm.runtime.tensor(np.zeros([int(v) for v in y.shape], str(y.dtype)), dev)
    func = lib.mod["main"]
    timer = lib.mod.time_evaluator("main", dev, number=1, repeat=20)

    def run():
        func(*args, out)
        return out.numpy()

    return run, lambda: min(timer(*args, out).results)


def ort_session(model, feeds):
    import onnxruntime as ort

    def session(profile):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        if profile:
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
        return ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])

    sess = session(False)
    prof = session(True)

    def run():
        return sess.run(None, feeds)[0]

    def time_session():
        best = np.inf
        for _ in range(20):
            t = time.perf_counter()
            sess.run(None, feeds)
            best = min(best, time.perf_counter() - t)
        return best

    def time_kernel():
        for _ in range(30):
            prof.run(None, feeds)
        return prof

    return run, time_session, time_kernel


def kernel_times(prof) -> dict[str, float]:
    """Minimum profiled kernel time (s) per quantized op type."""
    path = prof.end_profiling()
    events = json.loads(Path(path).read_text())
    Path(path).unlink()
    out: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "")
            out[op] = min(out.get(op, np.inf), e["dur"] * 1e-6)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=["conv", "dw", "dense", "add", "pw"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from prom_tvm.reference import ExactReference
    rng = np.random.default_rng(0)
    cases = [(g, n, conv_case, p) for g, n, *p in CONV_LAYERS]
    cases += [(g, n, dense_case, p) for g, n, *p in DENSE_LAYERS]
    cases += [(g, n, add_case, p) for g, n, *p in ADD_LAYERS]
    if args.only:
        cases = [c for c in cases if c[0] == args.only]
    rows = []
    for group, name, make, params in cases:
        model, feeds, placeholders, y, arrays, schedule = make(*params, rng)
        tvm_run, tvm_time = build_tvm(placeholders, y, schedule, arrays)
        ort_run, ort_time, ort_profile = ort_session(model, feeds)
        # bit-exactness against the exact QDQ reference (onnxruntime's int8 kernels saturate on
        # CPUs without VNNI; their distance from it is recorded beside)
        exact = ExactReference(model).run(feeds)[0].astype(np.int32)
        lsb = int(np.abs(tvm_run().astype(np.int32) - exact).max())
        ort_lsb = int(np.abs(ort_run().astype(np.int32) - exact).max())
        best = {"tvm": np.inf, "ort_session": np.inf}
        for _ in range(args.rounds):  # interleaved: noise from other processes hits both
            best["tvm"] = min(best["tvm"], tvm_time())
            best["ort_session"] = min(best["ort_session"], ort_time())
        prof = ort_profile()
        kt = kernel_times(prof)
        quantized = {k: v for k, v in kt.items() if k.startswith("Q") and k != "QuantizeLinear"}
        ort_kernel = min(quantized.values()) if quantized else best["ort_session"]
        row = {"group": group, "layer": name, "prom_tvm_us": best["tvm"] * 1e6,
               "ort_session_us": best["ort_session"] * 1e6, "ort_kernel_us": ort_kernel * 1e6,
               "ort_kernel_op": ",".join(sorted(quantized)) or "-", "max_lsb_vs_exact": lsb,
               "ort_max_lsb_vs_exact": ort_lsb,
               "ratio": best["tvm"] / ort_kernel, "count": OCCURRENCES.get(name, 1)}
        rows.append(row)
        print(f"{name:32s} prom_tvm {row['prom_tvm_us']:8.1f} us  ort kernel "
              f"{row['ort_kernel_us']:8.1f} us  ort session {row['ort_session_us']:8.1f} us  "
              f"ratio {row['ratio']:.2f}  lsb {lsb}", flush=True)
    print("\n| layer | prom_tvm µs | onnxruntime kernel µs | onnxruntime session µs | "
          "ratio | max LSB vs ORT |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['prom_tvm_us']:.1f} | {r['ort_kernel_us']:.1f} "
              f"({r['ort_kernel_op']}) | {r['ort_session_us']:.1f} | {r['ratio']:.2f} | "
              f"{r['max_lsb_vs_exact']} |")
    net = [r for r in rows if r["group"] != "pw"]
    ours = sum(r["prom_tvm_us"] * r["count"] for r in net)
    theirs = sum(r["ort_kernel_us"] * r["count"] for r in net)
    print(f"\nMobileNetV2 int8 layers (first conv, 17 depthwise, classifier, 10 adds): "
          f"prom_tvm {ours:.0f} µs, onnxruntime kernels {theirs:.0f} µs, ratio "
          f"{ours / theirs:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "network_us": {"prom_tvm": ours,
                                                                  "onnxruntime": theirs}},
                                   indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
