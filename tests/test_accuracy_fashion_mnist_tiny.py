"""benchmarks/accuracy_fashion_mnist.py --tiny runs end to end: train, QAT, export, compile."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy_fashion_mnist.py"
DATA = Path("/usr/share/datasets/fashion-mnist")


def test_tiny_run(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("matplotlib")
    if not (DATA / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed: apt-get install -y dataset-fashion-mnist")
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--quiet", "--threads", "1",
           "--out-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "accuracy_fashion_mnist.json").read_text())
    assert (report["dataset"]["train_images"], report["dataset"]["test_images"]) == (512, 256)
    results = report["results"]
    for name in ("float", "int8", "prom"):
        r = results[name]
        assert 0.0 <= r["torch_top1"] <= 1.0
        # the exported file's exact numbers agree with torch (a tiny run's near-tied logits may
        # flip a few); onnxruntime's int8 kernels are only reported: without VNNI they saturate
        assert r["exact_reference_agreement"] >= 0.98, name
        assert 0.0 <= r["onnxruntime_agreement"] <= 1.0
    energy = {n: results[n]["energy"]["energy_ratio_vs_fp16"] for n in results}
    assert energy["float"] < energy["int8"] < energy["prom"]
    compiled = results["prom"]["prom_tvm"]
    assert "error" not in compiled, compiled
    assert compiled["agreement_with_torch"] >= 0.98
    assert compiled["agreement_with_exact_reference"] >= 0.98
    assert compiled["kernels"].get("ternary-add", 0) > 0
    svg = ET.parse(tmp_path / "pareto_fashion_mnist.svg").getroot()
    assert svg.tag.endswith("svg")
    rows = [line.split()[0] for line in proc.stdout.splitlines()[-3:]]
    assert rows == ["float", "int8", "prom"]  # the printed table


def test_missing_dataset_says_how_to_install(tmp_path):
    pytest.importorskip("torch")
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--data-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "apt-get install -y dataset-fashion-mnist" in proc.stderr
    assert str(tmp_path) in proc.stderr
