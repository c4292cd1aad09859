"""TensorProto <-> numpy conversion, as TF Serving writes and reads tensors.

Responses are written in the typed ``*_val`` fields (TF Serving's
``Tensor::AsProtoField``), because client code commonly reads
``outputs["scores"].float_val`` directly.  Reading accepts every encoding a
client may send: ``tensor_content``, typed fields, and the single-value
broadcast form.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# DataType -> (numpy dtype, typed TensorProto field).
_CODECS: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
    types_pb2.DT_STRING: (np.dtype(object), "string_val"),
}

_BY_NUMPY: dict[np.dtype, int] = {
    codec[0]: dtype for dtype, codec in _CODECS.items() if dtype != types_pb2.DT_STRING
}

# TF's DataTypeString() spelling, used in error messages clients may match on.
_TYPE_NAMES = {
    types_pb2.DT_FLOAT: "float",
    types_pb2.DT_DOUBLE: "double",
    types_pb2.DT_INT32: "int32",
    types_pb2.DT_INT16: "int16",
    types_pb2.DT_INT8: "int8",
    types_pb2.DT_UINT8: "uint8",
    types_pb2.DT_UINT16: "uint16",
    types_pb2.DT_INT64: "int64",
    types_pb2.DT_UINT32: "uint32",
    types_pb2.DT_UINT64: "uint64",
    types_pb2.DT_BOOL: "bool",
    types_pb2.DT_HALF: "half",
    types_pb2.DT_STRING: "string",
}


class TensorConversionError(ValueError):
    """A TensorProto that cannot be turned into an array (or vice versa)."""


def type_name(dtype: int) -> str:
    """TensorFlow's short name for a DataType enum value (``float``, ``string``...)."""
    return _TYPE_NAMES.get(dtype) or types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()


def numpy_dtype(dtype: int) -> np.dtype:
    """numpy dtype used for a DataType."""
    try:
        return _CODECS[dtype][0]
    except KeyError:
        raise TensorConversionError(f"unsupported tensor dtype {types_pb2.DataType.Name(dtype)}") from None


def data_type_of(array: np.ndarray) -> int:
    """DataType for a numpy array; str/bytes/object arrays are DT_STRING."""
    if array.dtype.kind in ("U", "S", "O"):
        return types_pb2.DT_STRING
    try:
        return _BY_NUMPY[array.dtype]
    except KeyError:
        raise TensorConversionError(f"no TensorFlow dtype for numpy dtype {array.dtype}") from None


def as_bytes_array(values) -> np.ndarray:
    """An object array of ``bytes`` from str/bytes values (str is UTF-8 encoded)."""
    array = np.asarray(values, dtype=object)
    flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def to_tensor_proto(values, dtype: int | None = None) -> tensor_pb2.TensorProto:
    """Encodes an array (or nested lists) into typed ``*_val`` fields."""
    array = values if isinstance(values, np.ndarray) else np.asarray(values)
    if dtype is None:
        dtype = data_type_of(array)
    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.CopyFrom(shape_proto(array.shape))
    np_dtype, field_name = _CODECS.get(dtype, (None, None))
    if field_name is None:
        raise TensorConversionError(f"unsupported tensor dtype {types_pb2.DataType.Name(dtype)}")
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(as_bytes_array(array).reshape(-1).tolist())
    elif dtype == types_pb2.DT_HALF:
        proto.half_val.extend(array.astype(np.float16).reshape(-1).view(np.uint16).tolist())
    else:
        getattr(proto, field_name).extend(array.astype(np_dtype, copy=False).reshape(-1).tolist())
    return proto


def shape_proto(shape) -> tensor_shape_pb2.TensorShapeProto:
    proto = tensor_shape_pb2.TensorShapeProto()
    for size in shape:
        proto.dim.add(size=int(size))
    return proto


def to_ndarray(proto: tensor_pb2.TensorProto, max_bytes: int | None = None) -> np.ndarray:
    """Decodes a TensorProto sent by any TF client into a numpy array.

    The declared shape is checked against the values sent and against
    ``max_bytes`` before anything is allocated: a few bytes declaring a shape
    of ``[2**40]`` (which TF's fill-with-the-last-value rule would expand)
    are refused, not built.
    """
    if proto.tensor_shape.unknown_rank:
        raise TensorConversionError("tensor has unknown rank")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(size < 0 for size in shape):
        raise TensorConversionError(f"tensor shape {list(shape)} has a negative dimension")
    count = math.prod(shape)  # Python integers: no overflow, however large the dimensions
    codec = _CODECS.get(proto.dtype)
    if codec is None:
        raise TensorConversionError(f"unsupported tensor dtype {types_pb2.DataType.Name(proto.dtype)}")
    np_dtype, field_name = codec
    if max_bytes is not None and count * np_dtype.itemsize > max_bytes:
        raise TensorConversionError(
            f"tensor of shape {list(shape)} ({count} {type_name(proto.dtype)} values) would take "
            f"{count * np_dtype.itemsize} bytes; the limit is {max_bytes}"
        )
    sent = len(proto.tensor_content) // np_dtype.itemsize if proto.tensor_content else len(getattr(proto, field_name))
    if sent > count:
        raise TensorConversionError(f"tensor of shape {list(shape)} needs {count} values but {sent} were given")

    if proto.dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        flat = np.empty(len(values), dtype=object)
        flat[:] = values
    elif proto.tensor_content:
        if len(proto.tensor_content) != count * np_dtype.itemsize:
            raise TensorConversionError(
                f"tensor_content holds {len(proto.tensor_content)} bytes, "
                f"shape {list(shape)} of {type_name(proto.dtype)} needs {count * np_dtype.itemsize}"
            )
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape).copy()
    elif proto.dtype == types_pb2.DT_HALF:
        flat = np.asarray(proto.half_val, dtype=np.uint16).view(np.float16)
    else:
        flat = np.asarray(getattr(proto, field_name), dtype=np_dtype)

    if flat.size == count:
        return flat.reshape(shape)
    if 0 < flat.size < count:
        # TF's Tensor::FromProto repeats the last value to fill the shape.
        filled = np.empty(count, dtype=flat.dtype)
        filled[: flat.size] = flat
        filled[flat.size :] = flat[-1]
        return filled.reshape(shape)
    raise TensorConversionError(
        f"tensor of shape {list(shape)} needs {count} values but {flat.size} were given"
    )
