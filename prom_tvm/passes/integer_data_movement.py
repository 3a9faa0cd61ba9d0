"""Run data movement on quantized tensors in integers: ``Q(op(DQ(x_q)))`` -> ``op(x_q)``.

onnxruntime's quantizer wraps MaxPool, Concat, Reshape / Flatten / Transpose / Squeeze,
Pad and Resize in their own QuantizeLinear, with the input's scale and zero point.  For
an op that only moves, copies or selects values, DQ followed by Q with the same (scale,
zero point, dtype) is the identity on the integers (``(x - z) * s`` is within one float32
rounding of an integer multiple of ``s``, so ``round(. / s) + z`` gives ``x`` back), so
the op can run on ``x_q`` directly — exact, and 4x less memory traffic than float:

* Q(DQ(x)) itself (an ONNX Identity / Dropout imports as nothing): x;
* reshape / permute_dims / squeeze / expand_dims / strided_slice / flatten: moves;
* max_pool2d: DQ is monotone, so max commutes with it (padding: the dtype minimum);
* nearest resize2d: selects;
* concat: when every input has the output's (scale, zero point, dtype);
* ReLU / max / min with a constant (a Clip that QDQKeepRemovableActivations keeps): Q is
  monotone, so ``Q(max(DQ(x), c)) = max(x, Q(c))``;
* pad, any mode: moves; a constant pad value ``v`` becomes the integer ``Q(v)``
  (``saturate(round_half_even(float32(v) / s) + z)``), exactly what Q would give on the
  padded border, whatever ``v`` is.

Everything else (average pools, mean, sigmoid, hard-swish, multiply, concat with different
scales) stays ``DQ -> float op -> Q`` on TVM's legalization, which is correct.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .qdq_match import Matcher

_MOVES = {tvm.ir.Op.get(f"relax.{n}") for n in (
    "reshape", "permute_dims", "squeeze", "expand_dims", "strided_slice", "flatten",
    "nn.max_pool2d",
)}
_QUANTIZE = tvm.ir.Op.get("relax.quantize")
_DEQUANTIZE = tvm.ir.Op.get("relax.dequantize")
_PAD = tvm.ir.Op.get("relax.nn.pad")
_RESIZE = tvm.ir.Op.get("relax.image.resize2d")
_CONCAT = tvm.ir.Op.get("relax.concat")
_CLAMPS = {tvm.ir.Op.get("relax.maximum"): relax.op.maximum,
           tvm.ir.Op.get("relax.minimum"): relax.op.minimum}
_RELU = tvm.ir.Op.get("relax.nn.relu")


def _qparams(matcher: Matcher, scale, zero_point, dtype) -> tuple | None:
    s, z = matcher.constant(scale), matcher.constant(zero_point)
    if s is None or z is None or s.size != 1 or z.size != 1:
        return None
    return (np.float32(s.reshape(())), int(z.reshape(())), str(dtype))


def quantize_scalar(v: float, scale: np.float32, zero_point: int, dtype: str) -> int:
    """QuantizeLinear of one float32 value, as the ONNX standard rounds it."""
    info = np.iinfo(dtype)
    q = float(np.rint(np.float32(v) / np.float32(scale))) + zero_point
    return int(min(max(q, info.min), info.max))


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.matcher = Matcher(self.lookup_binding)
        self.rewritten = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call, relax.Call) and call.op == _QUANTIZE):
            return call
        out = _qparams(self.matcher, call.args[1], call.args[2], call.attrs.out_dtype)
        inner = self.matcher.value(call.args[0])
        if out is None or not isinstance(inner, relax.Call):
            return call
        try:
            new = self._integer_op(inner, out)
        except Exception:  # an op we cannot rebuild stays in float (correct)
            new = None
        if new is None:
            return call
        self.rewritten += 1
        return new

    def _int_source(self, expr, out) -> relax.Expr | None:
        """x_q when ``expr`` is DQ(x_q) with exactly the output's quantization."""
        dq = self.matcher.value(expr)
        if not (isinstance(dq, relax.Call) and dq.op == _DEQUANTIZE):
            return None
        src = dq.args[0]
        dtype = getattr(src.ty, "dtype", None)
        if _qparams(self.matcher, dq.args[1], dq.args[2], dtype) != out:
            return None
        return src

    def _integer_op(self, inner: relax.Call, out) -> relax.Expr | None:
        if inner.op == _DEQUANTIZE:  # Q(DQ(x)) itself: an Identity / Dropout between them
            return self._int_source(inner, out)
        if inner.op in _MOVES or inner.op == _RESIZE or inner.op == _PAD:
            if not inner.args:
                return None
            x_q = self._int_source(inner.args[0], out)
            if x_q is None:
                return None
            if inner.op == _RESIZE and str(inner.attrs.method) != "nearest_neighbor":
                return None
            if inner.op == _PAD:
                a = inner.attrs
                value = 0
                if str(a.pad_mode) == "constant":
                    value = quantize_scalar(float(a.pad_value), *out)
                return relax.op.nn.pad(x_q, [int(p) for p in a.pad_width], str(a.pad_mode),
                                       float(value))
            # same op and attributes on the integer tensor; its type is inferred again
            return relax.Call(inner.op, [x_q, *inner.args[1:]], inner.attrs, inner.ty_args)
        if inner.op in _CLAMPS or inner.op == _RELU:
            return self._clamp(inner, out)
        if inner.op == _CONCAT:
            items = self.matcher.value(inner.args[0])
            if not isinstance(items, relax.Tuple):
                return None
            srcs = [self._int_source(f, out) for f in items.fields]
            if any(s is None for s in srcs):
                return None
            return relax.op.concat(srcs, axis=int(inner.attrs.axis))
        return None


    def _clamp(self, inner: relax.Call, out, depth: int = 0) -> relax.Expr | None:
        """Q is monotone and Q(DQ(x)) = x, so Q(max(DQ(x), c)) = max(x, Q(c)) (and min);
        a chain of them (Clip = min(max(., lo), hi)) maps link by link."""
        if inner.op == _RELU:
            arg, c, fn = inner.args[0], 0.0, relax.op.maximum
        elif inner.op in _CLAMPS:
            a, b = inner.args
            cb, ca = self.matcher.constant(b), self.matcher.constant(a)
            if cb is not None and cb.size == 1:
                arg, c = a, float(cb.reshape(()))
            elif ca is not None and ca.size == 1:
                arg, c = b, float(ca.reshape(()))
            else:
                return None
            fn = _CLAMPS[inner.op]
        else:
            return None
        x_q = self._int_source(arg, out)
        if x_q is None and depth < 4:
            nested = self.matcher.value(arg)
            x_q = self._clamp(nested, out, depth + 1) if isinstance(nested, relax.Call) else None
        if x_q is None:
            return None
        return fn(x_q, relax.const(quantize_scalar(c, *out), out[2]))


@tvm.transform.module_pass(opt_level=0, name="prom_tvm.IntegerDataMovement")
class IntegerDataMovement:
    """Module pass; ``rewritten`` counts the ops moved onto integer tensors."""

    def __init__(self):
        self.rewritten = 0

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rw = _Rewriter(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rw.builder_.update_func(gv, rw.visit_expr(func))
        self.rewritten = rw.rewritten
        return relax.transform.DeadCodeElimination()(rw.builder_.get())
