"""`suite-pipeline tune`: trials are cached pipeline runs; a killed search
resumes, keeping its finished trials; the best trial becomes a runnable YAML."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml

from tests.conftest import REPO, TINY_BERT
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.runner import list_runs


def write_config(demo_data_dir: Path, tmp_path: Path) -> Path:
    config = yaml.safe_load((REPO / "tfx_pipeline/configs/demo_intent.yaml").read_text())
    config.update(pipeline_root=str(tmp_path / "root"))
    config["data"]["path"] = str(demo_data_dir / "intent.csv")
    config["push"]["model_base_path"] = str(tmp_path / "models")
    config["model"].update(backbone={"preset": "all-minilm-l6-v2", "architecture": TINY_BERT}, sequence_length=32)
    config["training"].update(epochs=1, learning_rate=1e-3)
    config["evaluation"]["thresholds"]["lower_bound"] = 0.0
    config["tuning"] = {"trials": 2, "seed": 3, "search_space": {
        "training.learning_rate": {"low": 5e-4, "high": 2e-3, "log": True},
        "training.label_smoothing": {"choices": [0.0, 0.1]}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def trials(journal_dir: Path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal_dir / "journal.log")))
    return optuna.load_study(study_name="default", storage=storage).get_trials()


def trials_so_far(journal_dir: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials while the search may still be creating its journal or its study."""
    if not (journal_dir / "journal.log").exists():
        return []
    try:
        return trials(journal_dir)
    except KeyError:  # the journal file exists before the study is written into it
        return []


def test_tune_resumes_after_a_kill_and_skips_the_finished_trial(demo_data_dir, tmp_path):
    config_path = write_config(demo_data_dir, tmp_path)
    study_dir = tmp_path / "root" / "tuning" / "default"
    command = [sys.executable, "-m", "tfx_pipeline", "tune", "--config", str(config_path)]

    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        states = [t.state for t in trials_so_far(study_dir)]
        if states:
            if states.count(optuna.trial.TrialState.COMPLETE) == 1 and optuna.trial.TrialState.RUNNING in states:
                break
        time.sleep(0.5)
    assert process.poll() is None, "the search ended before it could be killed mid-way"
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = trials(study_dir)
    assert [t.state.name for t in first] == ["COMPLETE", "RUNNING"]

    result = subprocess.run([*command, "--write-best", str(tmp_path / "best.yaml")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    after = trials(study_dir)
    # Trial 0 is kept; the killed trial 1 is closed and run again with its values as trial 2.
    assert [t.state.name for t in after] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert after[0].params == first[0].params and after[0].value == first[0].value
    assert after[2].params == first[1].params

    runs = list_runs(tmp_path / "root")
    tuned = [r for r in runs if "tuning" in r]
    # One run record per started trial; trial 0's pipeline ran once.
    assert sorted(r["tuning"]["trial"] for r in tuned) == [0, 1, 2]
    assert all("Pusher" not in [c["id"] for c in r["components"]] for r in tuned)
    by_trial = {r["tuning"]["trial"]: r for r in tuned if r["status"] == "succeeded"}
    assert by_trial[0]["tuning"]["params"] == after[0].params
    assert by_trial[2]["metrics"]["accuracy"] == after[2].value
    # The data components ran for the first trial only.
    assert all(c["cached"] for c in by_trial[2]["components"] if c["id"] in ("ExampleGen", "Transform"))

    summary = json.loads((study_dir / "summary.json").read_text())
    assert [row["state"] for row in summary] == ["COMPLETE", "FAIL", "COMPLETE"]
    header = next(line for line in result.stdout.splitlines() if line.startswith("| trial |"))
    assert header.split(" | ")[:3] == ["| trial", "state", "accuracy"]
    assert "training.learning_rate" in header and "training.label_smoothing" in header
    best = PipelineConfig.from_file(tmp_path / "best.yaml")
    winner = max((t for t in after if t.value is not None), key=lambda t: t.value)
    assert best.training.learning_rate == winner.params["training.learning_rate"]
    assert best.training.label_smoothing == winner.params["training.label_smoothing"]
