"""Tidy the exported QDQ graph into the shape onnxruntime's ``quantize_static`` writes.

Pure ONNX / numpy.  Both steps keep the numbers exactly:

- ``Constant`` nodes become initializers (every quantization parameter is then one);
- a ``Relu`` / ``Clip`` between a ``Conv`` / ``Gemm`` and its ``QuantizeLinear`` is dropped when
  the quantizer's saturation already does the same clamp (``QDQRemovableActivation`` in
  onnxruntime): for a lower bound ``lo`` when ``Q(lo) <= qmin``, for an upper bound ``hi``
  when ``Q(hi) >= qmax``.  ReLU6 ranges observed on ReLU6 outputs always qualify.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

_QRANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Turn ``Constant`` nodes holding a tensor into initializers of the same name."""
    kept = []
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Constant" and set(attrs) == {"value"}:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attrs["value"].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    _set_nodes(graph, kept)


def drop_redundant_activations(graph: onnx.GraphProto) -> int:
    """Remove Relu / Clip nodes that the following QuantizeLinear makes redundant; count them."""
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    dropped = []
    for act in graph.node:
        if act.op_type not in ("Relu", "Clip"):
            continue
        src = producer.get(act.input[0])
        after = users.get(act.output[0], [])
        if (src is None or src.op_type not in ("Conv", "Gemm") or len(after) != 1
                or after[0].op_type != "QuantizeLinear" or len(users[act.input[0]]) != 1
                or act.output[0] in graph_outputs):
            continue
        if _saturation_covers(act, after[0], inits):
            after[0].input[0] = act.input[0]
            dropped.append(act)
    _set_nodes(graph, [n for n in graph.node if all(n is not d for d in dropped)])
    _drop_unused_initializers(graph)
    return len(dropped)


def _saturation_covers(act: onnx.NodeProto, quant: onnx.NodeProto,
                       inits: dict[str, np.ndarray]) -> bool:
    if len(quant.input) < 3 or quant.input[1] not in inits or quant.input[2] not in inits:
        return False
    scale, zp = np.float32(inits[quant.input[1]]), inits[quant.input[2]]
    if scale.size != 1 or zp.dtype not in _QRANGE:
        return False
    qmin, qmax = _QRANGE[zp.dtype]
    zp = int(zp)
    if act.op_type == "Relu":
        lo, hi = 0.0, None
    else:
        bounds = [inits.get(name) if name else None for name in act.input[1:3]]
        if any(name and name not in inits for name in act.input[1:3]):
            return False
        lo = None if len(bounds) < 1 or bounds[0] is None else float(bounds[0])
        hi = None if len(bounds) < 2 or bounds[1] is None else float(bounds[1])

    def quantized(v: float) -> float:
        return float(np.rint(np.float32(v) / scale)) + zp

    low_ok = lo is None or quantized(lo) <= qmin
    high_ok = hi is None or quantized(hi) >= qmax
    return low_ok and high_ok


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for n in graph.node for name in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    nodes = list(nodes)
    del graph.node[:]
    graph.node.extend(nodes)
