"""The whole pipeline on the demo data with a tiny BERT: push, cache, blessing, resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import REPO, TINY_BERT, tiny_config
from tfx_pipeline.model_versions import provenance, versions
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runner import LocalDagRunner, list_runs

COMPONENTS = ["ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "Pusher"]


def component(record, component_id):
    return next(c for c in record["components"] if c["id"] == component_id)


def test_first_run_pushes_a_blessed_servable_version(trained_suite):
    for task in ("intent", "sentiment"):
        record = trained_suite.records[task]
        assert record["status"] == "succeeded"
        assert [c["id"] for c in record["components"]] == COMPONENTS
        assert record["blessed"] is True
        assert record["metrics"]["accuracy"] >= 0.6
        version_dir = trained_suite.model_base_path / task / "1"
        assert versions(version_dir.parent) == [1]
        assert (version_dir / "saved_model.pb").exists()
        assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
        assert provenance(version_dir)["model_fingerprint"] == component(record, "Trainer")["artifacts"]["model"][
            "fingerprint"]
        evaluation_dir = Path(component(record, "Evaluator")["artifacts"]["evaluation"]["uri"])
        evaluation = json.loads((evaluation_dir / "evaluation.json").read_text())
        assert "text_length" in evaluation["candidate"]["slices"]
        assert (evaluation_dir / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
        assert "BLESSED" in (evaluation_dir / "report.md").read_text()
    sentiment = json.loads((Path(component(trained_suite.records["sentiment"], "Evaluator")["artifacts"]
                                 ["evaluation"]["uri"]) / "evaluation.json").read_text())
    assert set(sentiment["candidate"]["slices"]["agreement"]) <= {"all", "75", "66"}


def test_rerun_is_cached_and_does_not_push_twice(trained_suite, demo_data_dir):
    config = tiny_config("intent", demo_data_dir, trained_suite.work_dir)
    second = LocalDagRunner().run(create_pipeline(config))
    cached = {c["id"] for c in second["components"] if c["cached"]}
    assert cached >= set(COMPONENTS[:6])
    # The baseline changed (version 1 now exists), so the Evaluator runs again; the Pusher
    # recognises the model it already pushed.
    assert second["pushed_version"] == 1
    assert versions(trained_suite.model_base_path / "intent") == [1]
    third = LocalDagRunner().run(create_pipeline(config))
    assert all(c["cached"] for c in third["components"])
    assert [r["run_id"] for r in list_runs(config.root)][:2] == [third["run_id"], second["run_id"]]


def test_a_worse_model_is_not_pushed(trained_suite, demo_data_dir):
    config = tiny_config("intent", demo_data_dir, trained_suite.work_dir, **{
        "training.epochs": 1, "training.learning_rate": 1e-6,
        "evaluation.thresholds": {"metric": "accuracy", "lower_bound": 0.0, "min_change_vs_baseline": -0.02}})
    record = LocalDagRunner().run(create_pipeline(config))
    assert record["blessed"] is False
    assert "vs baseline" in record["blessing_reason"] and "below the required -0.0200" in record["blessing_reason"]
    assert record["pushed_version"] is None
    assert component(record, "Pusher")["artifacts"]["pushed_model"]["properties"]["pushed"] is False
    assert versions(trained_suite.model_base_path / "intent") == [1]


def test_cli_run_killed_mid_trainer_resumes_from_its_checkpoint(demo_data_dir, tmp_path):
    config_path = tmp_path / "config.yaml"
    config = yaml.safe_load((REPO / "tfx_pipeline/configs/demo_intent.yaml").read_text())
    config.update(pipeline_root=str(tmp_path / "root"))
    config["data"]["path"] = str(demo_data_dir / "intent.csv")
    config["push"]["model_base_path"] = str(tmp_path / "models")
    config["model"].update(backbone={"preset": "all-minilm-l6-v2", "architecture": TINY_BERT}, sequence_length=32)
    config["training"].update(epochs=8, learning_rate=1e-3, early_stopping_patience=100)
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "tfx_pipeline", "run", "--config", str(config_path)]

    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    epochs_log = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        logs = list((tmp_path / "root" / "Trainer").glob("*/model_run/epochs.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= 2:
            epochs_log = logs[0]
            break
        time.sleep(0.05)
    assert epochs_log is not None, "the trainer never finished two epochs"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_after = len(epochs_log.read_text().splitlines())
    assert killed_after < 8

    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = list_runs(tmp_path / "root")[0]
    assert [c["id"] for c in record["components"] if c["cached"]] == COMPONENTS[:5]
    summary = component(record, "Trainer")["artifacts"]["model_run"]["properties"]
    # BackupAndRestore saves at each epoch end: the restart begins at the first unfinished epoch.
    assert 1 <= summary["resumed_from_epoch"] <= killed_after
    epochs = [json.loads(line)["epoch"] for line in epochs_log.read_text().splitlines()]
    assert epochs[-1] == 7 and summary["epochs_run"] == 8 - summary["resumed_from_epoch"]
    assert record["pushed_version"] == 1
