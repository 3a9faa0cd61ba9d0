"""Fashion-MNIST accuracy of a small MobileNetV2: float, int8 QAT, PROM QAT, compiled PROM.

Steps (one process, seeded):

1. train our torch MobileNetV2 (``prom_tvm.models.mobilenet_v2_torch``; grayscale input, the
   28x28 images zero-padded to 32x32, width 0.5, first conv with stride 1 so that the last
   feature map is 2x2 rather than 1x1) in float;
2. int8 QAT: ``prom_tvm.qat.prepare(float, QATConfig(pointwise_format="int8"))``, fine-tuned;
3. PROM QAT: ``prom_tvm.qat.prepare(float)`` (ternary 1x1 convs), fine-tuned from the same
   float model;
4. test top-1 of each in torch on the full 10,000-image test set; export each to ONNX (float
   as a plain export, the others with ``prom_tvm.qat.export_onnx``) and measure onnxruntime's
   top-1 on it; compile the PROM ONNX with ``prom_tvm.build`` and measure its top-1;
5. energy and storage of each ONNX from ``prom_tvm.energy.analyze_model``; a Pareto plot.

    python benchmarks/accuracy_fashion_mnist.py            # full run (see docs/qat.md)
    python benchmarks/accuracy_fashion_mnist.py --tiny     # 512 / 256 images, for tests

Writes ``benchmarks/results/accuracy_fashion_mnist.json`` and
``benchmarks/results/pareto_fashion_mnist.svg`` (or into ``--out-dir``).  The data come from
the Debian / Ubuntu package ``dataset-fashion-mnist`` (``apt-get install
dataset-fashion-mnist``) or any folder holding the four original ``*-ubyte.gz`` files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from prom_tvm import qat
from prom_tvm.models.mobilenet_v2_torch import MobileNetV2
from prom_tvm.reference import ExactReference

RESULTS = Path(__file__).resolve().parent / "results"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics
CLASSES = 10


# -- data ---------------------------------------------------------------------------------------


def find_dataset(data_dir: str | None) -> Path:
    """The folder with the four Fashion-MNIST files, or exit saying how to get them."""
    candidates = [Path(data_dir)] if data_dir else [DEBIAN_DIR]
    for folder in candidates:
        if all((folder / f).is_file() for f in FILES.values()):
            return folder
    sys.exit(
        f"Fashion-MNIST not found in {', '.join(map(str, candidates))}.\n"
        "Install it with:  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist\n"
        f"(files land in {DEBIAN_DIR}; `dpkg -L dataset-fashion-mnist` lists them), or pass\n"
        f"--data-dir DIR with {', '.join(FILES.values())} from "
        "https://github.com/zalandoresearch/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'ed) as a uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(folder: Path, split: str, limit: int | None, size: int):
    """Normalized NCHW float32 images padded to ``size`` and int64 labels."""
    images = read_idx(folder / FILES[f"{split}_images"])[:limit]
    labels = read_idx(folder / FILES[f"{split}_labels"])[:limit]
    pad = (size - images.shape[1]) // 2
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = F.pad(x, (pad, size - 28 - pad, pad, size - 28 - pad))  # background is 0
    return (x - MEAN) / STD, torch.from_numpy(labels.astype(np.int64))


def augment(x: torch.Tensor, gen: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random horizontal flip and a random translation of up to ``shift`` pixels per image."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    background = float(-MEAN / STD)
    padded = F.pad(x, (shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * shift + 1, (x.shape[0], 2), generator=gen)
    h, w = x.shape[2:]
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w]
                        for i, (dy, dx) in enumerate(offsets.tolist())])


# -- training and evaluation --------------------------------------------------------------------


def train(model, data, epochs: int, lr: float, args, label: str, freeze_bn_last: bool = False):
    """SGD (momentum 0.9, nesterov) with a cosine schedule; a tqdm bar per epoch."""
    x, y = data
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                          weight_decay=args.weight_decay)
    steps = epochs * math.ceil(len(x) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=steps, pct_start=0.15 if epochs > 1 else 0.3,
        anneal_strategy="cos")
    start = time.perf_counter()
    for epoch in range(epochs):
        if freeze_bn_last and epoch == epochs - 1 and epochs > 1:
            qat.freeze_batchnorm(model)  # last epoch trains exactly what gets exported
        model.train()
        order = torch.randperm(len(x), generator=gen)
        bar = tqdm(range(0, len(x), args.batch_size), desc=f"{label} epoch {epoch + 1}/{epochs}",
                   unit="batch", leave=False, disable=args.quiet)
        for i in bar:
            idx = order[i:i + args.batch_size]
            xb = augment(x[idx], gen).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return time.perf_counter() - start


def predict_torch(model, x: torch.Tensor, batch: int, label: str, quiet: bool) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(x), batch), desc=f"{label} test", leave=False, disable=quiet):
            xb = x[i:i + batch].contiguous(memory_format=torch.channels_last)
            out.append(model(xb).argmax(1).numpy())
    return np.concatenate(out)


def predict_batched(run, x: np.ndarray, batch: int, label: str, quiet: bool) -> np.ndarray:
    """Predictions of a fixed-batch engine: the last batch is padded (and cropped back)."""
    out = []
    for i in tqdm(range(0, len(x), batch), desc=f"{label} test", leave=False, disable=quiet):
        chunk = x[i:i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        logits = run(np.ascontiguousarray(chunk))
        logits = logits.numpy() if hasattr(logits, "numpy") else np.asarray(logits)
        out.append(logits[:n].argmax(1))
    return np.concatenate(out)


def onnxruntime_predict(path: Path, x: np.ndarray, batch: int, label: str,
                        quiet: bool) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return predict_batched(lambda a: sess.run(None, {"input": a})[0], x, batch, label, quiet)


def export_float(model, example: torch.Tensor, path: Path) -> None:
    """Plain float ONNX (BatchNorm folded by the exporter in eval mode)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def compiled_predict(path: Path, x: np.ndarray, batch: int, quiet: bool) -> dict:
    """Top-1 inputs of ``prom_tvm.build``; an explanation instead when it cannot run."""
    try:
        import prom_tvm

        build = prom_tvm.build
    except (ImportError, AttributeError) as err:
        return {"error": f"prom_tvm.build is not available ({err}); no compiled top-1 measured"}
    try:
        start = time.perf_counter()
        lib = build(str(path), input_shapes={"input": (batch, *x.shape[1:])})
        seconds = time.perf_counter() - start
        pred = predict_batched(lib, x, batch, "prom_tvm.build", quiet)
    except Exception as err:  # report the compiler's failure, keep the other results
        return {"error": f"prom_tvm.build failed: {type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=5)}
    kernels = lib.kernel_counts()
    return {"pred": pred, "build_seconds": round(seconds, 1), "kernels": kernels}


def energy_summary(path: Path) -> dict:
    from prom_tvm.energy import analyze_model

    r = analyze_model(str(path))
    return {k: r[k] for k in ("total_energy_pj", "fp16_energy_pj", "energy_ratio_vs_fp16",
                              "storage_bits", "fp16_storage_bits", "storage_ratio_vs_fp16")}


# -- plot ---------------------------------------------------------------------------------------


def pareto_svg(results: dict, path: Path, title: str) -> None:
    """Energy per image (log scale) against test top-1 for float, int8 and PROM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "prom_tvm"  # deterministic SVG ids
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [n for n in ("float", "int8", "prom") if "energy" in results[n]]
    xs = [results[n]["energy"]["total_energy_pj"] / 1e6 for n in names]
    ys = [100 * results[n]["torch_top1"] for n in names]
    labels = {"float": "float32", "int8": "int8 QAT", "prom": "PROM QAT"}
    colors = {"float": "tab:gray", "int8": "tab:blue", "prom": "tab:red"}
    ax.plot(xs, ys, color="0.7", lw=1, zorder=1)
    for n, x, y in zip(names, xs, ys, strict=True):
        ratio = results[n]["energy"]["energy_ratio_vs_fp16"]
        vs_fp16 = (f"{ratio:.1f}x less energy than fp16" if ratio >= 1
                   else f"{1 / ratio:.1f}x more energy than fp16")
        ax.scatter([x], [y], s=60, color=colors[n], zorder=2)
        ax.annotate(f"{labels[n]}\n{y:.2f}%, {vs_fp16}", (x, y),
                    textcoords="offset points", xytext=(8, -4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("energy per image [µJ] (45 nm table, prom_tvm.energy)")
    ax.set_ylabel("Fashion-MNIST test top-1 [%]")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    lo, hi = min(xs), max(xs)
    ax.set_xlim(lo / 2, hi * 40)
    span = max(ys) - min(ys) or 1.0
    ax.set_ylim(min(ys) - 0.15 * span, max(ys) + 0.2 * span)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true",
                   help="512 training / 256 test images, one epoch per stage (for tests)")
    p.add_argument("--data-dir", help=f"folder with the four *-ubyte.gz files ({DEBIAN_DIR})")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="JSON and SVG go here")
    p.add_argument("--onnx-dir", help="keep the three ONNX models here (default: temporary)")
    p.add_argument("--width", type=float, default=0.5, help="MobileNetV2 width multiplier")
    p.add_argument("--input-size", type=int, default=32, help="28x28 zero-padded to this")
    p.add_argument("--stem-stride", type=int, default=1, choices=(1, 2),
                   help="stride of the first conv (torchvision: 2)")
    p.add_argument("--epochs-float", type=int, default=6)
    p.add_argument("--epochs-int8", type=int, default=1)
    p.add_argument("--epochs-prom", type=int, default=3)
    p.add_argument("--lr-float", type=float, default=0.1)
    p.add_argument("--lr-int8", type=float, default=0.005)
    p.add_argument("--lr-prom", type=float, default=0.02)
    p.add_argument("--weight-decay", type=float, default=4e-5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch", type=int, default=250, help="batch of test-set inference")
    p.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compile", action="store_true", help="skip the prom_tvm.build step")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--plot-only", action="store_true",
                   help="only redraw the SVG from the JSON already in --out-dir")
    args = p.parse_args(argv)
    if args.input_size < 28:
        p.error(f"--input-size must be >= 28 (the images are 28x28), got {args.input_size}")
    if args.tiny:
        args.epochs_float = args.epochs_int8 = args.epochs_prom = 1
        args.batch_size, args.eval_batch = 64, 64
    return args


def plot_title(args: argparse.Namespace) -> str:
    return (f"MobileNetV2 x{args.width}, {args.input_size}x{args.input_size}, Fashion-MNIST"
            + (" (tiny run)" if args.tiny else ""))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plot_only:
        report = json.loads((args.out_dir / "accuracy_fashion_mnist.json").read_text())
        model = report["model"]
        args.width, args.input_size = model["width_mult"], model["input_size"]
        args.tiny = report["dataset"]["train_images"] < 60000
        pareto_svg(report["results"], args.out_dir / "pareto_fashion_mnist.svg",
                   plot_title(args))
        print_table(report["results"])
        return 0
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    folder = find_dataset(args.data_dir)
    n_train, n_test = (512, 256) if args.tiny else (None, None)
    train_data = load_split(folder, "train", n_train, args.input_size)
    x_test, y_test = load_split(folder, "test", n_test, args.input_size)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = Path(args.onnx_dir or tmp)
        onnx_dir.mkdir(parents=True, exist_ok=True)
        return run(args, folder, onnx_dir, train_data, x_test, y_test, argv)


def run(args, folder, onnx_dir, train_data, x_test, y_test, argv) -> int:
    """Train, evaluate, export, compile; write the JSON and the plot."""
    x_np, y_np = x_test.numpy(), y_test.numpy()
    start = time.perf_counter()

    def top1(pred: np.ndarray) -> float:
        return float((pred == y_np).mean())

    model = MobileNetV2(num_classes=CLASSES, width_mult=args.width, in_channels=1,
                        input_size=args.input_size, stem_stride=args.stem_stride)
    model = model.to(memory_format=torch.channels_last)  # about 2x faster training on CPU
    example = model.example_input(1)
    results: dict = {}
    seconds = train(model, train_data, args.epochs_float, args.lr_float, args, "float")
    results["float"] = {"train_seconds": round(seconds, 1), "epochs": args.epochs_float}
    models = {"float": model}
    for name, fmt, epochs, lr in (("int8", "int8", args.epochs_int8, args.lr_int8),
                                  ("prom", "ternary", args.epochs_prom, args.lr_prom)):
        qmodel = qat.prepare(model, qat.QATConfig(pointwise_format=fmt))
        seconds = train(qmodel, train_data, epochs, lr, args, name, freeze_bn_last=True)
        results[name] = {"train_seconds": round(seconds, 1), "epochs": epochs}
        models[name] = qmodel

    preds, exact_preds = {}, {}
    for name, m in models.items():
        preds[name] = predict_torch(m, x_test, args.eval_batch, name, args.quiet)
        results[name]["torch_top1"] = top1(preds[name])
        path = onnx_dir / f"mobilenet_v2_{name}.onnx"
        if name == "float":
            export_float(m, example, path)
        else:
            qat.export_onnx(m, example, path)
        if args.onnx_dir:
            results[name]["onnx"] = str(path)
        ort_pred = onnxruntime_predict(path, x_np, args.eval_batch, f"{name} onnxruntime",
                                       args.quiet)
        results[name]["onnxruntime_top1"] = top1(ort_pred)
        results[name]["onnxruntime_agreement"] = float((ort_pred == preds[name]).mean())
        # the exported file's own numbers (prom_tvm.reference), beside onnxruntime's kernels,
        # which saturate on CPUs without VNNI
        exact_pred = predict_batched(ExactReference(path), x_np, args.eval_batch,
                                     f"{name} exact reference", args.quiet)
        exact_preds[name] = exact_pred
        results[name]["exact_reference_top1"] = top1(exact_pred)
        results[name]["exact_reference_agreement"] = float((exact_pred == preds[name]).mean())
        results[name]["onnxruntime_agreement_with_exact"] = float((ort_pred == exact_pred).mean())
        results[name]["energy"] = energy_summary(path)

    status = 0
    if args.no_compile:
        results["prom"]["prom_tvm"] = {"skipped": "--no-compile"}
    else:
        compiled = compiled_predict(onnx_dir / "mobilenet_v2_prom.onnx", x_np, args.eval_batch,
                                    args.quiet)
        if "pred" in compiled:
            pred = compiled.pop("pred")
            compiled["top1"] = top1(pred)
            compiled["agreement_with_torch"] = float((pred == preds["prom"]).mean())
            compiled["agreement_with_exact_reference"] = float(
                (pred == exact_preds["prom"]).mean())
            compiled["top1_minus_torch_points"] = round(
                100 * (compiled["top1"] - results["prom"]["torch_top1"]), 3)
        else:
            print(compiled["error"], file=sys.stderr)
            status = 1
        results["prom"]["prom_tvm"] = compiled

    report = {
        "command": " ".join(["python benchmarks/accuracy_fashion_mnist.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "dataset": {"path": str(folder), "train_images": len(train_data[0]),
                    "test_images": len(x_np),
                    "preprocessing": f"28x28 zero-padded to {args.input_size}x{args.input_size}, "
                                     f"normalized with mean {MEAN} / std {STD}; training: random "
                                     "horizontal flip and +-2 px translation"},
        "model": {"architecture": "MobileNetV2 (torchvision layout), 1 input channel",
                  "width_mult": args.width, "input_size": args.input_size,
                  "stem_stride": args.stem_stride,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "training": {k: getattr(args, k) for k in (
            "epochs_float", "epochs_int8", "epochs_prom", "lr_float", "lr_int8", "lr_prom",
            "weight_decay", "batch_size", "seed")} | {
            "optimizer": "SGD momentum 0.9 nesterov, one-cycle cosine schedule",
            "qat": "prepared from the trained float model; BatchNorm frozen in the last epoch"},
        "results": results,
        "environment": {"torch": torch.__version__, "threads": args.threads,
                        "python": platform.python_version(), "machine": platform.machine(),
                        "load_average": list(os.getloadavg()),
                        "wall_seconds": round(time.perf_counter() - start, 1)},
    }
    (args.out_dir / "accuracy_fashion_mnist.json").write_text(json.dumps(report, indent=2) + "\n")
    pareto_svg(results, args.out_dir / "pareto_fashion_mnist.svg", plot_title(args))
    print_table(results)
    return status


def print_table(results: dict) -> None:
    print(f"{'model':<6} {'torch top-1':>12} {'onnxruntime':>12} {'exact ref':>10} "
          f"{'prom_tvm':>10} {'energy vs fp16':>15} {'storage vs fp16':>16}")
    for name in ("float", "int8", "prom"):
        r = results[name]
        compiled = r.get("prom_tvm", {}).get("top1")
        exact = r.get("exact_reference_top1")
        print(f"{name:<6} {100 * r['torch_top1']:>11.2f}% {100 * r['onnxruntime_top1']:>11.2f}% "
              f"{'' if exact is None else f'{100 * exact:.2f}%':>10} "
              f"{'' if compiled is None else f'{100 * compiled:.2f}%':>10} "
              f"{r['energy']['energy_ratio_vs_fp16']:>14.1f}x "
              f"{r['energy']['storage_ratio_vs_fp16']:>15.2f}x")


if __name__ == "__main__":
    sys.exit(main())
