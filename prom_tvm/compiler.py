"""``prom_tvm.build``: QDQ ONNX -> integer Relax -> scheduled kernels -> TVM executable.

Pipeline (phases as in DESIGN.md):

1. frontend   ONNX checked, shapes fixed, Clip normalized, imported into Relax
2. lowering   QDQ patterns -> ternary add-only / int8 call_tir kernels (LowerQuantizedOps)
3. schedules  each prom_tvm kernel gets its default schedule (tuning is not available yet)
4. legalize   everything else: TVM's own legalization + fusion, a generic CPU schedule
5. codegen    tvm.compile's lowering and the target's code generator
"""

from __future__ import annotations

import os

import onnx
import tvm

from . import onnx_io
from .compiled_model import CompiledModel, LayerInfo
from .passes.schedule_kernels import ScheduleKernels, ScheduleLeftovers
from .targets import check_buildable, is_gpu, parse_target


def relax_pipeline(target: tvm.target.Target, log=None):
    """The Relax pipeline that runs after lowering (phases 3-5 above); ``log``: a
    ``tuning.records.BuildLog`` whose meta-schedule schedules replace hand-written ones."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    @tvm.transform.module_pass(opt_level=0, name="prom_tvm.Pipeline")
    def pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        if is_gpu(target):
            from .passes.cuda_pipeline import cuda_passes

            with target:
                return tvm.transform.Sequential(cuda_passes(target, log))(mod)
        passes = [ScheduleKernels(target, log)]
        passes += cpu_generic.library_dispatch_passes(target)
        passes += cpu_generic.legalize_passes(target)
        if target.kind.name == "llvm":
            passes.append(ScheduleLeftovers(target))
        lower = cpu_generic.dataflow_lower_passes(target)
        # RewriteDataflowReshape turns reshapes into views but leaves their copy kernels in
        # the module: dropped here, they would be ~50 kB of dead code in every library
        at = next(i for i, p in enumerate(lower) if "RewriteDataflowReshape" in str(p.info))
        lower.insert(at + 1, tvm.relax.transform.DeadCodeElimination())
        passes += lower
        passes += cpu_generic.finalize_passes(target)
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return pipeline


def lower_to_integer(model: onnx.ModelProto, shapes, dtypes, options: dict | None = None):
    """Phases 1-2: the Relax module with integer kernels, and one LayerInfo per layer.

    A failure of TVM's importer or of a prom_tvm pass is a ValueError naming the ONNX node.
    """
    from .frontend import import_model, onnx_error
    from .passes.integer_data_movement import IntegerDataMovement
    from .passes.lower_quantized_ops import LayerLoweringError, LowerQuantizedOps

    mod, table = import_model(model, shapes, dtypes)
    lowering = LowerQuantizedOps(options)
    try:
        mod = lowering(IntegerDataMovement()(mod))
    except LayerLoweringError as err:
        node = table.of_weight(err.weight_const)
        raise onnx_error(node, f"prom_tvm could not lower this layer: {err.cause}",
                         "Please report it with the model; options={'ternary': False} or "
                         "a float export avoids the integer kernels") from err
    except Exception as err:  # a pass failed outside any one layer
        raise ValueError(f"prom_tvm's integer lowering failed: {type(err).__name__}: {err}. "
                         "Please report it with the model") from err
    layers = []
    for d in lowering.decisions:
        node = table.of_weight(d.weight_const)
        op = node.op_type if node else ("Conv" if d.op == "conv2d" else "MatMul")
        layers.append(LayerInfo(
            name=node.name if node else f"<{d.op}>", op=op, kernel=d.kernel,
            weight_shape=d.weight_shape, order=node.index if node else 1 << 30,
            details=d.details,
        ))
    layers.sort(key=lambda r: r.order)
    return mod, layers


def build(
    onnx_model: onnx.ModelProto | str | os.PathLike,
    target: str | dict | tvm.target.Target | None = None,
    *,
    tuning_log: str | os.PathLike | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    options: dict | None = None,
) -> CompiledModel:
    """Compile a QDQ (or float) ONNX model into a callable TVM module.

    Parameters
    ----------
    onnx_model : ModelProto or path to a .onnx file.
    target : TVM target as a CLI string (``"llvm -mcpu=cortex-a72"``), dict or Target;
        None = this machine's CPU with its real features.
    tuning_log : a log directory (or its ``prom_tvm_kernels.json``) written by
        ``python -m prom_tvm.tune``: its records for this target set the add-only kernels'
        knobs per workload (``summary()`` says ``tuned`` per layer). None: a log shipped in
        ``prom_tvm/tuning_logs/`` for this target, if any. False: no log. A log for another
        target is ignored with a ``TuningLogWarning``; a corrupt one is a ``ValueError``.
    input_shapes : ``{input name: shape}``, fixed shapes for inputs with dynamic dimensions.
    options : kernel switches, e.g. ``{"ternary": False}`` to compile ternary layers with
        the int8 kernel (for comparisons).
    """
    source = str(onnx_model) if isinstance(onnx_model, str | os.PathLike) else None
    model = onnx_io.load_onnx(onnx_model)
    tgt = parse_target(target)
    check_buildable(tgt)
    from .tuning.records import log_for_build

    log = log_for_build(tuning_log, tgt)  # checked early: fails before work is done
    shapes = onnx_io.input_shapes(model, input_shapes)
    dtypes = onnx_io.input_dtypes(model)
    model = onnx_io.unpack_subbyte_weights(model)
    # the kernels' vector width (lanes of the add-only code) follows the build's target
    mod, layers = lower_to_integer(model, shapes, dtypes,
                                   {"target": tgt, "kernel_knobs": log.knobs, **(options or {})})
    if log and tuning_log is not None and not log.ms_use and not any(
            lay.details.get("tuned") for lay in layers):
        import warnings

        from .tuning.records import TuningLogWarning

        warnings.warn(f"tuning log {log.path} has no record for any layer of this model: default "
                      "kernels used (tune this model with python -m prom_tvm.tune)",
                      TuningLogWarning, stacklevel=2)
    # The kernels are called only by the VM, with tensors whose shapes and dtypes the Relax
    # program fixes and checks at its entry (the model's inputs); TIR's per-argument asserts
    # would repeat those checks inside every kernel and are 40% of the library's code
    # (MobileNetV2: ~150 of 400 kB), so they are left out.
    ctx = tvm.transform.PassContext.current()
    with tvm.transform.PassContext(opt_level=ctx.opt_level,
                                   config={**ctx.config, "tirx.disable_assert": True}):
        ex = tvm.compile(mod, target=tgt, relax_pipeline=relax_pipeline(tgt, log))
    if is_gpu(tgt):
        from .passes.cuda_pipeline import check_gpu_module

        check_gpu_module(ex, tgt)
    tuned_kernels = getattr(log, "ms_applied", set())
    for lay in layers:  # int8 kernels that run a meta-schedule schedule
        if lay.details.get("kernel_symbol") in tuned_kernels:
            lay.details["tuned"] = True
    outputs = [o.name for o in model.graph.output]
    return CompiledModel(ex, tgt, list(shapes), shapes, dtypes, outputs, layers, source=source)

