"""``python -m prom_tvm.bench model.onnx --target T --rpc-tracker H:P --rpc-key K``: benchmark
a PROM model on a device (or on this machine with ``--local``) against its int8-only and float
variants.

Three variants are compiled for the target and exported (cross-linked for its triple):

* ``prom``   ``prom_tvm.build``: ternary layers as add-only kernels, int8 elsewhere;
* ``int8``   ``prom_tvm.build(options={"ternary": False})``: every layer with the int8 kernel;
* ``float``  TVM's stock pipeline (``relax.frontend.onnx.from_onnx`` + ``tvm.compile``) on the
  same QDQ model: Quantize/DequantizeLinear run as float ops around float convs (fake-quant).

Each library is uploaded through TVM's RPC tracker (one session per variant: with several
servers under the key the variants run on several devices at once) or loaded here, run on a
seeded input, compared with the exact QDQ reference computed on the host (max output LSB,
top-1), and timed with ``time_evaluator`` (median, p10/p90 over ``--repeat`` repeats).  The
PROM build beyond ``TOLERANCE_LSB`` is an error (exit 1, after the table).  A ``.so`` written
by prom_tvm (with its ``.prom.json``) is benchmarked as the PROM variant as it is; the other
two variants and the reference come from the ONNX model its metadata names (or ``--onnx``).
Before anything is built, the device is asked which kernel the target's code runs on
(``prom_tvm.device_probe``); an emulated device's timings are labelled as not the CPU's.

The library function is :func:`bench_model` (no public function is named ``bench``: this
module would shadow it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

VARIANTS = ("prom", "int8", "float")
DESCRIPTIONS = {
    "prom": "prom_tvm.build: ternary add-only + int8 kernels",
    "int8": "prom_tvm.build(options={'ternary': False}): int8 kernels only",
    "float": "TVM stock pipeline (from_onnx + tvm.compile): the QDQ graph run in float",
    "prom (.so)": "the given prom_tvm library, as exported",
}
EMULATED_NOTE = ("the device is emulated (qemu): timings under qemu are not {cpu} timings; "
                 "the run checks correctness and the tooling, not speed")


class AgreementError(RuntimeError):
    """The PROM build's output is beyond ``TOLERANCE_LSB`` of the exact reference (or its
    top-1 differs); ``.result`` holds the whole benchmark."""

    def __init__(self, message: str, result: BenchResult):
        super().__init__(message)
        self.result = result


@dataclass
class VariantResult:
    name: str
    description: str
    library: str
    library_bytes: int
    results_ms: list[float]
    max_lsb: int
    top1_same: bool
    within_tolerance: bool
    session: str = "local"
    median_ms: float = 0.0
    p10_ms: float = 0.0
    p90_ms: float = 0.0
    vs_prom: float | None = None

    def __post_init__(self):
        r = np.asarray(self.results_ms, np.float64)
        self.median_ms = float(np.median(r))
        self.p10_ms = float(np.percentile(r, 10))
        self.p90_ms = float(np.percentile(r, 90))


@dataclass
class BenchResult:
    model: str
    target: str
    runner: str
    emulated: bool
    repeat: int
    number: int
    seed: int
    tolerance_lsb: int
    variants: list[VariantResult]
    notes: list[str] = field(default_factory=list)

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)

    def table(self) -> str:
        head = (f"{'variant':11s} {'median ms':>10s} {'p10 ms':>9s} {'p90 ms':>9s} "
                f"{'vs PROM':>8s} {'max LSB':>8s} {'top-1':>6s} {'lib KB':>8s}  session")
        lines = [f"model {self.model}", f"target {self.target}",
                 f"runner {self.runner}; {self.repeat} repeats x {self.number} runs; "
                 f"max LSB vs the exact QDQ reference (tolerance {self.tolerance_lsb}); "
                 "vs PROM = median / PROM median", head, "-" * len(head)]
        for v in self.variants:
            ratio = "" if v.vs_prom is None else f"{v.vs_prom:.2f}x"
            flag = "" if v.within_tolerance else " !"
            lines.append(f"{v.name:11s} {v.median_ms:10.3f} {v.p10_ms:9.3f} {v.p90_ms:9.3f} "
                         f"{ratio:>8s} {v.max_lsb:>6d}{flag:2s} "
                         f"{'same' if v.top1_same else 'DIFF':>6s} "
                         f"{v.library_bytes / 1024:8.1f}  {v.session}")
        lines += [f"{v.name}: {v.description}" for v in self.variants]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        d = asdict(self)
        d["format"] = "prom_tvm.bench/1"
        return d

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    def plot(self, path: str | os.PathLike) -> Path:
        """A bar plot of the medians with p10-p90 whiskers (PNG, SVG, PDF: by the suffix)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = [v.name for v in self.variants]
        med = np.array([v.median_ms for v in self.variants])
        err = np.array([[v.median_ms - v.p10_ms for v in self.variants],
                        [v.p90_ms - v.median_ms for v in self.variants]])
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        colors = ["#2a7ab9" if n.startswith("prom") else "#999999" for n in names]
        ax.bar(names, med, yerr=err, capsize=4, color=colors)
        for i, v in enumerate(self.variants):
            ax.annotate(f"{v.median_ms:.3g} ms\n{v.max_lsb} LSB", (i, v.p90_ms),
                        ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("latency, ms (median, p10-p90)")
        ax.set_ylim(0, float(max(v.p90_ms for v in self.variants)) * 1.3)
        title = f"{Path(self.model).name} on {self.runner}"
        if self.emulated:
            title += "\n(emulated: not device timings)"
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


# ----------------------------------------------------------------------------------------------
# building the variants


@dataclass
class _Variant:
    name: str
    path: Path  # the exported library


def _float_executable(model, target):
    """TVM's stock float pipeline on the QDQ model (fake-quant: Q/DQ become float ops)."""
    import contextlib
    import io

    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    from . import onnx_io

    shapes = onnx_io.input_shapes(model, None)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # TVM prints failing converters' inputs
            mod = from_onnx(model, shape_dict={k: list(v) for k, v in shapes.items()})
    except Exception as err:
        raise ValueError(f"the float variant: TVM's ONNX importer failed: {type(err).__name__}: "
                         f"{err}") from err
    return tvm.compile(mod, target=target)


def _build_variants(model, proto, target, names, work: Path, tuning_log,
                    progress) -> list[_Variant]:
    """``model``: what prom_tvm.build gets (a path is kept as the libraries' source);
    ``proto``: the same model loaded, for TVM's importer."""
    import prom_tvm

    from .export import export_executable

    out = []
    for name in names:
        progress(f"building {name} for {target.attrs.get('mtriple', '') or 'this CPU'} ...")
        path = work / f"{name}.so"
        if name == "float":
            export_executable(_float_executable(proto, target), target, path)
        else:
            options = {"ternary": False} if name == "int8" else None
            lib = prom_tvm.build(model, target, tuning_log=tuning_log, options=options)
            lib.export_library(path)
        out.append(_Variant(name, path))
    return out


# ----------------------------------------------------------------------------------------------
# running one variant (here or on a device)


_upload_ids = itertools.count(1)


def _open_session(runner_spec, timeout: float):
    """(device, RPC session or None, label): a new session per call, or this machine."""
    import tvm

    if runner_spec is None:
        return tvm.cpu(), None, "local"
    from .tuning.measure import RPCRunner

    host, port, key = runner_spec
    runner = RPCRunner(host, port, key, timeout=timeout)
    session = runner.connect()  # reachable tracker, known key, a free device: bounded waits
    return session.cpu(0), session, f"{key} session"


def _run_variant(var: _Variant, runner_spec, inputs, ref, step, number, repeat, timeout,
                 tolerance, description) -> VariantResult:
    try:
        return _run_variant_in_session(var, runner_spec, inputs, ref, step, number, repeat,
                                       timeout, tolerance, description)
    except RuntimeError as err:  # tvm.error.* (RPCError: the device failed or went away)
        if runner_spec is None:
            raise
        last = str(err).strip().splitlines()[-1][:300] if str(err).strip() else type(err).__name__
        raise ValueError(f"the {var.name} variant failed on the device "
                         f"({runner_spec[2]!r} at {runner_spec[0]}:{runner_spec[1]}): {last}. "
                         "Is the server's CPU the target's?") from err
    finally:
        # the RPC session ends when its last reference goes (TVM has no close()); the VM and
        # closures around it form cycles, so collect them now: the device becomes free for
        # the next variant's session instead of when the garbage collector gets to it
        gc.collect()


def _run_variant_in_session(var: _Variant, runner_spec, inputs, ref, step, number, repeat,
                            timeout, tolerance, description) -> VariantResult:
    import tvm
    from tvm import relax

    from .compiled_model import _flatten
    from .reference import agreement
    from .tuning.measure import _bounded

    dev, session, label = _open_session(runner_spec, timeout)
    if session is None:
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(var.path)), dev)
    else:
        # a new name per upload: rewriting a library a device still has loaded crashes it
        name = f"prom_tvm_bench_{os.getpid()}_{next(_upload_ids)}_{var.name.split()[0]}.so"
        _bounded(lambda: session.upload(str(var.path), target=name), timeout,
                 f"uploading the {var.name} library")
        mod = _bounded(lambda: session.load_module(name), timeout,
                       f"loading the {var.name} library on the device")
        vm = relax.VirtualMachine(mod, dev)

    def run_once():
        tensors = [tvm.runtime.tensor(a, dev) for a in inputs]
        vm.set_input("main", *tensors)  # remotely vm["main"](...) fails (apache/tvm#18108)
        vm.invoke_stateful("main")
        return _flatten(vm.get_outputs("main"))

    t0 = time.perf_counter()
    outs = _bounded(run_once, timeout, f"running the {var.name} variant")
    once = time.perf_counter() - t0  # bounds the timing below: a slow device gets its time
    got = outs[0]
    agree = agreement(got, ref, step)
    timer = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeat)
    times = _bounded(lambda: timer("main").results, timeout + 3 * once * (number * repeat + 1),
                     f"timing the {var.name} variant ({repeat} x {number} runs)")
    return VariantResult(
        name=var.name, description=description, library=str(var.path),
        library_bytes=var.path.stat().st_size, results_ms=[float(t) * 1e3 for t in times],
        max_lsb=agree.max_lsb, top1_same=agree.top1_same,
        within_tolerance=agree.ok(tolerance), session=label)


def _free_servers(host: str, port: int, key: str, timeout: float) -> int:
    from tvm import rpc

    from .tuning.measure import _bounded

    summary = _bounded(lambda: rpc.connect_tracker(host, port).summary(), timeout,
                       f"asking the RPC tracker {host}:{port}")
    return int(summary.get("queue_info", {}).get(key, {}).get("free", 0))


# ----------------------------------------------------------------------------------------------
# the library function


def _input_arrays(names, shapes, dtypes, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for n in names:
        dt = np.dtype(dtypes[n])
        if dt.kind == "f":
            arrays.append(rng.standard_normal(shapes[n]).astype(dt))
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            arrays.append(rng.integers(max(info.min, -128), min(info.max, 127) + 1,
                                       size=shapes[n]).astype(dt))
        else:
            arrays.append(rng.integers(0, 2, size=shapes[n]).astype(dt))
    return arrays


def _device_emulated(session, target, timeout: float) -> tuple[bool, str]:
    """(emulated, a note): the probe library's reading of the device's kernel; a probe that
    cannot run says so and counts as not emulated (``--emulated`` forces it)."""
    from .device_probe import probe_device

    try:
        kernel = probe_device(session, target, timeout)
    except (RuntimeError, OSError, TimeoutError) as err:
        last = str(err).strip().splitlines()[-1][:200] if str(err).strip() else type(err).__name__
        return False, f"could not ask the device whether it is emulated ({last})"
    return kernel.emulated, f"device check: {kernel.evidence}"


def _from_library(path: Path, onnx_path, target_arg):
    """(target, onnx path) of a prom_tvm library, from its metadata."""
    import tvm

    from .compiled_model import META_SUFFIX, _read_metadata
    from .targets import parse_target

    meta = _read_metadata(path, Path(str(path) + META_SUFFIX))
    try:
        target = tvm.target.Target(meta["target"])
    except Exception as err:
        raise ValueError(f"{path}: metadata has an invalid target ({err})") from None
    if target_arg is not None and str(parse_target(target_arg)) != str(target):
        raise ValueError(f"{path} was compiled for {target}; --target {target_arg} differs "
                         "(leave --target out to benchmark the library's own target)")
    source = onnx_path or meta.get("source")
    if not source:
        raise ValueError(f"{path}: its metadata names no ONNX model (built from a ModelProto); "
                         "the reference and the other variants need it: pass --onnx MODEL.onnx")
    candidates = [Path(source)] if onnx_path else [Path(source), path.parent / Path(source).name]
    for c in candidates:
        if c.is_file():
            return target, c
    raise ValueError(f"{path}: the ONNX model {source} its metadata names is not there; pass "
                     "--onnx MODEL.onnx")


def bench_model(
    model,
    target=None,
    *,
    rpc_tracker: str | None = None,
    rpc_key: str | None = None,
    repeat: int = 10,
    number: int = 5,
    seed: int = 0,
    variants: tuple[str, ...] = VARIANTS,
    onnx_model=None,
    emulated: bool | None = None,
    sessions: int | None = None,
    timeout: float = 60.0,
    tuning_log=None,
    work_dir: str | os.PathLike | None = None,
    check: bool = True,
    progress=None,
) -> BenchResult:
    """Benchmark the PROM build of ``model`` and its int8-only / float variants.

    ``model``: a QDQ ONNX model (ModelProto or path), or a ``.so`` written by prom_tvm (its
    ``.prom.json`` beside it), which is the PROM variant as it is; the ONNX model it was built
    from (its metadata's ``source``, or ``onnx_model``) gives the reference and the other
    variants.  Without ``rpc_tracker`` / ``rpc_key`` everything runs on this machine (the target
    must run here).  ``sessions``: at most this many devices at once (default: every free server
    under the key, one session per variant).  ``emulated``: None = asked of the device
    (:mod:`prom_tvm.device_probe`: the target's code reads the kernel it runs on; an aarch64
    library on an x86_64 kernel is emulated), True = say so whatever the device says.
    ``work_dir``: where the libraries are exported (default: a temporary folder, removed
    afterwards).  With
    ``check`` a PROM output beyond ``TOLERANCE_LSB`` raises :class:`AgreementError`.

    Raises ValueError for a malformed tracker address, an unreachable tracker, an unknown key
    (the message lists the keys there), a target that cannot run here without RPC;
    TimeoutError when a device step exceeds ``timeout`` seconds.
    """
    from . import onnx_io
    from .reference import TOLERANCE_LSB, ExactReference
    from .targets import check_buildable, is_host_compatible, parse_target, target_summary
    from .tuning.measure import RPCRunner, parse_tracker

    progress = progress or (lambda msg: None)
    if repeat < 1 or number < 1:
        raise ValueError("repeat and number must be >= 1")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "prom" not in variants:
        raise ValueError(f"variants must include 'prom' and be among {list(VARIANTS)}; "
                         f"got {list(variants)}")
    if (rpc_tracker is None) != (rpc_key is None):
        raise ValueError("rpc_tracker and rpc_key go together")
    runner_spec = None
    if rpc_tracker is not None:
        host, port = parse_tracker(rpc_tracker)
        runner_spec = (host, port, rpc_key)

    library = None
    if isinstance(model, str | os.PathLike) and str(model).endswith(".so"):
        library = Path(model)
        if not library.is_file():
            raise ValueError(f"{library}: no such library file")
        target, onnx_path = _from_library(library, onnx_model, target)
        model_name = str(library)
    else:
        target = parse_target(target)
        onnx_path = model
        model_name = str(model) if isinstance(model, str | os.PathLike) else "<ModelProto>"
    if target.kind.name != "llvm":  # the CUDA guard: remote.cpu(0) is where the VM runs
        raise ValueError(f"prom_tvm.bench measures CPU (llvm) targets; got "
                         f"{target_summary(target)}")
    check_buildable(target)
    if runner_spec is None and not is_host_compatible(target):
        raise ValueError(f"the target {target_summary(target)} cannot run on this machine: "
                         "benchmark it on a device with --rpc-tracker HOST:PORT --rpc-key KEY")
    from .export import compiler_for

    if library is None or list(variants) != ["prom"]:  # something is built and exported
        compiler_for(target)  # a missing cross-compiler is reported before anything is built
    if library is not None and runner_spec is None:
        import prom_tvm

        prom_tvm.load(library)  # the checks of load: a real prom_tvm library for this CPU

    # the tracker, the key and a free device are checked before anything is built
    free = 1
    kernel_note = None
    if runner_spec is not None:
        host, port, key = runner_spec
        progress(f"checking the RPC tracker {host}:{port} for key {key!r} ...")
        probe = RPCRunner(host, port, key, timeout=timeout)
        session = probe.connect()  # holds one device: the others still free are counted with it
        free = 1 + _free_servers(host, port, key, timeout)
        if emulated is None:  # asked of the device's kernel (prom_tvm.device_probe)
            progress("asking the device which kernel its code runs on ...")
            emulated, kernel_note = _device_emulated(session, target, timeout)
        del session
        probe.close()
        del probe
        gc.collect()  # the probe's session ends here (see _run_variant)
    workers = min(len(variants), free if sessions is None else max(1, sessions))

    onnx_proto = onnx_io.unpack_subbyte_weights(onnx_io.load_onnx(onnx_path))
    step = onnx_io.output_step(onnx_proto)
    names = list(onnx_io.input_shapes(onnx_proto, None))
    shapes = onnx_io.input_shapes(onnx_proto, None)
    dtypes = onnx_io.input_dtypes(onnx_proto)
    inputs = _input_arrays(names, shapes, dtypes, seed)
    progress("computing the exact QDQ reference on the host ...")
    ref = ExactReference(onnx_proto).run(dict(zip(names, inputs, strict=True)))[0]

    emulated = bool(emulated)  # None here: run on this machine
    runner_name = "local" if runner_spec is None else \
        f"rpc {runner_spec[2]}@{runner_spec[0]}:{runner_spec[1]}"

    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="prom_tvm_bench_")
        work = Path(tmp.name)
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
    try:
        to_build = [v for v in variants if not (library is not None and v == "prom")]
        built = _build_variants(onnx_path if library is None else onnx_proto, onnx_proto, target,
                               to_build, work, tuning_log, progress)
        if library is not None:
            built.insert(0, _Variant("prom (.so)", library))

        def one(var: _Variant) -> VariantResult:
            progress(f"running {var.name} on {runner_name} ...")
            return _run_variant(var, runner_spec, inputs, ref, step, number, repeat, timeout,
                                TOLERANCE_LSB, DESCRIPTIONS[var.name])

        if workers > 1:
            progress(f"{free} free device(s) under key {runner_spec[2]!r}: {workers} sessions "
                     "at once, one per variant")
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one, built))
        else:
            results = [one(v) for v in built]
        for i, r in enumerate(results):
            if r.session != "local":
                r.session += f" {i + 1}"  # one session per variant
    finally:
        if tmp is not None:
            tmp.cleanup()
    if work_dir is None:  # the libraries are gone with the temporary folder
        for r in results:
            if not (library is not None and r.name == "prom (.so)"):
                r.library = f"(temporary) {Path(r.library).name}"

    prom = results[0]
    for r in results:
        r.vs_prom = r.median_ms / prom.median_ms if prom.median_ms > 0 else None
    notes = ["the float variant is TVM's stock float pipeline on the QDQ model: "
             "QuantizeLinear/DequantizeLinear run as float ops (fake-quant), not a float model"]
    if "float" not in variants:
        notes = []
    if emulated:
        cpu = str(target.attrs.get("mcpu", "")) or str(target.attrs.get("mtriple", "")) or "device"
        notes.insert(0, EMULATED_NOTE.format(cpu=cpu))
    if kernel_note:
        notes.insert(1 if emulated else 0, kernel_note)
    if workers > 1:
        notes.append(f"variants measured in {workers} sessions at once (one device each); "
                     "the repeats of a variant stay on one device")
    result = BenchResult(
        model=model_name, target=target_summary(target), runner=runner_name,
        emulated=bool(emulated), repeat=repeat, number=number, seed=seed,
        tolerance_lsb=TOLERANCE_LSB, variants=results, notes=notes)
    if check and not prom.within_tolerance:
        raise AgreementError(
            f"the PROM build is {prom.max_lsb} LSB from the exact QDQ reference (tolerance "
            f"{TOLERANCE_LSB}), top-1 {'same' if prom.top1_same else 'DIFFERENT'}: the "
            f"compiled model is wrong on {runner_name}", result)
    return result


# ----------------------------------------------------------------------------------------------
# the command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m prom_tvm.bench",
        description="Benchmark a PROM model against its int8-only and float variants on a "
        "device (TVM RPC tracker) or on this machine (--local).")
    ap.add_argument("model", help="QDQ ONNX model, or a .so written by prom_tvm (with its "
                    ".prom.json)")
    ap.add_argument("--target", default=None, help='TVM target (default: this CPU, or a .so\'s '
                    'own), e.g. "llvm -mcpu=cortex-a72"')
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="run on this machine (no RPC)")
    where.add_argument("--rpc-tracker", default=None, metavar="HOST:PORT",
                       help="run on devices registered with this TVM RPC tracker")
    ap.add_argument("--rpc-key", default=None, help="the device key at the tracker")
    ap.add_argument("--repeat", type=int, default=10, help="timed repeats per variant (10)")
    ap.add_argument("--number", type=int, default=5, help="runs averaged per repeat (5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random input (0)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated, prom first (prom,int8,float)")
    ap.add_argument("--onnx", default=None, help="with a .so: the ONNX model it was built "
                    "from (default: the one its metadata names)")
    ap.add_argument("--sessions", type=int, default=None,
                    help="at most this many devices at once (default: every free server under "
                    "the key, one session per variant)")
    ap.add_argument("--emulated", action="store_true", help="the device is emulated: say that "
                    "timings are not device timings (without it, bench asks the device which "
                    "kernel its code runs on: user-mode emulation such as qemu-user is found, "
                    "full-system emulation is not)")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds any RPC step may take before the run stops (60)")
    ap.add_argument("--tuning-log", default=None, help="a log from python -m prom_tvm.tune")
    ap.add_argument("--work-dir", default=None, help="keep the exported libraries here")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    ap.add_argument("--plot", default=None, metavar="FILE",
                    help="bar plot of the medians (.png, .svg, .pdf)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    if args.rpc_tracker is not None and args.rpc_key is None:
        ap.error("--rpc-tracker needs --rpc-key")
    if args.local and args.rpc_key is not None:
        ap.error("--local runs on this machine: leave out --rpc-key")

    def progress(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    failure = None
    try:
        result = bench_model(
            args.model, args.target, rpc_tracker=args.rpc_tracker, rpc_key=args.rpc_key,
            repeat=args.repeat, number=args.number, seed=args.seed,
            variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
            onnx_model=args.onnx, emulated=True if args.emulated else None,
            sessions=args.sessions, timeout=args.timeout, tuning_log=args.tuning_log,
            work_dir=args.work_dir, progress=progress)
    except AgreementError as err:
        result, failure = err.result, str(err)
    except (ValueError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.emulated:
        print(f"NOTE: {result.notes[0]}")  # the emulated note comes first
    print(result.table())
    if args.json:
        print(f"wrote {result.write_json(args.json)}")
    if args.plot:
        print(f"wrote {result.plot(args.plot)}")
    if failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
