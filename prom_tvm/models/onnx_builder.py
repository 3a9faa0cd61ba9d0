"""A small ONNX graph builder for the seeded CNNs the tests, demo and benchmarks use.

It writes what an eval-mode torch export writes (Conv with folded-BN bias, ReLU6 as
``Clip(0, 6)``, Add, GlobalAveragePool, Flatten, Gemm with ``transB=1``) and draws the weights:
He-style scaling so activations stay in a sane range through many layers, and, for PROM, exactly
ternary 1x1 conv weights per output channel.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# What onnxruntime >= 1.20 and TVM's ONNX frontend both read; torch.onnx.export(opset_version=17)
# writes the same.
OPSET = 17
IR_VERSION = 8


def ternary_weight(rng: np.random.Generator, cout: int, cin: int, gain: float = 2.0) -> np.ndarray:
    """A ``[cout, cin, 1, 1]`` float32 weight with values in ``{-a_c, 0, +a_c}`` per output channel.

    Signs are uniform over {-1, 0, +1} (about a third zeros, every channel has a nonzero), and
    ``a_c`` is He scaling for the nonzero density (``a^2 * density * cin = gain``) times a
    per-channel factor in [0.75, 1.25], as BN folding leaves a different scale per channel.
    """
    signs = rng.integers(-1, 2, size=(cout, cin)).astype(np.float32)
    empty = ~signs.any(axis=1)
    signs[empty, rng.integers(0, cin, size=int(empty.sum()))] = 1.0
    density = float(np.count_nonzero(signs)) / signs.size
    a = np.sqrt(gain / (cin * density)) * rng.uniform(0.75, 1.25, size=(cout, 1))
    return (signs * a.astype(np.float32)).reshape(cout, cin, 1, 1)


class OnnxGraphBuilder:
    """Appends nodes and seeded initializers; ``model()`` returns a checked ``ModelProto``."""

    def __init__(self, seed: int = 0, ternary_pointwise: bool = True) -> None:
        self.rng = np.random.default_rng(seed)
        self.ternary_pointwise = ternary_pointwise
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._clip_bounds: str | None = None

    def input(self, name: str, shape: tuple[int | str, ...]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def output(self, value: str, name: str, shape: tuple[int | str, ...]) -> None:
        """Make ``value`` (the output of the last node) a graph output called ``name``."""
        last = self.nodes[-1]
        if list(last.output) != [value]:
            raise ValueError(f"{value!r} is not the output of the last node {last.name!r}")
        last.output[0] = name
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def conv(
        self,
        name: str,
        x: str,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu6",
        act_name: str | None = None,
        gain: float = 2.0,
    ) -> str:
        """Conv (+ ReLU6/ReLU); pointwise convs get ternary weights when the builder says so.

        ``gain`` is 2 ahead of a ReLU and 1 for a linear layer (He vs LeCun scaling).
        """
        fan_in = cin // groups * kernel * kernel
        if kernel == 1 and groups == 1 and self.ternary_pointwise:
            w = ternary_weight(self.rng, cout, cin, gain)
        else:
            std = np.sqrt(gain / fan_in)
            w = self.rng.standard_normal((cout, cin // groups, kernel, kernel)) * std
            w = w.astype(np.float32)
        b = (self.rng.standard_normal(cout) * 0.1).astype(np.float32)
        out = f"{name}.out"
        pad = kernel // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self.const(f"{name}.weight", w), self.const(f"{name}.bias", b)],
                [out],
                name=name,
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
                group=groups,
                dilations=[1, 1],
            )
        )
        if act is None:
            return out
        return self.activation(act_name or f"{name}.act", out, act)

    def activation(self, name: str, x: str, act: str) -> str:
        out = f"{name}.out"
        if act == "relu6":
            if self._clip_bounds is None:
                self.const("clip.min", np.array(0.0, np.float32))
                self.const("clip.max", np.array(6.0, np.float32))
                self._clip_bounds = "clip"
            self.nodes.append(
                helper.make_node("Clip", [x, "clip.min", "clip.max"], [out], name=name)
            )
        elif act == "relu":
            self.nodes.append(helper.make_node("Relu", [x], [out], name=name))
        else:
            raise ValueError(f"unknown activation {act!r} for {name}; use 'relu6' or 'relu'")
        return out

    def add(self, name: str, a: str, b: str) -> str:
        out = f"{name}.out"
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=name))
        return out

    def global_average_pool(self, name: str, x: str) -> str:
        out = f"{name}.out"
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [out], name=name))
        return out

    def flatten(self, name: str, x: str) -> str:
        out = f"{name}.out"
        self.nodes.append(helper.make_node("Flatten", [x], [out], name=name, axis=1))
        return out

    def gemm(self, name: str, x: str, cin: int, cout: int) -> str:
        """torch's Linear as ONNX writes it: ``Gemm(x, W[cout, cin], b, transB=1)``."""
        w = (self.rng.standard_normal((cout, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
        b = (self.rng.standard_normal(cout) * 0.01).astype(np.float32)
        out = f"{name}.out"
        self.nodes.append(
            helper.make_node(
                "Gemm",
                [x, self.const(f"{name}.weight", w), self.const(f"{name}.bias", b)],
                [out],
                name=name,
                alpha=1.0,
                beta=1.0,
                transB=1,
            )
        )
        return out

    def model(self, graph_name: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.inits)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="prom_tvm",
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model
