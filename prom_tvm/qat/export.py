"""``export_onnx``: write a prepared (and trained) model as standard QDQ ONNX.

Route: build a float twin of the prepared model whose conv / linear weights and biases are the
dequantized values that ran in training and whose activation quantizers are
``torch.fake_quantize_per_tensor_affine`` (which torch's ONNX exporter writes as a
``QuantizeLinear -> DequantizeLinear`` pair, uint8 zero point), export it with torch's
TorchScript exporter, then replace each weight / bias initializer by its integer codes behind a
``DequantizeLinear``:

- weights: int8 (ternary layers hold only -1, 0, +1), float32 scale per output channel,
  int8 zero point 0, ``axis=0``; at opset >= 25 the ternary layers' codes (and zero points)
  are ONNX ``INT2`` instead, four to a byte (``ternary_dtype``);
- biases: int32 with scale ``s_x * s_w[c]`` (float32), zero point 0, ``axis=0``.

Then ``onnx_cleanup`` makes quantization parameters initializers and drops each ReLU / ReLU6
that the next ``QuantizeLinear`` already clamps (exactly).  The result has the layout
onnxruntime's ``quantize_static`` writes (see ``docs/qdq_patterns.md``), which both onnxruntime
and ``prom_tvm.build`` run.

torch's TorchScript exporter writes at most opset 20; a higher ``opset`` is reached after the
export with onnx's version converter (``prom_tvm.pack.raise_opset``, checked by
``onnx.checker``), with the IR version the 2-bit type needs (13).
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import fx, nn

from prom_tvm.pack import INT2_IR, INT2_OPSET, raise_opset
from prom_tvm.qat.modules import ActivationQuant, QuantConv2d, QuantLinear
from prom_tvm.qat.onnx_cleanup import constants_to_initializers, drop_redundant_activations
from prom_tvm.qat.prepare import is_prepared, quantized_layers
from prom_tvm.qat.quantizers import dequantize_weight

_TORCH_MAX_OPSET = 20  # torch.onnx's TorchScript exporter
TERNARY_DTYPES = ("auto", "int8", "int2")


@dataclass(frozen=True)
class _LayerCodes:
    weight: np.ndarray  # int8, torch layout [Cout, ...]
    weight_scale: np.ndarray  # float32 [Cout]
    bias: np.ndarray | None  # int32 [Cout]
    bias_scale: np.ndarray | None  # float32 [Cout]
    ternary: bool = False  # the layer's weight format is ternary


class _ExportActivationQuant(nn.Module):
    """Frozen uint8 fake quantization; exports as QuantizeLinear -> DequantizeLinear."""

    def __init__(self, scale: float, zero_point: int):
        super().__init__()
        self.scale = scale
        self.zero_point = zero_point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255)


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | os.PathLike,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
    ternary_dtype: str = "auto",
) -> onnx.ModelProto:
    """Export a model returned by ``prom_tvm.qat.prepare`` (and trained) as QDQ ONNX.

    Parameters
    ----------
    model : torch.fx.GraphModule
        The prepared model; it is not modified (a float twin is exported).
    example_input : torch.Tensor
        An input batch (NCHW for CNNs); fixes every dimension but the batch.
    path : str or PathLike
        Where the ``.onnx`` file goes.
    opset : int
        ONNX opset, at least 13 (per-channel ``DequantizeLinear``). The default 17 is read by
        every runtime of the last years; 25 gives 2-bit ternary weights.
    dynamic_batch : bool
        Keep the batch dimension symbolic (``"batch"``) instead of ``example_input``'s.
    ternary_dtype : {"auto", "int8", "int2"}
        How ternary weights are stored: ``"int2"`` (ONNX INT2, four per byte; needs
        ``opset >= 25``), ``"int8"`` (one byte each, any opset), or ``"auto"`` (default):
        INT2 when ``opset >= 25``, else int8. The dequantized values are the same either way;
        ``python -m prom_tvm.pack`` turns an int8 file into the INT2 one later.

    Returns
    -------
    onnx.ModelProto
        The model written to ``path``; input ``"input"``, output ``"logits"``.
    """
    if opset < 13:
        raise ValueError(f"opset must be >= 13 (per-channel DequantizeLinear), got {opset}")
    if ternary_dtype not in TERNARY_DTYPES:
        raise ValueError(f"ternary_dtype must be one of {TERNARY_DTYPES}, got {ternary_dtype!r}")
    if ternary_dtype == "int2" and opset < INT2_OPSET:
        raise ValueError(
            f"ternary_dtype='int2' needs opset >= {INT2_OPSET} (ONNX's INT2 type), got "
            f"opset={opset}: pass opset={INT2_OPSET}, or ternary_dtype='int8' for runtimes that "
            f"read only older opsets")
    int2 = ternary_dtype == "int2" or (ternary_dtype == "auto" and opset >= INT2_OPSET)
    if not is_prepared(model):
        raise ValueError(
            f"{type(model).__name__} was never prepared: call prom_tvm.qat.prepare(model) and "
            "train it (QAT) before export_onnx; a float model has no quantized weights to export")
    unobserved = [n for n, m in model.named_modules()
                  if isinstance(m, ActivationQuant) and not bool(m.observed)]
    if unobserved:
        raise ValueError(
            f"{len(unobserved)} activation quantizers never saw data (first: {unobserved[0]}): "
            "run the prepared model in train() mode on a few batches before export_onnx")
    twin, codes = _float_twin(model)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float_twin.onnx"
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated, not gone
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                    twin, (example_input,), str(float_path), dynamo=False,
                opset_version=min(opset, _TORCH_MAX_OPSET),
                input_names=["input"], output_names=["logits"], do_constant_folding=True,
                # True skips the exporter's merging of equal-valued initializers (two all-zero
                # biases would share one name); the inputs it adds are removed below
                keep_initializers_as_inputs=True,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch
                else None)
        proto = onnx.load(str(float_path))
    initializer_names = {t.name for t in proto.graph.initializer}
    graph_inputs = [i for i in proto.graph.input if i.name not in initializer_names]
    del proto.graph.input[:]
    proto.graph.input.extend(graph_inputs)
    _store_integer_codes(proto, codes)
    constants_to_initializers(proto.graph)
    drop_redundant_activations(proto.graph)
    if opset > _TORCH_MAX_OPSET:
        proto = raise_opset(proto, opset, INT2_IR if int2 else proto.ir_version)
    if int2:
        _ternary_codes_to_int2(proto, codes)
    proto.producer_name = "prom_tvm.qat"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return proto


@torch.no_grad()
def _float_twin(model: fx.GraphModule) -> tuple[fx.GraphModule, dict[str, _LayerCodes]]:
    twin = copy.deepcopy(model).eval()
    codes: dict[str, _LayerCodes] = {}
    input_scale = {layer: twin.get_submodule(aq).scale.clone()
                   for layer, aq in quantized_layers(twin)}
    for node in list(twin.graph.nodes):
        if node.op != "call_module":
            continue
        m = twin.get_submodule(node.target)
        if isinstance(m, ActivationQuant):
            _replace(twin, node.target, _ExportActivationQuant(
                float(m.scale), int(m.zero_point)))
        elif isinstance(m, (QuantConv2d, QuantLinear)):
            codes[node.target], plain = _freeze_layer(m, input_scale[node.target])
            _replace(twin, node.target, plain)
            scale_node = node.args[1]
            node.args = (node.args[0],)
            if not scale_node.users:
                twin.graph.erase_node(scale_node)
    twin.graph.lint()
    twin.recompile()
    return twin, codes


def _freeze_layer(m: QuantConv2d | QuantLinear,
                  x_scale: torch.Tensor) -> tuple[_LayerCodes, nn.Module]:
    """Integer codes of one layer and a plain float layer running exactly their values."""
    w_codes, w_scale = m.weight_codes()
    b = m.bias_codes(x_scale, w_scale)
    if isinstance(m, QuantConv2d):
        plain = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                          padding=m.padding, dilation=m.dilation, groups=m.groups,
                          bias=b is not None, padding_mode=m.padding_mode)
    else:
        plain = nn.Linear(m.in_features, m.out_features, bias=b is not None)
    plain.weight.copy_(dequantize_weight(w_codes, w_scale))
    if b is not None:
        plain.bias.copy_(b[0] * b[1])
    layer = _LayerCodes(
        weight=w_codes.to(torch.int8).numpy(), weight_scale=w_scale.numpy().astype(np.float32),
        bias=None if b is None else b[0].to(torch.int32).numpy(),
        bias_scale=None if b is None else b[1].numpy().astype(np.float32),
        ternary=m.weight_format == "ternary")
    return layer, plain


def _replace(gm: fx.GraphModule, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def _store_integer_codes(proto: onnx.ModelProto, codes: dict[str, _LayerCodes]) -> None:
    """Swap each layer's float weight / bias initializer for integer codes + DequantizeLinear."""
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    dq_nodes = []
    for layer, c in codes.items():
        dq_nodes.append(_dequantized_initializer(
            graph, inits, f"{layer}.weight", c.weight, c.weight_scale, np.int8))
        if c.bias is not None:
            dq_nodes.append(_dequantized_initializer(
                graph, inits, f"{layer}.bias", c.bias, c.bias_scale, np.int32))
    weight_of = {f"{layer}.weight": layer for layer in codes}
    for node in graph.node:  # name each conv / gemm after its torch module, as reports show it
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and (
                node.input[1] in weight_of):
            node.name = weight_of[node.input[1]]
    nodes = dq_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def _dequantized_initializer(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto],
                             name: str, q: np.ndarray, scale: np.ndarray,
                             dtype: type) -> onnx.NodeProto:
    if name not in inits:
        raise RuntimeError(
            f"export_onnx: the float export has no initializer {name!r}; torch's exporter named "
            "it differently (please report this with the model)")
    float_value = numpy_helper.to_array(inits[name])
    axis = 0
    if float_value.shape != q.shape and q.ndim == 2 and float_value.shape == q.T.shape:
        q, axis = np.ascontiguousarray(q.T), 1  # MatMul stores a Linear weight transposed
    shape = [-1 if i == axis else 1 for i in range(q.ndim)]
    if not np.array_equal(float_value, q.astype(np.float32) * scale.reshape(shape)):
        raise RuntimeError(f"export_onnx: initializer {name!r} differs from its integer codes")
    graph.initializer.remove(inits[name])
    graph.initializer.extend([
        numpy_helper.from_array(q.astype(dtype), f"{name}_quantized"),
        numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
        numpy_helper.from_array(np.zeros(scale.shape, dtype=dtype), f"{name}_zero_point"),
    ])
    return helper.make_node(
        "DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
        [name], name=f"{name}_DequantizeLinear", axis=axis)



def _ternary_codes_to_int2(proto: onnx.ModelProto, codes: dict[str, _LayerCodes]) -> None:
    """Ternary layers' weight codes and zero points as INT2 (same values, four per byte)."""
    int2 = helper.tensor_dtype_to_np_dtype(onnx.TensorProto.INT2)
    inits = {t.name: t for t in proto.graph.initializer}
    for layer, c in codes.items():
        if not c.ternary:
            continue
        for name in (f"{layer}.weight_quantized", f"{layer}.weight_zero_point"):
            values = numpy_helper.to_array(inits[name])
            if np.abs(values.astype(np.int64)).max(initial=0) > 1:
                raise RuntimeError(f"export_onnx: ternary layer {layer!r} has codes outside "
                                   "{-1, 0, 1} (please report this with the model)")
            inits[name].CopyFrom(numpy_helper.from_array(values.astype(int2), name))
