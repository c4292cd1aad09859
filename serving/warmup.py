"""Replays a version's warm-up requests before it is marked AVAILABLE.

The file is TF Serving's: ``assets.extra/tf_serving_warmup_requests``, a
TFRecord of ``PredictionLog`` protos.  A failing warm-up request fails the
load, as in TF Serving, so a version that cannot answer its own sample
requests never replaces the one being served.
"""

from __future__ import annotations

from pathlib import Path

from tensorflow_serving.apis import prediction_log_pb2

from serving import errors, inference, tensors
from serving.servable import Servable

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit.


def warmup_path(servable: Servable) -> Path:
    return servable.path / WARMUP_FILE


def read_warmup_logs(path: Path) -> list[prediction_log_pb2.PredictionLog]:
    """Parses the warm-up TFRecord file (INVALID_ARGUMENT if malformed or too long)."""
    import tensorflow as tf

    logs: list[prediction_log_pb2.PredictionLog] = []
    try:
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            if len(logs) >= MAX_WARMUP_RECORDS:
                raise errors.invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            log = prediction_log_pb2.PredictionLog()
            log.ParseFromString(record)
            logs.append(log)
    except tf.errors.OpError as exc:
        raise errors.invalid_argument(f"cannot read warmup file {path}: {exc.message}") from None
    except Exception as exc:  # protobuf DecodeError
        if isinstance(exc, errors.ServingError):
            raise
        raise errors.invalid_argument(f"malformed warmup record in {path}: {exc}") from None
    return logs


def replay(servable: Servable, log: prediction_log_pb2.PredictionLog) -> None:
    """Runs one logged request directly on ``servable`` (no batching)."""
    runner = _direct
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        try:
            inputs = {name: tensors.to_ndarray(proto) for name, proto in request.inputs.items()}
        except tensors.TensorConversionError as exc:
            raise errors.invalid_argument(f"warmup predict request: {exc}") from None
        inference.predict(servable, runner, request.model_spec.signature_name, inputs, request.output_filter)
    elif kind == "classify_log":
        request = log.classify_log.request
        inference.classify(servable, runner, request.model_spec.signature_name, request.input)
    elif kind == "regress_log":
        request = log.regress_log.request
        inference.regress(servable, runner, request.model_spec.signature_name, request.input)
    elif kind == "multi_inference_log":
        request = log.multi_inference_log.request
        inference.validate_multi_inference_tasks(request.tasks)
        inference.multi_inference(servable, runner, request.tasks, request.input)
    else:
        raise errors.unimplemented(f"Unsupported log_type for warmup: {kind}")


def _direct(servable: Servable, signature, inputs):
    return servable.run(signature, inputs)


def run_warmup(servable: Servable) -> int:
    """Replays every warm-up request; returns how many ran.  Raises on the first failure."""
    path = warmup_path(servable)
    if not path.is_file():
        return 0
    logs = read_warmup_logs(path)
    for index, log in enumerate(logs):
        try:
            replay(servable, log)
        except errors.ServingError as exc:
            raise errors.ServingError(
                exc.code, f"warmup request {index} in {path} failed: {exc.message}"
            ) from None
    return len(logs)
