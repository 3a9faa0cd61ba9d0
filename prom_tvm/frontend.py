"""ONNX -> Relax glue: graph normalization, import with fixed shapes, layer names, errors.

The model is normalized first (``passes/onnx_normalize.py``: unique node names, constant
subgraphs folded, shared weights unshared), then imported by a subclass of TVM's Relax ONNX
importer that

* converts a few ops into the Relax ops prom_tvm's passes match, where TVM's converter
  would emit opaque TE calls: ``Pad`` -> ``R.nn.pad`` (all four modes), constant-bound
  ``Clip`` and two-input ``Max`` / ``Min`` -> ``R.maximum`` / ``R.minimum`` (TVM makes a
  broadcast + stack + reduce of them);
* records, per Conv / Gemm / MatMul node, the Relax constant of its weight: Relax keeps no
  node names, constants are leaves every pass leaves untouched, and each initializer
  becomes its own ``relax.Constant``, so that identity names the layer;
* re-raises any failure inside a converter as one ValueError naming the ONNX node and op.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from .passes.onnx_normalize import (
    LAYER_OPS,
    fold_constants,
    name_nodes,
    opset_of,
    unshare_layer_weights,
)


@dataclass(frozen=True)
class OnnxLayer:
    name: str
    op_type: str
    index: int


@dataclass
class LayerTable:
    """ONNX nodes by normalized key, and the weight constant of every layer node."""

    nodes: dict[str, OnnxLayer] = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # relax.Constant -> OnnxLayer

    def of_weight(self, const) -> OnnxLayer | None:
        return None if const is None else self.weights.get(const)


def onnx_error(node: OnnxLayer | onnx.NodeProto | None, what: str, todo: str) -> ValueError:
    """The one error format for a model prom_tvm cannot compile."""
    if node is None:
        return ValueError(f"{what}. {todo}")
    return ValueError(f"ONNX node {node.name!r} ({node.op_type}): {what}. {todo}")


# -- checks before import ----------------------------------------------------------------
_QOPERATOR = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd"}


def unsupported_ops(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes whose op the Relax ONNX importer cannot convert."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = set(_get_convert_map()) | {"If", "Constant"}
    return [n for n in model.graph.node if n.op_type not in known]


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def check_supported(model: onnx.ModelProto) -> None:
    """Known-unsupported ops and attribute values, as a clear error before importing."""
    bad = unsupported_ops(model)
    if bad:
        ops = sorted({n.op_type for n in bad})
        first = bad[0]
        hint = ("Export the model in QDQ format instead (onnxruntime quantize_static with "
                "quant_format=QuantFormat.QDQ, or prom_tvm.qat.export_onnx)."
                if _QOPERATOR & set(ops) else "Replace it with supported ops before exporting.")
        raise ValueError(
            f"unsupported ONNX op(s) {', '.join(ops)}: node {first.name or '<unnamed>'!r} "
            f"({first.op_type}) cannot be imported by TVM's ONNX frontend. {hint}"
        )
    for node in model.graph.node:
        if node.op_type == "Pad":
            mode = _attr(node, "mode", "constant")
            if mode not in _PAD_MODES:
                raise onnx_error(node, f"pad mode {mode!r} is not an ONNX Pad mode",
                                 f"Use one of {', '.join(_PAD_MODES)}")


# -- the importer --------------------------------------------------------------------------
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate",
              "wrap": "circular"}


def _const_array(expr) -> np.ndarray | None:
    import tvm

    return expr.value.numpy() if isinstance(expr, tvm.ir.Constant) else None


def _convert_pad(bb, inputs, attrs, opset):
    """ONNX Pad -> R.nn.pad (TVM's converter emits a TE call and rejects a DQ'd value)."""
    from tvm import relax

    x = inputs[0]
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if opset < 11:
        pads = np.array(attrs.get("pads"), np.int64)
        value = float(attrs.get("value", 0.0))
    else:
        pads = _const_array(inputs[1])
        if pads is None:
            raise _NodeError("the pads input is computed at run time",
                             "Give the Pad constant pads (fold the shape computation)")
        value = 0.0
        if len(inputs) > 2 and inputs[2] is not None:
            v = _const_array(inputs[2])
            if v is None:
                raise _NodeError("the constant_value input is computed at run time",
                                 "Give the Pad a constant pad value")
            value = float(v.reshape(-1)[0])
    rank = len(x.ty.shape)
    pads = [int(p) for p in pads.reshape(-1)]
    if len(inputs) > 3 and inputs[3] is not None:
        axes = _const_array(inputs[3])
        if axes is None:
            raise _NodeError("the axes input is computed at run time", "Make it a constant")
        full = [0] * (2 * rank)
        axes = [int(a) % rank for a in axes.reshape(-1)]
        for i, ax in enumerate(axes):
            full[ax], full[rank + ax] = pads[i], pads[len(axes) + i]
        pads = full
    if len(pads) != 2 * rank:
        raise _NodeError(f"{len(pads)} pads for a rank-{rank} input", "Give 2 * rank pads")
    if min(pads) < 0:
        raise _NodeError("negative pads (cropping) are not supported",
                         "Replace the negative pads by a Slice")
    width = [p for ax in range(rank) for p in (pads[ax], pads[rank + ax])]
    return relax.op.nn.pad(x, width, _PAD_MODES[mode], value)


def _convert_clip(bb, inputs, attrs, opset):
    """Constant-bound Clip -> R.minimum(R.maximum(x, lo), hi); None = TVM's converter."""
    from tvm import relax

    x = inputs[0]
    if opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        bounds = []
        for pos in (1, 2):
            if len(inputs) > pos and inputs[pos] is not None:
                v = _const_array(inputs[pos])
                if v is None or v.size != 1:
                    return None
                bounds.append(float(v.reshape(())))
            else:
                bounds.append(None)
        lo, hi = bounds
    dtype = x.ty.dtype
    if lo is not None and not np.isnan(lo):
        x = bb.normalize(relax.op.maximum(x, relax.const(lo, dtype)))
    if hi is not None and not np.isnan(hi):
        x = bb.normalize(relax.op.minimum(x, relax.const(hi, dtype)))
    return x


def _convert_min_max(op_name):
    def convert(bb, inputs, attrs, opset):
        from tvm import relax

        if len(inputs) != 2:
            return None
        fn = relax.op.maximum if op_name == "Max" else relax.op.minimum
        return fn(inputs[0], inputs[1])

    return convert


_OVERRIDES = {"Pad": _convert_pad, "Clip": _convert_clip, "Max": _convert_min_max("Max"),
              "Min": _convert_min_max("Min")}


class _NodeError(Exception):
    def __init__(self, what: str, todo: str):
        super().__init__(what)
        self.what, self.todo = what, todo


class _ImportFailure(Exception):
    def __init__(self, key: str, err: Exception):
        super().__init__(key)
        self.key, self.err = key, err


def _importer_class():
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter

    class Importer(ONNXGraphImporter):
        """TVM's importer with prom_tvm's converters, layer bookkeeping and error naming."""

        def __init__(self, *args, table: LayerTable, **kwargs):
            super().__init__(*args, **kwargs)
            self.table = table

        def _convert_operator(self, op_name, inputs, attrs, opset):
            key = attrs.get("tvm_custom", {}).get("name", "")
            try:
                sym = None
                if op_name in _OVERRIDES:
                    sym = _OVERRIDES[op_name](self.bb, inputs, attrs, opset)
                    if sym is not None and isinstance(sym, relax.Expr):
                        sym = self.bb.normalize(sym)
                if sym is None:
                    sym = super()._convert_operator(op_name, inputs, attrs, opset)
            except Exception as err:  # re-raised with the node's name below
                raise _ImportFailure(key, err) from err
            if op_name in LAYER_OPS and len(inputs) > 1 and key in self.table.nodes:
                const = self._weight_constant(inputs[1])
                if const is not None:
                    self.table.weights.setdefault(const, self.table.nodes[key])
            return sym

        def _weight_constant(self, expr):
            import tvm

            for _ in range(6):
                if isinstance(expr, relax.Var):
                    expr = self.bb.lookup_binding(expr)
                if isinstance(expr, tvm.ir.Constant):
                    return expr
                if not isinstance(expr, relax.Call) or not expr.args:
                    return None
                expr = expr.args[0]  # through dequantize / permute_dims / reshape
            return None

    return Importer


def import_model(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
                 dtypes: dict[str, str]):
    """(Relax IRModule with weights bound as constants, LayerTable)."""
    check_supported(model)
    named = name_nodes(model)
    table = LayerTable()
    for i, (orig, node) in enumerate(zip(model.graph.node, named.graph.node, strict=True)):
        table.nodes[node.name] = OnnxLayer(orig.name or node.name, orig.op_type, i)
    named = unshare_layer_weights(fold_constants(named))
    importer = _importer_class()(
        {k: list(v) for k, v in shapes.items()}, dtypes, keep_params_in_input=False,
        sanitize=True, table=table)
    try:
        # TVM prints every failing converter's inputs (whole tensors) to stdout
        with contextlib.redirect_stdout(io.StringIO()):
            mod = importer.from_onnx(named.graph, opset_of(named))
    except _ImportFailure as fail:
        node = table.nodes.get(fail.key) or OnnxLayer(fail.key, "?", -1)
        err = fail.err
        if isinstance(err, _NodeError):
            raise onnx_error(node, err.what, err.todo) from None
        raise onnx_error(
            node, f"TVM's ONNX importer failed: {type(err).__name__}: {str(err).rstrip('.')}",
            "Check the node's attributes and inputs (constant where TVM needs constants), "
            "or replace the op before exporting") from err
    except Exception as err:  # graph-level failure outside any converter
        raise ValueError(f"TVM's ONNX importer failed on this model: {type(err).__name__}: "
                         f"{err}") from err
    return mod, table


def import_onnx(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
                dtypes: dict[str, str]):
    """Relax IRModule of ``model`` with weights bound as constants."""
    return import_model(model, shapes, dtypes)[0]
