"""Meta-schedule for CUDA without a GPU: tasks, design spaces and candidate builds here (the
candidates' CUDA C compiles with nvcc); tuning refuses to start without a GPU RPC runner."""

from __future__ import annotations

import shutil

import pytest
import tvm

from prom_tvm import onnx_io
from prom_tvm.compiler import lower_to_integer
from prom_tvm.models.tiny_cnn import tiny_qdq_cnn
from prom_tvm.targets import parse_target
from prom_tvm.tuning import cuda_space, ms_tasks, records
from prom_tvm.tuning.measure import RPCRunner
from prom_tvm.tuning.tuner import tune_model

SM80 = "cuda -arch=sm_80"


@pytest.fixture(scope="module")
def cuda_tasks():
    model = tiny_qdq_cnn(16)
    mod, _ = lower_to_integer(model, onnx_io.input_shapes(model, None),
                              onnx_io.input_dtypes(model), {"target": parse_target(SM80)})
    return ms_tasks.extract_int8_tasks(mod)


def test_cuda_tasks_are_the_kernels_build_emits(cuda_tasks):
    names = sorted(t.name.rsplit("_", 1)[0] for t in cuda_tasks)
    assert names.count("prom_ternary_cuda") == 4 and names.count("prom_int8_conv2d") == 3
    assert names.count("prom_int8_dense") == 1
    target = parse_target(SM80)
    for task in cuda_tasks:  # the baseline a tuned schedule must beat: the CUDA schedule
        func = ms_tasks.hand_scheduled(task.func, target)
        assert "threadIdx.x" in func.script()


def test_tuning_for_cuda_needs_a_gpu_runner(tmp_path):
    with pytest.raises(ValueError, match=r"rpc_server.*--rpc-tracker"):
        tune_model(tiny_qdq_cnn(16), SM80, tmp_path, ms_trials=4, progress=False)
    with pytest.raises(ValueError, match="--ms-trials"):
        tune_model(tiny_qdq_cnn(16), SM80, tmp_path, ms_trials=0, progress=False,
                   runner=RPCRunner("127.0.0.1", 9, "gpu"))


def test_logs_of_one_gpu_do_not_apply_to_another():
    assert records.target_key(parse_target(SM80)) != records.target_key(
        parse_target("cuda -arch=sm_86"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_cuda_design_space_candidates_build_and_compile(cuda_tasks):
    """~2 minutes on 2 busy cores: a design space (~30 s) and two candidate builds in
    meta-schedule's builder processes."""
    from tvm.support import nvcc

    target = parse_target(SM80)
    task = next(t for t in cuda_tasks if t.name.startswith("prom_ternary_cuda"))
    candidates = cuda_space.sample_candidates(task, target, 2)
    assert len(candidates) == 2
    built = cuda_space.build_candidates(candidates, target)
    ok = [c for c, r in zip(candidates, built, strict=True) if r.error_msg is None]
    assert ok, [r.error_msg[-300:] for r in built]
    source = tvm.compile(ok[0].sch.mod, target=target).mod.imports[0].inspect_source("")
    with target:
        assert len(nvcc.compile_cuda(source, target_format="cubin", arch="sm_80",
                                     compiler="nvcc")) > 1000


@pytest.mark.slow
def test_ms_measure_on_a_server_without_a_gpu_is_a_clear_error(cuda_tasks):
    """The measuring path end to end up to the device: a CUDA kernel is built here, uploaded to
    an RPC server on 127.0.0.1 (which has no GPU) and fails there with an error naming the key."""
    import rpc_fixtures

    target = parse_target(SM80)
    task = next(t for t in cuda_tasks if t.name.startswith("prom_ternary_cuda"))
    func = ms_tasks.hand_scheduled(task.func, target)
    with rpc_fixtures.tracker() as port, rpc_fixtures.server(port, "nogpu"):
        runner = RPCRunner("127.0.0.1", port, "nogpu", timeout=60)
        with pytest.raises(RuntimeError, match="running on the GPU under key 'nogpu' failed"):
            cuda_space.ms_measure(func, [], None, None, target, runner)
