"""A pipeline root and model base path in a bucket: `s3://` and `gs://` on real servers.

moto's server speaks the S3 HTTP API and gcp-storage-emulator the GCS JSON
API, each on a loopback port. Beam's S3 filesystem (boto3) reaches the first
through the `--s3_*` pipeline options, Beam's GCS filesystem the second
through `STORAGE_EMULATOR_HOST`, exactly as they would reach AWS, MinIO or
Google Cloud Storage. Nothing of the pipeline is mocked: Beam stages write
their shards to the bucket, TensorFlow steps work on local copies, the Pusher
publishes a servable version there.
"""

from __future__ import annotations

import logging
import socket

import pytest

from tests.conftest import tiny_config
from tfx_pipeline import storage
from tfx_pipeline.model_versions import provenance, versions
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runner import LocalDagRunner, list_runs

BUCKET = "suite-artifacts"


def _s3_bucket():
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # One line per S3 request otherwise.
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = dict(aws_access_key_id="suite", aws_secret_access_key="suite", region_name="us-east-1")
    boto3.client("s3", endpoint_url=endpoint, **credentials).create_bucket(Bucket=BUCKET)
    args = ("--runner=FnApiRunner", f"--s3_endpoint_url={endpoint}", "--s3_access_key_id=suite",
            "--s3_secret_access_key=suite", "--s3_region_name=us-east-1")
    return f"s3://{BUCKET}", args, server.stop


def _gcs_bucket(monkeypatch):
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    return f"gs://{BUCKET}", ("--runner=FnApiRunner", "--project=suite-test"), server.stop


@pytest.fixture(params=["s3", "gs"])
def bucket(request, monkeypatch):
    """(bucket URI, Beam args reaching it) on a server started for the test."""
    uri, args, stop = _s3_bucket() if request.param == "s3" else _gcs_bucket(monkeypatch)
    storage.configure(args)
    yield uri, args
    storage.configure(["--runner=FnApiRunner"])
    stop()


def test_storage_round_trips_files_and_directories(bucket, tmp_path):
    root = f"{bucket[0]}/unit"
    storage.write_json(storage.join(root, "a", "b.json"), {"x": 1})
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "saved_model.pb").write_bytes(b"graph")
    (tmp_path / "tree" / "sub" / "data.gz").write_bytes(b"\x1f\x8b not inflated on the way")
    storage.copy_tree(tmp_path / "tree", storage.join(root, "tree"), last=["saved_model.pb"])

    assert storage.read_json(storage.join(root, "a", "b.json")) == {"x": 1}
    assert storage.has_files(storage.join(root, "a")) and not storage.has_files(storage.join(root, "none"))
    assert [storage.relative(u, root) for u in storage.list_files(root)] == [
        "a/b.json", "tree/saved_model.pb", "tree/sub/data.gz"]
    with storage.local_copy(storage.join(root, "tree")) as local:
        assert (local / "sub" / "data.gz").read_bytes() == b"\x1f\x8b not inflated on the way"
    storage.delete_tree(storage.join(root, "tree"))
    assert [storage.relative(u, root) for u in storage.list_files(root)] == ["a/b.json"]


def test_pipeline_runs_caches_and_pushes_with_everything_in_a_bucket(bucket, demo_data_dir, tmp_path):
    bucket_uri, beam_args = bucket
    root, models = f"{bucket_uri}/pipelines/intent", f"{bucket_uri}/models"
    config = tiny_config("intent", demo_data_dir, tmp_path, **{
        "pipeline_root": root, "push.model_base_path": models, "beam_args": list(beam_args)})
    runner = LocalDagRunner(local_cache=tmp_path / "local_cache")

    first = runner.run(create_pipeline(config))

    assert first["status"] == "succeeded" and first["blessed"] is True
    artifacts = {c["id"]: c["artifacts"] for c in first["components"]}
    examples = artifacts["ExampleValidator"]["examples"]["uri"]
    assert examples.startswith(root + "/")
    assert storage.glob(storage.join(examples, "Split-train", "*.tfrecord.gz"))  # Written by Beam, in the bucket.
    evaluation = storage.read_json(storage.join(artifacts["Evaluator"]["evaluation"]["uri"], "evaluation.json"))
    assert evaluation["blessed"] is True
    assert artifacts["Evaluator"]["evaluation"]["properties"]["report"].startswith(root + "/")
    assert storage.exists(storage.join(artifacts["Trainer"]["model"]["uri"], "saved_model.pb"))
    assert storage.exists(storage.join(root, "state", "schema.json"))
    # The pushed version is complete in the bucket and is the model the pipeline trained.
    assert versions(storage.join(models, "intent")) == [1]
    version_dir = storage.join(models, "intent", "1")
    assert provenance(version_dir)["model_fingerprint"] == artifacts["Trainer"]["model"]["fingerprint"]
    assert storage.exists(storage.join(version_dir, "assets.extra", "tf_serving_warmup_requests"))
    with storage.local_copy(version_dir) as local:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (ops in the graph)

        scores = tf.saved_model.load(str(local)).signatures["serving_default"](
            text=tf.constant(["where is my card?"]))
        assert scores["probabilities"].shape[-1] >= 2

    second = runner.run(create_pipeline(config))

    # As on local disk: all cached up to the Trainer; the Evaluator runs again against the
    # version it just pushed (read back from the bucket), and the Pusher recognises its model.
    cached = [c["id"] for c in second["components"] if c["cached"]]
    assert cached == [c["id"] for c in first["components"]][:6]
    assert second["pushed_version"] == 1 and versions(storage.join(models, "intent")) == [1]
    third = runner.run(create_pipeline(config))
    assert all(c["cached"] for c in third["components"])
    assert [r["run_id"] for r in list_runs(root)] == [third["run_id"], second["run_id"], first["run_id"]]
