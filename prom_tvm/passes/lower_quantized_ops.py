"""Rewrite recovered QDQ layers into integer TE kernels called through call_tir.

* ternary 1x1 conv (stride 1, no padding, groups 1)  -> add-only kernel;
* any other conv with integer weights (regular, depthwise, grouped, strided, padded,
  dilated, and ternary convs the add-only kernel does not cover) -> int8 conv kernel;
* Gemm / MatMul with constant integer weights -> int8 dense kernel;
* Add of two quantized tensors -> int8 add (QLinearAdd semantics).

Each rewrite replaces the ``R.quantize`` that ends the pattern, so downstream
``R.dequantize`` consumers keep working and the float ops left behind die in DCE.
Everything else stays on TVM's legalization; ``decisions`` says what happened to each
Conv / Gemm / MatMul and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import tvm
from tvm import relax

from ..schedules.requant import Requant, ort_scale
from ..targets import is_gpu
from .qdq_match import Matcher, QAdd, QLinear, is_op
from .ternary_detect import detect_ternary


@dataclass
class LayerDecision:
    """What the compiler did with one Conv / Gemm / MatMul."""

    weight: np.ndarray  # the stored weight constant
    op: str  # "conv2d" | "dense"
    kernel: str  # "ternary-add" | "int8" | "float"
    weight_shape: tuple[int, ...]
    details: dict = field(default_factory=dict)
    weight_const: relax.Constant | None = None  # its Relax constant: the key to the ONNX node


class LayerLoweringError(Exception):
    """A recovered layer whose integer kernel could not be emitted (names its weight)."""

    def __init__(self, weight_const, cause: Exception):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.weight_const = weight_const
        self.cause = f"{type(cause).__name__}: {cause}"


def _requant(layer: QLinear | QAdd, scale: np.ndarray) -> Requant:
    out = layer.out
    lo, hi = Requant.clamp_range(out.dtype, out.zero_point, out.scale, out.lo, out.hi)
    return Requant(scale=scale.astype(np.float32), zero_point=out.zero_point, qmin=lo, qmax=hi,
                   out_dtype=out.dtype)


def _is_plain_1x1(layer: QLinear) -> bool:
    return (layer.kind == "conv2d" and layer.weight.shape[2:] == (1, 1) and layer.groups == 1
            and layer.strides == (1, 1) and layer.padding == (0, 0, 0, 0))


@relax.expr_functor.mutator
class _Lowering(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, options: dict):
        super().__init__(mod)
        self.matcher = Matcher(self.lookup_binding)
        self.options = options
        self.decisions: list[LayerDecision] = []
        self.float_reasons: dict = {}  # weight relax.Constant -> reason
        self.count = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not is_op(call, "quantize"):
            return call
        layer, why = self.matcher.linear(call)
        if layer is not None:
            try:
                return self._lower_linear(call, layer)
            except Exception as err:  # re-raised naming the layer
                raise LayerLoweringError(layer.weight_const, err) from err
        self._note_float(call, why)
        add, _ = self.matcher.residual_add(call)
        if add is not None and self.options.get("int8_add", True):
            return self._lower_add(add)
        return call

    # -- conv / dense ----------------------------------------------------------------------
    def _lower_linear(self, call, layer: QLinear) -> relax.Expr:
        if np.abs(layer.weight).max(initial=0) > 127:
            self._note_float(call, "integer weights outside int8")
            return call
        self.count += 1
        details = {"x_dtype": layer.x.dtype, "out_dtype": layer.out.dtype}
        if layer.kind == "conv2d":
            details.update(strides=layer.strides, padding=layer.padding, groups=layer.groups,
                           dilation=layer.dilation)
        tern = detect_ternary(layer.weight) if layer.kind == "conv2d" else None
        if tern is not None and _is_plain_1x1(layer) and self.options.get("ternary", True):
            out = self._emit_ternary(layer, tern, details)
            kernel = "ternary-add"
        else:
            if tern is not None and layer.kind == "conv2d" and layer.weight.shape[2:] == (1, 1):
                details["note"] = "ternary weights, but strided/padded/grouped: int8 kernel"
            out = self._emit_int8(layer, details)
            kernel = "int8"
        self.decisions.append(LayerDecision(layer.raw_weight, layer.kind, kernel,
                                            tuple(layer.weight.shape), details,
                                            layer.weight_const))
        return out

    def _emit_ternary(self, layer: QLinear, tern, details: dict) -> relax.Expr:
        from ..schedules.ternary_conv1x1 import (
            TernaryLists,
            accumulation_plan,
            sum_bound,
            ternary_conv1x1_compute,
        )
        from ..schedules.ternary_conv1x1_baked import (
            DEFAULT_BAKED_WEIGHTS,
            baked_ternary_primfunc,
            can_bake,
        )

        x = layer.x
        n, cin, h, w = (int(s) for s in x.expr.ty.shape)
        lists = TernaryLists.from_signs(tern.signs)
        plan = accumulation_plan(lists, x.dtype)
        lists = lists.padded_to(plan.length)
        mag = tern.magnitude.astype(np.int64)  # integer weights: |w| of each channel
        bias = (layer.bias.astype(np.int64)
                - x.zero_point * mag * (lists.n_pos - lists.n_neg)).astype(np.int32)
        rq = _requant(layer, ort_scale(x.scale, layer.weight_scale, layer.out.scale))
        magnitude = None if np.all(mag == 1) else mag.astype(np.int32)
        acc = "int16" if plan.chunks == 1 else f"int16x{plan.chunks}+int32"
        details.update(acc_dtype=acc, nonzeros=int(lists.n_pos.sum() + lists.n_neg.sum()),
                       list_length=lists.length)
        x3 = self.builder_.emit(relax.op.reshape(x.expr, (n, cin, h * w)))
        args = [x3, relax.const(lists.pos), relax.const(lists.neg), relax.const(bias),
                relax.const(rq.scale)]
        if magnitude is not None:
            args.append(relax.const(magnitude))
        # Python-level parameters are bound with partial: call_te only converts tensors.
        float_rescale = bool(int(mag.max(initial=1)) * sum_bound(lists, x.dtype)
                             + int(np.abs(bias).max(initial=0)) < 2**24)
        cout = lists.pos.shape[0]
        max_baked = int(self.options.get("bake_max_weights", DEFAULT_BAKED_WEIGHTS))
        from ..schedules import ternary_specialized as ts

        # Which add-only code: weight-specialized add chains where many pixels share few
        # weights (the rule in ternary_specialized), else the table-lookup kernel on packed
        # weights (ternary_lut); "index-lists" / "baked" are the older forms, on request.
        form = self.options.get("ternary_form", "table-lookup")
        if form not in ("table-lookup", "index-lists", "baked"):
            raise ValueError(f"options['ternary_form'] must be 'table-lookup', 'index-lists' "
                             f"or 'baked', got {form!r}")
        from ..schedules import ternary_forms as tf
        from ..schedules.requant_x86 import x86_vector_bits
        from ..schedules.ternary_lut import cores_of

        tlayer = tf.TernaryLayer(np.asarray(tern.signs).reshape(cout, cin), n, h, w, x.dtype,
                                 bias, rq, magnitude, float_rescale)
        lanes = ts.lanes_from_options(self.options)
        x86_bits = None if is_gpu(self.options.get("target")) else x86_vector_bits(
            self.options.get("target"))
        records = self.options.get("kernel_knobs") or {}  # workload key -> tuned knobs
        kern = key = None
        if is_gpu(self.options.get("target")):  # the GPU's own add-only kernel
            from ..schedules.cuda_ternary import cuda_ternary_kernel

            kern, name = cuda_ternary_kernel(tlayer), f"prom_ternary_cuda_{self.count}"
        elif self.options.get("specialize", True):  # weight-specialized TIR, shared sub-sums
            key = tf.workload_key(tlayer, "specialized", lanes)
            kern = tf.specialized_kernel(tlayer, lanes, records.get(key),
                                         self.options.get("specialize_bytes_per_pixel"),
                                         x86_bits)
            name = f"prom_ternary_specialized_{self.count}"
        if kern is None and form == "table-lookup":
            key = tf.workload_key(tlayer, "table-lookup", lanes)
            knobs = records.get(key) or (
                {"g": int(self.options["lut_group"])} if "lut_group" in self.options else None)
            kern = tf.lut_kernel(tlayer, lanes, cores_of(self.options.get("target")), knobs,
                                 x86_bits)
            # layers of one shape share the code: the weights are the idx argument
            name = f"prom_ternary_lut_{cin}_{cout}_{h * w}"
        if kern is not None:
            details.update(kern.details)
            details["workload"] = key
            details["tuned"] = key in records
            collect = self.options.get("_collect_ternary")
            if collect is not None and key is not None:  # the tuner's task extraction
                collect.append((key, details["form"], tlayer))
            gv = self.builder_.add_func(kern.func.with_attr("op_pattern", 8), name)
            flat = details["form"] == "cuda-index-lists"  # (N, C, H*W) in and out
            shape = (n, cout, h * w) if flat else (n, cout, h, w)
            y = relax.call_tir(gv, [x3 if flat else x.expr, *(relax.const(c) for c in kern.consts)],
                               out_ty=relax.TensorType(shape, rq.out_dtype))
        elif form == "baked" and can_bake(cin, cout, h * w, plan.chunks == 1, max_baked):
            details["form"] = "baked"
            func = baked_ternary_primfunc(tern.signs, n, h * w, x.dtype, bias, rq, magnitude,
                                          float_rescale).with_attr("op_pattern", 8)
            gv = self.builder_.add_func(func, f"prom_ternary_baked_{self.count}")
            y = relax.call_tir(gv, [x3], out_ty=relax.TensorType((n, cout, h * w), rq.out_dtype))
        else:
            details["form"] = "index-lists"
            y = self.builder_.call_te(
                partial(ternary_conv1x1_compute, rq=rq, plan=plan, float_rescale=float_rescale),
                *args,
                primfunc_name_hint=f"prom_ternary_conv1x1_{self.count}",
            )
        _note_storage(details, y)
        if details["form"] in ("specialized", "table-lookup"):
            return y  # NCHW in and out: no reshape (a copy where it ends the graph)
        y = self.builder_.emit(y)
        return relax.op.reshape(y, (n, cout, h, w))

    def _emit_int8(self, layer: QLinear, details: dict) -> relax.Expr:
        x = layer.x
        w = layer.weight.astype(np.int64)
        sums = w.reshape(w.shape[0], -1).sum(axis=1)
        bias = (layer.bias.astype(np.int64) - x.zero_point * sums).astype(np.int32)
        rq = _requant(layer, ort_scale(x.scale, layer.weight_scale, layer.out.scale))
        common = [x.expr, relax.const(layer.weight.astype(np.int8)), relax.const(bias),
                  relax.const(rq.scale)]
        if layer.kind == "conv2d":
            from ..schedules.int8_conv2d import int8_conv2d_compute

            fn = partial(int8_conv2d_compute, strides=layer.strides, padding=layer.padding,
                         dilation=layer.dilation, groups=layer.groups,
                         x_zero_point=x.zero_point, rq=rq)
            call = self.builder_.call_te(fn, *common,
                                         primfunc_name_hint=f"prom_int8_conv2d_{self.count}")
            return _note_storage(details, call)
        from ..schedules.int8_dense import int8_dense_compute

        # (N, K) weights: the VNNI path reduces 64-byte slices of K per output feature.
        fn = partial(int8_dense_compute, x_zero_point=x.zero_point, rq=rq, transpose_w=True)
        call = self.builder_.call_te(fn, *common,
                                     primfunc_name_hint=f"prom_int8_dense_{self.count}")
        return _note_storage(details, call)

    # -- residual add ------------------------------------------------------------------
    def _lower_add(self, add: QAdd) -> relax.Expr:
        from ..schedules.int8_add import int8_add_compute

        out = add.out
        lo, hi = Requant.clamp_range(out.dtype, out.zero_point, out.scale, out.lo, out.hi)
        fn = partial(int8_add_compute, a_scale=add.a.scale, a_zp=add.a.zero_point,
                     b_scale=add.b.scale, b_zp=add.b.zero_point, y_scale=out.scale,
                     y_zp=out.zero_point, out_dtype=out.dtype, qmin=lo, qmax=hi)
        return self.builder_.call_te(fn, add.a.expr, add.b.expr,
                                     primfunc_name_hint="prom_int8_add")

    def _note_float(self, call, why: str | None) -> None:
        """Remember why the conv / matmul feeding this quantize stays in float."""
        body = self.matcher.value(self.matcher.activation(call.args[0], _Scratch()))
        if is_op(body, "add"):
            for a in body.args:
                a = self.matcher.value(a)
                if is_op(a, "nn.conv2d") or is_op(a, "matmul"):
                    body = a
        if is_op(body, "nn.conv2d") or is_op(body, "matmul"):
            key = _weight_constant(self.matcher, body.args[1])
            if key is not None and why:
                self.float_reasons.setdefault(key, why)


def _note_storage(details: dict, call: relax.Call) -> relax.Call:
    """Record the kernel a layer calls and the bytes of the constants it passes it (what the
    layer stores in the library besides code: ``prom_tvm.library_size``)."""
    details["kernel_symbol"] = call.args[0].name_hint
    args = call.args[1].fields if isinstance(call.args[1], relax.Tuple) else [call.args[1]]
    details["data_bytes"] = sum(int(a.value.numpy().nbytes) for a in args
                                if isinstance(a, tvm.ir.Constant))
    return call


class _Scratch:
    lo = hi = None


def _weight_constant(matcher: Matcher, w) -> relax.Constant | None:
    """The constant a weight expression is made of (through DQ / transpose / reshape)."""
    for _ in range(3):
        w = matcher.value(w)
        if isinstance(w, tvm.ir.Constant):
            return w
        if is_op(w, "dequantize") or is_op(w, "permute_dims") or is_op(w, "reshape"):
            w = w.args[0]
        else:
            return None
    return None


@relax.expr_functor.visitor
class _FloatLayers(relax.PyExprVisitor):
    """Collect the Conv / MatMul calls that survived lowering: they run in float."""

    def __init__(self, reasons: dict[str, str]):
        super().__init__()
        self.bindings: dict = {}
        self.matcher = Matcher(lambda v: self.bindings.get(v))
        self.reasons = reasons
        self.decisions: list[LayerDecision] = []

    def visit_var_binding_(self, binding) -> None:
        self.bindings[binding.var] = binding.value
        super().visit_var_binding_(binding)

    def visit_call_(self, call) -> None:
        super().visit_call_(call)
        if not (is_op(call, "nn.conv2d") or is_op(call, "matmul")):
            return
        const = _weight_constant(self.matcher, call.args[1])
        if const is None:
            return  # activation x activation matmul: not a layer with weights
        raw = const.value.numpy()
        why = self.reasons.get(const) or self._reason(call)
        op = "conv2d" if is_op(call, "nn.conv2d") else "dense"
        self.decisions.append(LayerDecision(raw, op, "float", tuple(raw.shape), {"reason": why},
                                            const))


    def _reason(self, call) -> str:
        """Why a layer no QuantizeLinear led the lowering to stays float."""
        x, why = self.matcher.qtensor(call.args[0])
        if x is None:
            return why
        return ("its output is not quantized: no QuantizeLinear right after it (only a bias, "
                "ReLU or constant Clip may come in between)")


@tvm.transform.module_pass(opt_level=0, name="prom_tvm.LowerQuantizedOps")
class LowerQuantizedOps:
    """Module pass; after it runs, ``decisions`` lists every Conv / Gemm / MatMul.

    options: {"ternary": bool, "int8_add": bool} switch rewrites off (for A/B tests);
    {"bake_max_weights": int} sets the largest ternary layer (Cin * Cout) compiled as
    weight-specialized code (0: none); {"specialize": bool, "specialize_bytes_per_pixel":
    float, "target": ...} steer the add-chain TIR kernel (``schedules/ternary_specialized``).
    """

    def __init__(self, options: dict | None = None):
        self.options = dict(options or {})
        self.decisions: list[LayerDecision] = []

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        lowering = _Lowering(mod, self.options)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                lowering.builder_.update_func(gv, lowering.visit_expr(func))
        mod = relax.transform.DeadCodeElimination()(lowering.builder_.get())
        floats = _FloatLayers(lowering.float_reasons)
        for _, func in mod.functions_items():
            if isinstance(func, relax.Function):
                floats.visit_expr(func)
        self.decisions = lowering.decisions + floats.decisions
        return mod
