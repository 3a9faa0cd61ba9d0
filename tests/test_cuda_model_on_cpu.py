"""A whole model lowered for CUDA (its CUDA kernels, their argument order, the flattened-pixel
reshapes of the add-only kernels) run on the CPU: every prom_tvm kernel is scheduled by its CUDA
schedule without thread bindings (``cuda_emulation.cpu_twin``), the rest by the CPU pipeline; the
outputs must equal the CPU build's bit for bit and agree with the exact QDQ reference."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from model_harness import check_outputs, inputs
from tvm import tirx

import prom_tvm
from prom_tvm import onnx_io
from prom_tvm.compiled_model import CompiledModel
from prom_tvm.compiler import lower_to_integer, relax_pipeline
from prom_tvm.models import mobilenet_v2_qdq, tiny_qdq_cnn
from prom_tvm.passes.schedule_kernels import schedule_rule_of
from prom_tvm.schedules.cuda_emulation import cpu_twin
from prom_tvm.schedules.cuda_kernels import CUDA_RULES
from prom_tvm.targets import host_target, parse_target


def cuda_model_on_cpu(model, arch: str = "sm_80") -> tuple[CompiledModel, int]:
    cuda = parse_target(f"cuda -arch={arch}")
    shapes, dtypes = onnx_io.input_shapes(model, None), onnx_io.input_dtypes(model)
    mod, layers = lower_to_integer(model, shapes, dtypes, {"target": cuda})
    twins = 0
    for gv, func in list(mod.functions_items()):
        rule = schedule_rule_of(func) if isinstance(func, tirx.PrimFunc) else None
        if rule in CUDA_RULES:
            twin = cpu_twin(func, CUDA_RULES[rule], cuda).without_attr("global_symbol")
            mod[gv] = twin.with_attr("tirx.is_scheduled", True).with_attr("op_pattern", 8)
            twins += 1
    host = host_target()
    ex = tvm.compile(mod, target=host, relax_pipeline=relax_pipeline(host))
    outputs = [o.name for o in model.graph.output]
    return CompiledModel(ex, host, list(shapes), shapes, dtypes, outputs, layers), twins


@pytest.mark.parametrize("activation_type", ["uint8", "int8"])
def test_tiny_cnn_cuda_kernels_on_cpu_match_the_cpu_build(activation_type):
    model = tiny_qdq_cnn(16, activation_type=activation_type)
    twin, n = cuda_model_on_cpu(model)
    assert n == 8  # 4 add-only, 3 conv / depthwise, 1 dense
    cpu = prom_tvm.build(model)
    xs = inputs((1, 3, 16, 16))
    for x in xs:
        np.testing.assert_array_equal(twin(x), cpu(x))
    check_outputs(model, xs, [twin(x) for x in xs], where="cuda kernels on cpu")


def test_mobilenet_v2_cuda_kernels_on_cpu_match_the_cpu_build():  # ~20 s
    model = mobilenet_v2_qdq()
    twin, n = cuda_model_on_cpu(model)
    assert n >= 34
    xs = inputs((1, 3, 224, 224), n=1)
    np.testing.assert_array_equal(twin(xs[0]), prom_tvm.build(model)(xs[0]))
    check_outputs(model, xs, [twin(xs[0])], where="cuda kernels on cpu")
