"""``python -m prom_tvm.tune``: tasks, measurement, logs, and ``build(tuning_log=...)``."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest
import rpc_fixtures

import prom_tvm
from prom_tvm.models.tiny_cnn import tiny_qdq_cnn
from prom_tvm.tune import main
from prom_tvm.tuning import records
from prom_tvm.tuning.measure import RPCRunner, parse_tracker
from prom_tvm.tuning.tuner import extract_tasks, tune_model


@pytest.fixture(scope="module")
def tuned(tiny_onnx, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("log")
    assert main([str(tiny_onnx), "--trials", "3", "--ms-trials", "0", "--log-dir", str(log_dir),
                 "--quiet"]) == 0
    return log_dir


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32)


def test_tasks_are_the_add_only_kernels_build_emits(tiny_onnx):
    from prom_tvm.targets import parse_target

    tasks = extract_tasks(str(tiny_onnx), parse_target(None))
    lib = prom_tvm.build(tiny_onnx, tuning_log=False)
    keys = {r["workload"] for r in lib.summary() if r["kernel"] == "ternary-add"}
    assert {t.key for t in tasks} == keys
    assert sum(t.layers for t in tasks) == lib.kernel_counts()["ternary-add"]


def test_tuned_log_applied_by_build_is_bit_exact(tiny_onnx, tuned):
    log = records.read_log(tuned / records.FILE)
    assert log["records"] and log["tuning"]["trials"] >= len(log["records"])
    for r in log["records"].values():
        assert r["us"] <= r["default_us"]  # the default is a measured point of the space
        assert r["measured"][0][0] in ({"g": 3}, {})  # ... and the first one measured
    lib = prom_tvm.build(tiny_onnx, tuning_log=tuned)
    plain = prom_tvm.build(tiny_onnx, tuning_log=False)
    ternary = [r for r in lib.summary() if r["kernel"] == "ternary-add"]
    assert ternary and all(r["tuned"] for r in ternary)
    assert not any(r.get("tuned") for r in plain.summary())
    for seed in range(3):
        np.testing.assert_array_equal(lib(_x(seed)), plain(_x(seed)))


def test_resume_measures_only_what_is_missing(tiny_onnx, tuned, tmp_path):
    from prom_tvm.targets import parse_target

    log_file = tmp_path / records.FILE
    log_file.write_text((tuned / records.FILE).read_text())
    again = tune_model(str(tiny_onnx), None, tmp_path, trials=3, resume=True, progress=False)
    assert again.measured == 0
    more = tune_model(str(tiny_onnx), parse_target(None), tmp_path, trials=4, resume=True,
                      progress=False)
    assert 0 < more.measured <= len(more.tasks)


@pytest.mark.parametrize("text,match", [
    ('{"format": "prom_tvm.kernel_knobs/1", "records": {"a": ', "not valid JSON"),
    ('[1, 2]', "not a prom_tvm kernel log"),
    ('{"format": "prom_tvm.kernel_knobs/1", "target_key": "x"}', "lacks 'records'"),
    ('{"format": "prom_tvm.kernel_knobs/1", "target_key": "x", "records": {"k": {"us": 1}}}',
     "record 'k' is malformed"),
])
def test_bad_logs_are_errors_naming_the_file(tiny_onnx, tmp_path, text, match):
    (tmp_path / records.FILE).write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        prom_tvm.build(tiny_onnx, tuning_log=tmp_path)
    assert str(tmp_path / records.FILE) in str(info.value)


def test_log_for_another_target_is_ignored_with_a_warning(tiny_onnx, tuned):
    with pytest.warns(records.TuningLogWarning, match="was made for .* ignored") as w:
        lib = prom_tvm.build(tiny_onnx, target={"kind": "llvm", "mcpu": "haswell"},
                             tuning_log=tuned)
    assert str(tuned / records.FILE) in str(w[0].message)
    assert not any(r.get("tuned") for r in lib.summary())


def test_log_of_another_model_warns_that_nothing_matched(tuned):
    other = tiny_qdq_cnn(32)  # other shapes: other workloads
    with pytest.warns(records.TuningLogWarning, match="no record for any layer"):
        lib = prom_tvm.build(other, tuning_log=tuned)
    assert not any(r.get("tuned") for r in lib.summary())


def test_shipped_log_is_found_for_its_target(tiny_onnx, tuned, tmp_path, monkeypatch):
    preset = tmp_path / "this-cpu"
    preset.mkdir()
    (preset / records.FILE).write_text((tuned / records.FILE).read_text())
    monkeypatch.setattr(records, "SHIPPED", tmp_path)
    lib = prom_tvm.build(tiny_onnx)  # tuning_log=None: the shipped log for this target
    assert any(r.get("tuned") for r in lib.summary())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # another target: silently no shipped log
        other = prom_tvm.build(tiny_onnx, target={"kind": "llvm", "mcpu": "haswell"})
    assert not any(r.get("tuned") for r in other.summary())


def test_command_line_errors(tiny_onnx, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tiny_onnx), "--log-dir", str(tmp_path), "--rpc-tracker", "127.0.0.1:9190"])
    assert "go together" in capsys.readouterr().err
    assert main([str(tiny_onnx), "--log-dir", str(tmp_path), "--rpc-tracker", "nohost",
                 "--rpc-key", "k"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_tracker("127.0.0.1:99999")


def test_unreachable_tracker_is_a_clear_error_without_hanging():
    port = rpc_fixtures.free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=f"cannot reach the RPC tracker 127.0.0.1:{port}"):
        RPCRunner("127.0.0.1", port, "k", timeout=10).connect()
    assert time.monotonic() - t0 < 30


def test_unknown_key_lists_the_keys_there():
    with rpc_fixtures.tracker() as port, rpc_fixtures.server(port, "here"):
        with pytest.raises(ValueError, match=r"no RPC server is registered under key 'gone'.*"
                           r"keys there: \['here'\]"):
            RPCRunner("127.0.0.1", port, "gone", timeout=10).connect()


@pytest.mark.slow
def test_tune_through_a_tracker_and_server_on_localhost(tiny_onnx, tmp_path):
    with rpc_fixtures.tracker() as port, rpc_fixtures.server(port, "cpu"):
        code = main([str(tiny_onnx), "--trials", "2", "--ms-trials", "0", "--log-dir",
                     str(tmp_path), "--quiet",
                     "--rpc-tracker", f"127.0.0.1:{port}", "--rpc-key", "cpu"])
    assert code == 0
    log = json.loads((tmp_path / records.FILE).read_text())
    assert log["tuning"]["runner"] == f"rpc cpu@127.0.0.1:{port}"
    assert all(np.isfinite(us) for r in log["records"].values() for _, us in r["measured"])
    lib = prom_tvm.build(tiny_onnx, tuning_log=tmp_path)
    np.testing.assert_array_equal(lib(_x()), prom_tvm.build(tiny_onnx, tuning_log=False)(_x()))


def test_a_server_that_dies_mid_run_is_a_clear_error(tiny_onnx, tmp_path):
    with rpc_fixtures.tracker() as port:
        with rpc_fixtures.server(port, "dies") as proc:
            runner = RPCRunner("127.0.0.1", port, "dies", timeout=20)
            runner.connect()
            rpc_fixtures._stop(proc)  # the device goes away before anything is measured
            t0 = time.monotonic()
            with pytest.raises((ValueError, TimeoutError), match=r"dies|within"):
                tune_model(str(tiny_onnx), None, tmp_path, trials=2, runner=runner, progress=False)
            assert time.monotonic() - t0 < 60
    assert (tmp_path / records.FILE).exists()  # what was done so far is kept


def _gemm_qdq():
    from onnx import TensorProto, helper, numpy_helper

    from prom_tvm.models.qdq import quantize_qdq

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32) * 0.1
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")], "fc",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return quantize_qdq(m, rng.standard_normal((4, 1, 64)).astype(np.float32))


def test_meta_schedule_tunes_an_int8_kernel_and_build_uses_it_only_if_faster(tmp_path):
    """Evolutionary search + XGBoost on the int8 dense kernel; the record says whether it
    beat the hand-written schedule, and build applies it only then, bit-exact."""
    # AVX2 code (runs here): on VNNI targets meta-schedule's x86 space tensorizes with TVM
    # 0.27's VNNI intrinsic, whose vpdpbusd call LLVM rejects (every trial fails to build)
    model, avx2 = _gemm_qdq(), {"kind": "llvm", "mcpu": "haswell"}
    result = tune_model(model, avx2, tmp_path, trials=1, ms_trials=2, progress=False)
    (rec,) = result.ms.values()
    assert rec["default_us"] > 0 and rec["trials"] == 2
    assert (tmp_path / "ms" / "database_tuning_record.json").exists()  # meta-schedule's format
    log = records.read_log(tmp_path / records.FILE)
    assert log["ms_records"] == {k: v for k, v in result.ms.items()}
    lib = prom_tvm.build(model, avx2, tuning_log=tmp_path)
    (row,) = lib.summary()
    assert bool(row.get("tuned")) == rec["use"]
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    untuned = prom_tvm.build(model, avx2, tuning_log=False)(x)
    np.testing.assert_array_equal(lib(x), untuned)
    if rec["tuned_us"] is None:  # no trial built (e.g. a builder timeout): nothing to force
        assert not rec["use"]
        pytest.skip("meta-schedule built no valid schedule in 2 trials on this machine")
    # the same log, forced to use the tuned schedule: still bit-exact
    log["ms_records"][next(iter(result.ms))]["use"] = True
    records.write_log(tmp_path / records.FILE, log)
    forced = prom_tvm.build(model, avx2, tuning_log=tmp_path)
    assert forced.summary()[0]["tuned"]
    np.testing.assert_array_equal(forced(x), untuned)


def test_meta_schedule_database_missing_is_a_clear_error(tmp_path):
    model = _gemm_qdq()
    log = records.empty_log(__import__("prom_tvm.targets", fromlist=["x"]).parse_target(None))
    log["ms_records"] = {"abc": {"use": True}}
    records.write_log(tmp_path / records.FILE, log)
    with pytest.raises(ValueError, match="has no database: copy the whole log directory"):
        prom_tvm.build(model, tuning_log=tmp_path)


@pytest.mark.slow
def test_meta_schedule_over_rpc_with_one_board(tmp_path):
    """One server under the key: the tuner releases its session while meta-schedule's runner
    measures, then takes it back (no wait for a device that never frees)."""
    model = _gemm_qdq()
    with rpc_fixtures.tracker() as port, rpc_fixtures.server(port, "one"):
        runner = RPCRunner("127.0.0.1", port, "one", timeout=60)
        runner.connect()
        result = tune_model(model, None, tmp_path, trials=1, ms_trials=2, runner=runner,
                            progress=False)
    (rec,) = result.ms.values()
    assert rec["default_us"] > 0 and rec["tuned_us"] is not None
