"""Meta-schedule for the int8 TE kernels (conv, depthwise, dense): evolutionary search, XGBoost.

A task is an int8 kernel as the lowering emits it, with its ``schedule_rule`` tag removed so
that meta-schedule's own CPU design space (multi-level tiling, parallel / vectorize / unroll)
applies; tasks are de-duplicated by structural hash.  Records go to meta-schedule's JSON
database (``database_workload.json``, ``database_tuning_record.json``) in the log directory.
The hand-written schedule is timed too, on the same harness, and a tuned schedule is only
used where it is faster (``ms_records`` in ``prom_tvm_kernels.json``), so a tuned build is
never slower than the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import s_tir, tirx

MS_DIR = "ms"


def _int8_rules() -> set[str]:
    from ..schedules import cuda_ternary, int8_conv2d, int8_dense

    # the CUDA add-only kernel only appears in modules lowered for CUDA (cuda_space)
    return {int8_conv2d.CONV_RULE, int8_conv2d.DEPTHWISE_RULE, int8_dense.DENSE_RULE,
            cuda_ternary.CUDA_TERNARY_RULE}


def strip_rule(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` without ``schedule_rule`` annotations (meta-schedule's defaults then apply)."""
    sch = s_tir.Schedule(func)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if "schedule_rule" in sch.get(block).annotations:
            sch.unannotate(block, "schedule_rule")
    return sch.mod["main"]


def workload(func: tirx.PrimFunc) -> tvm.IRModule:
    """The module meta-schedule tunes and its database matches (global symbol included)."""
    return tvm.IRModule({"main": strip_rule(func).with_attr("global_symbol", "main")})


def workload_hash(func: tirx.PrimFunc) -> str:
    import tvm_ffi

    return f"{tvm_ffi.structural_hash(strip_rule(func)) & (2**64 - 1):x}"


@dataclass
class MSTask:
    key: str  # structural hash of the stripped function
    name: str
    func: tirx.PrimFunc  # as the lowering emits it (rule tag kept)
    layers: int = 1


def extract_int8_tasks(mod: tvm.IRModule) -> list[MSTask]:
    from ..passes.schedule_kernels import schedule_rule_of

    rules = _int8_rules()
    tasks: dict[str, MSTask] = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and schedule_rule_of(func) in rules:
            key = workload_hash(func)
            if key in tasks:
                tasks[key].layers += 1
            else:
                tasks[key] = MSTask(key, gv.name_hint, func)
    return list(tasks.values())


def random_args(func: tirx.PrimFunc, seed: int = 0) -> tuple[list[np.ndarray], tuple, str]:
    """Inputs for every parameter but the last (the output), and the output's shape/dtype."""
    rng = np.random.default_rng(seed)
    bufs = list(func.params)  # TVM 0.27: the parameters are the buffers
    args = []
    for b in bufs[:-1]:
        shape = tuple(int(d) for d in b.shape)
        dt = str(b.dtype)
        if dt.startswith(("int", "uint")):
            info = np.iinfo(dt)
            lo, hi = max(info.min, -128), min(info.max, 255)
            args.append(rng.integers(lo, hi + 1, shape).astype(dt))
        else:
            args.append(rng.uniform(0.001, 0.01, shape).astype(dt))
    out = bufs[-1]
    return args, tuple(int(d) for d in out.shape), str(out.dtype)


def hand_scheduled(func: tirx.PrimFunc, target) -> tirx.PrimFunc:
    from ..passes.schedule_kernels import _gpu_rules, _rules, schedule_rule_of

    sch = s_tir.Schedule(func)
    rules = _rules() if target.kind.name == "llvm" else _gpu_rules()
    rules[schedule_rule_of(func)](sch, target)
    return sch.mod["main"]


def ms_runner(runner):
    """meta-schedule's runner for our runner (local or the same RPC tracker and key)."""
    from tvm.s_tir import meta_schedule as ms

    from .measure import RPCRunner

    if isinstance(runner, RPCRunner):
        return ms.runner.RPCRunner(ms.runner.RPCConfig(
            tracker_host=runner.host, tracker_port=runner.port, tracker_key=runner.key,
            session_timeout_sec=int(runner.timeout)))
    return "local"


def tune_int8(task: MSTask, target, log_dir: Path, trials: int, runner) -> tirx.PrimFunc | None:
    """Tune one task; the best schedule meta-schedule found (None if none built)."""
    from tvm.s_tir import meta_schedule as ms

    work = Path(log_dir) / MS_DIR
    from .ms_export import f_export_for

    # 30 s (the default) is too little for one int8 kernel's build on a loaded 2-core machine;
    # artifacts are linked .so files (cross-linked for the target): a board cannot link a .tar
    builder = ms.builder.LocalBuilder(timeout_sec=180, f_export=f_export_for(target))
    if target.kind.name == "cuda":
        from .cuda_space import cuda_builder

        builder = cuda_builder(target)
    db = ms.tune_tir(workload(task.func), target, str(work), max_trials_global=trials,
                     num_trials_per_iter=min(trials, 16), runner=ms_runner(runner),
                     builder=builder,
                     cost_model="xgb", strategy="evolutionary")
    return best_schedule(db, task.func, target)


def open_database(log_dir) -> object | None:
    from tvm.s_tir import meta_schedule as ms

    work = Path(log_dir) / MS_DIR
    if not (work / "database_workload.json").exists():
        return None
    return ms.database.JSONDatabase(work_dir=str(work), allow_missing=False)


def best_schedule(db, func: tirx.PrimFunc, target) -> tirx.PrimFunc | None:
    """The database's best schedule of ``func`` (as the lowering emitted it), or None."""
    sch = db.query_schedule(workload(func), target, "main")
    return None if sch is None else sch.mod["main"].without_attr("global_symbol")
