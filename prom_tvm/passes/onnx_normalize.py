"""ONNX -> ONNX normalizations that run before TVM's importer sees the graph.

* every node gets a unique, non-empty name (the key that ties Relax layers back to it);
* constant subgraphs are folded into initializers: torch writes ``F.pad``'s pads as a
  ConstantOfShape/Concat/Reshape/Slice/Cast chain, and onnxruntime quantizes a Pad's
  ``constant_value`` into ``DequantizeLinear(QuantizeLinear(v))``; TVM's Pad converter
  needs both as plain constants ("Dynamic pads are not supported yet", or
  ``'Call' object has no attribute 'value'``);
* a weight shared by two Conv / Gemm / MatMul nodes is duplicated, so that each layer's
  weight is its own Relax constant (layers are named through that constant's identity).

Folding never turns a weight's ``DequantizeLinear`` into float: a DequantizeLinear of
constants is folded only when every consumer reads it as a parameter (a Pad value, a
Resize scale, ...), because the integer pattern matcher needs to see the quantized form.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "QLinearConv",
             "MatMulInteger")

# Inputs that TVM's converters read as compile-time constants (attribute-like).
_PARAM_SLOTS = {
    "Pad": {1, 2, 3}, "Resize": {1, 2, 3}, "Upsample": {1}, "Reshape": {1},
    "Slice": {1, 2, 3, 4}, "Clip": {1, 2}, "Expand": {1}, "Tile": {1}, "Unsqueeze": {1},
    "Squeeze": {1}, "ConstantOfShape": {0}, "Split": {1}, "TopK": {1},
    "ReduceMean": {1}, "ReduceSum": {1}, "ReduceMax": {1}, "ReduceMin": {1},
}
# Never folded: random or graph-structured ops, and the QDQ weight encodings handled above.
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
            "Multinomial", "Bernoulli", "If", "Loop", "Scan"}
_MAX_FOLD_ELEMENTS = 1 << 22


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy in which every node has a unique non-empty name (``<Op>_<index>`` if none)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    seen: set[str] = set()
    for i, node in enumerate(out.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        node.name = name
    return out


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value":
                consts[node.output[0]] = numpy_helper.to_array(attr.t)
            elif attr.name in ("value_float", "value_int"):
                dtype = np.float32 if attr.name == "value_float" else np.int64
                consts[node.output[0]] = np.array(onnx.helper.get_attribute_value(attr), dtype)
            elif attr.name in ("value_floats", "value_ints"):
                dtype = np.float32 if attr.name == "value_floats" else np.int64
                consts[node.output[0]] = np.array(onnx.helper.get_attribute_value(attr), dtype)
    return consts


def _consumers(model: onnx.ModelProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in model.graph.node:
        for pos, name in enumerate(node.input):
            if name:
                uses.setdefault(name, []).append((node, pos))
    return uses


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray | None], opset: int):
    from onnx.reference import ReferenceEvaluator

    feeds = {name: v for name, v in zip(node.input, inputs, strict=True) if name}
    return ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace nodes whose inputs are all constants by initializers (see module docstring)."""
    consts = _constants(model)
    uses = _consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    opset = opset_of(model)
    keep, new_inits = [], []
    for node in model.graph.node:
        foldable = (
            node.op_type not in _NO_FOLD and node.domain in ("", "ai.onnx")
            and node.op_type != "Constant" and all(i in consts for i in node.input if i)
            and not any(o in graph_outputs for o in node.output)
            and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                        for a in node.attribute)
        )
        if foldable and node.op_type == "DequantizeLinear":
            users = uses.get(node.output[0], [])
            foldable = bool(users) and all(pos in _PARAM_SLOTS.get(u.op_type, ())
                                           for u, pos in users)
        if foldable:
            try:
                values = _evaluate(node, [consts[i] if i else None for i in node.input], opset)
            except Exception:  # an op onnx.reference lacks: TVM imports it
                values = None
            if values is not None and all(np.asarray(v).size <= _MAX_FOLD_ELEMENTS
                                          for v in values):
                for name, v in zip(node.output, values, strict=False):
                    v = np.asarray(v)
                    consts[name] = v
                    new_inits.append(numpy_helper.from_array(v, name))
                continue
        keep.append(node)
    if not new_inits:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    out.graph.initializer.extend(new_inits)
    _drop_unused_initializers(out)
    return out


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    inits = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)


def unshare_layer_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every Conv / Gemm / MatMul its own weight initializer (and DQ chain)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    producers = {o: n for n in out.graph.node for o in n.output}
    inits = {t.name: t for t in out.graph.initializer}
    claimed: set[str] = set()
    extra_inits, extra_nodes = [], {}
    for node in out.graph.node:
        if node.op_type not in LAYER_OPS or len(node.input) < 2:
            continue
        chain, src = [], node.input[1]
        while src not in inits and src in producers and len(chain) < 4:
            prod = producers[src]
            if not prod.input:
                break
            chain.append(prod)
            src = prod.input[0]
        if src not in inits:
            continue
        if src not in claimed:
            claimed.add(src)
            continue
        # copy initializer and chain under fresh names, then point this node at the copy
        tag = f"__{node.name}"
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[src])
        copy.name = src + tag
        extra_inits.append(copy)
        prev = copy.name
        for prod in reversed(chain):
            dup = onnx.NodeProto()
            dup.CopyFrom(prod)
            dup.name = prod.name + tag
            dup.input[0] = prev
            del dup.output[:]
            dup.output.append(prod.output[0] + tag)
            extra_nodes.setdefault(node.name, []).append(dup)
            prev = dup.output[0]
        node.input[1] = prev
    if not extra_inits:
        return model
    out.graph.initializer.extend(extra_inits)
    nodes = []
    for node in out.graph.node:
        nodes.extend(extra_nodes.get(node.name, []))  # the copied chain right before its user
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """All of the above, in order: names first (folding removes nodes)."""
    return unshare_layer_weights(fold_constants(name_nodes(model)))
