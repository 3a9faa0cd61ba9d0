"""Bad input to prom_tvm.build: errors that name the file, op, node, flag or input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import prom_tvm
from prom_tvm.models import tiny_qdq_cnn


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.onnx"):
        prom_tvm.build(tmp_path / "nope.onnx")


def test_not_onnx_and_truncated(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a model")
    with pytest.raises(ValueError, match=r"junk\.onnx"):
        prom_tvm.build(junk)
    data = tiny_qdq_cnn(16).SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.onnx"):
        prom_tvm.build(cut)


def test_unsupported_op_names_op_and_node():
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.uint8), "w")
    zero = numpy_helper.from_array(np.array(0, np.uint8), "zp")
    node = helper.make_node("ConvInteger", ["x", "w", "zp", "zp"], ["y"], name="my_conv_int")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 4, 4, 4])], [w, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ValueError, match=r"ConvInteger.*my_conv_int"):
        prom_tvm.build(model)


def test_dynamic_dims_need_input_shapes():
    model = tiny_qdq_cnn(16)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_value")
    dim.dim_param = "batch"
    with pytest.raises(ValueError, match="input_shapes"):
        prom_tvm.build(model)
    lib = prom_tvm.build(model, input_shapes={"input": (1, 3, 16, 16)})
    assert lib(np.zeros((1, 3, 16, 16), np.float32)).shape == (1, 10)


def test_unknown_target_flag_is_named():
    with pytest.raises(ValueError, match="-mfoo"):
        prom_tvm.build(tiny_qdq_cnn(16), target="llvm -mfoo=bar")


def test_cross_target_builds_and_refuses_to_run_here():
    lib = prom_tvm.build(tiny_qdq_cnn(16), target="llvm -mcpu=cortex-a72")
    assert "aarch64" in str(lib.target)
    assert {r["kernel"] for r in lib.summary()} == {"ternary-add", "int8"}
    with pytest.raises(RuntimeError, match="cannot run on this machine"):
        lib(np.zeros((1, 3, 16, 16), np.float32))


def test_onnx_checker_failure_is_reported(tmp_path):
    model = tiny_qdq_cnn(16)
    model.graph.node[-1].input[0] = "does_not_exist"
    path = tmp_path / "broken.onnx"
    onnx.save(model, path)
    with pytest.raises(ValueError, match=r"broken\.onnx"):
        prom_tvm.build(path)


# -- targets prom_tvm cannot compile for (yet) ----------------------------------------------------


@pytest.mark.parametrize("target", ["nvptx -mcpu=sm_80", "opencl", "vulkan", "metal", "rocm"])
def test_gpu_targets_are_refused_not_built_as_cpu_code(target):
    """TVM would quietly build a host-only library for these: refuse before compiling."""
    with pytest.raises(ValueError, match=r"other than CUDA are not supported yet.*llvm CPU"):
        prom_tvm.build(tiny_qdq_cnn(16), target=target)


def test_c_target_is_refused_by_name():
    # TVM's C codegen cannot emit the kernels' llvm.roundeven / llvm.fma (an InternalError)
    with pytest.raises(ValueError, match="kind 'c' is not supported"):
        prom_tvm.build(tiny_qdq_cnn(16), target="c")


@pytest.mark.parametrize(
    ("target", "match"),
    [({"mcpu": 5}, "has no 'kind'"), ({"kind": "llvm", "mcpu": 5}, "'mcpu' must be of type str")],
)
def test_dict_target_with_a_wrongly_typed_value(target, match):
    with pytest.raises(ValueError, match=match):
        prom_tvm.build(tiny_qdq_cnn(16), target=target)


def test_tuning_log_dir_without_a_log_says_how_to_make_one(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist; run python -m prom_tvm.tune"):
        prom_tvm.build(tiny_qdq_cnn(16), tuning_log=tmp_path)


def test_input_shapes_must_be_a_dict():
    with pytest.raises(ValueError, match=r"input_shapes must be a dict.*inputs: \['input'\]"):
        prom_tvm.build(tiny_qdq_cnn(16), input_shapes=[(1, 3, 16, 16)])


# -- 4-bit and 2-bit weights (opset 21) ---------------------------------------------------------

# sub-byte type -> (largest magnitude used, zero point, first opset whose DequantizeLinear takes it)
_SUBBYTE = {TensorProto.INT4: (7, 0, 21), TensorProto.UINT4: (7, 8, 21),
            TensorProto.INT2: (1, 0, 25)}


def _with_subbyte_weights(model: onnx.ModelProto, elem: int) -> onnx.ModelProto:
    """Every Conv/Gemm weight requantized to ``elem``, symmetric per output channel."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    top, zero, opset = _SUBBYTE[elem]
    for node in out.graph.node:
        if node.op_type != "DequantizeLinear" or not node.input[0].endswith("weight_quantized"):
            continue
        q, s, z = (inits[n] for n in node.input)
        w = numpy_helper.to_array(q).astype(np.float64)
        per = (-1,) + (1,) * (w.ndim - 1)
        w *= numpy_helper.to_array(s).astype(np.float64).reshape(per)
        scale = (np.abs(w).reshape(len(w), -1).max(1) / top).astype(np.float32)
        qs = np.clip(np.rint(w / scale.reshape(per)), -top, top).astype(np.int64) + zero
        q.CopyFrom(helper.make_tensor(q.name, elem, qs.shape, qs.flatten().tolist()))
        s.CopyFrom(numpy_helper.from_array(scale, s.name))
        z.CopyFrom(helper.make_tensor(z.name, elem, [len(scale)], [zero] * len(scale)))
    out.opset_import[0].version = opset
    out.ir_version = 10 if opset < 25 else 12
    onnx.checker.check_model(out, full_check=True)
    return out


@pytest.mark.parametrize("elem", list(_SUBBYTE), ids=TensorProto.DataType.Name)
def test_subbyte_weights_compile_and_match_the_reference(elem):
    """TVM's importer dies on packed 4/2-bit tensors ("TensorCopyFromBytes: size mismatch");
    prom_tvm widens them to 8 bit, which the sub-byte model's exact reference must confirm."""
    from prom_tvm.onnx_io import output_step
    from prom_tvm.reference import ExactReference, agreement

    model = _with_subbyte_weights(tiny_qdq_cnn(16), elem)
    lib = prom_tvm.build(model)
    if _SUBBYTE[elem][1] == 0:  # symmetric: the integer kernels, not the float fallback
        assert set(lib.kernel_counts()) == {"ternary-add", "int8"}
    ref = ExactReference(model)
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32)
        assert agreement(lib(x), ref(x), output_step(model)).ok()
