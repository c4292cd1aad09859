"""TF Serving's REST JSON formats (tensorflow_serving/util/json_tensor.cc).

Predict requests come in the row format (``instances``: one entry per
example) or the columnar format (``inputs``: one entry per input tensor);
the response mirrors it (``predictions`` or ``outputs``).  Binary strings
travel as ``{"b64": ...}``; a string output whose name ends in ``_bytes`` is
returned that way.  Floats are written the way TF Serving writes them: the
shortest text that reads back as the same float32, always with a decimal
point or exponent.  Classify/Regress take ``examples`` (+ optional
``context``) as tf.Example features.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf import json_format
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    regression_pb2,
)

from serving import errors, tensors
from serving.servable import TensorSpec

B64_KEY = "b64"
MAX_RANK = 64  # numpy's limit on dimensions; deeper nesting is refused before any array is built
BYTES_SUFFIX = "_bytes"


class JsonFormat(enum.Enum):
    ROW = "instances"
    COLUMNAR = "inputs"


_INT_RANGES = {
    types_pb2.DT_INT8: (-(2**7), 2**7 - 1),
    types_pb2.DT_UINT8: (0, 2**8 - 1),
    types_pb2.DT_INT16: (-(2**15), 2**15 - 1),
    types_pb2.DT_UINT16: (0, 2**16 - 1),
    types_pb2.DT_INT32: (-(2**31), 2**31 - 1),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_INT64: (-(2**63), 2**63 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}
_FLOAT_TYPES = {types_pb2.DT_FLOAT: 2**24, types_pb2.DT_DOUBLE: 2**53, types_pb2.DT_HALF: 2**11}


# -- parsing ----------------------------------------------------------------------


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def parse_document(body: bytes) -> dict:
    """Parses a request body that must be a JSON object."""
    if not body or not body.strip():
        raise errors.invalid_argument("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except UnicodeDecodeError as exc:
        raise errors.invalid_argument(f"JSON Parse error: invalid UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise errors.invalid_argument(f"JSON Parse error: {exc.msg} at offset: {exc.pos}") from None
    except RecursionError:
        raise errors.invalid_argument("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(document, dict):
        raise errors.invalid_argument(f"JSON Value: {_show(document)} Is not object")
    return document


def signature_name(document: dict) -> str:
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise errors.invalid_argument(
            f"JSON Value: {_show(document)} not formatted correctly. 'signature_name' key must be a string value."
        )
    _utf8(name)
    return name


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64_KEY), str)


def _decode_b64(value: Any) -> bytes:
    if not _is_b64(value):
        raise errors.invalid_argument(f"JSON Value: {_show(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value[B64_KEY], validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_argument("Unable to base64 decode") from None


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's \ud800 escapes decode to lone surrogates
        raise errors.invalid_argument(
            f"JSON Value: {_show(text)} is not valid Unicode: lone surrogate at position {exc.start}"
        ) from None


def _type_error(value: Any, dtype: int) -> errors.ServingError:
    return errors.invalid_argument(
        f"JSON Value: {_show(value)} Type: {_json_type(value)} is not of expected type: {tensors.type_name(dtype)}"
    )


def _leaf(value: Any, dtype: int) -> Any:
    """One JSON scalar as a value of ``dtype`` (TF Serving's checks and messages)."""
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return _utf8(value)
        if isinstance(value, dict):
            return _decode_b64(value)
        raise _type_error(value, dtype)
    if dtype == types_pb2.DT_BOOL:
        if isinstance(value, bool):
            return value
        raise _type_error(value, dtype)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(value, dtype)
    if dtype in _FLOAT_TYPES:
        if isinstance(value, int) and abs(value) > _FLOAT_TYPES[dtype]:
            raise errors.invalid_argument(
                f"Cannot convert JSON value: {value} to {tensors.type_name(dtype)} without loss of precision."
            )
        if (isinstance(value, float) and math.isfinite(value) and dtype == types_pb2.DT_FLOAT
                and abs(value) > float(np.finfo(np.float32).max)):
            raise errors.invalid_argument(
                f"Cannot convert JSON value: {value} to float without loss of precision."
            )
        return value
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if not isinstance(value, int) or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    raise errors.unimplemented(f"Conversion of JSON Value: {_show(value)} to type: {tensors.type_name(dtype)}")


def _dense_shape(value: Any) -> list[int]:
    shape: list[int] = []
    while isinstance(value, list):
        if len(shape) == MAX_RANK:
            raise errors.invalid_argument(f"JSON lists nested deeper than {MAX_RANK}: no tensor has that rank")
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _flatten(value: Any, shape: list[int], level: int, dtype: int, out: list) -> None:
    if not isinstance(value, list):
        if level != len(shape):
            raise errors.invalid_argument(
                f"JSON Value: {_show(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}"
            )
        out.append(_leaf(value, dtype))
        return
    if level >= len(shape):
        raise errors.invalid_argument(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise errors.invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for item in value:
        _flatten(item, shape, level + 1, dtype, out)


def json_to_array(value: Any, spec: TensorSpec) -> np.ndarray:
    """A (nested) JSON value as an array of the signature input's dtype."""
    shape = _dense_shape(value)
    flat: list = []
    _flatten(value, shape, 0, spec.dtype, flat)
    np_dtype = tensors.numpy_dtype(spec.dtype)
    if spec.dtype == types_pb2.DT_STRING:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        array = np.asarray(flat, dtype=np_dtype)
    return array.reshape(shape)


def parse_predict(document: dict, inputs: Mapping[str, TensorSpec]) -> tuple[dict[str, np.ndarray], JsonFormat]:
    """Input arrays of a predict request, and which format it used."""
    if not inputs:
        raise errors.invalid_argument("Failed to get input map for signature")
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise errors.invalid_argument(
            f"JSON Value: {_show(document)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist "
        )
    if has_instances:
        return _parse_rows(document["instances"], document, inputs), JsonFormat.ROW
    if has_inputs:
        return _parse_columns(document["inputs"], inputs), JsonFormat.COLUMNAR
    raise errors.invalid_argument("Missing 'inputs' or 'instances' key")


def _parse_rows(instances: Any, document: dict, inputs: Mapping[str, TensorSpec]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise errors.invalid_argument(f"JSON Value: {_show(document)} Excepting 'instances' to be an list/array")
    if not instances:
        raise errors.invalid_argument(f"JSON Value: {_show(document)} No values in 'instances' array")

    def is_object(value: Any) -> bool:
        return isinstance(value, dict) and not _is_b64(value)

    as_objects = is_object(instances[0])
    if not as_objects and len(inputs) > 1:
        raise errors.invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map"
        )
    columns: dict[str, list] = {name: [] for name in inputs}
    names = sorted(inputs)
    for index, item in enumerate(instances):
        if as_objects:
            if not is_object(item):
                raise errors.invalid_argument(f"Expecting object but got list at item {index} of input list")
            for key in item:
                if key not in inputs:
                    raise errors.invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: JSON object: does not have named input: {key}"
                    )
            if sorted(item) != names:
                raise errors.invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: {_show(item)} "
                    f"keys must be equal to: {','.join(names)}"
                )
            for key, value in item.items():
                columns[key].append(value)
        else:
            if is_object(item):
                raise errors.invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            columns[names[0]].append(item)
    arrays = {}
    for name, values in columns.items():
        rows = []
        for index, value in enumerate(values):
            try:
                rows.append(json_to_array(value, inputs[name]))
            except errors.ServingError as exc:
                raise errors.invalid_argument(
                    f"Failed to process element: {index} key: {name} of 'instances' list. Error: {exc.message}"
                ) from None
            if rows[-1].shape != rows[0].shape:
                raise errors.invalid_argument(
                    f"Expecting shape {list(rows[0].shape)} but got: {list(rows[-1].shape)} "
                    f"(element {index}, key {name})"
                )
        arrays[name] = np.stack(rows)
    return arrays


def _parse_columns(value: Any, inputs: Mapping[str, TensorSpec]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or _is_b64(value):
        if len(inputs) > 1:
            raise errors.invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map"
            )
        (name, spec), = inputs.items()
        return {name: json_to_array(value, spec)}
    arrays = {}
    for name, spec in inputs.items():
        if name not in value:
            raise errors.invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(value[name], spec)
    return arrays


def _feature_kind_error(name: str, kind: str) -> errors.ServingError:
    return errors.invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_to_feature(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    kind = feature.WhichOneof("kind")
    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise errors.invalid_argument(f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}")
    if isinstance(value, (bool, int)):
        if kind not in (None, "int64_list"):
            raise _feature_kind_error(name, kind.removesuffix("_list"))
        if not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise errors.invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, float):
        if kind not in (None, "float_list"):
            raise _feature_kind_error(name, kind.removesuffix("_list"))
        feature.float_list.value.append(value)
    else:
        if kind not in (None, "bytes_list"):
            raise _feature_kind_error(name, kind.removesuffix("_list"))
        feature.bytes_list.value.append(_decode_b64(value) if isinstance(value, dict) else _utf8(value))


def _example_from_json(value: Any, target: example_pb2.Example) -> None:
    if not isinstance(value, dict):
        raise errors.invalid_argument(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_to_feature(item, name, feature)
        target.features.feature[name].CopyFrom(feature)


def parse_examples(document: dict, method: str) -> input_pb2.Input:
    """The ``Input`` of a classify/regress request (``context`` + ``examples``)."""
    request_input = input_pb2.Input()
    has_context = "context" in document
    if has_context:
        _example_from_json(document["context"], request_input.example_list_with_context.context)
    examples = document.get("examples")
    if examples is None:
        raise errors.invalid_argument(
            f"JSON Value: {_show(document)} When method is {method}, key 'examples' is expected and was not found"
        )
    if not isinstance(examples, list):
        raise errors.invalid_argument(f"JSON Value: {_show(document)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise errors.invalid_argument(f"JSON Value: {_show(document)} 'examples' value is an empty array")
    for value in examples:
        target = (
            request_input.example_list_with_context.examples.add()
            if has_context
            else request_input.example_list.examples.add()
        )
        _example_from_json(value, target)
    return request_input


# -- writing ----------------------------------------------------------------------


def _float_texts(array: np.ndarray) -> np.ndarray:
    """TF Serving's text for each float: %g, or full precision if that loses bits."""
    wide = array.astype(np.float64)
    texts = np.char.mod("%g", wide)
    finite = np.isfinite(wide)
    if finite.any():
        back = np.where(finite, texts, "0").astype(np.float64).astype(array.dtype)
        lossy = finite & (back != array)
        if lossy.any():
            digits = 17 if array.dtype == np.float64 else 9
            texts = np.where(lossy, np.char.mod(f"%.{digits}g", wide), texts)
        whole = finite & (np.char.find(texts, ".") < 0) & (np.char.find(texts, "e") < 0)
        texts = np.where(whole, np.char.add(texts, ".0"), texts)
    texts = np.where(np.isnan(wide), "NaN", texts)
    texts = np.where(np.isposinf(wide), "Infinity", texts)
    return np.where(np.isneginf(wide), "-Infinity", texts)


def _scalar_texts(array: np.ndarray, as_bytes: bool) -> np.ndarray:
    """Every element of ``array`` as JSON text (same shape)."""
    if array.dtype.kind == "f":
        return _float_texts(array)
    if array.dtype == np.bool_:
        return np.where(array, "true", "false")
    if array.dtype.kind in "iu":
        return array.astype(str)
    flat = array.reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    for i, value in enumerate(flat):
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        if as_bytes:
            out[i] = '{"b64": "' + base64.b64encode(raw).decode("ascii") + '"}'
        else:
            out[i] = json.dumps(raw.decode("utf-8", "replace"), ensure_ascii=False)
    return out.reshape(array.shape)


def _nest(texts: np.ndarray | str) -> str:
    if not isinstance(texts, np.ndarray):
        return str(texts)  # one element of a row
    if texts.ndim == 0:
        return str(texts[()])
    if texts.ndim == 1:
        return "[" + ", ".join(texts.tolist()) + "]"
    return "[" + ", ".join(_nest(sub) for sub in texts) + "]"


def _tensor_json(name: str, array: np.ndarray) -> np.ndarray:
    return _scalar_texts(array, as_bytes=array.dtype == object and name.endswith(BYTES_SUFFIX))


def predict_response(outputs: Mapping[str, np.ndarray], fmt: JsonFormat) -> bytes:
    """``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (columnar)."""
    if not outputs:
        raise errors.invalid_argument("Cannot convert empty tensor map to JSON")
    texts = {name: _tensor_json(name, value) for name, value in sorted(outputs.items())}
    if fmt is JsonFormat.COLUMNAR:
        if len(texts) == 1:
            body = _nest(next(iter(texts.values())))
        else:
            body = "{" + ", ".join(f"{json.dumps(n)}: {_nest(t)}" for n, t in texts.items()) + "}"
        return ('{"outputs": ' + body + "}").encode("utf-8")
    batch = None
    for name, text in texts.items():
        if text.ndim == 0:
            raise errors.invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is not None and text.shape[0] != batch:
            raise errors.invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {text.shape[0]} expecting: {batch}"
            )
        batch = text.shape[0]
    assert batch is not None  # `outputs` is not empty (checked above).
    rows = []
    for row in range(batch):
        if len(texts) == 1:
            rows.append(_nest(next(iter(texts.values()))[row]))
        else:
            rows.append("{" + ", ".join(f"{json.dumps(n)}: {_nest(t[row])}" for n, t in texts.items()) + "}")
    return ('{"predictions": [' + ", ".join(rows) + "]}").encode("utf-8")


def classify_response(result: classification_pb2.ClassificationResult) -> bytes:
    """``{"results": [[[label, score], ...], ...]}``."""
    if not result.classifications:
        raise errors.invalid_argument("Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classifications in result.classifications:
        scores = _float_texts(np.asarray([c.score for c in classifications.classes], dtype=np.float32))
        pairs = [f"[{json.dumps(c.label, ensure_ascii=False)}, {s}]" for c, s in zip(classifications.classes, scores)]
        rows.append("[" + ", ".join(pairs) + "]")
    return ('{"results": [' + ", ".join(rows) + "]}").encode("utf-8")


def regress_response(result: regression_pb2.RegressionResult) -> bytes:
    """``{"results": [value, ...]}``."""
    if not result.regressions:
        raise errors.invalid_argument("Cannot convert empty RegressionResults to JSON")
    values = _float_texts(np.asarray([r.value for r in result.regressions], dtype=np.float32))
    return ('{"results": [' + ", ".join(values.tolist()) + "]}").encode("utf-8")


def status_response(response: get_model_status_pb2.GetModelStatusResponse) -> bytes:
    """GetModelStatusResponse as TF Serving prints it (all fields, json_name keys)."""
    return json_format.MessageToJson(response, always_print_fields_with_no_presence=True, indent=1).encode("utf-8")


def metadata_response(response: get_model_metadata_pb2.GetModelMetadataResponse) -> bytes:
    """``{"model_spec": ..., "metadata": {"signature_def": ...}}`` with proto field names."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    options = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}
    document = {
        "model_spec": json_format.MessageToDict(response.model_spec, **options),
        "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)},
    }
    return json.dumps(document, indent=1).encode("utf-8")


def error_response(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")
