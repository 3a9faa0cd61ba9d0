"""CompiledModel: a compiled network you can call, inspect, export and load again."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

META_SUFFIX = ".prom.json"


@dataclass
class LayerInfo:
    """One Conv / Gemm / MatMul and the kernel it was compiled to."""

    name: str
    op: str
    kernel: str  # "ternary-add" | "int8" | "float"
    weight_shape: tuple[int, ...]
    order: int = 0
    details: dict = field(default_factory=dict)

    def as_row(self) -> dict:
        row = {"name": self.name, "op": self.op, "kernel": self.kernel,
               "weight_shape": tuple(self.weight_shape)}
        row.update({k: _plain(v) for k, v in self.details.items()})
        return row


def _plain(v):
    if isinstance(v, tuple | list):
        return tuple(_plain(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


class CompiledModel:
    """A compiled network.

    Call it with one array, several positional arrays (graph input order) or a dict
    {input name: array}; it runs on this machine's CPU and returns numpy (one array, or a
    list when the graph has several outputs).
    """

    def __init__(self, executable, target, input_names, input_shapes, input_dtypes,
                 output_names, layers, source: str | None = None):
        self.executable = executable
        self.target = target
        self.input_names = list(input_names)
        self.input_shapes = {k: tuple(v) for k, v in input_shapes.items()}
        self.input_dtypes = dict(input_dtypes)
        self.output_names = list(output_names)
        self.layers = list(layers)
        self.source = source
        self._vm = None

    # -- running ---------------------------------------------------------------------------
    @property
    def vm(self) -> relax.VirtualMachine:
        if self._vm is None:
            from .targets import is_host_compatible

            if not is_host_compatible(self.target):
                raise RuntimeError(
                    f"this model was compiled for {self.target.attrs.get('mtriple', '')} "
                    f"{self.target.attrs.get('mcpu', '')}; it cannot run on this machine. "
                    "Export it with export_library() and run it on the device "
                    "(python -m prom_tvm.bench)."
                )
            self._vm = relax.VirtualMachine(self.executable, tvm.cpu())
        return self._vm

    def _arguments(self, args, kwargs) -> list[np.ndarray]:
        if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
            feed = dict(args[0])
        elif kwargs and not args:
            feed = dict(kwargs)
        else:
            if len(args) != len(self.input_names):
                raise ValueError(f"expected {len(self.input_names)} input(s) "
                                 f"{self.input_names}, got {len(args)}")
            feed = dict(zip(self.input_names, args, strict=True))
        unknown = set(feed) - set(self.input_names)
        missing = [n for n in self.input_names if n not in feed]
        if unknown or missing:
            raise ValueError(f"inputs are {self.input_names}; unknown {sorted(unknown)}, "
                             f"missing {missing}")
        arrays = []
        for name in self.input_names:
            a = np.ascontiguousarray(np.asarray(feed[name], dtype=self.input_dtypes[name]))
            if a.shape != self.input_shapes[name]:
                raise ValueError(f"input {name!r} has shape {a.shape}, the model was compiled "
                                 f"for {self.input_shapes[name]} (rebuild with input_shapes=)")
            arrays.append(a)
        return arrays

    def __call__(self, *args, **kwargs):
        dev = tvm.cpu()
        tensors = [tvm.runtime.tensor(a, dev) for a in self._arguments(args, kwargs)]
        out = self.vm["main"](*tensors)
        outs = _flatten(out)
        return outs[0] if len(outs) == 1 else outs

    def benchmark(self, *args, number: int = 20, repeat: int = 5) -> dict:
        """Latency of one call in ms: {"median_ms", "mean_ms", "min_ms", "results_ms"}."""
        dev = tvm.cpu()
        tensors = [tvm.runtime.tensor(a, dev) for a in self._arguments(args, {})]
        self.vm.set_input("main", *tensors)
        timer = self.vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeat,
                                       min_repeat_ms=0)
        res = np.array(timer("main").results) * 1e3
        return {"median_ms": float(np.median(res)), "mean_ms": float(res.mean()),
                "min_ms": float(res.min()), "results_ms": res.tolist()}

    # -- inspection ------------------------------------------------------------------------
    def summary(self) -> list[dict]:
        """One dict per Conv / Gemm / MatMul: name, op, kernel, weight_shape, details."""
        return [layer.as_row() for layer in self.layers]

    def kernel_counts(self) -> dict[str, int]:
        """How many layers each kernel got, e.g. {"ternary-add": 34, "int8": 19}."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.kernel] = counts.get(layer.kernel, 0) + 1
        return counts

    # -- export / load ---------------------------------------------------------------------
    def export_library(self, path: str | os.PathLike, cc: str | None = None) -> Path:
        """Write a shared library (cross-compiled for the target's triple) + metadata JSON."""
        from .export import export_executable

        path = Path(path)
        export_executable(self.executable, self.target, path, cc=cc)
        meta = {
            "target": json.loads(str(self.target)),
            "inputs": [{"name": n, "shape": list(self.input_shapes[n]),
                        "dtype": str(np.dtype(self.input_dtypes[n]))} for n in self.input_names],
            "outputs": self.output_names,
            "layers": [asdict(layer) for layer in self.layers],
            "source": self.source,
        }
        Path(str(path) + META_SUFFIX).write_text(json.dumps(meta, indent=1, default=_json_default))
        return path


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _flatten(out) -> list[np.ndarray]:
    if isinstance(out, tvm.runtime.Tensor):
        return [out.numpy()]
    if hasattr(out, "numpy"):
        return [out.numpy()]
    result = []
    for item in out:
        result.extend(_flatten(item))
    return result


def load(path: str | os.PathLike) -> CompiledModel:
    """Load a library written by ``CompiledModel.export_library``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such library file")
    meta_path = Path(str(path) + META_SUFFIX)
    if not meta_path.is_file():
        raise ValueError(f"{path}: metadata {meta_path.name} is missing next to the library "
                         "(export with CompiledModel.export_library)")
    meta = json.loads(meta_path.read_text())
    lib = tvm.runtime.load_module(str(path))
    target = tvm.target.Target(meta["target"])
    layers = [LayerInfo(**{**d, "weight_shape": tuple(d["weight_shape"])}) for d in meta["layers"]]
    inputs = meta["inputs"]
    return CompiledModel(
        lib, target, [i["name"] for i in inputs], {i["name"]: i["shape"] for i in inputs},
        {i["name"]: i["dtype"] for i in inputs}, meta["outputs"], layers, source=meta["source"],
    )
