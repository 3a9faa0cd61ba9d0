"""The exact reference a compiled model is judged against, and onnxruntime's int8 baseline.

A QDQ model *means* DequantizeLinear -> float ops -> QuantizeLinear. :class:`ExactReference`
evaluates exactly that with ONNX's own numpy reference implementation (``onnx.reference``), the
float ops in float64: a conv of dequantized int8 values is then exact (products of two float32
are exact in float64, sums of thousands of them lose nothing at 8-bit output resolution), so the
only roundings are the QuantizeLinear ones the model asks for. It runs on numpy alone, so it
gives the same answer on every CPU.

onnxruntime's optimized session (:func:`optimized_session`, fused int8 kernels from MLAS) is the
*speed* baseline, not the truth: on x86 CPUs without VNNI (Haswell-Skylake, Zen 1-3) MLAS
multiplies u8 x s8 with ``vpmaddubsw``, which saturates the int16 sum of two products, and the
{-127, 0, 127} weights onnxruntime's quantizer writes for ternary layers hit that bound on most
outputs (microsoft/onnxruntime#16105). onnxruntime with every optimization disabled
(:func:`unfused_session`) runs the QDQ graph as written but in float32, whose rounding in long
sums flips a requantization now and then; it is kept for timing the float graph and for
comparison.

Integer kernels round their requantization like onnxruntime's QLinearConv (one float32 multiply
by the combined scale), so a compiled model and the reference differ by a rounding tie here and
there, which later layers can widen to a few output LSB: :func:`agreement` measures it.

onnxruntime is an optional dependency (``[demo]`` / ``[dev]`` extras), imported on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .onnx_io import graph_inputs


def _ort():
    try:
        import onnxruntime
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the exact reference runs in onnxruntime: pip install onnxruntime "
                          "(or install prom-tvm with the [demo] or [dev] extra)") from err
    return onnxruntime


def _session(model: onnx.ModelProto | str | Path, level: str, threads: int):
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if threads > 0:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    src = str(model) if isinstance(model, str | Path) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def unfused_session(model: onnx.ModelProto | str | Path, threads: int = 1):
    """onnxruntime running the QDQ graph as written, in float32 (no fused int8 kernels).

    ORT_DISABLE_ALL keeps every DequantizeLinear / float op / QuantizeLinear separate, so no
    CPU-dependent int8 kernel (and no vpmaddubsw saturation) is involved.
    """
    return _session(model, "ORT_DISABLE_ALL", threads)


def optimized_session(model: onnx.ModelProto | str | Path, threads: int = 1):
    """onnxruntime as users deploy it (all optimizations; fused int8 kernels for a QDQ model):
    the speed baseline, for QDQ and float models alike."""
    return _session(model, "ORT_ENABLE_ALL", threads)


def feeds(session, inputs: np.ndarray | list[np.ndarray] | dict[str, np.ndarray]) -> dict:
    """Session feeds from one array, a list in input order, or a dict."""
    return _named(inputs, [i.name for i in session.get_inputs()])


def _named(inputs, names: list[str]) -> dict:
    if isinstance(inputs, dict):
        return dict(inputs)
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    if len(names) != len(inputs):
        raise ValueError(f"the model has inputs {names}, got {len(inputs)} array(s)")
    return dict(zip(names, inputs, strict=True))


def run(session, inputs) -> np.ndarray:
    """First output of ``session`` on ``inputs``."""
    return session.run(None, feeds(session, inputs))[0]


def _float64_qdq_ops():
    """QuantizeLinear / DequantizeLinear for onnx.reference with float64 in between.

    DequantizeLinear computes its float32 result as the standard says, then widens it;
    QuantizeLinear narrows its input to float32 first (its input type in the model) and then
    divides and rounds half to even as the standard says. Registered for every opset: onnx's
    reference has no implementation of the opset-13 versions most exporters write.
    """
    from onnx.reference.ops.op_dequantize_linear import DequantizeLinear_21
    from onnx.reference.ops.op_quantize_linear import QuantizeLinear_21

    class DequantizeLinear(DequantizeLinear_21):
        op_domain = ""

        def _run(self, x, x_scale, x_zero_point=None, axis: int = 1, block_size: int = 0,
                 output_dtype=None):
            (y,) = super()._run(x, x_scale, x_zero_point, axis=axis, block_size=block_size)
            return (y.astype(np.float64),)

    class QuantizeLinear(QuantizeLinear_21):
        op_domain = ""

        def _run(self, x, y_scale, zero_point=None, axis: int = 1, saturate: bool = True,
                 block_size: int | None = None, output_dtype=None, precision=None):
            return super()._run(np.asarray(x, np.float32), y_scale, zero_point, axis=axis,
                                saturate=saturate, block_size=block_size,
                                output_dtype=output_dtype)

    return [DequantizeLinear, QuantizeLinear]


class ExactReference:
    """The QDQ graph in numpy, float ops in float64: the truth a compiled model must match.

    ``ExactReference(model)(x)`` returns the first output as float32 (like the model's
    output); ``run`` returns every output.
    """

    def __init__(self, model: onnx.ModelProto | str | Path):
        from onnx.reference import ReferenceEvaluator

        if isinstance(model, str | Path):
            model = onnx.load(str(model))
        self.input_names = [i.name for i in graph_inputs(model)]
        try:
            self._eval = ReferenceEvaluator(model, new_ops=_float64_qdq_ops())
        except Exception as err:  # onnx raises RuntimeError / NotImplementedError / TypeError
            raise ValueError(f"the exact reference (onnx.reference) cannot run this model: "
                             f"{err}") from err

    def run(self, inputs) -> list[np.ndarray]:
        outs = self._eval.run(None, _named(inputs, self.input_names))
        return [o.astype(np.float32) if o.dtype == np.float64 else o for o in outs]

    def __call__(self, inputs) -> np.ndarray:
        return self.run(inputs)[0]


# Output LSBs a compiled QDQ network may differ from the exact reference by. An integer kernel
# requantizes with one float32 multiply by the combined scale (as onnxruntime's QLinearConv);
# the float graph dequantizes, sums and divides. The two round a value within ~1e-7 of a
# half-integer differently, a few times per million activations, and the layers after such a
# flip can widen it. Measured (12 seeded inputs, benchmarks/reference_agreement.py): MobileNetV2 224
# <= 2 LSB, MobileNetV2-0.5 at 96x96 <= 4 LSB; onnxruntime's own float32 run of the same QDQ
# graph is up to 5 LSB off. A kernel bug is tens of LSB or a different top-1.
TOLERANCE_LSB = 4


@dataclass(frozen=True)
class Agreement:
    """How far an output is from the reference: in output LSBs, and whether top-1 agrees."""

    max_lsb: int
    top1_same: bool

    def ok(self, tolerance_lsb: int = TOLERANCE_LSB) -> bool:
        return self.top1_same and self.max_lsb <= tolerance_lsb


def agreement(got: np.ndarray, ref: np.ndarray, step: float) -> Agreement:
    """Compare two dequantized outputs whose quantization step is ``step``."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"output shapes differ: {got.shape} vs reference {ref.shape}")
    lsb = int(np.rint(np.abs(got - ref) / step).max(initial=0))
    same = bool(got.reshape(got.shape[0], -1).argmax(1).tolist()
                == ref.reshape(ref.shape[0], -1).argmax(1).tolist())
    return Agreement(lsb, same)


@functools.cache
def host_x86_without_vnni() -> bool:
    """Whether this is an x86 CPU without AVX-512 VNNI / AVX-VNNI, where onnxruntime's u8s8
    kernels saturate. Asks CPUID through LLVM's host detection (prom_tvm.targets), which also
    sees an emulated CPU's CPUID (qemu-user), unlike /proc/cpuinfo."""
    from tvm.target.codegen import target_has_features

    from .targets import host_target

    target = host_target()
    if not str(target.attrs.get("mtriple", "")).startswith(("x86_64", "i686", "i386")):
        return False
    return not any(target_has_features(f, target) for f in ("avx512vnni", "avxvnni"))


def int8_mismatch_reason(vnni: bool | None = None) -> str:
    """One line on why onnxruntime's int8 output may differ from the exact reference on a CPU
    with or without VNNI (default: this one)."""
    if not (host_x86_without_vnni() if vnni is None else not vnni):
        return ("onnxruntime's fused int8 kernels round differently from the exact QDQ graph "
                "(float requantization order)")
    return ("this CPU has no VNNI: onnxruntime's u8s8 kernels (vpmaddubsw) saturate the int16 "
            "sum of two products, which {-127, 0, 127} ternary weights hit "
            "(microsoft/onnxruntime#16105); prom_tvm accumulates exactly")
