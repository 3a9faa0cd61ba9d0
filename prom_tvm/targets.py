"""Targets the way TVM users write them, translated for TVM 0.27.

TVM 0.27 accepts targets only as JSON dicts (or tag names); the command-line strings everyone knows
(``"llvm -mcpu=cortex-a72"``, ``"cuda -arch=sm_80"``) raise. ``parse_target`` translates them,
checks each flag against the options TVM registers for the target kind (so an unknown flag is an
error naming it, not a silently ignored attribute), checks ``-mcpu`` against LLVM's CPU list, infers
a triple when only a CPU is given (``cortex-a72`` → ``aarch64-linux-gnu``) and fills in
``num-cores``, which meta-schedule needs.

``target=None`` means this machine: the host triple and CPU name (so AVX-512/VNNI or dotprod code is
generated where the CPU has it) and the physical cores this process may use.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
import shlex
from pathlib import Path
from typing import Any

import tvm
from tvm.target import Target, TargetKind
from tvm.target import codegen as llvm_info

__all__ = [
    "CROSS_NUM_CORES",
    "arch_family",
    "available_physical_cores",
    "check_buildable",
    "cuda_arch",
    "host_target",
    "is_gpu",
    "is_host_compatible",
    "parse_target",
    "target_summary",
]

# num-cores for a cross target that does not say: a quad-core board (Raspberry Pi 4, most phones'
# big cluster, Jetson Nano). Meta-schedule only uses it to size parallel loops while tuning.
CROSS_NUM_CORES = 4

# Options every kind registers that are internal to TVM or not expressible as a CLI flag.
_INTERNAL_OPTIONS = frozenset({"kind", "tag", "from_device", "target_device_type", "host"})

# When only -mcpu is given, the first triple LLVM knows the CPU for wins; the host triple is tried
# first so that x86 names stay on the host's own triple.
_FALLBACK_TRIPLES = (
    "aarch64-linux-gnu",
    "armv7a-linux-gnueabihf",
    "x86_64-linux-gnu",
    "riscv64-linux-gnu",
)

# LLVM "features" that only steer instruction selection or scheduling; a CPU lacking them still
# runs the code. Ignored when asking whether the host can run a target's code.
_TUNING_FEATURE_PREFIXES = (
    "slow-", "fast-", "faster-", "false-deps-", "no-bypass-delay", "prefer-", "tuning-",
    "allow-light-", "idivq-to-divl", "idivl-to-divb", "macrofusion", "branchfusion", "vzeroupper",
    "ermsb", "fuse-", "use-", "enable-select-opt", "predictable-select-expensive", "addr-lsl-",
    "alu-lsl-", "disable-", "no-", "sbb-dep-breaking", "lea-", "pad-short-functions", "avoid-",
    "balance-fp-ops", "cmp-bcc-fusion", "arith-", "ascend-store-address",
)  # fmt: skip

_OS_WORDS = ("linux", "android", "windows", "darwin", "macos", "ios", "freebsd", "none", "wasi")


# ----------------------------------------------------------------------------------------------
# the host


def available_physical_cores() -> int:
    """Physical cores this process may run on (affinity, SMT siblings merged, cgroup quota)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            core = (
                (topo / "physical_package_id").read_text().strip(),
                (topo / "core_id").read_text().strip(),
            )
        except OSError:
            core = ("cpu", str(cpu))
        cores.add(core)
    n = max(1, len(cores))
    try:  # cgroup v2 CPU quota ("max 100000" means none)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


@functools.cache
def _host_triple() -> str:
    return str(llvm_info.llvm_get_system_triple())


@functools.cache
def _host_cpu() -> str:
    return str(tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")())


def host_target() -> Target:
    """This machine's CPU: host triple, host ``mcpu`` (its real features) and ``num-cores``."""
    return Target(
        {
            "kind": "llvm",
            "mtriple": _host_triple(),
            "mcpu": _host_cpu(),
            "num-cores": available_physical_cores(),
        }
    )


# ----------------------------------------------------------------------------------------------
# parsing


def _kind_options(kind: str) -> dict[str, str]:
    """Option name → type name (``str``, ``int``, ``bool``, ``Array<str>``) TVM registers."""
    opts = TargetKind.options_from_name(kind)
    return {str(k): str(v) for k, v in opts.items() if str(k) not in _INTERNAL_OPTIONS}


def _check_kind(kind: str, text: str) -> None:
    kinds = [str(k) for k in Target.list_kinds()]
    if kind not in kinds:
        close = difflib.get_close_matches(kind, kinds, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown target kind {kind!r} in {text!r}{hint}; known kinds: {', '.join(kinds)}"
        )


def _convert(kind: str, flag: str, typ: str, value: str | None, text: str) -> Any:
    """A flag's string value as the type TVM registers for it."""
    if typ == "bool":
        if value is None or value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"-{flag} in {text!r} is a boolean: write -{flag} or -{flag}=false")
    if value is None or value == "":
        raise ValueError(f"-{flag} in {text!r} needs a value: -{flag}=<{typ}>")
    if typ == "int":
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"-{flag}={value} in {text!r}: expected an integer") from None
    if typ.startswith("Array"):
        return [v for v in value.split(",") if v]
    if typ == "str":
        return value
    raise ValueError(f"-{flag} of target kind {kind!r} ({typ}) cannot be given as a string flag")


def _parse_cli(text: str) -> dict[str, Any]:
    """Split ``"llvm -mcpu=cortex-a72 -mattr=+neon"`` into a TVM config dict."""
    try:
        tokens = shlex.split(text)
    except ValueError as err:
        raise ValueError(f"cannot split target string {text!r}: {err}") from None
    if not tokens:
        raise ValueError("empty target string; use e.g. 'llvm' or 'llvm -mcpu=cortex-a72'")
    kind = tokens[0]
    _check_kind(kind, text)
    options = _kind_options(kind)
    accepted = ", ".join(f"-{name}" for name in sorted(options))
    config: dict[str, Any] = {"kind": kind}
    i = 1
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("-") or token.strip("-") == "":
            raise ValueError(
                f"malformed token {token!r} in target string {text!r}: flags look like "
                f"-name=value; accepted flags for {kind!r}: {accepted}"
            )
        name, eq, value = token.lstrip("-").partition("=")
        if name == "host":
            raise ValueError(f"-host in {text!r}: pass the host as parse_target(..., host=...)")
        if name not in options:
            close = difflib.get_close_matches(name, options, n=1)
            hint = f" (did you mean -{close[0]}?)" if close else ""
            raise ValueError(
                f"unknown flag -{name} for target kind {kind!r} in {text!r}{hint}; "
                f"accepted flags: {accepted}"
            )
        typ = options[name]
        if not eq and typ != "bool" and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            value, i = tokens[i + 1], i + 1  # "-mcpu cortex-a72"
        elif not eq:
            value = None
        config[name] = _convert(kind, name, typ, value, text)
        i += 1
    return config


def _infer_triple(cpu: str) -> str:
    """The triple of the first architecture LLVM knows ``cpu`` for."""
    for triple in (_host_triple(), *_FALLBACK_TRIPLES):
        if llvm_info.llvm_is_valid_cpu(cpu, triple):
            return triple
    raise ValueError(
        f"-mcpu={cpu} is not a CPU LLVM knows for {', '.join(_FALLBACK_TRIPLES)} or the host; "
        f"check the name or give the triple too (-mtriple=...)"
    )


def _normalize_llvm(config: dict[str, Any], text: str) -> dict[str, Any]:
    """Resolve ``native``, infer/validate the triple, check mcpu and mattr, fill num-cores."""
    config = dict(config)
    cpu = config.get("mcpu")
    if cpu == "native":
        config["mcpu"] = cpu = _host_cpu()
        config.setdefault("mtriple", _host_triple())
    if cpu and "mtriple" not in config:
        config["mtriple"] = _infer_triple(cpu)
    triple = config.get("mtriple")
    if cpu and triple and not llvm_info.llvm_is_valid_cpu(cpu, triple):
        known = [
            str(c)
            for c in llvm_info.llvm_get_cpu_archlist(Target({"kind": "llvm", "mtriple": triple}))
        ]
        close = difflib.get_close_matches(cpu, known, n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(
            f"-mcpu={cpu} is not a CPU LLVM knows for triple {triple} in {text!r}{hint}"
        )
    for feature in config.get("mattr", ()):
        if str(feature)[:1] not in ("+", "-") or len(str(feature)) < 2:
            raise ValueError(
                f"-mattr feature {feature!r} in {text!r} needs a + or - prefix (e.g. -mattr=+neon)"
            )
    if "num-cores" in config and int(config["num-cores"]) < 1:
        raise ValueError(f"-num-cores in {text!r} must be >= 1, got {config['num-cores']}")
    return config


# Per-block limits every CUDA GPU since sm_50 has (static shared memory: 48 KiB); meta-schedule
# and dlight read them from the target, TVM's "cuda -arch=..." leaves them out.
_CUDA_LIMITS = {"max_threads_per_block": 1024, "max_shared_memory_per_block": 49152,
                "registers_per_block": 65536}


def _fill_cuda_limits(target: Target) -> Target:
    if str(target.kind.name) != "cuda" or all(k in target.attrs for k in _CUDA_LIMITS):
        return target
    config = {str(k): v for k, v in target.export().items()}
    for key, value in _CUDA_LIMITS.items():
        config.setdefault(key, value)
    return Target(config)


def _fill_num_cores(target: Target) -> Target:
    if str(target.kind.name) != "llvm" or "num-cores" in target.attrs:
        return target
    n = available_physical_cores() if is_host_compatible(target) else CROSS_NUM_CORES
    config = {str(k): v for k, v in target.export().items()}
    config["num-cores"] = n
    return Target(config)


def parse_target(
    target: str | dict | Target | None = None,
    host: str | dict | Target | None = None,
) -> Target:
    """A ``tvm.target.Target`` from the forms TVM users write.

    Parameters
    ----------
    target : str, dict, Target or None
        ``None``: this machine's CPU (see ``host_target``). A string: the classic CLI form
        ``"<kind> -flag=value ..."`` (``"llvm -mcpu=cortex-a72 -mattr=+neon -num-cores=4"``,
        ``"cuda -arch=sm_80"``, ``"c"``; ``-mcpu=native`` is the host CPU), a TVM tag
        (``"nvidia/nvidia-a100"``) or a JSON dict string. A dict: TVM's config form. A Target:
        used as is (only ``num-cores`` is added where missing).
    host : str, dict, Target or None
        Optional host target for device kinds (cuda, ...), in any of the same forms.

    For ``llvm``, a ``-mcpu`` without ``-mtriple`` gets the triple of the architecture LLVM knows
    the CPU for (``cortex-a72`` → ``aarch64-linux-gnu``, keys ``arm_cpu, cpu``); ``num-cores`` is
    filled in when missing: the host's physical cores when the host can run the code, else
    ``CROSS_NUM_CORES``.

    Raises
    ------
    ValueError
        Unknown kind, unknown flag, malformed token, bad value, or a CPU LLVM does not know; the
        message names it and lists what is accepted.
    """
    if target is None:
        result = host_target()
    elif isinstance(target, Target):
        result = target
    elif isinstance(target, dict):
        result = _from_config(dict(target), repr(target))
    elif isinstance(target, str):
        text = target.strip()
        if text.startswith("{"):
            try:
                config = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"target {text!r} looks like JSON but is not: {err}") from None
            result = _from_config(config, text)
        elif text and "/" in text.split()[0]:
            result = _make(text, text)  # a tag such as "nvidia/nvidia-a100"
        else:
            result = _from_config(_parse_cli(text), text)
    else:
        raise TypeError(
            f"target must be a string, dict, tvm.target.Target or None, not {type(target).__name__}"
        )
    result = _fill_num_cores(_fill_cuda_limits(result))
    if host is not None:
        result = Target(result, parse_target(host))
    elif str(result.kind.name) == "cuda" and result.host is None:
        result = Target(result, host_target())  # the VM and kernel launches run on this CPU
    return result


def _from_config(config: dict[str, Any], text: str) -> Target:
    if "kind" not in config:
        raise ValueError(
            f"target {text} has no 'kind'; write e.g. {{'kind': 'llvm', 'mcpu': 'cortex-a72'}}"
        )
    if not isinstance(config["kind"], str):
        raise ValueError(f"target {text}: 'kind' must be a string such as 'llvm'")
    _check_kind(config["kind"], text)
    _check_value_types(config, text)
    if config.get("kind") == "cuda" and not config.get("arch"):
        # TVM would fill in sm_50 (or the GPU of this machine): code for the wrong GPU
        raise ValueError(
            f"target {text}: give the GPU's compute capability as -arch=sm_XX (e.g. "
            f"'cuda -arch=sm_80'; {_ARCH_EXAMPLES}) or a tag such as 'nvidia/nvidia-a100'"
        )
    if config.get("kind") == "llvm":
        config = _normalize_llvm(config, text)
    return _make(config, text)


def _type_ok(typ: str, value: Any) -> bool:
    if typ == "str":
        return isinstance(value, str)
    if typ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "bool":
        return isinstance(value, bool) or value in (0, 1)
    if typ.startswith("Array"):
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    return True  # other registered types (maps, nested targets): TVM checks them itself


def _check_value_types(config: dict[str, Any], text: str) -> None:
    """Each dict value against the type TVM registers for it, so that a wrong type is a
    ValueError naming the key instead of a TypeError from deep inside TVM's FFI."""
    options = _kind_options(config["kind"])
    examples = {"str": "'cortex-a72'", "int": "4", "bool": "True", "Array<str>": "['+neon']"}
    for key, value in config.items():
        typ = options.get(key)
        if typ is not None and not _type_ok(typ, value):
            raise ValueError(
                f"target {text}: {key!r} must be of type {typ} (e.g. {key!r}: "
                f"{examples.get(typ, '...')}), got {type(value).__name__} {value!r}"
            )


def _make(config: dict[str, Any] | str, text: str) -> Target:
    try:
        return Target(config)
    except ValueError as err:  # TVM's own message lists the known options
        raise ValueError(f"invalid target {text}: {err}") from None


# ----------------------------------------------------------------------------------------------
# what prom_tvm can compile for

_GPU_KINDS = frozenset({"cuda", "nvptx", "rocm", "opencl", "vulkan", "metal", "webgpu"})
_SUPPORTED_HINT = (
    "supported today: llvm CPU targets, e.g. None (this machine), 'llvm -mcpu=native', "
    "'llvm -mcpu=cortex-a72', and NVIDIA GPUs as 'cuda -arch=sm_80'"
)
_ARCH_EXAMPLES = "sm_75 T4, sm_80 A100, sm_86 RTX 30xx, sm_89 L4 / RTX 40xx, sm_90 H100"


def cuda_arch(target: Target) -> int:
    """The compute capability of a ``cuda`` target as an int (``sm_80`` -> 80)."""
    arch = str(target.attrs.get("arch", ""))
    m = re.fullmatch(r"sm_(\d+)a?", arch)
    if not m:
        raise ValueError(
            f"target {target_summary(target)}: prom_tvm needs the GPU's compute capability as "
            f"-arch=sm_XX (e.g. 'cuda -arch=sm_80'; {_ARCH_EXAMPLES}): it picks the int8 "
            f"instructions (dp4a from sm_61) and nvcc compiles for it"
            + (f"; got arch={arch!r}" if arch else "")
        )
    return int(m.group(1))


def is_gpu(target: Target | None) -> bool:
    return target is not None and str(target.kind.name) in _GPU_KINDS


def check_buildable(target: Target) -> None:
    """Raise ``ValueError`` unless prom_tvm can compile for ``target``: llvm CPU kinds, and
    ``cuda`` with an ``-arch=sm_XX`` (its host an llvm CPU).

    ``parse_target`` translates every TVM kind, but prom_tvm has CPU and CUDA schedules only:
    without GPU schedules TVM quietly builds host code for a GPU kind (a library whose only
    module is x86 code), so other GPU kinds are refused here rather than "succeeding".
    """
    for role, t in (("target", target), ("host", target.host)):
        if t is None:
            continue
        kind = str(t.kind.name)
        if kind == "llvm":
            continue
        if kind == "cuda" and role == "target":
            cuda_arch(t)  # raises naming -arch
            continue
        if kind in _GPU_KINDS:
            hint = " (for NVIDIA GPUs write 'cuda -arch=sm_XX')" if kind == "nvptx" else ""
            raise ValueError(
                f"{role} kind {kind!r} ({target_summary(t)}): GPU targets other than CUDA are not "
                f"supported yet{hint}; prom_tvm has no schedules for them and TVM would silently "
                f"build CPU code; {_SUPPORTED_HINT}"
            )
        if kind == "c":
            raise ValueError(
                f"{role} kind 'c' is not supported: prom_tvm's kernels call LLVM intrinsics "
                f"(llvm.roundeven, llvm.fma) that TVM's C code generator cannot emit; "
                f"{_SUPPORTED_HINT}"
            )
        raise ValueError(f"{role} kind {kind!r} is not supported by prom_tvm; {_SUPPORTED_HINT}")


# ----------------------------------------------------------------------------------------------
# describing and comparing


def target_summary(target: Target) -> str:
    """One line: kind, triple, cpu/arch, keys, cores and explicit features."""
    attrs = target.attrs
    parts = [str(target.kind.name)]
    for key in ("mtriple", "mcpu", "arch"):
        if key in attrs and str(attrs[key]):
            parts.append(str(attrs[key]))
    if "mattr" in attrs and len(attrs["mattr"]):
        parts.append(",".join(str(f) for f in attrs["mattr"]))
    details = [f"keys={','.join(str(k) for k in target.keys)}"]
    if "num-cores" in attrs:
        details.append(f"num-cores={int(attrs['num-cores'])}")
    if target.host is not None:
        details.append(f"host={target.host.kind.name} {target.host.attrs.get('mcpu', '')}".strip())
    return f"{' '.join(parts)} ({'; '.join(details)})"


def _arch_family(triple: str) -> str:
    arch = triple.split("-")[0].lower()
    if arch in ("x86_64", "amd64", "x86-64"):
        return "x86_64"
    if arch in ("aarch64", "arm64"):
        return "aarch64"
    if arch.startswith(("arm", "thumb")):
        return "arm"
    if arch in ("i386", "i486", "i586", "i686", "x86"):
        return "x86"
    return arch


def arch_family(target: Target | None) -> str:
    """Architecture family ("x86_64", "aarch64", ...) of an llvm target's triple, the host's
    when it names none (None: this machine)."""
    triple = (str(target.attrs.get("mtriple", "") or "") if target is not None else "")
    return _arch_family(triple or _host_triple())


def _os_of(triple: str) -> str:
    words = triple.lower().split("-")[1:]
    for word in words:
        for os_word in _OS_WORDS:
            if word.startswith(os_word):
                return os_word
    return "unknown"


def _isa_features(target: Target) -> set[str]:
    cpu = str(target.attrs.get("mcpu", "")).replace("cortex-", "").replace("-", "")
    return {
        str(f)
        for f in llvm_info.llvm_get_cpu_features(target)
        if not str(f).startswith(_TUNING_FEATURE_PREFIXES) and str(f) != cpu
    }


def is_host_compatible(target: Target) -> bool:
    """Can this machine run code built for ``target``? Conservative.

    True for an ``llvm`` target whose triple has the host's architecture family and OS and whose
    ISA features (LLVM's feature set for its mcpu and mattr, tuning-only flags ignored) are all
    features of the host CPU; for ``c`` without ``mcpu``/``march``. False for everything else
    (GPUs included: they run on a device, not on this CPU).
    """
    kind = str(target.kind.name)
    if kind == "c":
        return not (target.attrs.get("mcpu") or target.attrs.get("march"))
    if kind != "llvm":
        return False
    triple = str(target.attrs.get("mtriple", "")) or _host_triple()
    host = _host_triple()
    if arch_family(target) != _arch_family(host) or _os_of(triple) != _os_of(host):
        return False
    return _isa_features(target) <= _isa_features(_host_cpu_target())


@functools.cache
def _host_cpu_target() -> Target:
    """The host CPU without ``num-cores``, cached for feature comparisons."""
    return Target({"kind": "llvm", "mtriple": _host_triple(), "mcpu": _host_cpu()})
