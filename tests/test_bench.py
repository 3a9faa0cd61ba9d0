"""``python -m prom_tvm.bench``: PROM vs int8-only vs float, here and over TVM's RPC tracker."""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
import rpc_fixtures

import prom_tvm
from prom_tvm.bench import AgreementError, bench_model, main
from prom_tvm.reference import TOLERANCE_LSB


@pytest.fixture(scope="module")
def tiny_so(tiny_onnx, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench_so") / "tiny.so"
    prom_tvm.build(tiny_onnx, tuning_log=False).export_library(path)
    return path


@pytest.fixture(scope="module")
def farm():
    """A tracker on 127.0.0.1 with two servers under the key "farm"; yields the tracker's
    port. Always torn down."""
    from tvm import rpc

    with rpc_fixtures.tracker() as port, rpc_fixtures.server(port, "farm"), \
            rpc_fixtures.server(port, "farm"):
        deadline = time.monotonic() + 60
        while rpc.connect_tracker("127.0.0.1", port).summary()["queue_info"].get(
                "farm", {}).get("free", 0) < 2:
            assert time.monotonic() < deadline, "the second 'farm' server did not register"
            time.sleep(0.3)
        yield port


def _check_json(path, runner_prefix, names=("prom", "int8", "float")):
    data = json.loads(path.read_text())
    assert data["format"] == "prom_tvm.bench/1"
    assert data["runner"].startswith(runner_prefix)
    assert [v["name"] for v in data["variants"]] == list(names)
    for v in data["variants"]:
        assert v["within_tolerance"] and v["top1_same"] and v["max_lsb"] <= TOLERANCE_LSB
        assert len(v["results_ms"]) == data["repeat"]
        assert 0 < v["p10_ms"] <= v["median_ms"] <= v["p90_ms"]
        assert v["library_bytes"] > 0
    assert data["variants"][0]["vs_prom"] == 1.0
    return data


def _table_rows(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[0] in ("prom", "int8", "float")
            and len(line.split()) >= 8]


def test_local_run_prints_the_table_and_writes_json_and_plot(tiny_onnx, tmp_path, capsys):
    code = main([str(tiny_onnx), "--local", "--repeat", "3", "--number", "2", "--quiet",
                 "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert _table_rows(out) == ["prom", "int8", "float"]
    assert "median ms" in out and "vs PROM" in out and "max LSB" in out
    assert "run in float" in out  # the float variant says what it is
    assert "qemu" not in out
    data = _check_json(tmp_path / "b.json", "local")
    assert data["repeat"] == 3 and data["number"] == 2 and not data["emulated"]
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_rpc_run_uploads_the_exported_libraries(tiny_onnx, farm, tmp_path, capsys):
    code = main([str(tiny_onnx), "--rpc-tracker", f"127.0.0.1:{farm}", "--rpc-key", "farm",
                 "--sessions", "1", "--repeat", "3", "--number", "2", "--quiet", "--timeout", "30",
                 "--work-dir", str(tmp_path / "libs"), "--json", str(tmp_path / "r.json"),
                 "--plot", str(tmp_path / "r.svg")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert _table_rows(out) == ["prom", "int8", "float"]
    data = _check_json(tmp_path / "r.json", f"rpc farm@127.0.0.1:{farm}")
    # one session per variant, one after the other; the exported libraries are the ones uploaded
    assert [v["session"] for v in data["variants"]] == [f"farm session {i}" for i in (1, 2, 3)]
    assert not any("at once" in n for n in data["notes"])
    # the device was asked which kernel its code runs on: this machine's, so not emulated
    assert not data["emulated"] and "qemu" not in out
    assert any(n.startswith("device check: x86_64 code on the device: the kernel it runs on "
                            "reports x86_64") for n in data["notes"]), data["notes"]
    for v in data["variants"]:
        assert v["library"] == str(tmp_path / "libs" / f"{v['name']}.so")
        assert (tmp_path / "libs" / f"{v['name']}.so").stat().st_size == v["library_bytes"]
    assert (tmp_path / "libs" / "prom.so.prom.json").is_file()
    assert b"<svg" in (tmp_path / "r.svg").read_bytes()


def test_variants_spread_over_the_servers_under_one_key(tiny_onnx, farm, capsys):
    result = bench_model(tiny_onnx, rpc_tracker=f"127.0.0.1:{farm}", rpc_key="farm", repeat=2,
                         number=1, timeout=30, emulated=True)
    assert [v.name for v in result.variants] == ["prom", "int8", "float"]
    assert any("2 sessions at once" in n for n in result.notes)
    assert all(v.within_tolerance for v in result.variants)
    assert result.emulated and "qemu" in result.table()  # timings flagged as not device ones


def test_so_input_locally_and_over_rpc(tiny_so, farm, tmp_path, capsys):
    code = main([str(tiny_so), "--local", "--repeat", "2", "--number", "1", "--quiet",
                 "--variants", "prom,float", "--json", str(tmp_path / "so.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads((tmp_path / "so.json").read_text())
    assert [v["name"] for v in data["variants"]] == ["prom (.so)", "float"]
    assert data["variants"][0]["library"] == str(tiny_so)  # the given library, not a rebuild
    assert all(v["within_tolerance"] for v in data["variants"])
    result = bench_model(tiny_so, rpc_tracker=f"127.0.0.1:{farm}", rpc_key="farm",
                         variants=("prom",), repeat=2, number=1, timeout=30)
    (only,) = result.variants
    assert only.name == "prom (.so)" and only.within_tolerance and only.session == "farm session 1"


def test_so_without_its_onnx_model_says_what_to_pass(tiny_onnx, tmp_path, capsys):
    path = tmp_path / "m.so"
    prom_tvm.build(onnx.load(tiny_onnx), tuning_log=False).export_library(path)  # no source
    assert main([str(path), "--local", "--quiet"]) == 2
    assert "pass --onnx MODEL.onnx" in capsys.readouterr().err
    (tmp_path / "no.so").write_bytes(b"x")
    assert main([str(tmp_path / "no.so"), "--local", "--quiet"]) == 2
    assert "metadata no.so.prom.json is missing" in capsys.readouterr().err


def test_malformed_tracker_address_is_exit_2(tiny_onnx, capsys):
    assert main([str(tiny_onnx), "--rpc-tracker", "nohost", "--rpc-key", "k", "--quiet"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert main([str(tiny_onnx), "--rpc-tracker", "127.0.0.1:99999", "--rpc-key", "k"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tiny_onnx), "--rpc-tracker", "127.0.0.1:9190"])
    assert "needs --rpc-key" in capsys.readouterr().err


def test_unknown_key_is_exit_2_listing_the_keys(tiny_onnx, farm, capsys):
    t0 = time.monotonic()
    assert main([str(tiny_onnx), "--rpc-tracker", f"127.0.0.1:{farm}", "--rpc-key", "gone",
                 "--quiet", "--timeout", "10"]) == 2
    err = capsys.readouterr().err
    assert "no RPC server is registered under key 'gone'" in err
    assert "keys there: ['farm']" in err
    assert time.monotonic() - t0 < 20  # checked before anything is built


def test_unreachable_tracker_is_exit_2_without_hanging(tiny_onnx, capsys):
    port = rpc_fixtures.free_port()  # nothing listens there
    t0 = time.monotonic()
    assert main([str(tiny_onnx), "--rpc-tracker", f"127.0.0.1:{port}", "--rpc-key", "k",
                 "--quiet", "--timeout", "5"]) == 2
    assert f"cannot reach the RPC tracker 127.0.0.1:{port}" in capsys.readouterr().err
    assert time.monotonic() - t0 < 20


def test_a_target_that_cannot_run_here_needs_rpc(tiny_onnx, capsys):
    assert main([str(tiny_onnx), "--local", "--target", "llvm -mcpu=cortex-a72", "--quiet"]) == 2
    assert "cannot run on this machine" in capsys.readouterr().err


def test_prom_beyond_tolerance_fails_loudly_after_the_table(tiny_onnx, monkeypatch, capsys):
    from prom_tvm import onnx_io, reference

    step = onnx_io.output_step(onnx.load(tiny_onnx))
    real = reference.ExactReference.run
    monkeypatch.setattr(reference.ExactReference, "run",
                        lambda self, x: [o + 10 * step for o in real(self, x)])
    assert main([str(tiny_onnx), "--local", "--variants", "prom", "--repeat", "2", "--number", "1",
                 "--quiet"]) == 1
    captured = capsys.readouterr()
    assert _table_rows(captured.out) == ["prom"]
    assert f"10 LSB from the exact QDQ reference (tolerance {TOLERANCE_LSB})" in captured.err
    with pytest.raises(AgreementError) as info:
        bench_model(tiny_onnx, variants=("prom",), repeat=2, number=1)
    assert info.value.result.variants[0].max_lsb == 10
    assert not np.isnan(info.value.result.variants[0].median_ms)


def test_busy_devices_are_a_timeout_not_a_hang(tiny_onnx, farm, capsys):
    """Both 'farm' devices held by someone else: exit 2 after --timeout, before any build."""
    import gc

    from tvm import rpc

    held = [rpc.connect_tracker("127.0.0.1", farm).request("farm", session_timeout=60)
            for _ in range(2)]
    t0 = time.monotonic()
    try:
        assert main([str(tiny_onnx), "--rpc-tracker", f"127.0.0.1:{farm}", "--rpc-key", "farm",
                     "--quiet", "--timeout", "3"]) == 2
        err = capsys.readouterr().err
        assert "waiting for a free 'farm' device" in err
        assert "2 server(s) under the key, all busy" in err
        assert time.monotonic() - t0 < 20
    finally:
        del held
        gc.collect()  # the sessions end: the devices are free for the other tests
        deadline = time.monotonic() + 30
        while rpc.connect_tracker("127.0.0.1", farm).summary()["queue_info"]["farm"][
                "free"] < 2 and time.monotonic() < deadline:
            time.sleep(0.3)


def test_a_server_that_dies_mid_run_is_an_error_naming_the_key(tiny_onnx, farm):
    with rpc_fixtures.server(farm, "flaky") as proc:

        def progress(msg):
            if msg.startswith("running int8"):
                rpc_fixtures._stop(proc)  # the device goes away after the PROM variant ran

        t0 = time.monotonic()
        with pytest.raises(ValueError,
                           match=r"no 'flaky' server is left at RPC tracker .*stopped or died"):
            bench_model(tiny_onnx, rpc_tracker=f"127.0.0.1:{farm}", rpc_key="flaky", repeat=2,
                        number=1, timeout=5, progress=progress, variants=("prom", "int8"))
        assert time.monotonic() - t0 < 60
