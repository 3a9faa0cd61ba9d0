"""Recognize the integer layers hidden in a QDQ graph after ONNX import.

The Relax ONNX frontend turns QuantizeLinear / DequantizeLinear into ``R.quantize`` /
``R.dequantize`` around float ops.  Going backwards from each ``R.quantize`` we recover

    quantize( [min/max/relu]( conv2d | matmul( dequantize(x_q), dequantize(W_q) ) [+ bias] ) )
    quantize( [relu]( dequantize(a_q) + dequantize(b_q) ) )

with every constant as numpy.  A matcher returns ``(layer, None)`` or ``(None, reason)``
so that a layer left in float can say why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

_OPS = {name: tvm.ir.Op.get(f"relax.{name}") for name in (
    "quantize", "dequantize", "nn.conv2d", "matmul", "add", "nn.relu", "maximum", "minimum",
    "reshape", "permute_dims", "nn.pad",
)}


def is_op(expr, name: str) -> bool:
    return isinstance(expr, relax.Call) and expr.op == _OPS[name]


@dataclass
class QTensor:
    """A quantized activation: the integer tensor and its per-tensor scale / zero point."""

    expr: relax.Expr
    scale: float
    zero_point: int
    dtype: str


@dataclass
class OutputQuant:
    scale: float
    zero_point: int
    dtype: str
    lo: float | None = None  # activation clamp folded from ReLU / Clip, in float
    hi: float | None = None


@dataclass
class QLinear:
    """A Conv / Gemm / MatMul on quantized input with constant integer weights.

    weight: integer weights (zero point removed), int32, OIHW for conv, (N, K) for dense.
    weight_scale: float32 [Cout]; bias: int32 [Cout] in units of x_scale * weight_scale.
    """

    kind: str  # "conv2d" | "dense"
    x: QTensor
    weight: np.ndarray
    weight_scale: np.ndarray
    bias: np.ndarray
    out: OutputQuant
    raw_weight: np.ndarray  # the constant as stored
    weight_const: relax.Constant | None = None  # its Relax constant: names the layer
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    notes: list[str] = field(default_factory=list)


@dataclass
class QAdd:
    a: QTensor
    b: QTensor
    out: OutputQuant


def const_value(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.Constant) else None


def scalar(expr) -> float | None:
    v = const_value(expr)
    if v is None or v.size != 1:
        return None
    return v.reshape(()).item()


class Matcher:
    """Backward pattern matching through the bindings of a Relax dataflow block."""

    def __init__(self, lookup: Callable[[relax.Var], relax.Expr | None]):
        self._lookup = lookup

    def value(self, expr):
        """Follow variables to the expression bound to them (and constants through)."""
        seen = 0
        while isinstance(expr, relax.Var) and seen < 8:
            bound = self._lookup(expr)
            if bound is None:
                break
            expr = bound
            seen += 1
        return expr

    def constant(self, expr) -> np.ndarray | None:
        return const_value(self.value(expr))

    # -- pieces --------------------------------------------------------------------------
    def output_quant(self, q: relax.Call) -> tuple[OutputQuant | None, str | None]:
        sy, zy = self.constant(q.args[1]), self.constant(q.args[2])
        if sy is None or zy is None:
            return None, "output QuantizeLinear scale / zero point are not constants"
        if sy.size != 1 or zy.size != 1:
            return None, "per-channel output quantization is not supported"
        return OutputQuant(float(sy.reshape(())), int(zy.reshape(())), str(q.attrs.out_dtype)), None

    def qtensor(self, expr) -> tuple[QTensor | None, str | None]:
        dq = self.value(expr)
        if not is_op(dq, "dequantize"):
            return None, "input is not a DequantizeLinear output (float activation)"
        sx, zx = self.constant(dq.args[1]), self.constant(dq.args[2])
        if sx is None or zx is None or sx.size != 1 or zx.size != 1:
            return None, "input quantization is not a per-tensor constant"
        src = dq.args[0]
        dtype = str(src.ty.dtype) if hasattr(src.ty, "dtype") else ""
        if dtype not in ("uint8", "int8"):
            return None, f"input is {dtype or 'not a tensor'}, not uint8/int8"
        return QTensor(src, float(sx.reshape(())), int(zx.reshape(())), dtype), None

    def weight(self, expr, out_axis: int = 0) -> tuple[tuple | None, str | None]:
        """(integer weight, per-output scale [Cout], raw, constant) from a constant weight.

        ``out_axis`` is the output-channel axis of the stored weight (1 for a MatMul (K, N)
        weight); the returned weight has output channels first.
        """
        w = self.value(expr)
        if is_op(w, "dequantize"):
            wq, ws, wz = (self.constant(a) for a in w.args)
            if wq is None or ws is None or wz is None:
                return None, "weight DequantizeLinear inputs are not constants"
            if not np.issubdtype(wq.dtype, np.integer):
                return None, f"quantized weight has dtype {wq.dtype}"
            if int(w.attrs.axis) % wq.ndim != out_axis and ws.size != 1:
                return None, f"weight scales along axis {int(w.attrs.axis)}, expected {out_axis}"
            if np.any(wz != 0):
                return None, "weight zero point is not 0 (asymmetric weights)"
            if out_axis:
                wq = np.moveaxis(wq, out_axis, 0)
            cout = wq.shape[0]
            scale = np.broadcast_to(ws.astype(np.float32).reshape(-1), (cout,)).copy()
            return (wq.astype(np.int32), scale, wq, self.value(w.args[0])), None
        c = const_value(w)
        if c is not None and np.issubdtype(c.dtype, np.floating):
            from .ternary_detect import detect_ternary

            if out_axis:
                c = np.moveaxis(c, out_axis, 0)
            t = detect_ternary(c)
            if t is None:
                return None, "float weights that are not ternary (no integer form)"
            return (t.signs.astype(np.int32), t.magnitude.astype(np.float32), c, w), None
        return None, "weight is not a constant"

    def bias(self, expr, cout: int, acc_scale: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        b = self.value(expr)
        if is_op(b, "reshape"):
            b = self.value(b.args[0])
        if is_op(b, "dequantize"):
            bq, bs, bz = (self.constant(a) for a in b.args)
            if bq is None or bs is None or bz is None:
                return None, "bias DequantizeLinear inputs are not constants"
            bq = bq.reshape(-1).astype(np.int64) - bz.reshape(-1).astype(np.int64)
            bs = np.broadcast_to(bs.astype(np.float32).reshape(-1), (cout,))
            if bq.size == cout and np.allclose(bs, acc_scale, rtol=1e-6, atol=0):
                return bq.astype(np.int32), None
            value = bq * bs.astype(np.float64)
        else:
            value = const_value(b)
            if value is None:
                return None, "bias is not a constant"
            value = value.astype(np.float64).reshape(-1)
        if value.size not in (1, cout):
            return None, f"bias of {value.size} values for {cout} channels"
        q = np.rint(np.broadcast_to(value, (cout,)) / acc_scale.astype(np.float64))
        if np.abs(q).max(initial=0) > 2**30:
            return None, "bias does not fit the int32 accumulator"
        return q.astype(np.int32), None

    # -- whole layers --------------------------------------------------------------------
    def activation(self, expr, out: OutputQuant):
        """Peel ReLU / Max(lo) / Min(hi) off, folding them into the output clamp."""
        for _ in range(3):
            e = self.value(expr)
            if is_op(e, "nn.relu"):
                out.lo = 0.0 if out.lo is None else max(out.lo, 0.0)
                expr = e.args[0]
            elif is_op(e, "maximum") or is_op(e, "minimum"):
                consts = [scalar(self.value(a)) for a in e.args]
                if consts[1] is not None:
                    other, c = e.args[0], consts[1]
                elif consts[0] is not None:
                    other, c = e.args[1], consts[0]
                else:
                    break
                if is_op(e, "maximum"):
                    out.lo = c if out.lo is None else max(out.lo, c)
                else:
                    out.hi = c if out.hi is None else min(out.hi, c)
                expr = other
            else:
                break
        return expr

    def linear(self, q: relax.Call) -> tuple[QLinear | None, str | None]:
        out, why = self.output_quant(q)
        if out is None:
            return None, why
        body = self.activation(q.args[0], out)
        e = self.value(body)
        bias_expr = None
        if is_op(e, "add"):
            lhs, rhs = (self.value(a) for a in e.args)
            if is_op(lhs, "nn.conv2d") or is_op(lhs, "matmul"):
                e, bias_expr = lhs, e.args[1]
            elif is_op(rhs, "nn.conv2d") or is_op(rhs, "matmul"):
                e, bias_expr = rhs, e.args[0]
            else:
                return None, "no Conv/Gemm/MatMul before QuantizeLinear"
        if is_op(e, "nn.conv2d"):
            return self._conv(e, bias_expr, out)
        if is_op(e, "matmul"):
            return self._dense(e, bias_expr, out)
        return None, "no Conv/Gemm/MatMul before QuantizeLinear"

    def _common(self, x_expr, w_expr, bias_expr, out, out_axis=0):
        x, why = self.qtensor(x_expr)
        if x is None:
            return None, why
        wres, why = self.weight(w_expr, out_axis)
        if wres is None:
            return None, why
        w_int, w_scale, raw, const = wres
        acc_scale = (np.float32(x.scale) * w_scale).astype(np.float32)
        if bias_expr is None:
            bias = np.zeros(w_int.shape[0], np.int32)
        else:
            bias, why = self.bias(bias_expr, w_int.shape[0], acc_scale)
            if bias is None:
                return None, why
        return (x, w_int, w_scale, raw, const, bias), None

    def _conv(self, conv: relax.Call, bias_expr, out) -> tuple[QLinear | None, str | None]:
        a = conv.attrs
        if str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
            return None, f"conv layout {a.data_layout}/{a.kernel_layout}"
        parts, why = self._common(conv.args[0], conv.args[1], bias_expr, out)
        if parts is None:
            return None, why
        x, w_int, w_scale, raw, const, bias = parts
        if w_int.ndim != 4:
            return None, "conv weight is not 4-D"
        pad = [int(p) for p in a.padding]
        if len(pad) == 2:
            pad = pad * 2
        x, pad = self._fold_zero_pad(x, pad, w_int.shape[2:])
        return QLinear(
            kind="conv2d", x=x, weight=w_int, weight_scale=w_scale, bias=bias, out=out,
            raw_weight=raw, weight_const=const, strides=tuple(int(s) for s in a.strides),
            padding=tuple(pad),
            dilation=tuple(int(d) for d in a.dilation), groups=int(a.groups),
        ), None

    def _fold_zero_pad(self, x: QTensor, pad: list[int], kernel) -> tuple[QTensor, list[int]]:
        """An integer spatial Pad of the zero point before a conv becomes conv padding.

        The int8 conv kernel pads with the zero point itself, so this is exact; a pad of
        another value, or a 1x1 conv (which would lose the add-only kernel), keeps the
        explicit integer Pad.
        """
        p = self.value(x.expr)
        if not is_op(p, "nn.pad") or tuple(int(k) for k in kernel) == (1, 1):
            return x, pad
        a = p.attrs
        width = [int(w) for w in a.pad_width]
        if str(a.pad_mode) != "constant" or len(width) != 8 or any(width[:4]):
            return x, pad
        if float(a.pad_value) != float(x.zero_point):
            return x, pad
        top, bottom, left, right = width[4:]
        new = [pad[0] + top, pad[1] + left, pad[2] + bottom, pad[3] + right]
        return QTensor(p.args[0], x.scale, x.zero_point, x.dtype), new

    def _dense(self, mm: relax.Call, bias_expr, out) -> tuple[QLinear | None, str | None]:
        x_expr, w_expr = mm.args
        w = self.value(w_expr)
        transposed = False
        if is_op(w, "permute_dims"):
            w_expr, transposed = w.args[0], True
        # Gemm(transB=1) imports as matmul(x, permute_dims(W)) with W (N, K); MatMul and
        # Gemm(transB=0) keep W as (K, N) with per-channel scales along axis 1.
        parts, why = self._common(x_expr, w_expr, bias_expr, out, 0 if transposed else 1)
        if parts is None:
            return None, why
        x, w_int, w_scale, raw, const, bias = parts
        if w_int.ndim != 2:
            return None, "MatMul weight is not 2-D"
        xshape = getattr(x.expr.ty, "shape", None)
        if xshape is None or len(xshape) != 2:
            return None, "dense input is not 2-D"
        return QLinear(kind="dense", x=x, weight=w_int, weight_scale=w_scale, bias=bias,
                       out=out, raw_weight=raw, weight_const=const), None

    def residual_add(self, q: relax.Call) -> tuple[QAdd | None, str | None]:
        out, why = self.output_quant(q)
        if out is None:
            return None, why
        e = self.value(self.activation(q.args[0], out))
        if not is_op(e, "add"):
            return None, "not an Add"
        a, why = self.qtensor(e.args[0])
        if a is None:
            return None, why
        b, why = self.qtensor(e.args[1])
        if b is None:
            return None, why
        sa = getattr(a.expr.ty, "shape", None)
        sb = getattr(b.expr.ty, "shape", None)
        if sa is None or sb is None or [int(s) for s in sa] != [int(s) for s in sb]:
            return None, "broadcasting Add"
        return QAdd(a, b, out), None
