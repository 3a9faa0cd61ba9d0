"""Read the compute layers of an ONNX model for the energy report: shapes, weights, kinds.

For every Conv, Gemm and MatMul this finds what the arithmetic is (integer or float, ternary or
not), how many multiply-accumulates it does and how its parameters are stored. Weights are
followed through ``DequantizeLinear`` / ``Identity`` / ``Reshape`` / ``Transpose`` / ``Cast`` to
their constant (initializer or ``Constant`` node); shapes come from ONNX shape inference on the
model with its input shape fixed. Only onnx and numpy are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

__all__ = [
    "KINDS",
    "UNCOUNTED_COMPUTE",
    "LayerCensus",
    "census",
    "is_ternary_per_channel",
    "load_model",
    "measured_storage",
]

KINDS = ("ternary-1x1", "int8-conv", "depthwise", "dense", "float")

# Bits one element takes as stored, by ONNX tensor type.
_BITS = {
    TensorProto.INT2: 2,
    TensorProto.UINT2: 2,
    TensorProto.INT4: 4,
    TensorProto.UINT4: 4,
    TensorProto.INT8: 8,
    TensorProto.UINT8: 8,
    TensorProto.INT16: 16,
    TensorProto.UINT16: 16,
    TensorProto.INT32: 32,
    TensorProto.UINT32: 32,
    TensorProto.INT64: 64,
    TensorProto.FLOAT16: 16,
    TensorProto.BFLOAT16: 16,
    TensorProto.FLOAT: 32,
    TensorProto.DOUBLE: 64,
    TensorProto.FLOAT8E4M3FN: 8,
    TensorProto.FLOAT8E4M3FNUZ: 8,
    TensorProto.FLOAT8E5M2: 8,
    TensorProto.FLOAT8E5M2FNUZ: 8,
}
_FLOAT_TYPES = {
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.FLOAT,
    TensorProto.DOUBLE,
}
# Ops that move data without changing values: an activation read through them is still the
# output of the DequantizeLinear before them.
_DATA_MOVES = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"}
# Heavy ops this report does not count; they are named in the assumptions when present.
UNCOUNTED_COMPUTE = {
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "MatMulInteger",
    "QLinearMatMul",
    "Einsum",
    "LSTM",
    "GRU",
    "RNN",
    "Attention",
}


def load_model(model: onnx.ModelProto | str | Path) -> tuple[onnx.ModelProto, str]:
    """The model and a label for messages; a path that is missing or not ONNX raises."""
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "<onnx.ModelProto>"
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected an ONNX model)")
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # protobuf raises several types for non-ONNX bytes
        raise ValueError(f"{path} is not an ONNX model: {err}") from err
    if not proto.opset_import or not proto.graph.node:
        raise ValueError(f"{path} is not an ONNX model (no graph nodes or opset)")
    return proto, str(path)


def is_ternary_per_channel(values: np.ndarray, axis: int = 0) -> bool:
    """True when every slice along ``axis`` takes values only in ``{-a_c, 0, +a_c}``.

    Exact: a weight that is nearly ternary is not ternary. A channel of zeros counts as ternary.
    """
    w = np.abs(np.moveaxis(np.asarray(values), axis, 0).reshape(values.shape[axis], -1))
    if w.size == 0:
        return False
    top = w.max(axis=1, keepdims=True)
    return bool(np.all((w == 0) | (w == top)))


@dataclass(frozen=True)
class _Weight:
    """A constant weight as the layer computes with it, and how it is stored."""

    values: np.ndarray  # float64, dequantized: exact for int8 x float32 scale
    bits: int  # bits per element as stored (8 for int8, 32 for float32, ...)
    quantized: bool  # came out of DequantizeLinear on integer data
    side_bits: int  # bits of the scales and zero points stored with it
    integer: bool  # the stored data are integers (what DequantizeLinear reads)


@dataclass(frozen=True)
class LayerCensus:
    """One Conv / Gemm / MatMul: its kind, counts and storage (no energy yet)."""

    name: str
    op: str
    kind: str  # one of KINDS
    output_shape: tuple[int, ...]
    macs: int
    act_bits: int | None  # bits of the quantized input activation, None for float input
    weight_bits: int | None  # bits per weight element as stored, None when no constant weight
    float_bits: int  # float width of the layer's output (its arithmetic when kind is float)
    weights: int
    biases: int
    weights_ternary: bool
    nonzero_weights: int
    bias_bits: int  # all bias elements together, as stored
    side_bits: int  # weight scales and zero points, as stored
    outputs: int  # output elements (for the per-output epilogue estimate)
    out_channels: int


class _Graph:
    """Constants, producers, shapes and element types of a shape-inferred graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.consts: dict[str, tuple[np.ndarray, int]] = {
            t.name: (numpy_helper.to_array(t), t.data_type) for t in g.initializer
        }
        self.producers: dict[str, onnx.NodeProto] = {}
        for node in g.node:
            for out in node.output:
                self.producers[out] = node
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                const = _constant_node_value(node)
                if const is not None:
                    self.consts[node.output[0]] = const
        self.types: dict[str, onnx.TypeProto] = {}
        for vi in [*g.input, *g.value_info, *g.output]:
            self.types[vi.name] = vi.type
        for name, (arr, dtype) in self.consts.items():
            self.types.setdefault(name, onnx.helper.make_tensor_type_proto(dtype, arr.shape))

    def shape(self, name: str) -> tuple[int, ...] | None:
        """Static shape of a tensor, None when unknown or symbolic."""
        t = self.types.get(name)
        if t is None or not t.tensor_type.HasField("shape"):
            return None
        dims = t.tensor_type.shape.dim
        if not all(d.HasField("dim_value") for d in dims):
            return None
        return tuple(int(d.dim_value) for d in dims)

    def elem_type(self, name: str) -> int | None:
        t = self.types.get(name)
        return t.tensor_type.elem_type if t is not None else None

    def weight(self, name: str) -> _Weight | None:
        """The constant behind ``name`` (through DQ / Identity / Reshape / ...), else None."""
        if not name:
            return None
        if name in self.consts:
            arr, dtype = self.consts[name]
            values = np.asarray(arr, dtype=np.float64)
            return _Weight(values, _BITS.get(dtype, 32), False, 0, dtype not in _FLOAT_TYPES)
        node = self.producers.get(name)
        if node is None:
            return None
        op = node.op_type
        if op == "DequantizeLinear":
            return self._dequantize(node)
        src = self.weight(node.input[0]) if node.input else None
        if src is None:
            return None
        if op in ("Identity", "Cast"):
            return src
        if op == "Transpose":
            perm = _attr(node, "perm", None)
            return _replace(src, np.transpose(src.values, perm))
        if op == "Reshape":
            shape = self.consts.get(node.input[1])
            if shape is None:
                return None
            allowzero = _attr(node, "allowzero", 0)
            target = [
                src.values.shape[i] if (d == 0 and not allowzero) else int(d)
                for i, d in enumerate(shape[0].tolist())
            ]
            return _replace(src, src.values.reshape(target))
        return None

    def _dequantize(self, node: onnx.NodeProto) -> _Weight | None:
        x = self.weight(node.input[0])
        scale = self.weight(node.input[1])
        if x is None or scale is None:
            return None
        q = x.values
        zp = self.weight(node.input[2]) if len(node.input) > 2 else None
        axis = _attr(node, "axis", 1)
        block = _attr(node, "block_size", 0)
        if zp is not None:
            q = q - _expand(zp.values, q.shape, axis, block)
        values = q * _expand(scale.values, q.shape, axis, block)
        side = scale.values.size * scale.bits + (zp.values.size * zp.bits if zp else 0)
        return _Weight(values, x.bits, x.integer, side, False)

    def activation_bits(self, name: str) -> int | None:
        """Bits of the quantized activation behind ``name``; None when it is a float tensor."""
        for _ in range(64):  # a chain of data moves is short; bound it against cycles
            node = self.producers.get(name)
            if node is None:
                return None
            if node.op_type == "DequantizeLinear":
                dtype = self.elem_type(node.input[0])
                return None if dtype is None or dtype in _FLOAT_TYPES else _BITS.get(dtype, 8)
            if node.op_type not in _DATA_MOVES:
                return None
            name = node.input[0]
        return None


def _constant_node_value(node: onnx.NodeProto) -> tuple[np.ndarray, int] | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t), a.t.data_type
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32), TensorProto.FLOAT
        if a.name == "value_floats":
            return np.array(a.floats, dtype=np.float32), TensorProto.FLOAT
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64), TensorProto.INT64
        if a.name == "value_ints":
            return np.array(a.ints, dtype=np.int64), TensorProto.INT64
    return None


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _replace(w: _Weight, values: np.ndarray) -> _Weight:
    return _Weight(values, w.bits, w.quantized, w.side_bits, w.integer)


def _expand(p: np.ndarray, shape: tuple[int, ...], axis: int, block: int) -> np.ndarray:
    """A DequantizeLinear scale / zero point broadcast to the data's shape."""
    if p.size == 1:
        return p.reshape(())
    axis = axis % len(shape)
    if block:
        p = np.repeat(p, block, axis=axis)
        return np.take(p, np.arange(shape[axis]), axis=axis)
    view = [1] * len(shape)
    view[axis] = -1
    return p.reshape(view)


def _fix_input_shapes(model: onnx.ModelProto, label: str) -> tuple[onnx.ModelProto, list[str]]:
    """A copy with every graph input fully static; a dynamic batch (dim 0) becomes 1."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    inits = {t.name for t in fixed.graph.initializer}
    notes = []
    for inp in fixed.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        if not inp.type.tensor_type.HasField("shape"):
            raise ValueError(
                f"{label}: input {inp.name!r} has no shape; the report needs a fixed input "
                "shape (set it when exporting, or with onnx.tools.update_model_dims)"
            )
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if i == 0:
                notes.append(f"input {inp.name!r} has a dynamic batch; it is taken as 1")
                d.Clear()
                d.dim_value = 1
                continue
            raise ValueError(
                f"{label}: input {inp.name!r} dimension {i} is dynamic "
                f"({d.dim_param or 'unknown'}); the report needs a fixed input shape "
                "(fix it with python -m onnxruntime.tools.make_dynamic_shape_fixed or "
                "onnx.tools.update_model_dims)"
            )
    return fixed, notes


def measured_storage(
    model: onnx.ModelProto, path: str | Path | None = None
) -> dict[str, int | None]:
    """What the model really takes, in bytes: the file on disk (None for a ModelProto), the
    serialized model, every initializer's data, and the data of the initializers the Conv /
    Gemm / MatMul layers read (weights and biases, through DequantizeLinear, with their scales
    and zero points) -- the measured counterpart of the report's computed storage."""
    from prom_tvm.onnx_io import tensor_data_bytes

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    layer_inits: set[str] = set()
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
            continue
        todo = list(node.input[1:])
        for _ in range(16 * max(1, len(todo))):  # through DQ / Identity / Reshape ...
            if not todo:
                break
            name = todo.pop()
            if name in inits:
                layer_inits.add(name)
            elif name in producer and producer[name].op_type in (
                    "DequantizeLinear", "Identity", "Reshape", "Transpose", "Cast"):
                todo.extend(producer[name].input)
    return {
        "file_bytes": Path(path).stat().st_size if path is not None else None,
        "model_bytes": model.ByteSize(),
        "initializer_bytes": sum(tensor_data_bytes(t) for t in g.initializer),
        "layer_initializer_bytes": sum(tensor_data_bytes(inits[n]) for n in layer_inits),
    }


def census(model: onnx.ModelProto, label: str) -> tuple[list[LayerCensus], dict, list[str]]:
    """Every Conv / Gemm / MatMul of ``model`` in graph order.

    Returns the layers, the static input shapes, and notes for the assumptions (dynamic batch
    taken as 1, uncounted heavy ops).
    """
    fixed, notes = _fix_input_shapes(model, label)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception as err:
        raise ValueError(f"{label}: ONNX shape inference failed: {err}") from err
    g = _Graph(inferred)
    inits = {t.name for t in inferred.graph.initializer}
    inputs = {i.name: g.shape(i.name) for i in inferred.graph.input if i.name not in inits}
    layers = []
    uncounted: dict[str, int] = {}
    for index, node in enumerate(inferred.graph.node):
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            layers.append(_layer(g, node, index, label))
        elif node.op_type in UNCOUNTED_COMPUTE:
            uncounted[node.op_type] = uncounted.get(node.op_type, 0) + 1
    if uncounted:
        listed = ", ".join(f"{n} {op}" for op, n in sorted(uncounted.items()))
        notes.append(f"NOT counted (op types this report does not cost): {listed}")
    return layers, inputs, notes


def _layer(g: _Graph, node: onnx.NodeProto, index: int, label: str) -> LayerCensus:
    name = node.name or f"{node.op_type}_{index}({node.output[0]})"
    out_shape = g.shape(node.output[0])
    if out_shape is None:
        raise ValueError(
            f"{label}: layer {name} ({node.op_type}): output shape unknown after shape "
            "inference; give the model a fixed input shape"
        )
    outputs = math.prod(out_shape)
    x_name, w_name = node.input[0], node.input[1]
    w = g.weight(w_name)
    bias = g.weight(node.input[2]) if len(node.input) > 2 else None
    act_bits = g.activation_bits(x_name)
    float_bits = _BITS.get(g.elem_type(node.output[0]) or TensorProto.FLOAT, 32)

    depthwise = one_by_one = False
    if node.op_type == "Conv":
        w_shape = w.values.shape if w is not None else g.shape(w_name)
        if w_shape is None:
            raise ValueError(f"{label}: layer {name} (Conv): weight shape unknown")
        reduction = math.prod(w_shape[1:])
        out_axis = 0
        groups = _attr(node, "group", 1)
        depthwise = groups > 1 and w_shape[1] == 1
        one_by_one = all(k == 1 for k in w_shape[2:])
    else:
        x_shape = g.shape(x_name)
        if x_shape is None:
            raise ValueError(f"{label}: layer {name} ({node.op_type}): input shape unknown")
        trans_a = node.op_type == "Gemm" and _attr(node, "transA", 0)
        reduction = x_shape[0] if trans_a else x_shape[-1]
        out_axis = 0 if (node.op_type == "Gemm" and _attr(node, "transB", 0)) else -1
        if w is None:  # activation x activation: both operands must be quantized for int math
            w_bits = g.activation_bits(w_name)
            act_bits = max(act_bits, w_bits) if (act_bits and w_bits) else None
    macs = outputs * reduction

    ternary = w is not None and is_ternary_per_channel(w.values, out_axis)
    if w is None:
        integer = act_bits is not None
    else:
        # Integer arithmetic needs a quantized input; float weights count only when ternary
        # (then the layer adds, whatever the weights' encoding).
        pointwise_ternary = one_by_one and not depthwise and ternary
        integer = act_bits is not None and (w.quantized or pointwise_ternary)
    if not integer:
        kind = "float"
    elif node.op_type == "Conv" and depthwise:
        kind = "depthwise"
    elif node.op_type == "Conv" and one_by_one and ternary:
        kind = "ternary-1x1"
    elif node.op_type == "Conv":
        kind = "int8-conv"
    else:
        kind = "dense"

    n_w = int(w.values.size) if w is not None else 0
    out_channels = out_shape[1] if node.op_type == "Conv" else out_shape[-1]
    side = w.side_bits if w is not None else 0
    if kind == "ternary-1x1" and not w.quantized:
        side = out_channels * 32  # the per-channel scale a_c, stored as float32
    return LayerCensus(
        name=name,
        op=node.op_type,
        kind=kind,
        output_shape=out_shape,
        macs=int(macs),
        act_bits=act_bits if integer else None,
        weight_bits=w.bits if w is not None else None,
        float_bits=float_bits,
        weights=n_w,
        biases=int(bias.values.size) if bias is not None else 0,
        weights_ternary=bool(ternary),
        nonzero_weights=int(np.count_nonzero(w.values)) if w is not None else 0,
        bias_bits=int(bias.values.size * bias.bits) if bias is not None else 0,
        side_bits=int(side),
        outputs=int(outputs),
        out_channels=int(out_channels),
    )
