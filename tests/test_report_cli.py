"""``python -m prom_tvm.report``: the table, --json, --plot and errors, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from prom_tvm.energy import CostModel, analyze_model
from prom_tvm.report import format_report, main

pytest.importorskip("onnxruntime")  # the test model is quantized with onnxruntime

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "prom_tvm.report"]
    if not code:
        cmd += list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    from prom_tvm.models import mobilenet_v2_qdq

    path = tmp_path_factory.mktemp("report") / "mnv2_prom_64.onnx"
    onnx.save(mobilenet_v2_qdq(input_size=64, width=0.5, num_classes=10, calibration=1), path)
    return path


def _check_table(text: str, report: dict) -> None:
    for layer in report["layers"]:
        assert layer["name"] in text
    assert f"energy_ratio_vs_fp16 = {report['energy_ratio_vs_fp16']:.2f}x" in text
    assert f"storage_ratio_vs_fp16 = {report['storage_ratio_vs_fp16']:.2f}x" in text
    assumptions = text.split("assumptions:", 1)[1]
    flat = " ".join(assumptions.split())  # every assumption is printed, wrapped at 100 columns
    for a in report["assumptions"]:
        assert " ".join(a.split()) in flat
    assert max(len(line) for line in assumptions.splitlines()) <= 100


# Two real subprocess runs (each pays the package import, several seconds on 2 cores); the
# other cases call main() in-process, which is the same code behind the same argparse.


def test_subprocess_json_and_svg_plot(model_path, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "plots" / "energy.svg"
    out = _run(str(model_path), "--json", "--plot", str(target))
    assert out.returncode == 0, out.stderr
    report = analyze_model(model_path)
    assert json.loads(out.stdout) == json.loads(json.dumps(report))
    text = target.read_text()
    assert "<svg" in text
    assert text.count('<g id="patch_') >= 2 * len(report["layers"])  # two bars per layer


def test_subprocess_table_and_png_plot_without_torch(model_path, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    # torch made unimportable in the child: None in sys.modules blocks the import
    code = (
        "import sys; sys.modules['torch'] = None; "
        "from prom_tvm.report import main; sys.exit(main(sys.argv[1:]))"
    )
    target = tmp_path / "energy.png"
    out = _run(str(model_path), "--plot", str(target), code=code)
    assert out.returncode == 0, out.stderr
    _check_table(out.stdout, analyze_model(model_path))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(target).shape[:2]
    assert width > 600 and height > 300


def test_table_in_process(model_path, capsys):
    assert main([str(model_path)]) == 0
    _check_table(capsys.readouterr().out, analyze_model(model_path))


def test_options_reach_the_cost_model(model_path, capsys):
    args = [str(model_path), "--json", "--int8-accumulate", "int8", "--ternary-bits", "8"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cost_model"]["int8_accumulate"] == "int8"
    assert printed["weight_storage_ratio_vs_fp16"] == pytest.approx(2.0)
    expected = analyze_model(model_path, CostModel(int8_accumulate="int8", ternary_storage_bits=8))
    assert printed["total_energy_pj"] == pytest.approx(expected["total_energy_pj"], rel=1e-12)


def _exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code


def test_plot_rejects_other_formats_before_any_work(model_path, tmp_path, capsys):
    assert _exit_code([str(model_path), "--plot", str(tmp_path / "energy.pdf")]) == 2
    err = capsys.readouterr().err
    assert "energy.pdf" in err and ".png or .svg" in err


def test_plot_without_matplotlib_says_how_to_get_it(model_path, tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # blocks the import, as if absent
    assert _exit_code([str(model_path), "--plot", str(tmp_path / "e.png")]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


def test_missing_file_is_named(tmp_path, capsys):
    missing = tmp_path / "absent.onnx"
    assert _exit_code([str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file" in err


def test_non_onnx_file_is_named(tmp_path, capsys):
    junk = tmp_path / "notes.onnx"
    junk.write_text("hello, this is text\n")
    assert _exit_code([str(junk)]) == 2
    assert f"{junk} is not an ONNX model" in capsys.readouterr().err


def test_float_model_gets_a_float_report(tmp_path, capsys):
    from prom_tvm.models import mobilenet_v2_float

    path = tmp_path / "mnv2_float.onnx"
    onnx.save(mobilenet_v2_float(input_size=32, width=0.35, num_classes=10), path)
    assert main([str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["totals"]["by_kind"]) == {"float"}
    assert printed["energy_ratio_vs_fp16"] == pytest.approx((1.1 + 0.4) / (3.7 + 0.9))


# ---------------------------------------------------------------------------------------------
# measured size: the real file beside the computed storage (issue 10)
# ---------------------------------------------------------------------------------------------


def test_measured_size_of_the_file_beside_the_computed_storage(model_path, tmp_path, capsys):
    from prom_tvm.onnx_io import tensor_data_bytes
    from prom_tvm.pack import pack_ternary

    packed_path = tmp_path / "packed.onnx"
    onnx.save(pack_ternary(model_path)[0], packed_path)
    reports = {}
    for path in (model_path, packed_path):
        assert main([str(path), "--json"]) == 0
        r = reports[path] = json.loads(capsys.readouterr().out)
        m = r["measured"]
        proto = onnx.load(path)
        assert m["file_bytes"] == os.path.getsize(path) == m["model_bytes"] == proto.ByteSize()
        assert m["initializer_bytes"] == sum(tensor_data_bytes(t) for t in proto.graph.initializer)
        assert r["storage_bits"] / 8 < m["layer_initializer_bytes"] < m["initializer_bytes"]
        assert r["measured_storage_ratio_vs_fp16"] == pytest.approx(
            r["fp16_storage_bits"] / 8 / m["file_bytes"], rel=1e-12)
        assert main([str(path)]) == 0
        text = capsys.readouterr().out
        assert f"({m['file_bytes']:,} B; layer initializers {m['layer_initializer_bytes']:,} B)" \
            in text
        assert f"measured_storage_ratio_vs_fp16 = {r['measured_storage_ratio_vs_fp16']:.2f}x" \
            in text
    int8, int2 = reports[model_path], reports[packed_path]
    assert int2["storage_bits"] <= int8["storage_bits"]  # computed: 2 bits either way
    assert int2["measured"]["file_bytes"] < 0.6 * int8["measured"]["file_bytes"]
    assert int2["measured_storage_ratio_vs_fp16"] > 1.6 * int8["measured_storage_ratio_vs_fp16"]
    assert {r["weight_storage_bits"] for r in int2["layers"] if r["kind"] == "ternary-1x1"} == {2}


def test_measured_size_of_a_model_in_memory_has_no_file(model_path):
    r = analyze_model(onnx.load(model_path))
    assert r["measured"]["file_bytes"] is None
    assert r["measured"]["model_bytes"] == os.path.getsize(model_path)
    assert "serialized" in format_report(r)


def test_build_adds_what_the_compiled_kernels_run_and_store(model_path, capsys):
    """--build: per ternary layer the adds prom_tvm's kernels execute beside the paper's
    count, and each layer's bytes in the exported library beside the computed storage."""
    assert main([str(model_path), "--build", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    c = report["compiled"]
    ternary = [r for r in report["layers"] if r["kind"] == "ternary-1x1"]
    assert ternary and all("adds_run" in r for r in ternary)
    for r in ternary:
        pixels = r["macs"] // r["weights"]
        assert r["nonzero_adds"] == r["nonzero_weights"] * pixels <= r["additions"]
    assert c["ternary_adds_run"] == sum(r["adds_run"] for r in ternary)
    # shared sub-sums and 3-channel table rows: fewer adds than nonzero weights
    assert c["ternary_adds_run"] < c["ternary_nonzero_adds"]
    assert all(r["library_bytes"] > 0 for r in report["layers"])
    assert c["layer_code_bytes"] + c["layer_data_bytes"] < c["library_bytes"]
    assert c["library_ratio_vs_fp16"] == pytest.approx(
        report["fp16_storage_bits"] / 8 / c["library_bytes"])
    main([str(model_path), "--build"])
    text = capsys.readouterr().out
    assert "compiled by prom_tvm for" in text and "library_ratio_vs_fp16" in text
    assert "per nonzero" in text
