"""``tune_model``: measure the knobs of every PROM add-only kernel of a model, write a log.

Tasks are extracted by running the same integer lowering ``build`` runs (so a task is exactly a
kernel ``build`` will emit), de-duplicated by workload key (MobileNetV2's 34 ternary layers are
19 workloads).  Each task's candidates (``ternary_forms.knob_space``, the default first) are
compiled for the target, checked bit-exact against the numpy reference on the layer's own
weights, and timed locally or on a device through the RPC tracker.  The log is rewritten
after every task, so an interrupted run (Ctrl-C) keeps what was measured and ``resume``
continues it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import records as rec


@dataclass
class Task:
    key: str
    form: str
    layer: object  # ternary_forms.TernaryLayer
    layers: int = 1  # how many of the model's layers share the workload


@dataclass
class TuneResult:
    log_path: Path
    tasks: list[Task]
    measured: int = 0
    interrupted: bool = False
    best: dict = field(default_factory=dict)  # key -> (knobs, us, default_us)
    ms: dict = field(default_factory=dict)  # int8 workload hash -> meta-schedule record


def extract_tasks(model, target, input_shapes=None) -> list[Task]:
    """The add-only kernels ``build`` would emit for ``model`` on ``target``, one per workload."""
    from .. import onnx_io
    from ..compiler import lower_to_integer

    model = onnx_io.unpack_subbyte_weights(onnx_io.load_onnx(model))
    shapes = onnx_io.input_shapes(model, input_shapes)
    collected: list = []
    lower_to_integer(model, shapes, onnx_io.input_dtypes(model),
                     {"target": target, "_collect_ternary": collected})
    tasks: dict[str, Task] = {}
    for key, form, layer in collected:
        if key in tasks:
            tasks[key].layers += 1
        else:
            tasks[key] = Task(key, form, layer)
    return list(tasks.values())


def _kernel(task: Task, knobs: dict, target):
    from ..schedules import ternary_forms as tf
    from ..schedules.requant_x86 import x86_vector_bits
    from ..schedules.ternary_lut import cores_of
    from ..schedules.ternary_specialized import lanes_for

    lanes, x86_bits = lanes_for(target), x86_vector_bits(target)
    if task.form == "table-lookup":
        return tf.lut_kernel(task.layer, lanes, cores_of(target), knobs, x86_bits)
    return tf.specialized_kernel(task.layer, lanes, knobs, x86_bits=x86_bits)


def _inputs(layer, seed: int = 0):
    from ..schedules.ternary_conv1x1 import ternary_conv1x1_ref

    rng = np.random.default_rng(seed)
    lo, hi = (0, 255) if layer.x_dtype == "uint8" else (-128, 127)
    x = rng.integers(lo, hi + 1, (layer.n, layer.cin, layer.h, layer.w)).astype(layer.x_dtype)
    ref = ternary_conv1x1_ref(x, layer.signs, layer.bias, layer.rq, layer.magnitude)
    return x, ref


def tune_model(model, target, log_dir, trials: int = 8, runner=None, resume: bool = False,
               input_shapes=None, progress: bool = True, ms_trials: int = 0) -> TuneResult:
    """Tune ``model``'s add-only kernels for ``target``; ``trials``: candidates per workload
    (the default included); ``ms_trials``: meta-schedule trials per int8 kernel (0: none).
    ``runner``: ``measure.LocalRunner()`` (default) or an ``RPCRunner``.  Returns where the
    log is and what was measured."""
    from ..targets import parse_target
    from .measure import LocalRunner, measure

    target = parse_target(target)
    runner = runner or LocalRunner()
    if target.kind.name == "cuda":
        from .cuda_space import no_gpu_runner_message
        from .measure import RPCRunner

        if not isinstance(runner, RPCRunner):
            raise ValueError(no_gpu_runner_message())
        if ms_trials <= 0:
            raise ValueError("for CUDA every kernel is tuned with meta-schedule: pass "
                             "--ms-trials N (the add-only knobs are CPU code shapes)")
    path = rec.log_path(log_dir)
    if resume and path.exists():
        log = rec.read_log(path)
        if log["target_key"] != rec.target_key(target):
            raise ValueError(f"--resume: {path} was tuned for {log['target_key']}, not "
                             f"{rec.target_key(target)}; use another --log-dir")
    else:
        log = rec.empty_log(target)
    before = float(log.get("tuning", {}).get("seconds", 0.0))
    tasks = extract_tasks(model, target, input_shapes)
    result = TuneResult(path, tasks)
    start = time.perf_counter()
    bar = _bar(progress, total=sum(min(trials, len(_space(t))) for t in tasks))
    try:
        for task in tasks:
            x, ref = _inputs(task.layer)
            entry = log["records"].get(task.key) or {"measured": []}
            done = {_freeze(k) for k, _ in entry.get("measured", [])}
            for knobs in _space(task)[:trials]:
                if _freeze(knobs) in done:
                    bar.update(1)
                    continue
                kern = _kernel(task, knobs, target)
                out_shape = (task.layer.n, task.layer.cout, task.layer.h, task.layer.w)
                try:
                    sec = measure(kern.func, [x, *kern.consts], out_shape,
                                  task.layer.rq.out_dtype, target, runner, expected=ref)
                except AssertionError:
                    sec = float("inf")  # never chosen; recorded so it is not retried
                except (RuntimeError, OSError) as err:  # the device died, a link failed
                    _save(path, log, runner, start, before)
                    first = str(err).strip().splitlines()[-1] if str(err).strip() else ""
                    raise ValueError(
                        f"measuring {task.key} on {runner.name} failed ({type(err).__name__}: "
                        f"{first}); what was measured is in {path}, --resume continues it"
                    ) from err
                entry["measured"].append([knobs, round(sec * 1e6, 3)])
                result.measured += 1
                bar.update(1)
                _choose(entry, task)
                bar.set_postfix_str(f"{task.key.split('/')[0]} "
                                    f"{task.layer.cin}->{task.layer.cout}: "
                                    f"{entry['us']:.1f} us (default {entry['default_us']:.1f})")
            if entry["measured"]:
                log["records"][task.key] = entry
                result.best[task.key] = (entry["knobs"], entry["us"], entry["default_us"])
            _save(path, log, runner, start, before)
        if ms_trials > 0 and not result.interrupted:
            _tune_int8_kernels(model, target, input_shapes, log, path, ms_trials, runner,
                               result, resume, lambda: _save(path, log, runner, start, before))
    except KeyboardInterrupt:
        result.interrupted = True
        _save(path, log, runner, start, before)
    finally:
        bar.close()
        runner.close()
    return result


def _tune_int8_kernels(model, target, input_shapes, log, path, trials, runner, result,
                       resume, save) -> None:
    """Meta-schedule (evolutionary search, XGBoost) for each int8 conv / dense workload; the
    tuned schedule is used only where it beats the hand-written one on our harness."""
    from .. import onnx_io
    from ..compiler import lower_to_integer
    from . import ms_tasks
    from .measure import measure

    if target.kind.name == "cuda":  # measured on the GPU by meta-schedule's own runner
        from .cuda_space import ms_measure as measure
    model = onnx_io.unpack_subbyte_weights(onnx_io.load_onnx(model))
    mod, _ = lower_to_integer(model, onnx_io.input_shapes(model, input_shapes),
                              onnx_io.input_dtypes(model), {"target": target})
    done = log.setdefault("ms_records", {})
    for task in ms_tasks.extract_int8_tasks(mod):
        if resume and task.key in done:
            continue
        args, oshape, odt = ms_tasks.random_args(task.func)
        hand = measure(ms_tasks.hand_scheduled(task.func, target), args, oshape, odt, target,
                       runner)
        runner.close()  # one board under the key: meta-schedule's runner needs it now
        best = ms_tasks.tune_int8(task, target, path.parent, trials, runner)
        tuned = (measure(best, args, oshape, odt, target, runner) if best is not None
                 else float("inf"))
        done[task.key] = {"name": task.name, "layers": task.layers, "trials": trials,
                          "default_us": round(hand * 1e6, 3),
                          "tuned_us": round(tuned * 1e6, 3) if np.isfinite(tuned) else None,
                          "use": bool(tuned < hand)}
        result.ms[task.key] = done[task.key]
        save()


def _space(task: Task) -> list[dict]:
    from ..schedules.ternary_forms import knob_space

    return knob_space(task.form, task.layer)


def _freeze(knobs: dict) -> tuple:
    return tuple(sorted(knobs.items()))


def _choose(entry: dict, task: Task) -> None:
    measured = [(k, us) for k, us in entry["measured"] if np.isfinite(us)]
    default = _space(task)[0]
    d = [us for k, us in measured if k == default]
    knobs, us = min(measured, key=lambda kv: kv[1])
    entry.update(knobs=knobs, us=us, default_us=d[0] if d else us, form=task.form,
                 layers=task.layers)


def _save(path: Path, log: dict, runner, start: float, before: float) -> None:
    """Rewrite the log; ``before``: seconds of earlier runs (``resume``)."""
    log["tuning"] = {"trials": sum(len(r["measured"]) for r in log["records"].values()),
                     "seconds": round(before + time.perf_counter() - start, 1),
                     "runner": runner.name}
    rec.write_log(path, log)


def _bar(enabled: bool, total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety
        enabled = False
    if not enabled:
        return _Quiet()
    return tqdm(total=total, desc="tuning", unit="trial")


class _Quiet:
    """A progress bar that shows nothing."""

    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass
