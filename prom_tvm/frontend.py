"""ONNX -> Relax glue: graph normalization, import with fixed shapes, layer names.

TVM's importer turns ``Clip`` into opaque TE calls that a pattern matcher cannot see
through, so constant-bound Clips are first rewritten into ``Max`` / ``Min`` nodes (same
semantics), which import as ``R.maximum`` / ``R.minimum``.  Relax drops ONNX node names, so
layers are traced back to their node through the content of their weight constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .passes.lower_quantized_ops import weight_fingerprint

LAYER_OPS = ("Conv", "Gemm", "MatMul", "ConvInteger", "QLinearConv", "MatMulInteger")


@dataclass(frozen=True)
class OnnxLayer:
    name: str
    op_type: str
    index: int


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            if attr.name == "value":
                consts[node.output[0]] = numpy_helper.to_array(attr.t)
    return consts


def normalize_clips(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite ``Clip(x, lo, hi)`` with constant bounds as ``Min(Max(x, lo), hi)``."""
    consts = _constants(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    changed = False
    for i, node in enumerate(out.graph.node):
        if node.op_type != "Clip":
            nodes.append(node)
            continue
        bounds = {a.name: a.f for a in node.attribute}  # opset < 11 form
        lo = bounds.get("min")
        hi = bounds.get("max")
        inputs = list(node.input)
        ok = True
        for pos, key in ((1, "lo"), (2, "hi")):
            if len(inputs) > pos and inputs[pos]:
                if inputs[pos] not in consts:
                    ok = False
                    break
                v = float(np.asarray(consts[inputs[pos]]).reshape(()))
                lo, hi = (v, hi) if key == "lo" else (lo, v)
        if not ok:
            nodes.append(node)
            continue
        changed = True
        x = inputs[0]
        base = node.name or f"clip_{i}"
        if lo is not None:
            c = f"{base}__lo"
            out.graph.initializer.append(numpy_helper.from_array(np.array(lo, np.float32), c))
            y = node.output[0] if hi is None else f"{base}__max"
            nodes.append(helper.make_node("Max", [x, c], [y], name=f"{base}/max"))
            x = y
        if hi is not None:
            c = f"{base}__hi"
            out.graph.initializer.append(numpy_helper.from_array(np.array(hi, np.float32), c))
            nodes.append(helper.make_node("Min", [x, c], [node.output[0]], name=f"{base}/min"))
        if lo is None and hi is None:
            nodes.append(helper.make_node("Identity", [x], [node.output[0]], name=base))
    if not changed:
        return model
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def layer_index(model: onnx.ModelProto) -> dict[str, OnnxLayer]:
    """Weight fingerprint -> the Conv / Gemm / MatMul node that uses it."""
    consts = _constants(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    index: dict[str, OnnxLayer] = {}
    for i, node in enumerate(model.graph.node):
        if node.op_type not in LAYER_OPS or len(node.input) < 2:
            continue
        name = node.name or f"{node.op_type}_{i}"
        src = node.input[1]
        for _ in range(4):  # look through DequantizeLinear / Identity / Transpose
            if src in consts:
                index.setdefault(weight_fingerprint(consts[src]), OnnxLayer(name, node.op_type, i))
                break
            prod = producers.get(src)
            if prod is None or not prod.input:
                break
            src = prod.input[0]
    return index


def unsupported_ops(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes whose op the Relax ONNX importer cannot convert."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    return [n for n in model.graph.node if n.op_type not in known]


def import_onnx(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
                dtypes: dict[str, str]):
    """Relax IRModule of ``model`` with weights bound as constants."""
    from tvm.relax.frontend.onnx import from_onnx

    bad = unsupported_ops(model)
    if bad:
        ops = sorted({n.op_type for n in bad})
        first = bad[0]
        hint = ""
        if {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"} & set(ops):
            hint = (" Export the model in QDQ format instead (onnxruntime quantize_static with "
                    "quant_format=QuantFormat.QDQ, or prom_tvm.qat.export_onnx).")
        raise ValueError(
            f"unsupported ONNX op(s) {', '.join(ops)}: node {first.name or '<unnamed>'!r} "
            f"({first.op_type}) cannot be imported by TVM's ONNX frontend.{hint}"
        )
    return from_onnx(normalize_clips(model), shape_dict={k: list(v) for k, v in shapes.items()},
                     dtype_dict=dtypes)
