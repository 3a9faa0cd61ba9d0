"""CompiledModel: a compiled network you can call, inspect, export and load again."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
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
    def _device(self):
        return tvm.cuda(0) if self.target.kind.name == "cuda" else tvm.cpu()

    @property
    def vm(self) -> relax.VirtualMachine:
        if self._vm is None:
            from .targets import is_host_compatible

            if self.target.kind.name == "cuda":
                _check_gpu_here(self.target, "this model")
            elif not is_host_compatible(self.target):
                raise RuntimeError(
                    f"this model was compiled for {self.target.attrs.get('mtriple', '')} "
                    f"{self.target.attrs.get('mcpu', '')}; it cannot run on this machine. "
                    "Export it with export_library() and load it with prom_tvm.load on the "
                    "device."
                )
            self._vm = relax.VirtualMachine(self.executable, self._device())
        return self._vm

    def _arguments(self, args, kwargs) -> list[np.ndarray]:
        names = self.input_names
        if len(args) == 1 and isinstance(args[0], Mapping):
            feed = dict(args[0])
        else:
            if len(args) > len(names):
                raise ValueError(f"expected {len(names)} input(s) {names}, got {len(args)}")
            feed = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():  # keywords name inputs, like the dict form
            if key in feed:
                raise ValueError(f"input {key!r} is given twice (positionally and by keyword)")
            feed[key] = value
        unknown = sorted(set(feed) - set(names))
        missing = [n for n in names if n not in feed]
        if unknown or missing:
            raise ValueError(f"the model's inputs are {names}; unknown {unknown}, "
                             f"missing {missing}")
        arrays = []
        for name in names:
            a = _as_input(name, feed[name], np.dtype(self.input_dtypes[name]))
            if a.shape != self.input_shapes[name]:
                raise ValueError(f"input {name!r} has shape {a.shape}, the model was compiled "
                                 f"for {self.input_shapes[name]} (rebuild with input_shapes=)")
            arrays.append(a)
        return arrays

    def __call__(self, *args, **kwargs):
        vm, dev = self.vm, self._device()  # the VM first: it says why it cannot run here
        tensors = [tvm.runtime.tensor(a, dev) for a in self._arguments(args, kwargs)]
        out = vm["main"](*tensors)
        outs = _flatten(out)
        return outs[0] if len(outs) == 1 else outs

    def benchmark(self, *args, number: int = 20, repeat: int = 5) -> dict:
        """Latency of one call in ms: {"median_ms", "mean_ms", "min_ms", "results_ms"}."""
        vm, dev = self.vm, self._device()
        tensors = [tvm.runtime.tensor(a, dev) for a in self._arguments(args, {})]
        vm.set_input("main", *tensors)
        timer = self.vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeat,
                                       min_repeat_ms=0)
        res = np.array(timer("main").results) * 1e3
        return {"median_ms": float(np.median(res)), "mean_ms": float(res.mean()),
                "min_ms": float(res.min()), "results_ms": res.tolist()}

    # -- inspection ------------------------------------------------------------------------
    def summary(self) -> list[dict]:
        """One dict per Conv / Gemm / MatMul: name, op, kernel, weight_shape, details."""
        return [layer.as_row() for layer in self.layers]

    def storage(self, path: str | os.PathLike | None = None) -> dict:
        """What a device stores: the exported library's bytes, per layer (code + data) and in
        total (``prom_tvm.library_size.layer_storage``).  Exports to ``path``, or to a
        temporary file when None."""
        import tempfile

        from .library_size import layer_storage

        if path is not None:
            return layer_storage(self.layers, self.export_library(path))
        with tempfile.TemporaryDirectory() as tmp:
            return layer_storage(self.layers, self.export_library(Path(tmp) / "model.so"))

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


def _as_input(name: str, value, dtype: np.dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of the input's dtype, shape kept (0-d stays 0-d).

    Floats may be given as any real numbers (cast, as numpy does). An integer input is never
    wrapped or truncated silently: values must be integral and within the dtype's range.
    """
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"input {name!r} is not an array of numbers: {err}") from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"input {name!r} ({dtype}) got an array of {a.dtype}; pass numbers")
    if dtype.kind in "iu" and a.size:
        info = np.iinfo(dtype)
        if a.dtype.kind == "f":
            if not np.isfinite(a).all():
                raise ValueError(f"input {name!r} is {dtype} but contains NaN or inf")
            if (a != np.rint(a)).any():
                bad = a[a != np.rint(a)].flat[0]
                raise ValueError(f"input {name!r} is {dtype} but got the non-integral value "
                                 f"{bad}; round it first if that is what you mean")
        lo, hi = a.min(), a.max()
        if lo < info.min or hi > info.max:
            raise ValueError(f"input {name!r} is {dtype} (range {info.min}..{info.max}) but "
                             f"got values in {lo}..{hi}; values are not wrapped or clipped")
    elif dtype.kind == "b" and a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"input {name!r} is bool but got values other than 0/1")
    # np.ascontiguousarray would turn a 0-d array into shape (1,)
    return np.asarray(a, dtype=dtype, order="C")


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


_REBUILD = "rebuild and export it with prom_tvm (CompiledModel.export_library or python -m " \
    "prom_tvm build)"


def _read_metadata(path: Path, meta_path: Path) -> dict:
    """The metadata next to ``path``, checked so that every problem is a ValueError naming it."""
    where = f"{path}: metadata {meta_path.name}"
    if not meta_path.is_file():
        raise ValueError(f"{where} is missing next to the library; {_REBUILD}")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where} is corrupt or empty (not JSON: {err}); {_REBUILD}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{where} is not a JSON object; {_REBUILD}")
    missing = [k for k in ("target", "inputs", "outputs", "layers") if k not in meta]
    if missing:
        raise ValueError(f"{where} lacks {missing}; {_REBUILD}")
    try:  # parsed here so that a malformed entry is reported, not a KeyError later
        meta["inputs"] = [(str(i["name"]), tuple(int(d) for d in i["shape"]), np.dtype(i["dtype"]))
                          for i in meta["inputs"]]
        meta["layers"] = [LayerInfo(**{**d, "weight_shape": tuple(d["weight_shape"])})
                          for d in meta["layers"]]
        meta["outputs"] = [str(o) for o in meta["outputs"]]
    except (TypeError, KeyError, ValueError) as err:
        raise ValueError(f"{where} has malformed inputs/outputs/layers ({type(err).__name__}: "
                         f"{err}); {_REBUILD}") from None
    return meta


def _check_gpu_here(target, what: str, error=RuntimeError) -> None:
    """A CUDA library runs where TVM's CUDA runtime finds a GPU (and a host CPU it was built
    for); its kernels ship as CUDA C that TVM compiles when the library is loaded (NVRTC from
    cuda-bindings, or nvcc with TVM_CUDA_COMPILE_MODE=nvcc)."""
    from .targets import is_host_compatible, target_summary

    if target.host is not None and not is_host_compatible(target.host):
        raise error(f"{what} was compiled for a CUDA GPU with host "
                           f"{target_summary(target.host)}, which is not this CPU")
    if not tvm.cuda(0).exist:
        raise error(
            f"{what} was compiled for CUDA {target.attrs.get('arch', '')}; this machine has no "
            "CUDA GPU that TVM can reach: run it on a machine with an NVIDIA GPU (export_library"
            "() here, prom_tvm.load() there)")


def load(path: str | os.PathLike) -> CompiledModel:
    """Load a library written by ``CompiledModel.export_library``.

    Raises
    ------
    ValueError
        The file is missing or is not a prom_tvm library (random bytes, an ONNX file, another
        shared library), its metadata ``PATH.prom.json`` is missing, corrupt or incomplete, or
        it was compiled for a CPU this machine cannot run; the message names the file.
    """
    from .targets import host_target, is_host_compatible, target_summary

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such library file")
    meta = _read_metadata(path, Path(str(path) + META_SUFFIX))
    try:
        target = tvm.target.Target(meta["target"])
    except Exception as err:  # TVM raises ValueError / TypeError / its own errors
        raise ValueError(f"{path}: metadata has an invalid target ({err}); {_REBUILD}") from None
    # Checked before dlopen: a library for another CPU cannot be loaded here at all.
    if target.kind.name == "cuda":
        _check_gpu_here(target, str(path), ValueError)
    elif not is_host_compatible(target):
        raise ValueError(
            f"{path} was compiled for {target_summary(target)}; this machine is "
            f"{target_summary(host_target())}: copy the library and its {META_SUFFIX} to such "
            "a device and load it there, or rebuild for this machine (target=None)"
        )
    try:
        lib = tvm.runtime.load_module(str(path))
        vm = relax.VirtualMachine(lib, tvm.cuda(0) if target.kind.name == "cuda" else tvm.cpu())
    except (RuntimeError, AttributeError) as err:  # tvm.error.* derive from RuntimeError
        first = str(err).strip().splitlines()[-1][:300] if str(err).strip() else ""
        raise ValueError(f"{path} is not a prom_tvm library (TVM could not load it as a Relax "
                         f"VM executable: {first}); {_REBUILD}") from None
    inputs = meta["inputs"]
    model = CompiledModel(
        lib, target, [n for n, _, _ in inputs], {n: shape for n, shape, _ in inputs},
        {n: dtype for n, _, dtype in inputs}, meta["outputs"], meta["layers"],
        source=meta.get("source"),
    )
    model._vm = vm
    return model
