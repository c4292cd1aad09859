"""The schedule configuration and what is generated from it: the CronJob, the
KFP v2 spec, the Vertex schedule request; and that the committed copies under
infra/pipeline/ are what the schedule file generates today."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.infra.manifests import INFRA, SCHEDULE, SCHEDULE_SOURCE, validate
from tfx_pipeline.config import ConfigError, PipelineConfig, parse_override
from tfx_pipeline.scheduling import cli
from tfx_pipeline.scheduling.config import ScheduleConfig, load_schedule
from tfx_pipeline.scheduling.cronjob import cronjob, render_cronjob
from tfx_pipeline.scheduling.kfp_pipeline import pipeline_spec, vertex_schedule_request

MINIMAL = {"name": "intent-nightly", "schedule": {"cron": "0 3 * * *"},
           "pipeline": {"config": "tfx_pipeline/configs/demo_intent.yaml"}, "image": "pipeline:1"}


@pytest.fixture(scope="module")
def schedule() -> ScheduleConfig:
    return load_schedule(SCHEDULE)


@pytest.fixture(scope="module")
def compiled(schedule) -> dict:
    return pipeline_spec(schedule)


# --- the configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"schedule": {"cron": "0 3 * *"}}, "schedule.cron"),
    ({"schedule": {"cron": "61 3 * * *"}}, "schedule.cron"),
    ({"schedule": {"cron": "0 3 * * *", "timezone": "Mars/Olympus"}}, "schedule.timezone"),
    ({"name": "Intent_Nightly"}, "name"),
    ({"image": 3}, "image"),
    ({"resources": {"requests": {"cpu": "1"}, "limitz": {}}}, "resources.limitz"),
    ({"vertex": {"trainer_tpu": {"accelerator_count": 0}}}, "vertex.trainer_tpu.accelerator_count"),
])
def test_bad_schedule_is_rejected_naming_the_key(change, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        ScheduleConfig.from_dict({**MINIMAL, **change}, source="s.yaml")


def test_missing_schedule_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="schedule file not found: .*nope.yaml"):
        load_schedule(tmp_path / "nope.yaml")


def test_local_paths_default_to_the_schedule_name():
    schedule = ScheduleConfig.from_dict(MINIMAL)
    assert schedule.local.lock_file == "work/scheduler/intent-nightly.lock"
    assert schedule.local.log_file == "work/scheduler/intent-nightly.jsonl"


def test_run_arguments_are_what_the_pipeline_cli_reads_back(schedule):
    """The --set values of the CronJob survive the pipeline CLI's YAML parsing unchanged."""
    args = cronjob(schedule)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["run", "--config", schedule.pipeline.config]
    overrides = dict(parse_override(args[i + 1]) for i, a in enumerate(args) if a == "--set")
    assert overrides == {"data.path": schedule.pipeline.data_path,
                         "pipeline_root": schedule.pipeline.pipeline_root,
                         "push.model_base_path": schedule.pipeline.model_base_path,
                         **schedule.pipeline.overrides}
    assert args[args.index("--") + 1:] == list(schedule.pipeline.beam_args)
    # And the pipeline configuration accepts them (the file is the repository's own).
    config = PipelineConfig.from_file(Path(__file__).resolve().parents[2] / schedule.pipeline.config, overrides)
    assert config.data.path == schedule.pipeline.data_path


# --- the CronJob ---------------------------------------------------------------------------------

def test_cronjob_is_valid_and_forbids_overlapping_runs(schedule):
    job = cronjob(schedule)
    validate(job)
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert (spec["schedule"], spec["timeZone"]) == ("0 3 * * *", "Europe/Helsinki")
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"},
                                      "limits": {"cpu": "4", "memory": "16Gi"}}
    assert container["image"] == schedule.image


def test_committed_cronjob_is_generated_from_the_schedule(schedule):
    committed = INFRA / "pipeline" / "cronjob.yaml"
    assert committed.read_text() == render_cronjob(schedule, SCHEDULE_SOURCE), (
        f"{committed} is stale: python -m tfx_pipeline.scheduling render-cronjob "
        f"--schedule {SCHEDULE_SOURCE} --out infra/pipeline/cronjob.yaml")


def test_render_cronjob_command_writes_the_file(tmp_path):
    out = tmp_path / "cronjob.yaml"
    assert cli.main(["render-cronjob", "--schedule", str(SCHEDULE), "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["kind"] == "CronJob"


# --- the KFP / Vertex pipeline -------------------------------------------------------------------

def test_kfp_spec_is_a_valid_pipeline_spec(compiled):
    """Parsed into the PipelineSpec proto: an unknown or mistyped field fails."""
    json_format.ParseDict(compiled, pipeline_spec_pb2.PipelineSpec())


def test_kfp_trainer_runs_on_the_tpu_after_preprocessing(schedule, compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {"preprocess", "trainer"}
    assert tasks["trainer"]["dependentTasks"] == ["preprocess"]
    assert all(task["cachingOptions"].get("enableCache", False) is False for task in tasks.values())
    executors = compiled["deploymentSpec"]["executors"]
    trainer = executors[compiled["components"][tasks["trainer"]["componentRef"]["name"]]["executorLabel"]]
    accelerator = trainer["container"]["resources"]["accelerator"]
    assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("TPU_V3", "8")
    assert trainer["container"]["command"] == ["python", "-m", "tfx_pipeline"]
    assert "training.distribution.strategy=tpu" in trainer["container"]["args"]
    preprocess = executors["exec-preprocess"]["container"]
    assert "accelerator" not in preprocess["resources"]
    assert preprocess["args"][:2] == ["run-until", "Transform"]


def test_committed_kfp_spec_is_compiled_from_the_schedule(compiled):
    committed = INFRA / "pipeline" / "kfp_pipeline.yaml"
    assert yaml.safe_load(committed.read_text()) == compiled, (
        f"{committed} is stale: python -m tfx_pipeline.scheduling compile-kfp "
        f"--schedule {SCHEDULE_SOURCE} --out infra/pipeline/kfp_pipeline.yaml")


def test_vertex_schedule_request_runs_one_at_a_time_in_the_time_zone(schedule, compiled):
    body = vertex_schedule_request(schedule, compiled)
    assert body["cron"] == "TZ=Europe/Helsinki 0 3 * * *"
    assert body["maxConcurrentRunCount"] == "1"
    request = body["createPipelineJobRequest"]
    assert request["parent"] == "projects/nlp-suite/locations/europe-west4"
    assert request["pipelineJob"]["pipelineSpec"] == compiled
    assert request["pipelineJob"]["runtimeConfig"]["gcsOutputDirectory"].startswith("gs://")


def test_vertex_schedule_command_embeds_the_committed_spec(tmp_path, capsys):
    assert cli.main(["render-vertex-schedule", "--schedule", str(SCHEDULE), "--pipeline-spec",
                     str(INFRA / "pipeline" / "kfp_pipeline.yaml")]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["createPipelineJobRequest"]["pipelineJob"]["pipelineSpec"]["pipelineInfo"]["name"] == \
        "intent-nightly"
