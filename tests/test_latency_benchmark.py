"""benchmarks/latency.py runs end to end on a small input and writes its JSON (slow: compiles)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"


@pytest.mark.slow
def test_latency_benchmark_quick_run(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "latency.json"
    engines = "prom_tvm,onnxruntime-int8,onnxruntime-fp32,tvm-stock-fp32"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--input-size", "32", "--threads", "1",
           "--engines", engines, "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    run = result["runs"]["1"]
    assert run["TVM_NUM_THREADS"] == "1"
    measured = set(run["engines"])
    assert measured | set(run["skipped"]) == set(engines.split(","))
    assert {"onnxruntime-int8", "onnxruntime-fp32", "tvm-stock-fp32"} <= measured
    for stats in run["engines"].values():
        assert 0 < stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"]
    assert run["engines"]["onnxruntime-int8"]["ratio_vs_onnxruntime-int8"] == 1.0
    # stock TVM on the float model computes the same function as onnxruntime fp32
    assert run["checks"]["tvm-stock-fp32"]["max_abs_diff"] < 1e-3
    assert "onnxruntime-int8" in proc.stdout and "vs ORT int8" in proc.stdout
