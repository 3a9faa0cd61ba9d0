"""The deployed library of the PROM MobileNetV2 224 is <= 2.6 MB: float16 / 2.7, the paper's
storage figure, measured on the file ``export_library`` writes."""

from __future__ import annotations

import numpy as np
import pytest

import prom_tvm
from prom_tvm.library_size import function_spans, kernel_code_bytes
from prom_tvm.models import mobilenet_v2_float, quantize_qdq

PAPER_RATIO = 2.7


@pytest.fixture(scope="module")
def mnv2():
    fp32 = mobilenet_v2_float(input_size=224)
    return fp32, prom_tvm.build(quantize_qdq(fp32))


def float16_bytes(model) -> int:
    from onnx import numpy_helper

    return 2 * sum(numpy_helper.to_array(t).size for t in model.graph.initializer)


def test_mobilenet_v2_library_is_2_7x_smaller_than_float16(mnv2, tmp_path):
    fp32, lib = mnv2
    st = lib.storage(tmp_path / "mnv2.so")
    fp16 = float16_bytes(fp32)
    assert 6.9e6 < fp16 < 7.1e6  # 3.5M parameters
    assert st["file_bytes"] == (tmp_path / "mnv2.so").stat().st_size
    assert st["file_bytes"] <= fp16 / PAPER_RATIO, (st["file_bytes"], fp16 / PAPER_RATIO)
    # the accounting adds up: layers' code and data plus the rest is the file
    assert st["layer_code_bytes"] + st["layer_data_bytes"] + st["other_bytes"] \
        == st["file_bytes"]
    rows = {r["name"]: r for r in st["layers"]}
    assert len(rows) == 53
    # deep ternary layers store <= 2.7 bits per weight (packed table indices), no index lists
    deep = rows["features.18.0"]
    assert deep["form"] == "table-lookup" and deep["data_bytes"] * 8 <= 2.7 * 320 * 1280 \
        + 12 * 1280 * 8
    # weight-specialized layers keep their weights in code only
    first = rows["features.2.conv.0.0"]
    assert first["form"] == "specialized" and first["data_bytes"] == 0
    assert 5_000 < first["code_bytes"] < 40_000
    # int8 layers: one byte per weight (+ bias and scale per channel)
    cls = rows["classifier.1"]
    assert cls["data_bytes"] == 1000 * 1280 + 8 * 1000


def test_code_is_measured_per_kernel(mnv2, tmp_path):
    _, lib = mnv2
    path = lib.export_library(tmp_path / "m.so")
    spans = function_spans(path)
    code = kernel_code_bytes(path)
    assert sum(spans.values()) == sum(code.values())
    syms = {r["kernel_symbol"] for r in lib.summary() if "kernel_symbol" in r}
    assert syms <= set(code), syms - set(code)
    assert all(code[s] > 0 for s in syms)


def test_not_an_elf_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.so"
    bad.write_bytes(np.zeros(64, np.uint8).tobytes())
    with pytest.raises(ValueError, match="ELF"):
        function_spans(bad)
