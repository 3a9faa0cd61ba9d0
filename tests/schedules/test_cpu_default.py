"""schedule_generic_cpu: legalized Relax ops keep their exact results, get parallel and
vector loops, and a function it cannot handle comes back untouched."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from kernel_harness import host_target
from tvm import relax, s_tir, te, tirx

from prom_tvm.schedules.cpu_default import schedule_generic_cpu, vector_bits, vector_lanes


def _legalized_module():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 32, 14, 14), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            q = bb.emit(relax.op.quantize(x, relax.const(0.05), relax.const(3, "int8"), axis=1,
                                          out_dtype="uint8"))
            d = bb.emit(relax.op.dequantize(q, relax.const(0.05), relax.const(3, "int8"),
                                            axis=1))
            p = bb.emit(relax.op.nn.max_pool2d(d, pool_size=(3, 3), strides=(2, 2),
                                               padding=(1, 1)))
            m = bb.emit(relax.op.mean(p, axis=[2, 3], keepdims=True))
            r = bb.emit(relax.op.reshape(m, (1, 32)))
            o = bb.emit_output(relax.op.nn.relu(r))
        bb.emit_func_output(o)
    mod = relax.transform.LegalizeOps()(bb.get())
    return relax.transform.FuseTIR()(relax.transform.FuseOps()(mod))


def _schedule_all(mod: tvm.IRModule) -> tvm.IRModule:
    out = tvm.IRModule(dict(mod.functions))
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            sch = schedule_generic_cpu(s_tir.Schedule(func), host_target())
            out[gv] = sch.mod["main"]
    return out


def _run(mod, x):
    ex = tvm.compile(mod, target=host_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()


def test_legalized_ops_keep_results_and_get_parallel_vector_loops():
    mod = _legalized_module()
    scheduled = _schedule_all(mod)
    x = np.random.default_rng(0).standard_normal((1, 32, 14, 14)).astype(np.float32)
    np.testing.assert_array_equal(_run(scheduled, x), _run(mod, x))
    scripts = [f.script() for f in scheduled.functions.values() if isinstance(f, tirx.PrimFunc)]
    assert any("T.parallel" in s for s in scripts)
    if vector_bits(host_target()) >= 256:
        assert any("T.vectorized" in s for s in scripts)


def test_symbolic_shapes_come_back_untouched():
    n = tirx.Var("n", "int64")
    a = te.placeholder((n, 16), "float32", name="a")
    b = te.compute((n, 16), lambda i, j: a[i, j] * 2.0, name="b")
    func = te.create_prim_func([a, b])
    sch = schedule_generic_cpu(s_tir.Schedule(func), host_target())
    # the inner loop is static and vectorizable; the symbolic outer one must stay serial
    assert "T.parallel" not in sch.mod["main"].script()


def test_a_function_without_blocks_comes_back_untouched():
    @tvm.script.ir_module
    class Lowered:
        @tvm.script.tirx.prim_func
        def main(a: tvm.script.tirx.Buffer((8,), "float32")):
            for i in range(8):
                a[i] = a[i] + tvm.script.tirx.float32(1)

    func = Lowered["main"]
    sch = schedule_generic_cpu(s_tir.Schedule(func), host_target())
    tvm.ir.assert_structural_equal(sch.mod["main"], func)


@pytest.mark.parametrize(("target", "bits"), [
    ({"kind": "llvm", "mcpu": "znver5"}, 512),
    ({"kind": "llvm", "mcpu": "haswell"}, 256),
    ({"kind": "llvm"}, 128),
    ({"kind": "llvm", "mcpu": "cortex-a72", "mtriple": "aarch64-linux-gnu"}, 128),
])
def test_vector_width_follows_the_target(target, bits):
    assert vector_bits(target) == bits
    assert vector_lanes(target, 8) == bits // 8
