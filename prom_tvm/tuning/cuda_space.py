"""Meta-schedule for CUDA targets: design spaces and builds here, measurements on a GPU.

Tasks are the kernels ``build`` emits for the CUDA target (``ms_tasks.extract_int8_tasks``: the
int8 conv / depthwise / dense kernels and the add-only ternary kernels), with their
``schedule_rule`` tags removed so meta-schedule's CUDA space applies (multi-level tiling with
thread binding, cross-thread reduction, dp4a / tensor-core tensorization where it matches,
auto-bind). Design spaces and candidate builds need no GPU: the builder's worker processes get
prom_tvm's CUDA lowering of the kernels' LLVM intrinsics (``cuda_intrinsics``) through their
initializer. An artifact holds CUDA C that TVM compiles where it is loaded, so measuring needs a
GPU machine running TVM's RPC server (``python -m tvm.exec.rpc_server --tracker HOST:PORT --key
KEY`` next to the GPU); ``ms_measure`` times a kernel there with meta-schedule's own runner, the
same harness for the hand-written and the tuned schedule.
"""

from __future__ import annotations

import numpy as np


def cuda_builder(target, timeout_sec: float = 180):
    """meta-schedule's LocalBuilder for ``target`` (a cuda target with its llvm host)."""
    from tvm.s_tir import meta_schedule as ms

    from ..schedules.cuda_intrinsics import register_cuda_intrinsics
    from .ms_export import f_export_for

    return ms.builder.LocalBuilder(timeout_sec=timeout_sec, f_export=f_export_for(target),
                                   initializer=register_cuda_intrinsics)


def design_space(task, target, seed: int = 0):
    """The tune context of ``task`` (an ``ms_tasks.MSTask``) and its CUDA design spaces."""
    from tvm.s_tir import meta_schedule as ms

    from .ms_tasks import workload

    ctx = ms.TuneContext(mod=workload(task.func), target=target,
                         space_generator="post-order-apply", search_strategy="replay-trace",
                         task_name=task.name, num_threads=1, rand_state=seed)
    return ctx, ctx.generate_design_space()


def sample_candidates(task, target, count: int, seed: int = 0) -> list:
    """``count`` candidates drawn from the task's design spaces, postprocessed (GPU code
    verified) as meta-schedule's search would measure them."""
    ctx, spaces = design_space(task, target, seed)
    ctx.pre_tuning(max_trials=count, num_trials_per_iter=count, design_spaces=spaces)
    return list(ctx.generate_measure_candidates() or [])


def build_candidates(candidates: list, target) -> list:
    """meta-schedule's BuilderResults (``artifact_path`` or ``error_msg``) of the candidates."""
    from tvm.s_tir import meta_schedule as ms

    return cuda_builder(target).build([ms.builder.BuilderInput(c.sch.mod, target)
                                       for c in candidates])


def ms_measure(func, arrays, out_shape, out_dtype, target, runner, expected=None) -> float:
    """Seconds per call of ``func`` on the GPU behind ``runner`` (an ``measure.RPCRunner``),
    built here and timed by meta-schedule's RPC runner on random inputs (the argument list of
    ``measure.measure``; ``arrays`` and ``expected`` are not used: meta-schedule's runner does
    not return outputs)."""
    from tvm.s_tir import meta_schedule as ms

    from .measure import RPCRunner
    from .ms_tasks import workload

    if not isinstance(runner, RPCRunner):
        raise ValueError(no_gpu_runner_message())
    mod = workload(func)
    built = cuda_builder(target).build([ms.builder.BuilderInput(mod, target)])[0]
    if built.error_msg:
        raise RuntimeError(f"building {func.attrs.get('global_symbol', 'a kernel')} for "
                           f"{target.attrs['arch']} failed: {built.error_msg[-400:]}")
    rpc = ms.runner.RPCRunner(ms.runner.RPCConfig(
        tracker_host=runner.host, tracker_port=runner.port, tracker_key=runner.key,
        session_timeout_sec=int(runner.timeout)),
        ms.runner.EvaluatorConfig(number=10, repeat=3, min_repeat_ms=50))
    info = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    result = rpc.run([ms.runner.RunnerInput(built.artifact_path, "cuda", info)])[0].result()
    if result.error_msg:
        raise RuntimeError(f"running on the GPU under key {runner.key!r} failed: "
                           f"{result.error_msg[-400:]}")
    return float(np.median([float(s) for s in result.run_secs]))


def no_gpu_runner_message() -> str:
    return ("tuning for CUDA measures every candidate on a GPU, and there is none here: run "
            "`python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY` on the GPU machine "
            "(with a tracker: python -m tvm.exec.rpc_tracker) and pass --rpc-tracker HOST:PORT "
            "--rpc-key KEY; the design spaces and candidate builds run on this machine")
