"""Loading ONNX models and reading their inputs, with errors a user can act on.

``prom_tvm.build`` accepts a ``ModelProto`` or a path; everything that can be wrong with the file
(missing, a folder, not ONNX, truncated, invalid) becomes a ``ValueError`` that names the file and
the problem, before TVM sees the model. Input shapes must be static to compile; dynamic dims need
``input_shapes={"name": (...)}`` from the caller, and this module says so. 4- and 2-bit weight
initializers (opset 21/25), which TVM's importer cannot read, are checked and widened to int8/uint8
here, in the integer units the layer's bias says (see ``unpack_subbyte_weights``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

__all__ = [
    "check_subbyte_tensor",
    "input_dtypes",
    "input_shapes",
    "load_onnx",
    "output_step",
    "tensor_data_bytes",
    "unpack_subbyte_weights",
]

# Domains onnx's full check (strict shape inference) knows; other domains get the structural check.
_STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


def _describe(model: onnx.ModelProto) -> str:
    name = model.graph.name if model.HasField("graph") else ""
    return f"ONNX model {name!r}" if name else "ONNX model"


def _check(model: onnx.ModelProto, where: str) -> None:
    if not model.HasField("graph") or not model.graph.node:
        raise ValueError(
            f"{where}: not an ONNX model (no graph with nodes inside); "
            f"expected a file written by onnx.save or an exporter"
        )
    if not model.opset_import:
        raise ValueError(f"{where}: ONNX model has no opset_import (truncated or hand-made?)")
    for t in model.graph.initializer:  # before the checker: its message lacks the layout
        try:
            check_subbyte_tensor(t)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    domains = {op.domain for op in model.opset_import} | {n.domain for n in model.graph.node}
    full = domains <= set(_STANDARD_DOMAINS)
    try:
        onnx.checker.check_model(model, full_check=full)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{where}: invalid ONNX model: {first}") from err


def load_onnx(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """A checked ``ModelProto`` from a model or a path.

    Raises
    ------
    ValueError
        The file is missing, a directory, empty, not ONNX, truncated, or fails
        ``onnx.checker.check_model`` (with ``full_check`` when all ops are standard ONNX).
        The message names the file.
    TypeError
        ``model`` is neither a ``ModelProto`` nor a path.
    """
    if isinstance(model, onnx.ModelProto):
        _check(model, _describe(model))
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"expected an onnx.ModelProto or a path to a .onnx file, got {type(model).__name__}"
        )
    path = Path(model)
    where = f"ONNX file {str(path)!r}"
    if not path.exists():
        raise ValueError(f"{where} does not exist")
    if path.is_dir():
        raise ValueError(f"{where} is a directory, not a model file; pass the .onnx file in it")
    if path.stat().st_size == 0:
        raise ValueError(f"{where} is empty")
    try:
        loaded = onnx.load(str(path))
    except (DecodeError, RuntimeWarning, ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{where} is not an ONNX model or is truncated (protobuf could not parse it: {err})"
        ) from err
    except OSError as err:
        raise ValueError(f"{where} could not be read: {err}") from err
    _check(loaded, where)
    return loaded


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (older exporters list weights as inputs too)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_dtypes(model: onnx.ModelProto) -> dict[str, np.dtype]:
    """Element type of each graph input that is not an initializer."""
    out = {}
    for value in graph_inputs(model):
        if not value.type.HasField("tensor_type"):
            raise ValueError(f"input {value.name!r} is not a tensor; only tensor inputs compile")
        elem = value.type.tensor_type.elem_type
        try:
            out[value.name] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"input {value.name!r} has an unsupported element type {elem}"
            ) from err
    return out


def input_shapes(
    model: onnx.ModelProto, overrides: Mapping[str, Sequence[int]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Static shape of each graph input, dynamic dims taken from ``overrides``.

    Parameters
    ----------
    model : onnx.ModelProto
        The model.
    overrides : dict, optional
        ``{input name: shape}`` for inputs with dynamic dims (``dim_param`` or no value). An
        override must name a real input, have its rank, and agree with its static dims.

    Raises
    ------
    ValueError
        A dynamic dim without an override (naming the input and dim), or a bad override.
    """
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    if overrides is not None and not isinstance(overrides, Mapping):
        example = names[0] if names else "input"
        raise ValueError(
            f"input_shapes must be a dict {{input name: shape}}, e.g. "
            f"input_shapes={{{example!r}: (1, 3, 224, 224)}}, not a {type(overrides).__name__} "
            f"({overrides!r}); the model's inputs: {names}"
        )
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(
            f"input_shapes names {unknown} which are not inputs of the model; its inputs: {names}"
        )
    shapes = {}
    for value in inputs:
        name = value.name
        if not value.type.HasField("tensor_type"):
            raise ValueError(f"input {name!r} is not a tensor; only tensor inputs compile")
        ttype = value.type.tensor_type
        override = overrides.get(name)
        if override is not None:
            override = _check_override(name, override)
        if not ttype.HasField("shape"):
            if override is None:
                raise ValueError(
                    f"input {name!r} has no shape in the model; "
                    f"pass input_shapes={{{name!r}: (...)}}"
                )
            shapes[name] = override
            continue
        dims = list(ttype.shape.dim)
        if override is not None and len(override) != len(dims):
            raise ValueError(
                f"input_shapes[{name!r}] = {override} has rank {len(override)}, "
                f"but the model's input has rank {len(dims)} ({_format_dims(dims)})"
            )
        shape = []
        for axis, dim in enumerate(dims):
            static = dim.dim_value if dim.HasField("dim_value") else None
            if override is not None:
                if static is not None and static != override[axis]:
                    raise ValueError(
                        f"input_shapes[{name!r}] = {override} sets dim {axis} to "
                        f"{override[axis]}, but the model fixes it at {static} "
                        f"({_format_dims(dims)})"
                    )
                shape.append(override[axis])
            elif static is not None:
                shape.append(static)
            else:
                label = f" ({dim.dim_param!r})" if dim.dim_param else ""
                raise ValueError(
                    f"input {name!r} has a dynamic dim {axis}{label} in shape "
                    f"{_format_dims(dims)}; pass static shapes, e.g. "
                    f"input_shapes={{{name!r}: {_example(dims)}}}"
                )
        shapes[name] = tuple(shape)
    return shapes


def _check_override(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shapes[{name!r}] must be a sequence of ints, got {shape!r}"
        ) from None
    if any(d < 1 for d in dims) or any(int(d) != d for d in shape):
        raise ValueError(f"input_shapes[{name!r}] = {shape!r}: every dim must be an int >= 1")
    return dims


def _format_dims(dims: list[onnx.TensorShapeProto.Dimension]) -> str:
    parts = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return f"[{', '.join(parts)}]"


def _example(dims: list[onnx.TensorShapeProto.Dimension]) -> str:
    """The shape with dynamic dims replaced by 1 (batch) — a hint, not a guess used anywhere."""
    parts = [str(d.dim_value) if d.HasField("dim_value") else "1" for d in dims]
    return f"({', '.join(parts)}{',' if len(parts) == 1 else ''})"


def output_step(model: onnx.ModelProto) -> float:
    """One LSB of a QDQ model's output: the scale of the DequantizeLinear that produces it."""
    inits = {t.name: t for t in model.graph.initializer}
    out = model.graph.output[0].name
    for node in model.graph.node:
        if node.output and node.output[0] == out and node.op_type == "DequantizeLinear":
            return float(numpy_helper.to_array(inits[node.input[1]]))
    raise ValueError(f"output {out!r} is not produced by a DequantizeLinear: not a QDQ model")


# Sub-byte integer types (opset 21) -> the byte type holding the same values. TVM's importer
# copies raw tensor bytes assuming one byte per element ("TensorCopyFromBytes: size mismatch").
_SUBBYTE = {
    onnx.TensorProto.INT4: onnx.TensorProto.INT8,
    onnx.TensorProto.UINT4: onnx.TensorProto.UINT8,
    onnx.TensorProto.INT2: onnx.TensorProto.INT8,
    onnx.TensorProto.UINT2: onnx.TensorProto.UINT8,
}


# Low-precision float types TVM's importer cannot dequantize (a TypeError deep inside it).
_FLOAT_LOWBIT = frozenset(
    getattr(onnx.TensorProto, n) for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
                                           "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1")
    if hasattr(onnx.TensorProto, n)
)


def _type_name(elem: int) -> str:
    return onnx.TensorProto.DataType.Name(elem)


def unpack_subbyte_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with INT4/UINT4/INT2/UINT2 weight initializers widened to int8/uint8.

    The values are unchanged, so a ``DequantizeLinear`` of a 4-bit weight computes the same
    floats (its zero point is widened too, so the two types still match) and the integer
    kernels see ordinary 8-bit weights. Only tensors read by ``DequantizeLinear`` are widened:
    anywhere else (a ``QuantizeLinear`` zero point, a graph input) the 4-bit type changes what
    the graph computes (saturation range), so that is a ``ValueError`` naming the tensor and node.
    Float8/float4 weights are refused by name. Returns ``model`` itself when there is nothing
    to widen.
    """
    for value in graph_inputs(model):
        elem = value.type.tensor_type.elem_type
        if elem in _SUBBYTE:
            raise ValueError(f"input {value.name!r} is {_type_name(elem)}: prom_tvm reads "
                             "int8/uint8 or float inputs; quantize to 4 bits inside the graph")
    for node in model.graph.node:
        for a in node.attribute:
            if a.name == "output_dtype" and a.i in _SUBBYTE:
                raise ValueError(f"node {node.name or node.op_type!r} ({node.op_type}) produces "
                                 f"{_type_name(a.i)} activations; prom_tvm supports 4/2-bit "
                                 "weights only (activations int8/uint8)")
    sub = {t.name: t for t in model.graph.initializer if t.data_type in _SUBBYTE}
    low_float = {t.name: t.data_type for t in model.graph.initializer
                 if t.data_type in _FLOAT_LOWBIT}
    for node in model.graph.node:
        for name in node.input:
            if name in low_float:
                raise ValueError(
                    f"initializer {name!r} ({_type_name(low_float[name])}) is read by "
                    f"{node.op_type} node {node.name or '<unnamed>'!r}: prom_tvm reads int8/uint8 "
                    "(and INT4/UINT4/INT2/UINT2) quantized weights, not float8/float4; "
                    "quantize the weights to int8"
                )
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.data_type in \
                _SUBBYTE:
            raise ValueError(f"Constant {node.name or node.output[0]!r} is "
                             f"{_type_name(node.attribute[0].t.data_type)}; prom_tvm reads 4/2-bit "
                             "weights as initializers only: store it as an initializer")
        for pos, name in enumerate(node.input):
            if name in sub and (node.op_type != "DequantizeLinear" or pos == 1):
                raise ValueError(
                    f"initializer {name!r} ({_type_name(sub[name].data_type)}) is input {pos} of "
                    f"{node.op_type} node {node.name or '<unnamed>'!r}: prom_tvm reads 4/2-bit "
                    "tensors only as DequantizeLinear weights and zero points (activations are "
                    "int8/uint8); quantize it to int8/uint8"
                )
    if not sub:
        return model
    for t in sub.values():
        check_subbyte_tensor(t)
    _check_subbyte_scales(model, sub)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.data_type in _SUBBYTE:
            wide = onnx.helper.tensor_dtype_to_np_dtype(_SUBBYTE[t.data_type])
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(wide), t.name))
    for v in out.graph.input:  # old exporters list initializers as inputs too
        if v.name in sub and v.type.tensor_type.elem_type in _SUBBYTE:
            v.type.tensor_type.elem_type = _SUBBYTE[v.type.tensor_type.elem_type]
    _restore_integer_units(out, set(sub))
    return out


_SUBBYTE_BITS = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4,
                 onnx.TensorProto.INT2: 2, onnx.TensorProto.UINT2: 2}


def check_subbyte_tensor(t: onnx.TensorProto) -> None:
    """Raise a ``ValueError`` naming ``t`` when a 4- or 2-bit tensor's packed data does not fit
    its dims (ONNX packs 2 or 4 values per byte, low bits first; ``ceil(n * bits / 8)`` bytes in
    ``raw_data``, or as many ``int32_data`` entries of one byte each). Other tensors pass.

    onnx's ``numpy_helper`` reads a too-long ``int32_data`` silently and reports a too-short
    one without the tensor's name; onnxruntime refuses both ("Unexpected number of packed int4
    pairs").
    """
    bits = _SUBBYTE_BITS.get(t.data_type)
    if bits is None:
        return
    what = f"initializer {t.name!r} ({_type_name(t.data_type)}, dims {list(t.dims)})"
    if any(d < 0 for d in t.dims):
        raise ValueError(f"{what} has a negative dim")
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return  # its bytes live in another file; onnx.load reads them in (and clears this)
    n = math.prod(t.dims)
    need = (n * bits + 7) // 8
    per_byte = 8 // bits
    others = [f for f in ("float_data", "int64_data", "double_data", "uint64_data", "string_data")
              if len(getattr(t, f))]
    if others:
        raise ValueError(f"{what} stores its values in {others[0]}; {_type_name(t.data_type)} "
                         "data goes in raw_data or int32_data, packed")
    if t.raw_data or not t.int32_data:
        have, field = len(t.raw_data), "bytes of raw_data"
    else:
        have, field = len(t.int32_data), "int32_data entries"
        if any(not 0 <= v <= 255 for v in t.int32_data):
            raise ValueError(f"{what}: int32_data entries must be packed bytes 0..255")
    if have != need:
        raise ValueError(
            f"{what} has {have} {field} for {n} values; {_type_name(t.data_type)} packs "
            f"{per_byte} values per byte, so it needs {need}: the tensor is truncated or its "
            "dims are wrong")


_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data",
                "double_data", "uint64_data")


def tensor_data_bytes(t: onnx.TensorProto) -> int:
    """Bytes a tensor's values take in the file: its ``raw_data``, or the encoded typed field
    (protobuf varints for ``int32_data`` ...); name and dims not counted."""
    if t.raw_data:
        return len(t.raw_data)
    bare = onnx.TensorProto()
    bare.CopyFrom(t)
    for f in _DATA_FIELDS:
        bare.ClearField(f)
    return t.ByteSize() - bare.ByteSize()


def _check_subbyte_scales(model: onnx.ModelProto, sub: dict[str, onnx.TensorProto]) -> None:
    """A 4/2-bit weight's DequantizeLinear: axis in range, one scale (and zero point) per
    channel along it."""
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in sub:
            continue
        t = sub[node.input[0]]
        rank = len(t.dims)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        block = next((a.i for a in node.attribute if a.name == "block_size"), 0)
        where = f"DequantizeLinear node {node.name or '<unnamed>'!r} of {t.name!r} (dims " \
                f"{list(t.dims)})"
        for pos in (1, 2):
            if len(node.input) <= pos or node.input[pos] not in inits:
                continue
            p = inits[node.input[pos]]
            size = math.prod(p.dims)
            if size == 1 or block:
                continue
            if not -rank <= axis < rank:
                raise ValueError(f"{where}: axis={axis} is out of range for a rank-{rank} weight")
            if size != t.dims[axis]:
                label = "scale" if pos == 1 else "zero point"
                raise ValueError(f"{where}: {size} {label} values {node.input[pos]!r} for "
                                 f"{t.dims[axis]} channels along axis {axis}")


def _restore_integer_units(model: onnx.ModelProto, widened: set[str]) -> None:
    """Give a widened 2/4-bit weight back the integer units its layer's bias is written in.

    ``python -m prom_tvm.pack`` stores onnxruntime's ternary ``{-127, 0, 127}`` (scale ``s``)
    as INT2 ``{-1, 0, 1}`` with scale ``s' = fp32(127 s)``: the same dequantized floats, but the
    int32 bias keeps its scale ``fp32(s_x s)``, 127 times finer than ``s_x s'``. Read as it
    stands, the layer's integer accumulator would be in units of ``s_x s'`` and the bias would
    have to be rounded to them. So, per output channel, ``k = s' s_x / s_bias`` (an integer) is
    multiplied back into the codes and ``s'`` divided out, choosing the float32 ``c`` near
    ``s' / k`` with ``fp32(k c) == s'`` (every dequantized value unchanged, checked) and
    ``fp32(s_x c) == s_bias`` (the bias in accumulator units): the int8 layer the file was
    packed from, so ``build`` compiles the same kernels with the same outputs. A layer for
    which that does not hold exactly is left as widened.
    """
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1

    def dq_inputs(name: str):
        node = producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or len(node.input) < 2:
            return None
        if any(a.name == "block_size" and a.i for a in node.attribute):
            return None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return node, axis

    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        w, b, x = (dq_inputs(node.input[i]) for i in (1, 2, 0))
        if w is None or b is None or x is None or w[0].input[0] not in widened:
            continue
        names = [w[0].input[0], w[0].input[1], b[0].input[0], b[0].input[1], x[0].input[1]]
        if not all(n in inits for n in names) or uses.get(names[0]) != 1 or \
                uses.get(names[1]) != 1:
            continue
        restored = _restore_layer(*(numpy_helper.to_array(inits[n]) for n in names),
                                  w[1], w[0], inits)
        if restored is not None:
            q, scale = restored
            inits[names[0]].CopyFrom(numpy_helper.from_array(q, names[0]))
            inits[names[1]].CopyFrom(numpy_helper.from_array(scale, names[1]))


def _restore_layer(q, scale, bq, bias_scale, x_scale, axis, dq, inits):
    """(codes, scale) in the bias's units for one layer, or None (see _restore_integer_units)."""
    if q.dtype != np.int8 or scale.dtype != np.float32 or bias_scale.dtype != np.float32:
        return None
    if x_scale.size != 1 or q.ndim < 1 or not -q.ndim <= axis < q.ndim:
        return None
    cout = q.shape[axis]
    if scale.size != cout or bias_scale.size != cout or bq.size != cout:
        return None
    if len(dq.input) > 2 and dq.input[2] in inits and numpy_helper.to_array(
            inits[dq.input[2]]).any():
        return None  # asymmetric weights: the integer kernels do not take them anyway
    sx = np.float32(x_scale.reshape(()))
    s = scale.reshape(-1)
    bs = bias_scale.reshape(-1)
    if not (np.isfinite(s).all() and (s > 0).all() and (bs > 0).all() and sx > 0):
        return None
    codes = np.moveaxis(q, axis, 0).reshape(cout, -1)
    ratio = s.astype(np.float64) * np.float64(sx) / bs.astype(np.float64)
    k = np.rint(ratio)
    if np.all(k == 1) or np.any(k < 1) or np.any(np.abs(ratio - k) > 1e-5 * k):
        return None
    top = np.abs(codes.astype(np.int64)).max(axis=1)
    if np.any(k * top > 127):
        return None
    new = s.copy()
    for c in np.flatnonzero(k > 1):
        found = _unit_scale(s[c], np.float32(k[c]), sx, bs[c])
        if found is None:
            return None
        new[c] = found
    wide = codes.astype(np.int64) * k.astype(np.int64)[:, None]
    same = (wide.astype(np.float32) * new[:, None]) == (codes.astype(np.float32) * s[:, None])
    if not same.all():
        return None
    shape = [q.shape[axis]] + [d for i, d in enumerate(q.shape) if i != axis % q.ndim]
    out = np.moveaxis(wide.astype(np.int8).reshape(shape), 0, axis)
    return np.ascontiguousarray(out), new.reshape(scale.shape)


def _unit_scale(s: np.float32, k: np.float32, sx: np.float32, bs: np.float32):
    """The float32 c within a few ulps of s / k with k * c == s and sx * c == bs (float32)."""
    c0 = np.float32(s / k)
    for j in (0, -1, 1, -2, 2, -3, 3, -4, 4):
        c = c0
        step = np.float32(np.inf) if j > 0 else np.float32(-np.inf)
        for _ in range(abs(j)):
            c = np.nextafter(c, step)
        if np.float32(k * c) == s and np.float32(sx * c) == bs:
            return c
    return None
