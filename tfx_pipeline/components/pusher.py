"""Pusher: a blessed model becomes the next numbered version under the model base path.

The version is assembled in a hidden directory beside its final place (same
filesystem), warm-up requests included, then renamed into place in one step:
a server watching the directory never sees half a model. On an object store
(`gs://`, `s3://`), which cannot rename, the files are copied with
`saved_model.pb` last: a version counts (for TF Serving and for `versions`)
only once that file is there. Unblessed models are never pushed, and a model
already pushed is not pushed twice.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import read_split_rows
from tfx_pipeline.config import PushConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext
from tfx_pipeline.model.tasks import Task, task_for
from tfx_pipeline.model_versions import PROVENANCE_FILE, SAVED_MODEL_FILE, provenance, versions

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def write_warmup_requests(path: Path, model_name: str, rows: list[dict], task: Task) -> None:
    """TF Serving replays these PredictionLog records before serving a version: one
    `serving_default` request per row, its inputs the row's fields (`task.signature_inputs`)."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
            for input_name, field in task.signature_inputs.items():
                request.inputs[input_name].CopyFrom(tf.make_tensor_proto([row[field]], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


class Pusher(Component):
    OUTPUTS = {"pushed_model": "PushedModel"}
    LOCAL_FILES = True  # Warm-up requests are written with TensorFlow, into a local copy.

    def __init__(self, model: Channel, blessing: Channel, examples: Channel, push: PushConfig, model_name: str,
                 component_id: str | None = None):
        super().__init__({"model": model, "blessing": blessing, "examples": examples}, component_id)
        self.push, self.model_name = push, model_name
        self.model_dir = storage.join(push.model_base_path, model_name)

    def fingerprint_data(self):
        return [self.push.model_base_path, self.model_name, self.push.num_warmup_requests]

    def execute(self, ctx: ExecutionContext):
        blessing = ctx.inputs["blessing"].properties
        if not blessing.get("blessed"):
            ctx.log.info("not pushed: the model is not blessed (%s)", blessing.get("reason"))
            return {"pushed_model": {"pushed": False, "reason": f"not blessed: {blessing.get('reason')}"}}
        model = ctx.inputs["model"]
        for version in versions(self.model_dir):
            if provenance(storage.join(self.model_dir, str(version))).get("model_fingerprint") == model.fingerprint:
                ctx.log.info("model already pushed as version %d", version)
                return {"pushed_model": self._pushed(version, already=True)}

        rows = read_split_rows(ctx.inputs["examples"].uri, "eval")[: self.push.num_warmup_requests]
        staging = self._staging_dir(ctx)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(model.uri, staging)
        write_warmup_requests(staging / WARMUP_FILE, self.model_name, rows,
                              task_for(model.properties.get("task", "text_classification")))
        # The run record (`<pipeline root>/runs/<run id>.json`) says where the model artifact lives.
        storage.write_json(staging / PROVENANCE_FILE, {"model_fingerprint": model.fingerprint, "run_id": ctx.run_id})
        version = self._publish(staging)
        ctx.log.info("pushed version %d to %s", version, storage.join(self.model_dir, str(version)))
        return {"pushed_model": self._pushed(version, already=False)}

    def _staging_dir(self, ctx: ExecutionContext) -> Path:
        if storage.is_local(self.model_dir):  # Beside the versions, so that a rename publishes it.
            return Path(self.model_dir) / f".staging-{ctx.run_id}-{os.getpid()}"
        return Path(ctx.execution_dir) / "staging"

    def _publish(self, staging: Path) -> int:
        """Puts the assembled version in place under the next free number; returns the number."""
        while True:  # Another pusher may take a number first: then take the next one.
            version = max(versions(self.model_dir), default=0) + 1
            target = storage.join(self.model_dir, str(version))
            if not storage.is_local(self.model_dir):
                # No rename on object stores, nor a lock: one pusher per model at a time
                # (the schedulers never overlap runs).
                storage.copy_tree(staging, target, last=[SAVED_MODEL_FILE])
                return version
            try:
                os.rename(staging, target)
                return version
            except OSError:
                if not os.path.exists(target):
                    raise

    def _pushed(self, version: int, already: bool) -> dict:
        return {"pushed": True, "version": version, "path": storage.join(self.model_dir, str(version)),
                "already_pushed": already}
