"""Tuning logs: measured kernel knobs per workload, as JSON; how ``build`` finds and applies them.

A log directory holds ``prom_tvm_kernels.json``::

    {"format": "prom_tvm.kernel_knobs/1",
     "target": {...}, "target_key": "llvm/x86_64/rocketlake/...",
     "records": {workload key: {"knobs": {...}, "us": 12.3, "default_us": 14.0,
                                "measured": [[{knobs}, us], ...]}},
     "tuning": {"trials": 40, "seconds": 35.2, "runner": "local"}}

A log matches a build when its ``target_key`` equals the build target's (kind, architecture,
CPU and ISA flags: what decides which code is fastest); a log for another target is ignored
with a warning naming it.  Records are looked up per layer by workload key, so a log made on
another model applies to the layers the two share and the rest keep the defaults.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

FORMAT = "prom_tvm.kernel_knobs/1"
FILE = "prom_tvm_kernels.json"
SHIPPED = Path(__file__).resolve().parent.parent / "tuning_logs"


class TuningLogWarning(UserWarning):
    """A tuning log that does not apply to this build (other target, no matching layer)."""


def target_key(target) -> str:
    """What a log must share with a build: kind, architecture, CPU, ISA flags."""
    attrs = target.attrs
    triple = str(attrs.get("mtriple", ""))
    arch = triple.split("-")[0] if triple else ""
    mattr = ",".join(sorted(str(a) for a in attrs.get("mattr", []) or []))
    cpu = str(attrs.get("mcpu", "")) or str(attrs.get("arch", ""))  # a GPU: its sm_XX
    return "/".join([target.kind.name, arch, cpu, mattr])


def log_path(log_dir: str | os.PathLike) -> Path:
    p = Path(log_dir)
    return p / FILE if p.is_dir() or p.suffix != ".json" else p


def empty_log(target) -> dict:
    return {"format": FORMAT, "target": json.loads(str(target)), "target_key": target_key(target),
            "records": {}, "tuning": {"trials": 0, "seconds": 0.0}}


def read_log(path: str | os.PathLike) -> dict:
    """Parse and validate a log file; any defect is a ``ValueError`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"tuning log {path} does not exist; run python -m prom_tvm.tune "
                         "with --log-dir to make one") from None
    try:
        log = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"tuning log {path} is not valid JSON (corrupted or truncated: "
                         f"{err.msg} at line {err.lineno}); delete it and tune again") from None
    if not isinstance(log, dict) or log.get("format") != FORMAT:
        found = log.get("format") if isinstance(log, dict) else type(log).__name__
        raise ValueError(f"tuning log {path} is not a prom_tvm kernel log (expected format "
                         f"{FORMAT!r}, found {found!r})")
    records = log.get("records")
    if not isinstance(records, dict) or not isinstance(log.get("target_key"), str):
        raise ValueError(f"tuning log {path} lacks 'records' / 'target_key': truncated? "
                         "Tune again")
    for key, rec in records.items():
        if not (isinstance(rec, dict) and isinstance(rec.get("knobs"), dict)
                and isinstance(rec.get("us"), int | float)):
            raise ValueError(f"tuning log {path}: record {key!r} is malformed (needs 'knobs' "
                             "and 'us'); delete the file and tune again")
    return log


def write_log(path: str | os.PathLike, log: dict) -> None:
    """Write atomically: an interrupted write never leaves a truncated log behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(log, indent=1, sort_keys=True))
    os.replace(tmp, path)


class BuildLog:
    """What a build takes from a log: add-only knobs per workload, and the int8 workloads
    whose meta-schedule schedule (in ``ms_dir``) beat the hand-written one."""

    def __init__(self, path=None, knobs=None, ms_use=None):
        self.path = None if path is None else str(path)
        self.knobs = knobs or {}
        self.ms_use = set(ms_use or ())
        self.ms_dir = None if path is None else str(Path(path).parent)

    def __bool__(self) -> bool:
        return self.path is not None


def log_for_build(tuning_log, target) -> BuildLog:
    """The log ``build`` applies.

    ``tuning_log``: a directory or file (explicit: a corrupt one is an error, one for another
    target is ignored with a ``TuningLogWarning``), None (a shipped log for this target, if
    any, see ``shipped_log``), or False (none)."""
    if tuning_log is False:
        return BuildLog()
    if tuning_log is None:
        path = shipped_log(target)
        if path is None:
            return BuildLog()
    else:
        path = log_path(tuning_log)
    log = read_log(path)
    if log["target_key"] != target_key(target):
        warnings.warn(f"tuning log {path} was made for {log['target_key']}, this build targets "
                      f"{target_key(target)}: ignored (default kernels used)", TuningLogWarning,
                      stacklevel=3)
        return BuildLog()
    ms_use = {k for k, r in (log.get("ms_records") or {}).items()
              if isinstance(r, dict) and r.get("use")}
    return BuildLog(path, {k: r["knobs"] for k, r in log["records"].items()}, ms_use)


def shipped_log(target) -> Path | None:
    """The log in ``prom_tvm/tuning_logs/<preset>/`` whose target key is this target's."""
    if not SHIPPED.is_dir():
        return None
    want = target_key(target)
    for path in sorted(SHIPPED.glob(f"*/{FILE}")):
        try:
            if json.loads(path.read_text()).get("target_key") == want:
                return path
        except (OSError, json.JSONDecodeError):
            continue
    return None
