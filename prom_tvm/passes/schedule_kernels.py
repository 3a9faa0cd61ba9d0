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
    import importlib

    rules: dict[str, Callable] = {}
    for name in ("ternary_conv1x1", "int8_conv2d", "int8_dense", "int8_add"):
        try:  # DEV-ONLY tolerance until all kernels land
            module = importlib.import_module(f"..schedules.{name}", __package__)
        except ImportError:
            continue
        rules.update(getattr(module, "SCHEDULE_RULES", {}))
    return rules


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

    def __init__(self, target: tvm.target.Target):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rules = _rules()
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc) or (func.attrs and func.attrs.get(
                    "tirx.is_scheduled", False)):
                continue
            rule = schedule_rule_of(func)
            if rule not in rules:
                continue
            sch = s_tir.Schedule(func)
            rules[rule](sch, self.target)
            mod[gv] = (sch.mod["main"].with_attr("tirx.is_scheduled", True)
                       .with_attr("op_pattern", OPAQUE))
        return mod
