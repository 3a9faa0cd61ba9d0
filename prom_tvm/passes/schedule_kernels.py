"""Apply each prom_tvm kernel's hand-written default schedule (untuned builds are fast).

A kernel is recognized by the ``schedule_rule`` annotation its TE compute puts on its main
block (the same tag meta-schedule uses to find custom rules).  Scheduled functions are
marked ``tirx.is_scheduled`` and opaque to fusion, so later passes neither fuse them into
neighbours nor schedule them again.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import s_tir, tirx

OPAQUE = 8  # relax OpPatternKind.kOpaque


def _rules() -> dict[str, Callable]:
    from ..schedules import int8_add, int8_conv2d, int8_dense, ternary_conv1x1

    return {
        ternary_conv1x1.SCHEDULE_RULE: ternary_conv1x1.schedule_ternary_conv1x1,
        int8_conv2d.CONV_RULE: int8_conv2d.schedule_int8_conv2d,
        int8_conv2d.DEPTHWISE_RULE: int8_conv2d.schedule_int8_conv2d,
        int8_dense.DENSE_RULE: int8_dense.schedule_int8_dense,
        int8_add.ADD_RULE: int8_add.schedule_int8_add,
    }


def _gpu_rules() -> dict[str, Callable]:
    from ..schedules.cuda_kernels import CUDA_RULES

    return CUDA_RULES


def schedule_rule_of(func: tirx.PrimFunc) -> str | None:
    """The ``schedule_rule`` annotation of the function's first tagged top-level block."""
    try:
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # not a TE-generated function with a root block
        return None
    for block in blocks:
        ann = sch.get(block).annotations
        if "schedule_rule" in ann:
            return str(ann["schedule_rule"])
    return None


@tvm.transform.module_pass(opt_level=0, name="prom_tvm.ScheduleKernels")
class ScheduleKernels:
    """Schedule every PrimFunc that carries a prom_tvm schedule rule, for ``target``."""

    def __init__(self, target: tvm.target.Target, log=None):
        self.target = target
        self.log = log  # tuning.records.BuildLog: meta-schedule schedules that won

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rules = _rules() if self.target.kind.name == "llvm" else _gpu_rules()
        tuned = self._tuned_schedules(mod)
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc) or (func.attrs and func.attrs.get(
                    "tirx.is_scheduled", False)):
                continue
            rule = schedule_rule_of(func)
            if rule not in rules:
                continue
            if gv.name_hint in tuned:
                scheduled = tuned[gv.name_hint]
            else:
                sch = s_tir.Schedule(func)
                rules[rule](sch, self.target)
                scheduled = sch.mod["main"]
            mod[gv] = scheduled.with_attr("tirx.is_scheduled", True).with_attr("op_pattern",
                                                                                OPAQUE)
        return mod

    def _tuned_schedules(self, mod: tvm.IRModule) -> dict:
        """{function name: meta-schedule's schedule} for the log's winning int8 workloads."""
        if not self.log or not self.log.ms_use:
            return {}
        from ..tuning import ms_tasks

        db = ms_tasks.open_database(self.log.ms_dir)
        if db is None:
            raise ValueError(f"tuning log {self.log.path} lists meta-schedule schedules but "
                             f"{self.log.ms_dir}/{ms_tasks.MS_DIR} has no database: copy the "
                             "whole log directory")
        out = {}
        for task in ms_tasks.extract_int8_tasks(mod):
            if task.key in self.log.ms_use:
                best = ms_tasks.best_schedule(db, task.func, self.target)
                if best is not None:
                    out.update({name: best for name in _functions_like(mod, task.func)})
        self.log.ms_applied = set(out)
        return out


def _functions_like(mod: tvm.IRModule, func: tirx.PrimFunc) -> list[str]:
    import tvm_ffi

    return [gv.name_hint for gv, f in mod.functions_items()
            if isinstance(f, tirx.PrimFunc) and tvm_ffi.structural_equal(f, func)]


@tvm.transform.module_pass(opt_level=0, name="prom_tvm.ScheduleLeftovers")
class ScheduleLeftovers:
    """Parallelize / vectorize the TVM-legalized functions nobody scheduled (CPU only).

    TVM's CPU pipeline leaves them as plain loops; the generic rule is conservative and
    returns a function untouched when it cannot schedule it.
    """

    def __init__(self, target: tvm.target.Target):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        from ..schedules.cpu_default import schedule_generic_cpu

        for gv, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc) or (
                    func.attrs and func.attrs.get("tirx.is_scheduled", False)):
                continue
            try:
                sch = s_tir.Schedule(func)
            except Exception:  # not a schedulable (TE-style) function
                continue
            schedule_generic_cpu(sch, self.target)
            mod[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        return mod
