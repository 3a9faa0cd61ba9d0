"""prom_tvm.targets: CLI target strings, dicts and Targets → TVM 0.27 Targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import te
from tvm.target import Target
from tvm.target import codegen as llvm_info

from prom_tvm.targets import (
    CROSS_NUM_CORES,
    available_physical_cores,
    check_buildable,
    is_host_compatible,
    parse_target,
    target_summary,
)

HOST_CPU = tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")()
HOST_TRIPLE = str(llvm_info.llvm_get_system_triple())
HOST_IS_X86 = HOST_TRIPLE.startswith("x86_64")


def _add_one_module() -> tvm.IRModule:
    a = te.placeholder((64,), "int32", name="a")
    b = te.compute((64,), lambda i: a[i] + 1, name="b")
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


def test_none_is_this_cpu_with_its_features_and_cores():
    t = parse_target(None)
    assert t.kind.name == "llvm"
    assert t.attrs["mcpu"] == HOST_CPU
    assert t.attrs["mtriple"] == HOST_TRIPLE
    assert int(t.attrs["num-cores"]) == available_physical_cores()
    assert is_host_compatible(t)
    # the host CPU's features reach codegen (e.g. AVX-512 on x86 hosts that have it)
    host_feats = set(llvm_info.llvm_get_cpu_features(t))
    generic = set(llvm_info.llvm_get_cpu_features(Target({"kind": "llvm"})))
    assert host_feats != generic or HOST_CPU == "generic"


def test_available_physical_cores_within_affinity():
    import os

    assert 1 <= available_physical_cores() <= len(os.sched_getaffinity(0))


def test_host_target_compiles_and_runs():
    ex = tvm.compile(_add_one_module(), target=parse_target(None))
    x = np.arange(64, dtype="int32")
    y = tvm.runtime.tensor(np.zeros(64, "int32"))
    ex.mod["main"](tvm.runtime.tensor(x), y)
    np.testing.assert_array_equal(y.numpy(), x + 1)


@pytest.mark.parametrize("cpu", ["cortex-a72", "cortex-a53", "cortex-a76", "neoverse-n1"])
def test_arm_cpu_without_triple_implies_aarch64(cpu):
    t = parse_target(f"llvm -mcpu={cpu}")
    assert t.attrs["mtriple"] == "aarch64-linux-gnu"
    assert t.attrs["mcpu"] == cpu
    assert "arm_cpu" in t.keys and "cpu" in t.keys
    assert int(t.attrs["num-cores"]) == CROSS_NUM_CORES
    if HOST_IS_X86:
        assert not is_host_compatible(t)


def test_cortex_a72_string_builds_aarch64_code():
    """What ``build(m, target="llvm -mcpu=cortex-a72")`` hands to TVM yields AArch64 code."""
    ex = tvm.compile(_add_one_module(), target=parse_target("llvm -mcpu=cortex-a72"))
    assert 'target triple = "aarch64-linux-gnu"' in ex.mod.inspect_source("ll")


def test_32bit_arm_cpu_gets_armv7_triple():
    t = parse_target("llvm -mcpu=cortex-a7")
    assert t.attrs["mtriple"].startswith("armv7")
    assert "arm_cpu" in t.keys


def test_explicit_triple_and_flags_are_kept():
    t = parse_target(
        "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a76 -mattr=+neon,+dotprod -num-cores=8 "
        "-opt-level=3 -vector-width=128 -mabi=lp64"
    )
    assert t.attrs["mtriple"] == "aarch64-linux-gnu"
    assert list(t.attrs["mattr"]) == ["+neon", "+dotprod"]
    assert int(t.attrs["num-cores"]) == 8
    assert int(t.attrs["opt-level"]) == 3
    assert int(t.attrs["vector-width"]) == 128
    assert t.attrs["mabi"] == "lp64"
    assert bool(t.attrs["feature.has_dotprod"])


def test_flag_spellings():
    assert parse_target("llvm -mcpu cortex-a55").attrs["mcpu"] == "cortex-a55"
    assert parse_target("llvm --mcpu=cortex-a55").attrs["mcpu"] == "cortex-a55"
    assert bool(parse_target("llvm -fast-math").attrs["fast-math"])
    assert not bool(parse_target("llvm -fast-math=false").attrs["fast-math"])
    assert list(parse_target("llvm -keys=arm_cpu,cpu").keys) == ["arm_cpu", "cpu"]
    assert parse_target('llvm -mattr="+neon,+v8.2a" -mcpu=cortex-a55').attrs["mattr"][1] == "+v8.2a"


def test_native_is_the_host_cpu():
    t = parse_target("llvm -mcpu=native")
    assert t.attrs["mcpu"] == HOST_CPU
    assert int(t.attrs["num-cores"]) == available_physical_cores()


def test_plain_llvm_runs_here_with_host_cores():
    t = parse_target("llvm")
    assert t.kind.name == "llvm"
    assert is_host_compatible(t)
    assert int(t.attrs["num-cores"]) == available_physical_cores()


def test_cuda_arch():
    t = parse_target("cuda -arch=sm_80")
    assert t.kind.name == "cuda"
    assert t.attrs["arch"] == "sm_80"
    assert "gpu" in t.keys
    assert not is_host_compatible(t)
    with_host = parse_target("cuda -arch=sm_80", host="llvm -mcpu=cortex-a72")
    assert with_host.host.attrs["mtriple"] == "aarch64-linux-gnu"


def test_c_tag_json_dict_and_target_forms():
    assert parse_target("c").kind.name == "c"
    assert parse_target("nvidia/nvidia-a100").attrs["arch"] == "sm_80"
    from_json = parse_target('{"kind": "llvm", "mcpu": "cortex-a53"}')
    from_dict = parse_target({"kind": "llvm", "mcpu": "cortex-a53"})
    assert from_json.attrs["mtriple"] == from_dict.attrs["mtriple"] == "aarch64-linux-gnu"
    given = Target({"kind": "llvm", "mcpu": "cortex-a72", "mtriple": "aarch64-linux-gnu"})
    t = parse_target(given)
    assert t.attrs["mcpu"] == "cortex-a72" and int(t.attrs["num-cores"]) == CROSS_NUM_CORES
    assert parse_target(t).same_as(t)  # complete Targets pass through untouched


@pytest.mark.parametrize(
    ("text", "must_name"),
    [
        ("llvm -mcpux=cortex-a72", "-mcpux"),
        ("llvm -frobnicate", "-frobnicate"),
        ("cuda -mattr=+neon", "-mattr"),
        ("llvm mcpu=cortex-a72", "mcpu=cortex-a72"),
        ("llvm -", "'-'"),
        ("lvm -mcpu=cortex-a72", "'lvm'"),
        ("llvm -num-cores=four", "-num-cores"),
        ("llvm -num-cores=0", "-num-cores"),
        ("llvm -mattr=neon -mcpu=cortex-a72", "'neon'"),
        ("llvm -mcpu=cortex-z99", "cortex-z99"),
        ("llvm -mcpu=cortex-a72 -mtriple=x86_64-linux-gnu", "cortex-a72"),
        ("llvm -fast-math=maybe", "-fast-math"),
        ("llvm -mcpu", "-mcpu"),
        ("llvm -host=llvm", "-host"),
        ("", "empty"),
        ('{"kind": "llvm",', "JSON"),
    ],
)
def test_bad_strings_raise_value_error_naming_the_problem(text, must_name):
    with pytest.raises(ValueError, match=None) as info:
        parse_target(text)
    assert must_name in str(info.value)


def test_unknown_flag_lists_accepted_flags():
    with pytest.raises(ValueError) as info:
        parse_target("llvm -mcpus=cortex-a72")
    msg = str(info.value)
    assert "-mcpu" in msg and "-mtriple" in msg and "-num-cores" in msg
    assert "did you mean -mcpu" in msg


def test_bad_dict_and_type():
    with pytest.raises(ValueError, match="bogus"):
        parse_target({"kind": "llvm", "bogus": 1})
    with pytest.raises(ValueError, match="lvm"):
        parse_target({"kind": "lvm"})
    with pytest.raises(TypeError):
        parse_target(42)


def test_summary_is_one_line_with_the_essentials():
    s = target_summary(parse_target("llvm -mcpu=cortex-a72"))
    assert "\n" not in s
    for part in (
        "llvm",
        "aarch64-linux-gnu",
        "cortex-a72",
        "arm_cpu",
        f"num-cores={CROSS_NUM_CORES}",
    ):
        assert part in s
    assert "sm_80" in target_summary(parse_target("cuda -arch=sm_80"))


@pytest.mark.skipif(not HOST_IS_X86, reason="x86 host feature comparison")
def test_host_compatibility_by_features():
    host_feats = set(llvm_info.llvm_get_cpu_features(parse_target(None)))
    # an ISA extension this host lacks makes a target not runnable here
    missing = [
        f for f in ("amx-int8", "avx512fp16", "avx10.1-512", "avx512vnni") if f not in host_feats
    ]
    if missing:
        assert not is_host_compatible(parse_target(f"llvm -mcpu={HOST_CPU} -mattr=+{missing[0]}"))
    # disabling a feature never makes a target incompatible; baseline x86-64 always runs
    assert is_host_compatible(parse_target("llvm -mcpu=x86-64"))
    assert is_host_compatible(parse_target(f"llvm -mcpu={HOST_CPU} -mattr=-avx2"))
    assert not is_host_compatible(parse_target("llvm -mtriple=x86_64-pc-windows-msvc"))


# -- property: any combination of valid flags round-trips into the Target's attributes -------------

_ARM_CPUS = ["cortex-a53", "cortex-a55", "cortex-a72", "cortex-a76", "neoverse-n1"]
_ARM_ATTRS = ["+neon", "+dotprod", "+i8mm", "-sve", "+fullfp16"]


@settings(max_examples=25, deadline=None)
@given(
    cpu=st.sampled_from(_ARM_CPUS),
    explicit_triple=st.booleans(),
    mattr=st.lists(st.sampled_from(_ARM_ATTRS), unique=True, max_size=3),
    cores=st.one_of(st.none(), st.integers(1, 128)),
    opt_level=st.one_of(st.none(), st.integers(0, 3)),
    order=st.randoms(use_true_random=False),
)
def test_valid_flag_combinations_round_trip(cpu, explicit_triple, mattr, cores, opt_level, order):
    flags = [f"-mcpu={cpu}"]
    if explicit_triple:
        flags.append("-mtriple=aarch64-linux-gnu")
    if mattr:
        flags.append("-mattr=" + ",".join(mattr))
    if cores is not None:
        flags.append(f"-num-cores={cores}")
    if opt_level is not None:
        flags.append(f"-opt-level={opt_level}")
    order.shuffle(flags)
    t = parse_target("llvm " + " ".join(flags))
    assert t.attrs["mcpu"] == cpu
    assert t.attrs["mtriple"] == "aarch64-linux-gnu"
    assert list(t.attrs.get("mattr", [])) == mattr
    assert int(t.attrs["num-cores"]) == (CROSS_NUM_CORES if cores is None else cores)
    if opt_level is not None:
        assert int(t.attrs["opt-level"]) == opt_level
    assert "arm_cpu" in t.keys


@settings(max_examples=25, deadline=None)
@given(name=st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True), value=st.integers(0, 9))
def test_any_unregistered_flag_is_rejected_by_name(name, value):
    from tvm.target import TargetKind

    if name in TargetKind.options_from_name("llvm"):
        return
    with pytest.raises(ValueError) as info:
        parse_target(f"llvm -mcpu=cortex-a72 -{name}={value}")
    assert f"-{name}" in str(info.value)


# -- what prom_tvm can build for ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["nvptx -mcpu=sm_80", "rocm", "opencl", "vulkan", "metal"])
def test_gpu_kinds_parse_but_are_not_buildable(text):
    t = parse_target(text)  # translating them is fine; compiling for them is not (yet)
    with pytest.raises(ValueError) as info:
        check_buildable(t)
    msg = str(info.value)
    assert f"kind {t.kind.name!r}" in msg
    assert "GPU targets other than CUDA are not supported yet" in msg and "llvm CPU targets" in msg
    assert ("write 'cuda -arch=sm_XX'" in msg) == (t.kind.name == "nvptx")


@pytest.mark.parametrize("text", ["cuda -arch=sm_80", "nvidia/nvidia-a100",
                                  {"kind": "cuda", "arch": "sm_90"}])
def test_cuda_with_arch_is_buildable_with_an_llvm_host(text):
    t = parse_target(text)
    check_buildable(t)  # raises if not
    assert t.host is not None and t.host.kind.name == "llvm"


@pytest.mark.parametrize(("text", "match"), [("cuda", r"-arch=sm_XX.*sm_80"),
                                             ({"kind": "cuda"}, r"-arch=sm_XX.*sm_80"),
                                             ("cuda -arch=ampere", r"invalid CUDA arch")])
def test_cuda_without_a_compute_capability_names_the_flag(text, match):
    # no default: TVM would pick sm_50 (or this machine's GPU), code for the wrong GPU
    with pytest.raises(ValueError, match=match):
        check_buildable(parse_target(text))


def test_c_kind_is_not_buildable_and_says_why():
    with pytest.raises(ValueError, match=r"kind 'c' is not supported.*LLVM intrinsics.*llvm CPU"):
        check_buildable(parse_target("c"))


def test_gpu_host_is_not_buildable():
    with pytest.raises(ValueError, match=r"host kind 'cuda'"):
        check_buildable(parse_target("llvm", host="cuda -arch=sm_80"))


@pytest.mark.parametrize("text", [None, "llvm", "llvm -mcpu=cortex-a72", "llvm -mcpu=cortex-a7"])
def test_llvm_kinds_are_buildable(text):
    check_buildable(parse_target(text))  # raises if not


@pytest.mark.parametrize(
    ("config", "must_name"),
    [
        ({"kind": "llvm", "mcpu": 5}, "'mcpu' must be of type str"),
        ({"kind": "llvm", "mtriple": None}, "'mtriple' must be of type str"),
        ({"kind": "llvm", "num-cores": "4"}, "'num-cores' must be of type int"),
        ({"kind": "llvm", "num-cores": True}, "'num-cores' must be of type int"),
        ({"kind": "llvm", "mattr": "+neon"}, "'mattr' must be of type Array<str>"),
        ({"kind": "llvm", "mattr": ["+neon", 3]}, "'mattr' must be of type Array<str>"),
        ({"kind": "llvm", "fast-math": "yes"}, "'fast-math' must be of type bool"),
        ({"kind": "cuda", "arch": 80}, "'arch' must be of type str"),
        ({"mcpu": "cortex-a72"}, "has no 'kind'"),
        ({"kind": 5}, "'kind' must be a string"),
    ],
)
def test_dict_values_of_the_wrong_type_name_the_key(config, must_name):
    with pytest.raises(ValueError) as info:
        parse_target(config)
    assert must_name in str(info.value)
    # the JSON string form goes through the same check
    with pytest.raises(ValueError):
        parse_target(json.dumps(config))
