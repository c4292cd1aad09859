"""`run-until`, the KFP preprocess step: runs the first components, and a
later run over the same pipeline root finds them in the runner's cache (which
is how the trainer step on the TPU machine skips the preprocessing)."""

from __future__ import annotations

import pytest

from tests.infra.manifests import REPO
from tfx_pipeline.config import ConfigError, PipelineConfig
from tfx_pipeline.runner import list_runs
from tfx_pipeline.scheduling import cli
from tfx_pipeline.scheduling.stage import prefix_pipeline

DEMO_CONFIG = REPO / "tfx_pipeline" / "configs" / "demo_intent.yaml"


def test_run_until_runs_a_prefix_that_a_later_run_reuses(demo_data_dir, tmp_path, capsys):
    root = tmp_path / "root"
    args = ["--config", str(DEMO_CONFIG), "--set", f"data.path={demo_data_dir / 'intent.csv'}",
            "--set", f"pipeline_root={root}", "--", "--runner=FnApiRunner"]
    assert cli.main(["run-until", "ExampleGen", *args]) == 0
    assert cli.main(["run-until", "ExampleGen", *args]) == 0
    assert "of pipeline intent: succeeded" in capsys.readouterr().out
    second, first = list_runs(root)
    assert [(c["id"], c["cached"]) for c in first["components"]] == [("ExampleGen", False)]
    assert [(c["id"], c["cached"]) for c in second["components"]] == [("ExampleGen", True)]
    assert second["until"] == "ExampleGen"


def test_run_until_an_unknown_component_names_the_components():
    config = PipelineConfig.from_file(DEMO_CONFIG)
    with pytest.raises(ConfigError, match="no component 'Trainr'.*ExampleGen, StatisticsGen"):
        prefix_pipeline(config, "Trainr")
