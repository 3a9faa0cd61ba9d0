"""Tracing a model with torch.fx for ``prepare``, with its train / eval switches kept alive.

``torch.fx.symbolic_trace`` records ``self.training`` as the constant it was at trace time, so
``F.dropout(x, p, self.training)`` or torchvision's ``stochastic_depth(x, p, mode,
self.training)`` would stay in training behaviour forever (and be exported as random ops).
``trace`` rebinds them to modules that read the current mode.  Other Python code that branches
on ``self.training`` stays frozen in the mode the model had when it was prepared.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import fx, nn

_DROPOUT_MODULE_OF = {
    F.dropout: nn.Dropout, F.dropout1d: nn.Dropout1d, F.dropout2d: nn.Dropout2d,
    F.dropout3d: nn.Dropout3d, F.alpha_dropout: nn.AlphaDropout,
}


class StochasticDepth(nn.Module):
    """torchvision's ``stochastic_depth`` function call, as a module that follows train/eval."""

    def __init__(self, fn: Callable, p: float, mode: str):
        super().__init__()
        self.fn, self.p, self.mode = fn, p, mode

    def forward(self, x):
        return self.fn(x, self.p, self.mode, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}"


def trace(model: nn.Module) -> fx.GraphModule:
    """``symbolic_trace`` ``model`` (not copied) with a clear error when it cannot be traced."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types (TraceError, TypeError, ...)
        raise ValueError(
            f"prom_tvm.qat.prepare traces the model with torch.fx and could not trace "
            f"{type(model).__name__}: {err}. Data-dependent Python control flow in forward() "
            "must be removed or wrapped with torch.fx.wrap") from err
    _rebind_training_flags(gm)
    return gm


def _argument(node: fx.Node, index: int, name: str, default):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _rebind_training_flags(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in _DROPOUT_MODULE_OF:
            module = _DROPOUT_MODULE_OF[node.target](p=_argument(node, 1, "p", 0.5))
        elif getattr(node.target, "__name__", "") == "stochastic_depth":  # torchvision.ops
            module = StochasticDepth(node.target, _argument(node, 1, "p", None),
                                     _argument(node, 2, "mode", None))
        else:
            continue
        name = f"prom_{node.name}"
        gm.add_submodule(name, module)
        with gm.graph.inserting_after(node):
            call = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
