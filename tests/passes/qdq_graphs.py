"""Hand-written QDQ graphs around one op, as onnxruntime's quantize_static writes them, and
helpers to build them and compare with the exact reference."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import prom_tvm
from prom_tvm import onnx_io
from prom_tvm.compiler import lower_to_integer
from prom_tvm.reference import ExactReference, agreement


class QdqGraph:
    """Nodes + initializers; ``q_dq(t, s, z)`` appends the Q -> DQ pair every tensor gets."""

    def __init__(self, shape=(1, 4, 8, 8), opset: int = 17, seed: int = 0):
        self.shape = tuple(shape)
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, value, dtype=np.float32, name: str | None = None) -> str:
        self._n += 1
        name = name or f"c{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        self._n += 1
        out = f"t{self._n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or f"{op}_{self._n}",
                                           **attrs))
        return out

    def q_dq(self, t: str, scale: float, zp: int, dtype=np.uint8) -> str:
        s, z = self.const(scale), self.const(zp, dtype)
        return self.node("DequantizeLinear", [self.node("QuantizeLinear", [t, s, z]), s, z])

    def weight(self, w: np.ndarray, axis: int = 0) -> str:
        """DQ(int8 weight, per-channel scale along ``axis``) like onnxruntime writes."""
        mag = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(1)
        scale = (np.where(mag > 0, mag, 1) / 127).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        wq = np.rint(w / scale.reshape(shape)).astype(np.int8)
        return self.node("DequantizeLinear", [self.const(wq, np.int8), self.const(scale),
                                              self.const(np.zeros_like(scale, np.int8), np.int8)],
                         axis=axis)

    def model(self, out_shape) -> onnx.ModelProto:
        """The graph with the last node's output as the float output ``y``."""
        self.nodes[-1].output[0] = "y"
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8 if self.opset <= 17 else 9
        onnx.checker.check_model(model, full_check=True)
        return model


def inputs(shape, n: int = 3):
    return [np.random.default_rng(s).standard_normal(shape).astype(np.float32) for s in range(n)]


def worst_agreement(model: onnx.ModelProto, lib=None):
    """(max LSB over seeded inputs, top-1 same on all) against the exact reference."""
    lib = lib or prom_tvm.build(model)
    ref = ExactReference(model)
    step = onnx_io.output_step(model)
    shape = lib.input_shapes[lib.input_names[0]]
    got = [agreement(lib(x), ref(x), step) for x in inputs(shape)]
    return max(a.max_lsb for a in got), all(a.top1_same for a in got)


def lowered(model: onnx.ModelProto):
    """(Relax module after integer lowering, layers) of ``model``."""
    shapes = onnx_io.input_shapes(model, None)
    return lower_to_integer(model, shapes, onnx_io.input_dtypes(model))


def op_dtypes(mod, op_name: str) -> list[str]:
    """Output dtypes of every ``relax.<op_name>`` call in ``main``."""
    import tvm
    from tvm import relax

    op = tvm.ir.Op.get(f"relax.{op_name}")
    found: list[str] = []

    @relax.expr_functor.visitor
    class Visit(relax.PyExprVisitor):
        def visit_call_(self, call):
            super().visit_call_(call)
            if call.op == op:
                found.append(str(call.ty.dtype))

    Visit().visit_expr(mod["main"])
    return found
