"""``pack_ternary`` and ``python -m prom_tvm.pack``: ternary QDQ weights stored at 2 bits.

A PROM model stores its ternary 1x1 weights in a full int8 byte: ``{-1, 0, 1}`` from
``prom_tvm.qat``, ``{-127, 0, 127}`` from onnxruntime's quantizer. ONNX has had 2-bit integers
since opset 25 (``TensorProto.INT2``, four values per byte), so the same model can be a
standard QDQ file at 2 bits per ternary weight. ``pack_ternary`` rewrites every weight
initializer behind a ``DequantizeLinear`` that is exactly ternary per output channel,
``{-a_c, 0, +a_c}``, as INT2 ``{-1, 0, 1}`` with ``a_c`` folded into the scale,
``s'_c = fp32(a_c * s_c)``; with ``int4=True`` other weights whose values fit 4 bits (after
dividing out the channel's common factor) become INT4.

The model's numbers do not change, bit for bit: DequantizeLinear computes ``fp32(q * s)`` with
one rounding, so ``fp32(127 * s)`` (old) and ``fp32(1 * s')`` (new) are the same float32, and
every packed tensor is checked element by element before it is written (a fold that would
change one dequantized value leaves that weight as it was, with the reason). The product
``127 * s`` itself is rarely exact in float32 (77 of 9,888 channels of onnxruntime's
MobileNetV2); it need not be, as the check is on the values DequantizeLinear produces.

``prom_tvm.build`` reads the packed file into the same integer layers as the int8 one:
``onnx_io.unpack_subbyte_weights`` widens the codes and, where the layer has an int32 bias
(whose scale ``s_x * s`` still says the units), multiplies the magnitude back in. Each
packed weight is read back that way here, and the report says whether its layer compiles
exactly as from the int8 file (``same_build``; a layer without a bias rescales by ``s'``).

The opset is raised to 25 (INT2) / 21 (INT4) with onnx's version converter and the IR version
to 13 / 10 (the IR versions that added these types); the result must pass
``onnx.checker.check_model(full_check=True)``. The command also runs both files in
onnxruntime's unfused session and refuses to write a packed file whose outputs differ.

onnxruntime 1.32 runs the packed file only without its QDQ fusion: with the default session
options its ``QDQSelectorActionTransformer`` turns ``DequantizeLinear(INT2) -> Conv`` into a
``QLinearConv``, which has no INT2 kernel, and the session fails to load ("Type
'tensor(int2)' ... of operator (QLinearConv) ... is invalid"). Load it with
``disabled_optimizers=["QDQSelectorActionTransformer"]`` (or ``ORT_ENABLE_BASIC``); it then
runs float convolutions of the dequantized weights (measured, torchvision MobileNetV2 224, one
thread, interleaved: 24.4 ms vs 5.3 ms for the int8 file's fused kernels). ``ORT_WORKAROUND``
names the option.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from prom_tvm import onnx_io

__all__ = [
    "ORT_WORKAROUND",
    "LayerPack",
    "PackReport",
    "main",
    "onnxruntime_default_session_error",
    "pack_ternary",
    "raise_opset",
    "same_outputs",
]

INT2_OPSET, INT2_IR = 25, 13  # TensorProto.INT2: opset 25, IR version 13 (onnx.proto)
INT4_OPSET, INT4_IR = 21, 10
_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_WEIGHT_TYPES = (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16,
                 TensorProto.INT4, TensorProto.UINT4)
_NP = {TensorProto.INT2: onnx.helper.tensor_dtype_to_np_dtype(TensorProto.INT2),
       TensorProto.INT4: onnx.helper.tensor_dtype_to_np_dtype(TensorProto.INT4)}
KINDS = ("pointwise", "depthwise", "conv", "dense")
# onnxruntime (1.32) fuses DequantizeLinear(INT2) -> Conv into a QLinearConv it cannot run
ORT_WORKAROUND = {"disabled_optimizers": ["QDQSelectorActionTransformer"]}


@dataclass(frozen=True)
class LayerPack:
    """One layer's weight: how it was stored, how it is stored now, and why."""

    weight: str  # initializer name
    layer: str  # the Conv / Gemm / MatMul node reading it
    kind: str  # one of KINDS
    dtype_before: str  # "INT8", ...
    dtype_after: str  # "INT2", "INT4", or dtype_before when not packed
    bytes_before: int  # data bytes of the weight and its zero point in the file
    bytes_after: int
    folded: int = 1  # largest factor folded into a channel's scale (127 for {-127, 0, 127})
    same_build: bool | None = None  # packed: build reads it back as the original layer
    note: str = ""  # why it was not packed (empty when packed or simply not ternary)

    @property
    def packed(self) -> bool:
        return self.dtype_after != self.dtype_before


@dataclass(frozen=True)
class PackReport:
    """What ``pack_ternary`` did: per layer, per kind, and for the whole file."""

    layers: tuple[LayerPack, ...]
    opset: tuple[int, int]  # default-domain opset before, after
    ir_version: tuple[int, int]
    model_bytes: tuple[int, int]  # serialized model before, after
    fp16_weight_bytes: int  # every weight and bias of the layers at 2 bytes: the baseline
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def packed(self) -> tuple[LayerPack, ...]:
        return tuple(r for r in self.layers if r.packed)

    def by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.layers:
            k = out.setdefault(r.kind, {"layers": 0, "packed": 0, "bytes_before": 0,
                                        "bytes_after": 0})
            k["layers"] += 1
            k["packed"] += r.packed
            k["bytes_before"] += r.bytes_before
            k["bytes_after"] += r.bytes_after
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["by_kind"] = self.by_kind()
        return d

    def format(self) -> str:
        """The per-kind table, the file sizes against float16, and every skipped weight."""
        head = f"{'layer kind':<11} {'layers':>6} {'packed':>6} {'weight bytes':>14} " \
               f"{'packed bytes':>13}  stored as"
        lines = [head, "-" * len(head)]
        for kind, k in sorted(self.by_kind().items(), key=lambda kv: _kind_order(kv[0])):
            types = sorted({r.dtype_after for r in self.layers if r.kind == kind})
            lines.append(f"{kind:<11} {k['layers']:>6} {k['packed']:>6} {k['bytes_before']:>14,} "
                         f"{k['bytes_after']:>13,}  {', '.join(types)}")
        before, after = self.model_bytes
        lines += ["-" * len(head),
                  f"model: {before:,} -> {after:,} bytes ({_ratio(before, after):.2f}x smaller); "
                  f"float16 weights {self.fp16_weight_bytes:,} bytes: "
                  f"{_ratio(self.fp16_weight_bytes, before):.2f}x -> "
                  f"{_ratio(self.fp16_weight_bytes, after):.2f}x",
                  f"opset {self.opset[0]} -> {self.opset[1]}, "
                  f"IR version {self.ir_version[0]} -> {self.ir_version[1]}"]
        rescaled = [r for r in self.packed if r.same_build is False]
        if rescaled:
            lines.append(f"{len(rescaled)} packed layers have no int32 DequantizeLinear bias to "
                         f"read the integer units back from (first: {rescaled[0].layer}); "
                         "prom_tvm.build rescales them by the folded scale (same kernels, a "
                         "rounding tie may differ)")
        skipped = [r for r in self.layers if r.note]
        for r in skipped:
            lines.append(f"not packed: {r.weight} ({r.layer}): {r.note}")
        lines.extend(self.notes)
        return "\n".join(lines)


def _kind_order(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


# ---------------------------------------------------------------------------------------------
# one weight
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Packed:
    codes: np.ndarray  # the new integers, same shape as the weight
    scale: np.ndarray  # float32, the scale's shape
    elem: int  # TensorProto.INT2 / INT4
    folded: int


def _fold(v: np.ndarray, s: np.ndarray, axis: int | None, factor: np.ndarray) -> tuple:
    """(codes, scale) with ``factor`` per channel divided out of the values, multiplied into
    the scale; and whether every dequantized value stays the same float32."""
    per = (lambda a: a.reshape(1, -1)) if axis is None else (
        lambda a: np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1))
    vm = per(v)
    codes = vm // factor[:, None]
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught just below
        scale = (factor.astype(np.float32) * s.reshape(-1)).astype(np.float32)
        old = vm.astype(np.float32) * s.reshape(-1)[:, None]
        new = codes.astype(np.float32) * scale[:, None]
    same = np.isfinite(scale).all() and np.array_equal(old.view(np.uint32), new.view(np.uint32))
    if axis is None:
        out = codes.reshape(v.shape)
    else:
        moved = [v.shape[axis]] + [d for i, d in enumerate(v.shape) if i != axis]
        out = np.moveaxis(codes.reshape(moved), 0, axis)
    return np.ascontiguousarray(out), scale.reshape(s.shape), same


def _pack_values(v: np.ndarray, s: np.ndarray, axis: int | None,
                 int4: bool) -> _Packed | str | None:
    """The packed form of integer values ``v`` (zero point already 0) with scale ``s``; a
    reason (str) when they are ternary / 4-bit but cannot be packed exactly; None when there
    is nothing to pack."""
    vm = np.abs(v.reshape(1, -1) if axis is None else
                np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1))
    top = vm.max(axis=1)
    reason = None
    if np.all((vm == 0) | (vm == top[:, None])):  # ternary: {-a_c, 0, +a_c} per channel
        factor = np.where(top > 0, top, 1)
        codes, scale, same = _fold(v, s, axis, factor)
        if same:
            return _Packed(codes, scale, TensorProto.INT2, int(factor.max()))
        reason = ("folding |w| into the scale would change dequantized values "
                  "(fp32(a * s) overflows float32)")
    if not int4:
        return reason
    g = np.gcd.reduce(vm, axis=1)
    for factor in (np.where(g > 0, g, 1), np.ones_like(g)):
        codes, scale, same = _fold(v, s, axis, factor)
        if same and codes.min(initial=0) >= -8 and codes.max(initial=0) <= 7:
            return _Packed(codes, scale, TensorProto.INT4, int(factor.max()))
    return reason


def _layer_kind(node: onnx.NodeProto, dims: Sequence[int]) -> str:
    if node.op_type in ("Gemm", "MatMul"):
        return "dense"
    if node.op_type == "Conv" and len(dims) >= 3:
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if groups > 1 and dims[1] == 1:
            return "depthwise"
        if groups == 1 and all(d == 1 for d in dims[2:]):
            return "pointwise"
    return "conv"


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------


def raise_opset(model: onnx.ModelProto, opset: int, ir_version: int) -> onnx.ModelProto:
    """A copy of ``model`` at default-domain opset >= ``opset`` and IR >= ``ir_version``.

    onnx's version converter rewrites ops whose form changed (a ``ReduceMean`` ``axes``
    attribute becomes an input at 18, ...); where it has no adapter, the opset is raised as
    is. Either way the result must pass ``onnx.checker`` with full shape inference, else a
    ``ValueError`` names the problem. The model's own ``value_info`` is kept (the converter
    adds inferred shapes for every tensor, which only makes the file bigger).
    """
    from onnx import version_converter

    from prom_tvm.passes.onnx_normalize import opset_of

    out = onnx.ModelProto()
    out.CopyFrom(model)
    if opset_of(model) < opset:
        try:
            converted = version_converter.convert_version(model, opset)
        except Exception:  # the converter raises RuntimeError / ValueError / C++ errors
            converted = None
        if converted is not None:
            out = converted
            del out.graph.value_info[:]
            out.graph.value_info.extend(model.graph.value_info)
        else:
            for o in out.opset_import:
                if o.domain in ("", "ai.onnx"):
                    o.version = opset
    out.ir_version = max(out.ir_version, ir_version)
    try:
        onnx.checker.check_model(out, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"at opset {opset} the model is not valid ONNX ({first}); it cannot "
                         f"hold INT2/INT4 weights") from err
    return out


def pack_ternary(model: onnx.ModelProto | str | os.PathLike, *, int4: bool = False,
                 strip: bool = False) -> tuple[onnx.ModelProto, PackReport]:
    """``model`` with its exactly ternary QDQ weights stored as INT2 (and, with ``int4``, the
    other weights that fit as INT4), every dequantized value unchanged.

    Parameters
    ----------
    model : onnx.ModelProto or path
        A QDQ model: weights behind ``DequantizeLinear`` (per-channel or per-tensor float32
        scale, zero point 0), as written by ``prom_tvm.qat.export_onnx`` or onnxruntime's
        ``quantize_static``.
    int4 : bool
        Also store non-ternary weights as INT4 where their values, divided by the channel's
        greatest common divisor, fit [-8, 7] (with the divisor folded into the scale).
    strip : bool
        Also drop what no runtime reads: ``value_info`` (shape annotations, which shape
        inference recomputes) and the names of QuantizeLinear / DequantizeLinear nodes (layer
        nodes keep theirs). Tensor names, and so every output, are unchanged.

    Returns
    -------
    (onnx.ModelProto, PackReport)
        The packed model (a copy; opset raised only when something was packed) and the
        report. When nothing could be packed the model is returned unchanged.

    Raises
    ------
    ValueError
        Not a valid ONNX model, no quantized weights (not a QDQ model), a malformed 4/2-bit
        initializer (named), or a model that is not valid at opset 25.
    """
    model = onnx_io.load_onnx(model)
    for t in model.graph.initializer:
        onnx_io.check_subbyte_tensor(t)
    inits = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in model.graph.node:
        for pos, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, pos))

    rows: list[dict] = []
    plans: list[tuple[onnx.NodeProto, _Packed, int]] = []  # (DQ node, packed, row index)
    fp16 = 0
    for node in model.graph.node:
        if node.op_type in _LAYER_OPS:
            fp16 += sum(2 * _numel(inits[i]) for i in _param_initializers(node, inits, producer))
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        layers = [(n, p) for n, p in consumers.get(node.output[0], []) if n.op_type in _LAYER_OPS
                  and p == 1]
        if not layers:
            continue  # an activation, a bias or another constant: not a layer's weight
        layer = layers[0][0]
        t = inits[node.input[0]]
        row = dict(weight=t.name, layer=layer.name or layer.op_type,
                   kind=_layer_kind(layer, t.dims), dtype_before=_type_name(t.data_type),
                   dtype_after=_type_name(t.data_type),
                   bytes_before=_weight_bytes(node, inits), bytes_after=_weight_bytes(node, inits))
        result = _plan(node, t, inits, uses, int4)
        if isinstance(result, _Packed):
            plans.append((node, result, len(rows)))
            row.update(folded=result.folded)
        elif isinstance(result, str):
            row.update(note=result)
        rows.append(row)
    if not rows:
        raise ValueError(
            "no DequantizeLinear weights found: pack_ternary rewrites QDQ models (weights as "
            "integers behind DequantizeLinear). Quantize the model first, e.g. with "
            "prom_tvm.qat.export_onnx or onnxruntime.quantization.quantize_static "
            "(prom_tvm.models.quantize_qdq)")
    before_bytes = model.ByteSize()
    opset0 = _opset(model)
    if not plans:
        report = PackReport(tuple(LayerPack(**r) for r in rows), (opset0, opset0),
                            (model.ir_version,) * 2, (before_bytes, before_bytes), fp16)
        return model, report

    has_int2 = any(p.elem == TensorProto.INT2 for _, p, _ in plans)
    out = raise_opset(model, INT2_OPSET if has_int2 else INT4_OPSET,
                      INT2_IR if has_int2 else INT4_IR)
    _apply(out, plans, uses)
    size = out.ByteSize()
    zero_points = _drop_zero_points(out)
    dead = _drop_unused(out)
    tidy = size - out.ByteSize()
    stripped = _strip_metadata(out) if strip else 0
    onnx_io.load_onnx(out)  # the full check again, now with the packed types
    same = _read_back(model, out, [n for n, _, _ in plans])
    for (node, packed, i), ok in zip(plans, same, strict=True):
        rows[i].update(dtype_after=_type_name(packed.elem),
                       bytes_after=_weight_bytes(_node_by_output(out, node.output[0]),
                                                 {t.name: t for t in out.graph.initializer}),
                       same_build=ok)
    notes = []
    if opset0 < _opset(out):
        notes.append(f"opset raised from {opset0} to {_opset(out)} (onnx version converter; "
                     "onnx.checker full check passed)")
    if zero_points or dead:
        notes.append(f"dropped {zero_points} all-zero weight / bias zero points (ONNX's default) "
                     f"and {dead} nodes no output depends on: {tidy:,} bytes")
    if strip:
        notes.append(f"--strip: dropped value_info and the QuantizeLinear / DequantizeLinear "
                     f"node names: {stripped:,} bytes")
    report = PackReport(tuple(LayerPack(**r) for r in rows), (opset0, _opset(out)),
                        (model.ir_version, out.ir_version), (before_bytes, out.ByteSize()),
                        fp16, tuple(notes))
    return out, report


def _plan(node: onnx.NodeProto, t: onnx.TensorProto, inits: dict, uses: dict,
          int4: bool) -> _Packed | str | None:
    """The packed form of one DequantizeLinear weight; why it cannot be packed (a weight
    whose values would pack, but its layout does not allow it); or None (nothing to pack)."""
    if t.data_type in (TensorProto.INT2, TensorProto.UINT2):
        return "already 2-bit"
    if t.data_type not in _WEIGHT_TYPES or not _numel(t):
        return None
    q = numpy_helper.to_array(t).astype(np.int64)
    s = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    per_axis = None
    if s is not None and s.size > 1:
        if not (q.ndim and -q.ndim <= axis < q.ndim and s.ndim == 1
                and s.size == q.shape[axis]):
            return None  # not a per-channel layout this reads (onnx_io names malformed ones)
        per_axis = axis % q.ndim
    if not _packable(q, per_axis, int4):
        return None
    if uses.get(t.name, 0) != 1:
        return f"the initializer is read by {uses.get(t.name, 0)} nodes"
    if any(a.name == "block_size" and a.i for a in node.attribute):
        return "blocked quantization (block_size) is not packed"
    if s is None:
        return "its scale is not an initializer"
    if s.dtype != np.float32:
        return f"its scale is {s.dtype}; only float32 scales are folded"
    if not (np.isfinite(s).all() and (s > 0).all()):
        return "its scale is not finite and positive"
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in inits:
            return "its zero point is not an initializer"
        if numpy_helper.to_array(inits[node.input[2]]).astype(np.int64).any():
            return "asymmetric weights (zero point != 0) are not packed"
    return _pack_values(q, s, per_axis, int4)


def _packable(q: np.ndarray, axis: int | None, int4: bool) -> bool:
    """Ternary per channel (or, with ``int4``, 4-bit after the channel's common factor)?"""
    vm = np.abs(q.reshape(1, -1) if axis is None else
                np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1))
    top = vm.max(axis=1, keepdims=True)
    if np.all((vm == 0) | (vm == top)):
        return True
    g = np.maximum(np.gcd.reduce(vm, axis=1, keepdims=True), 1)
    return int4 and bool((vm // g).max() <= 8)


def _apply(model: onnx.ModelProto, plans: list, uses: dict) -> None:
    """Write the packed weights, zero points and scales into ``model`` (by name)."""
    inits = {t.name: t for t in model.graph.initializer}
    nodes = {n.output[0]: n for n in model.graph.node if n.output}
    for old, packed, _ in plans:
        node = nodes.get(old.output[0])
        if node is None or node.op_type != "DequantizeLinear":
            raise ValueError(f"the opset conversion changed DequantizeLinear "
                             f"{old.name or old.output[0]!r}; cannot pack it")
        np_type = _NP[packed.elem]
        w = inits[node.input[0]]
        w.CopyFrom(numpy_helper.from_array(packed.codes.astype(np_type), w.name))
        for v in model.graph.input:  # old exporters list initializers as inputs too
            if v.name == w.name:
                v.type.tensor_type.elem_type = packed.elem
        for pos, values in ((1, packed.scale), (2, None)):
            if len(node.input) <= pos or not node.input[pos]:
                continue
            src = inits[node.input[pos]]
            if values is None:
                values = np.zeros(numpy_helper.to_array(src).shape, np_type)
            if uses.get(src.name, 0) > 1:  # shared with another node: a copy of its own
                name = _fresh(f"{src.name}_packed_{node.input[0]}", inits)
                node.input[pos] = name
                t = numpy_helper.from_array(values, name)
                model.graph.initializer.append(t)
                inits[name] = model.graph.initializer[-1]
            else:
                src.CopyFrom(numpy_helper.from_array(values, src.name))


def _strip_metadata(model: onnx.ModelProto) -> int:
    """Drop value_info, node doc strings and Q/DQ node names; returns the bytes saved."""
    size = model.ByteSize()
    del model.graph.value_info[:]
    for n in model.graph.node:
        n.doc_string = ""
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            n.name = ""
    return size - model.ByteSize()


def _drop_zero_points(model: onnx.ModelProto) -> int:
    """Drop the zero point of every constant DequantizeLinear (weights, biases) whose zero
    point is all zeros: 0 is the default, and a missing zero point leaves the input's integer
    type as it is. (An activation QuantizeLinear's zero point also sets its output type, and
    is kept.) Returns how many were dropped."""
    inits = {t.name: t for t in model.graph.initializer}
    dropped = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) != 3:
            continue
        x, zp = inits.get(node.input[0]), inits.get(node.input[2])
        if x is None or zp is None or numpy_helper.to_array(zp).astype(np.int64).any():
            continue
        del node.input[2]
        dropped += 1
    return dropped


def _drop_unused(model: onnx.ModelProto) -> int:
    """Remove nodes whose outputs no graph output depends on (onnxruntime's quantizer leaves
    the Clip bounds it replaced as Constant nodes) and initializers nothing reads. Graphs with
    subgraphs (If / Loop / Scan bodies read outer names) are left alone. Returns the number of
    nodes removed."""
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for n in graph.node for a in n.attribute):
        return 0
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    live: set[int] = set()
    todo = [o.name for o in graph.output]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        i = producer.get(name)
        if i is not None and i not in live:
            live.add(i)
            todo.extend(graph.node[i].input)
    keep = [n for i, n in enumerate(graph.node) if i in live]
    removed = len(graph.node) - len(keep)
    if removed:
        del graph.node[:]
        graph.node.extend(keep)
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    names = {t.name for t in unused}
    inputs = [v for v in graph.input if v.name not in names]
    if len(inputs) != len(graph.input):
        del graph.input[:]
        graph.input.extend(inputs)
    return removed


def _read_back(original: onnx.ModelProto, packed: onnx.ModelProto,
               nodes: list[onnx.NodeProto]) -> list[bool]:
    """For each packed DequantizeLinear: does build's widening give back the original codes
    and scale (so the layer compiles as it did from the original file)?"""
    wide = onnx_io.unpack_subbyte_weights(packed)
    a = {t.name: t for t in original.graph.initializer}
    b = {t.name: t for t in wide.graph.initializer}
    by_out = {n.output[0]: n for n in wide.graph.node if n.output}
    out = []
    for node in nodes:
        new = by_out[node.output[0]]
        ok = True
        for pos in (0, 1):
            x = numpy_helper.to_array(a[node.input[pos]])
            y = numpy_helper.to_array(b[new.input[pos]])
            ok &= x.shape == y.shape and np.array_equal(
                x.astype(np.float64), y.astype(np.float64))
        out.append(bool(ok))
    return out


def _param_initializers(node: onnx.NodeProto, inits: dict, producer: dict) -> list[str]:
    """Initializers holding a layer's weight and bias values (through a DequantizeLinear)."""
    names = []
    for name in node.input[1:]:
        if name in inits:
            names.append(name)
        elif name in producer and producer[name].op_type == "DequantizeLinear" and \
                producer[name].input[0] in inits:
            names.append(producer[name].input[0])
    return names


def _weight_bytes(node: onnx.NodeProto, inits: dict) -> int:
    """Data bytes of a DequantizeLinear's integer input and zero point."""
    names = [node.input[0]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    return sum(onnx_io.tensor_data_bytes(inits[n]) for n in names if n in inits)


def _node_by_output(model: onnx.ModelProto, output: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.output and n.output[0] == output)


def _fresh(name: str, taken: dict) -> str:
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    return out


def _numel(t: onnx.TensorProto) -> int:
    return math.prod(t.dims)


def _type_name(elem: int) -> str:
    return TensorProto.DataType.Name(elem)


def _opset(model: onnx.ModelProto) -> int:
    from prom_tvm.passes.onnx_normalize import opset_of

    return opset_of(model)


# ---------------------------------------------------------------------------------------------
# checking the numbers, and the command line
# ---------------------------------------------------------------------------------------------


def same_outputs(a: onnx.ModelProto, b: onnx.ModelProto, *, seed: int = 0,
                 batch: int = 1) -> tuple[bool, str]:
    """Run both models in onnxruntime's unfused session (the QDQ graph as written) on one
    seeded input and compare every output bit for bit. Returns (same, what was compared)."""
    from prom_tvm.reference import unfused_session

    shapes = onnx_io.input_shapes(a, _dynamic_as(a, batch))
    dtypes = onnx_io.input_dtypes(a)
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in shapes.items():
        dt = dtypes[name]
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            feeds[name] = rng.integers(info.min, info.max, shape, endpoint=True).astype(dt)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dt)
    ya = unfused_session(a).run(None, feeds)
    yb = unfused_session(b).run(None, feeds)
    same = len(ya) == len(yb) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(ya, yb, strict=False))
    what = ", ".join(f"{k} {list(v)}" for k, v in shapes.items())
    return same, f"onnxruntime (unfused) on a seeded input ({what}), {len(ya)} output(s)"


def onnxruntime_default_session_error(model: onnx.ModelProto) -> str | None:
    """Why onnxruntime with its default session options cannot load ``model``, or None."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own pybind exception types
        return str(err).strip().splitlines()[0]
    return None


def _dynamic_as(model: onnx.ModelProto, value: int) -> dict[str, tuple[int, ...]]:
    """Shapes for inputs with dynamic dims: every dynamic dim set to ``value``."""
    out = {}
    for v in onnx_io.graph_inputs(model):
        dims = v.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            out[v.name] = tuple(d.dim_value if d.HasField("dim_value") else value for d in dims)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m prom_tvm.pack",
        description="Store the exactly ternary weights of a QDQ ONNX model as 2-bit INT2 "
        "(opset 25), every dequantized value unchanged.")
    p.add_argument("model", help="QDQ ONNX model (prom_tvm.qat export, onnxruntime "
                   "quantize_static)")
    p.add_argument("-o", "--output", required=True, help="where the packed .onnx goes")
    p.add_argument("--int4", action="store_true",
                   help="also store other weights that fit 4 bits as INT4")
    # value_info (inferable intermediate shapes) and Q/DQ node names are read by no runtime,
    # and on MobileNetV2 they are the 1% between 3.17x and 3.20x below float16: dropped by
    # default
    p.add_argument("--keep-metadata", action="store_true",
                   help="keep value_info and the QuantizeLinear/DequantizeLinear node names")
    p.add_argument("--strip", action="store_true",
                   help="drop value_info and Q/DQ node names (the default; kept for scripts)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip running both files in onnxruntime to compare outputs bit for bit")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:  # onnxruntime warns about every unused initializer of a quantized model
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
    except ImportError:
        pass
    if Path(args.output).resolve() == Path(args.model).resolve():
        parser.error("-o must name a new file, not the input model")
    try:
        original = onnx_io.load_onnx(args.model)
        if args.keep_metadata and args.strip:
            parser.error("--strip and --keep-metadata contradict each other: pick one")
        packed, report = pack_ternary(original, int4=args.int4, strip=not args.keep_metadata)
    except ValueError as err:
        parser.error(str(err))
    if not report.packed:
        reasons = sorted({r.note for r in report.layers if r.note}) or [
            "no weight is exactly ternary per output channel"
            + ("" if args.int4 else " (--int4 packs other weights that fit 4 bits)")]
        parser.error(f"{args.model}: nothing to pack: " + "; ".join(reasons))
    checked = "not run (--no-verify)"
    if not args.no_verify:
        try:
            same, checked = same_outputs(original, packed)
        except ImportError as err:
            parser.error(f"{err} (or pass --no-verify)")
        if not same:
            parser.error(f"{args.model}: the packed model's outputs differ from the "
                         f"original's in {checked}; not written (please report this)")
    onnx.save(packed, args.output)
    size_in, size_out = os.path.getsize(args.model), os.path.getsize(args.output)
    if args.json:
        print(json.dumps({**report.to_dict(), "file_bytes": [size_in, size_out],
                          "outputs_checked": checked}, indent=2))
    else:
        print(f"{args.model} -> {args.output}")
        print(report.format())
        fp16 = report.fp16_weight_bytes
        print(f"file: {size_in:,} -> {size_out:,} bytes on disk; float16 weights {fp16:,} "
              f"bytes: {_ratio(fp16, size_out):.2f}x smaller")
        print(f"outputs identical: {checked}")
    if not args.no_verify:
        why = onnxruntime_default_session_error(packed)
        if why:
            print(f"note: onnxruntime's default session options cannot load the packed file "
                  f"({why[:120]}...): its QDQ fusion has no INT2 kernel. Load it with "
                  f"InferenceSession(path, disabled_optimizers="
                  f"{ORT_WORKAROUND['disabled_optimizers']}); prom_tvm.build reads it as is.",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
