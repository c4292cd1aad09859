"""One loaded SavedModel version and its signatures.

Signature definitions are read from ``saved_model.pb`` (they are what
GetModelMetadata reports and what requests are validated against); the
callable functions come from ``tf.saved_model.load``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving import errors, tensors

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: its dtype and (possibly partial) shape."""

    dtype: int  # tensorflow DataType enum
    shape: tuple[int, ...] | None  # -1 for unknown sizes; None for unknown rank

    @classmethod
    def from_tensor_info(cls, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
        if info.tensor_shape.unknown_rank:
            return cls(info.dtype, None)
        return cls(info.dtype, tuple(d.size for d in info.tensor_shape.dim))

    def describe(self) -> str:
        return "[?]" if self.shape is None else "[" + ",".join(str(d) for d in self.shape) + "]"

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(e < 0 or e == g for e, g in zip(self.shape, shape))


@dataclass(frozen=True)
class Signature:
    """A signature def, reduced to what serving needs."""

    key: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]

    @classmethod
    def from_proto(cls, key: str, proto: meta_graph_pb2.SignatureDef) -> Signature:
        return cls(
            key=key,
            method_name=proto.method_name,
            inputs={k: TensorSpec.from_tensor_info(v) for k, v in proto.inputs.items()},
            outputs={k: TensorSpec.from_tensor_info(v) for k, v in proto.outputs.items()},
        )

    @property
    def batchable(self) -> bool:
        """Whether rows of separate requests can share one call with identical results.

        Every input and output must be batch-major (dimension 0 unknown), and
        every other output dimension static: an output whose width depends on
        the batch (e.g. token ids padded to the longest text) would differ
        from an unbatched call once split, so such signatures run unbatched.
        """
        if not self.inputs or not self.outputs:
            return False
        for spec in self.inputs.values():
            if spec.shape is None or not spec.shape or spec.shape[0] >= 0:
                return False
        for spec in self.outputs.values():
            if spec.shape is None or not spec.shape or spec.shape[0] >= 0:
                return False
            if any(size < 0 for size in spec.shape[1:]):
                return False
        return True

    def validate_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Checks names, dtypes and shapes against the signature (INVALID_ARGUMENT)."""
        sent, wanted = set(inputs), set(self.inputs)
        if sent != wanted:
            raise errors.invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
            )
        for name, array in inputs.items():
            spec = self.inputs[name]
            try:
                got = tensors.data_type_of(array)
            except tensors.TensorConversionError as exc:
                raise errors.invalid_argument(f"input '{name}': {exc}") from None
            if got != spec.dtype:
                raise errors.invalid_argument(
                    f"Expects arg '{name}' to be {tensors.type_name(spec.dtype)} "
                    f"but {tensors.type_name(got)} is provided"
                )
            if not spec.accepts_shape(array.shape):
                raise errors.invalid_argument(
                    f"input '{name}' has shape [{','.join(str(d) for d in array.shape)}] "
                    f"but signature '{self.key}' expects {spec.describe()}"
                )


def read_meta_graph(export_dir: Path) -> meta_graph_pb2.MetaGraphDef:
    """The ``serve``-tagged MetaGraphDef of a SavedModel directory."""
    pb_path = export_dir / "saved_model.pb"
    if not pb_path.is_file():
        raise errors.not_found(
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {export_dir}"
        )
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(pb_path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError or RuntimeError
        raise errors.invalid_argument(f"cannot parse {pb_path}: {exc}") from None
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise errors.not_found(f"SavedModel at {export_dir} has no MetaGraphDef tagged '{SERVE_TAG}'")


class Servable:
    """A loaded model version: signature defs plus the functions that run them."""

    def __init__(
        self, name: str, version: int, path: Path, meta_graph, functions: Mapping, owner: object = None
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = dict(meta_graph.signature_def)  # for GetModelMetadata, incl. init op
        self.signatures = {
            key: Signature.from_proto(key, proto)
            for key, proto in self.signature_defs.items()
            if key != INIT_OP_SIGNATURE
        }
        self._functions = dict(functions)
        self._owner = owner  # the loaded object; keeps variables and resources alive

    @classmethod
    def load(cls, name: str, version: int, path: str | os.PathLike[str]) -> Servable:
        """Loads a SavedModel; raises :class:`ServingError` naming what is wrong."""
        import tensorflow as tf

        export_dir = Path(path)
        meta_graph = read_meta_graph(export_dir)
        try:
            loaded = tf.saved_model.load(str(export_dir), tags=[SERVE_TAG])
        except tf.errors.OpError as exc:
            raise errors.from_tensorflow(exc) from None
        except Exception as exc:  # loader raises many types for corrupt exports
            raise errors.invalid_argument(
                f"cannot load SavedModel at {export_dir}: {type(exc).__name__}: {exc}") from None
        servable = cls(name, version, export_dir, meta_graph, loaded.signatures, owner=loaded)
        if not servable.signatures:
            raise errors.failed_precondition(f"SavedModel at {export_dir} has no signatures to serve")
        missing = sorted(set(servable.signatures) - set(servable._functions))
        if missing:
            raise errors.failed_precondition(
                f"SavedModel at {export_dir} declares signature(s) {missing} that cannot be called"
            )
        return servable

    def signature(self, key: str) -> Signature:
        """The named signature; FAILED_PRECONDITION if absent (TF Serving's code and wording)."""
        try:
            return self.signatures[key]
        except KeyError:
            raise errors.failed_precondition(f'Serving signature key "{key}" not found.') from None

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls the signature's function on validated inputs; outputs as numpy."""
        import tensorflow as tf

        function = self._functions[signature.key]
        try:
            result = function(**{name: tf.constant(value) for name, value in inputs.items()})
        except tf.errors.OpError as exc:
            raise errors.from_tensorflow(exc) from None
        except (TypeError, ValueError) as exc:
            raise errors.invalid_argument(f"signature '{signature.key}' rejected the inputs: {exc}") from None
        return {key: value.numpy() for key, value in result.items()}

    def __repr__(self) -> str:
        return f"Servable({self.name!r}, version={self.version})"

