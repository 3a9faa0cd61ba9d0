"""An emulated Cortex-A72 as a real RPC device, from nothing: the arm64 rootfs
(``scripts/emulated_device.sh setup``, cached), a tracker on 127.0.0.1, two qemu-user RPC
servers under one key; PROM MobileNetV2 224 benchmarked on them against the exact reference,
and the tiny CNN tuned through them and its log applied bit-exact.  Servers and tracker are
always torn down.  Skips (with the reason) where the machine cannot host the device: not root,
no binfmt_misc, no mirror or network to build the rootfs.  Slow: ~5 min for a fresh rootfs,
then ~4 min on 2 cores."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import rpc_fixtures

import prom_tvm
from prom_tvm.bench import _input_arrays, bench_model
from prom_tvm.reference import TOLERANCE_LSB

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "emulated_device.sh"
A72 = "llvm -mcpu=cortex-a72"
KEY = "a72"


def _device(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def a72():
    """(tracker port, server ports): two emulated A72 servers under KEY."""
    r = _device("setup", timeout=1800)
    if r.returncode == 3:  # this machine cannot host it: say why
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, f"setup failed:\n{r.stderr}"
    with rpc_fixtures.tracker() as port:
        started: list[int] = []
        try:
            for _ in range(2):
                started.append(rpc_fixtures.free_port())  # ours to stop, even if start fails
                r = _device("start", "--tracker", f"127.0.0.1:{port}", "--key", KEY,
                            "--port", str(started[-1]), timeout=400)
                assert r.returncode == 0, f"start failed:\n{r.stderr}"
                assert int(r.stdout.split()[-1]) == started[-1]
            yield port, started
        finally:
            for p in started:  # by port: other servers of the rootfs are not ours to stop
                _device("stop", "--port", str(p), timeout=60)


def _on_device(port: int, library: Path, inputs: list[np.ndarray]) -> np.ndarray:
    """The first output of ``library`` run on one of the emulated devices."""
    import gc

    import tvm
    from tvm import relax

    from prom_tvm.compiled_model import _flatten
    from prom_tvm.tuning.measure import RPCRunner

    runner = RPCRunner("127.0.0.1", port, KEY, timeout=120)
    session = runner.connect()
    name = f"test_{library.name}"
    session.upload(str(library), target=name)
    vm = relax.VirtualMachine(session.load_module(name), session.cpu(0))
    vm.set_input("main", *[tvm.runtime.tensor(a, session.cpu(0)) for a in inputs])
    vm.invoke_stateful("main")
    out = _flatten(vm.get_outputs("main"))[0]
    del vm, session
    runner.close()
    gc.collect()
    return out


def _inputs(path, seed=0):
    from prom_tvm import onnx_io

    m = onnx_io.load_onnx(path)
    shapes = onnx_io.input_shapes(m, None)
    return _input_arrays(list(shapes), shapes, onnx_io.input_dtypes(m), seed)


def test_mobilenet_v2_224_on_the_emulated_a72(a72, tmp_path):
    from prom_tvm.models.mobilenet_v2_onnx import mobilenet_v2_qdq

    port, _ = a72
    model = tmp_path / "mnv2_224.onnx"
    onnx.save(mobilenet_v2_qdq(input_size=224, calibration=1), model)
    result = bench_model(model, A72, rpc_tracker=f"127.0.0.1:{port}", rpc_key=KEY, repeat=2,
                         number=1, timeout=120, work_dir=tmp_path / "libs")
    assert [v.name for v in result.variants] == ["prom", "int8", "float"]
    for v in result.variants:
        assert v.within_tolerance and v.top1_same and v.max_lsb <= TOLERANCE_LSB, v
        assert v.median_ms > 0
    # the device told us it is emulated (aarch64 code on this machine's x86_64 kernel)
    assert result.emulated
    assert "timings under qemu are not cortex-a72 timings" in result.table()
    assert any("the kernel it runs on reports x86_64" in n for n in result.notes)
    # two servers under the key: the variants ran in two sessions at once
    assert any("2 sessions at once" in n for n in result.notes), result.notes
    # the device's PROM output is the host's, bit for bit (same integer pipeline on both ISAs)
    x = _inputs(model)
    host = prom_tvm.build(model, tuning_log=False)(*x)
    np.testing.assert_array_equal(_on_device(port, tmp_path / "libs" / "prom.so", x),
                                  np.asarray(host))
    print("\n" + result.table())


def test_tune_over_the_emulated_a72_and_apply_the_log(a72, tmp_path):
    """The knob tuner and meta-schedule (builder: cross-linked .so) measure on the emulated
    board; the log, applied by build, is bit-exact with the untuned host build."""
    from prom_tvm.models.tiny_cnn import tiny_qdq_cnn
    from prom_tvm.tuning import records
    from prom_tvm.tuning.measure import RPCRunner
    from prom_tvm.tuning.tuner import tune_model

    port, _ = a72
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_qdq_cnn(16), model)
    runner = RPCRunner("127.0.0.1", port, KEY, timeout=120)
    runner.connect()
    log_dir = tmp_path / "log"
    result = tune_model(str(model), A72, log_dir, trials=2, runner=runner, progress=False,
                        ms_trials=4)
    log = records.read_log(log_dir / records.FILE)
    assert log["tuning"]["runner"] == f"rpc {KEY}@127.0.0.1:{port}"
    assert log["records"] and all(np.isfinite(us) for r in log["records"].values()
                                  for _, us in r["measured"])
    assert result.ms, "no int8 workload was tuned"
    tuned_ms = [r for r in result.ms.values() if r["tuned_us"] is not None]
    assert tuned_ms, f"meta-schedule measured nothing on the device: {result.ms}"
    # apply it, with meta-schedule's schedules forced on: still bit-exact
    for r in log["ms_records"].values():
        r["use"] = r["tuned_us"] is not None
    records.write_log(log_dir / records.FILE, log)
    lib = prom_tvm.build(model, A72, tuning_log=log_dir)
    assert any(row.get("tuned") for row in lib.summary())
    lib.export_library(tmp_path / "tuned.so")
    x = _inputs(model)
    host = prom_tvm.build(model, tuning_log=False)(*x)
    np.testing.assert_array_equal(_on_device(port, tmp_path / "tuned.so", x), np.asarray(host))
