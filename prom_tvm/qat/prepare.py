"""``prepare``: turn a float torch CNN into a PROM (or int8) quantization-aware model.

How: the model is traced with ``torch.fx`` (so residual adds written as ``x + self.conv(x)``
become graph nodes one can put a quantizer on), BatchNorm is folded into the conv before it,
``nn.Conv2d`` / ``nn.Linear`` are swapped for ``QuantConv2d`` / ``QuantLinear``, and an
``ActivationQuant`` is inserted

- on the input of every quantized layer,
- on its output (after a directly following ReLU / ReLU6, which the compiler folds into the
  requantization clamp),
- on both inputs and the output of every tensor + tensor add (residual connections).

Dropout and stochastic depth (identity in eval) are looked through: the quantizer goes on
their input, so the exported graph has one quantizer per tensor.

Everything else (Hardswish, SiLU, sigmoid, the multiply of squeeze-excitation blocks, pooling,
concatenation) runs in float between a dequantize and the next quantizer.
"""

from __future__ import annotations

import copy
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from prom_tvm.qat.config import QATConfig
from prom_tvm.qat.modules import ActivationQuant, QuantConv2d, QuantLinear
from prom_tvm.qat.trace import StochasticDepth, trace

_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = (F.relu, F.relu6, torch.relu)
# (trace turns the functional forms into these modules)
_IDENTITY_IN_EVAL_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                             nn.AlphaDropout, nn.Identity, StochasticDepth)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_")
# Layers with weights that ``prepare`` would otherwise silently leave in float.
_UNSUPPORTED_FUNCTIONS = {
    F.conv1d: "F.conv1d", F.conv2d: "F.conv2d", F.conv3d: "F.conv3d", F.linear: "F.linear",
    F.conv_transpose1d: "F.conv_transpose1d", F.conv_transpose2d: "F.conv_transpose2d",
}
_SUPPORTED = "nn.Conv2d, nn.Linear, nn.BatchNorm2d right after an nn.Conv2d"


def is_prepared(model: nn.Module) -> bool:
    """True when ``model`` came out of ``prepare`` (it holds quantized layers)."""
    return any(isinstance(m, (QuantConv2d, QuantLinear)) for m in model.modules())


def prepare(model: nn.Module, config: QATConfig | None = None) -> fx.GraphModule:
    """Return a quantization-aware copy of ``model`` (the original is left untouched).

    Every ``nn.Conv2d`` with a 1x1 kernel and ``groups == 1`` gets ternary weights (per output
    channel scale); every other ``nn.Conv2d`` and ``nn.Linear`` int8 per-channel symmetric
    weights; activations 8-bit at quantized layers and residual adds.  A BatchNorm2d right
    after a conv is folded into it (trained with simulated folding, see ``QuantConv2d``).
    Prepare a trained float model and fine-tune the result in ``train()`` mode: the activation
    ranges are observed there, so at least a few training batches must run before
    ``export_onnx``.

    Raises
    ------
    ValueError
        when the model has nothing to quantize, has layer types that cannot be quantized
        (named, with the ``QATConfig.float_modules`` escape), or cannot be traced.
    """
    config = QATConfig() if config is None else config
    if not isinstance(config, QATConfig):
        raise TypeError(f"config must be a prom_tvm.qat.QATConfig, got {type(config).__name__}")
    if is_prepared(model):
        raise ValueError("this model was already prepared by prom_tvm.qat.prepare; train or "
                         "export it as it is")
    gm = trace(copy.deepcopy(model))
    modules = dict(gm.named_modules())
    _check_config_names(config, modules)
    plan = _plan_layers(gm, modules, config)
    if not plan:
        raise ValueError(
            f"nothing to quantize in {type(model).__name__}: prom_tvm.qat quantizes nn.Conv2d and "
            "nn.Linear modules (outside QATConfig.float_modules) and found none")
    _swap_layers(gm, plan, config)
    _insert_activation_quant(gm, plan, config)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def quantized_layers(gm: fx.GraphModule) -> list[tuple[str, str]]:
    """``(layer name, input ActivationQuant name)`` of each quantized layer of a prepared model."""
    modules = dict(gm.named_modules())
    layers = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(
                modules[node.target], (QuantConv2d, QuantLinear)):
            scale_node = node.args[1]
            layers.append((node.target, scale_node.target.rsplit(".", 1)[0]))
    return layers


def _in_float_modules(name: str, config: QATConfig) -> bool:
    return any(name == f or name.startswith(f + ".") for f in config.float_modules)


def _check_config_names(config: QATConfig, modules: dict[str, nn.Module]) -> None:
    for field in ("int8_modules", "float_modules"):
        missing = [n for n in getattr(config, field) if n not in modules]
        if missing:
            raise ValueError(f"QATConfig.{field} names modules the model does not have: "
                             f"{missing}; names are those of model.named_modules()")
    for name in config.int8_modules:
        m = modules[name]
        if not (isinstance(m, nn.Conv2d) and _is_pointwise(m)):
            raise ValueError(f"QATConfig.int8_modules: {name} ({type(m).__name__}) is not a 1x1 "
                             "conv with groups == 1; other layers are int8 already")


def _is_pointwise(conv: nn.Conv2d) -> bool:
    return tuple(conv.kernel_size) == (1, 1) and conv.groups == 1


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(
        True for _ in m.buffers(recurse=False))


def _plan_layers(gm: fx.GraphModule, modules: dict[str, nn.Module],
                 config: QATConfig) -> dict[fx.Node, str]:
    """Map each conv / linear node to quantize onto its weight format; name what cannot be."""
    plan: dict[fx.Node, str] = {}
    calls: dict[str, int] = {}
    unsupported = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _UNSUPPORTED_FUNCTIONS:
            unsupported.append(f"{node.name} ({_UNSUPPORTED_FUNCTIONS[node.target]})")
        if node.op != "call_module" or _in_float_modules(node.target, config):
            continue
        m = modules[node.target]
        calls[node.target] = calls.get(node.target, 0) + 1
        if isinstance(m, nn.Conv2d):
            ternary = (config.pointwise_format == "ternary" and _is_pointwise(m)
                       and node.target not in config.int8_modules)
            plan[node] = "ternary" if ternary else "int8"
        elif isinstance(m, nn.Linear):
            plan[node] = "int8"
        elif isinstance(m, nn.BatchNorm2d) and (
                _folds_into_planned_conv(node, plan) or _follows_float_module(node, config)):
            continue
        elif _has_state(m):
            unsupported.append(f"{node.target} ({type(m).__module__}.{type(m).__name__})")
    if unsupported:
        raise ValueError(
            "prom_tvm.qat.prepare cannot quantize these layers: " + ", ".join(unsupported)
            + f". Supported: {_SUPPORTED}. Leave them in float with "
            "QATConfig(float_modules=(...)) (functional calls must become modules first).")
    shared = sorted(name for name, n in calls.items() if n > 1 and any(
        p.target == name for p in plan))
    if shared:
        raise ValueError(f"layers called more than once in forward(): {shared}; each quantized "
                         "layer needs its own module (or list it in QATConfig.float_modules)")
    return plan


def _folds_into_planned_conv(bn_node: fx.Node, plan: dict[fx.Node, str]) -> bool:
    src = bn_node.args[0]
    return isinstance(src, fx.Node) and src in plan and len(src.users) == 1 and isinstance(
        src.graph.owning_module.get_submodule(src.target), nn.Conv2d)


def _follows_float_module(node: fx.Node, config: QATConfig) -> bool:
    src = node.args[0]
    return isinstance(src, fx.Node) and src.op == "call_module" and _in_float_modules(
        src.target, config)


def _set_module(gm: fx.GraphModule, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def _swap_layers(gm: fx.GraphModule, plan: dict[fx.Node, str], config: QATConfig) -> None:
    """Swap in quantized layers; a BatchNorm2d right after a conv moves into it (folded)."""
    for node, fmt in plan.items():
        m = gm.get_submodule(node.target)
        if isinstance(m, nn.Linear):
            _set_module(gm, node.target, QuantLinear.from_float(m, fmt))
            continue
        bn_node = next(iter(node.users))
        bn = None
        if bn_node.op == "call_module" and _folds_into_planned_conv(bn_node, plan) and isinstance(
                gm.get_submodule(bn_node.target), nn.BatchNorm2d):
            bn = gm.get_submodule(bn_node.target)
            if bn.running_mean is None:
                raise ValueError(f"{bn_node.target}: BatchNorm2d without running statistics "
                                 "(track_running_stats=False) cannot be folded into a conv")
            bn_node.replace_all_uses_with(node)
            gm.graph.erase_node(bn_node)
        _set_module(gm, node.target, QuantConv2d.from_float(
            m, fmt, ternary_method=config.ternary_method, twn_threshold=config.twn_threshold,
            bn=bn))


def _is_relu(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _RELU_MODULES)
    return node.op == "call_function" and node.target in _RELU_FUNCTIONS


def _is_identity_in_eval(node: fx.Node, gm: fx.GraphModule) -> bool:
    """Dropout, stochastic depth, Identity: gone from an eval-mode export."""
    return node.op == "call_module" and isinstance(
        gm.get_submodule(node.target), _IDENTITY_IN_EVAL_MODULES)


def _is_tensor_add(node: fx.Node) -> bool:
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in _ADD_METHODS)
    return is_add and len(node.args) >= 2 and all(isinstance(a, fx.Node) for a in node.args[:2])


def _insert_activation_quant(gm: fx.GraphModule, plan: dict[fx.Node, str],
                             config: QATConfig) -> None:
    graph = gm.graph
    quant_of: dict[fx.Node, fx.Node] = {}

    def ensure_quant(node: fx.Node) -> fx.Node:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), ActivationQuant):
            return node
        if _is_identity_in_eval(node, gm):
            # Quantize what goes in instead: a second quantizer right behind the first would
            # be a Q-DQ-Q-DQ chain in ONNX, which onnxruntime merges (changing the numbers).
            return ensure_quant(node.args[0])
        if node not in quant_of:
            name = f"aq_{node.name}"
            gm.add_submodule(name, ActivationQuant(config.activation_momentum))
            with graph.inserting_after(node):
                q = graph.call_module(name, (node,))
            node.replace_all_uses_with(q, delete_user_cb=lambda user: user is not q)
            quant_of[node] = q
        return quant_of[node]

    for node in list(graph.nodes):
        if node in plan:
            x_q = ensure_quant(node.args[0])
            users = list(node.users)
            tail = users[0] if len(users) == 1 and _is_relu(users[0], gm) else node
            ensure_quant(tail)
            with graph.inserting_before(node):
                scale = graph.get_attr(f"{x_q.target}.scale")
            node.args = (node.args[0], scale)  # args[0] may be a dropout behind x_q
        elif _is_tensor_add(node):
            for arg in node.args[:2]:
                ensure_quant(arg)
            ensure_quant(node)
