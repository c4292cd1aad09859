"""The pipeline as a Kubeflow Pipelines v2 spec, for Vertex AI Pipelines.

Two container steps run the same image:

- ``preprocess``: the components up to ``Transform`` (``run-until``), on a CPU
  machine; its Beam work goes wherever the Beam args say (e.g. Dataflow);
- ``trainer``: the whole pipeline on the TPU machine spec. The preprocessing
  is found in the runner's cache under the shared pipeline root, so this
  step trains, evaluates and pushes.

KFP's own step cache is off: a scheduled run with unchanged arguments must
still run (new data arrives at the same path); the pipeline's runner decides
what is reusable, by content.

The KFP SDK is imported only here, when compiling.

Example:

>>> from tfx_pipeline.scheduling.config import ScheduleConfig
>>> schedule = ScheduleConfig.from_dict({"name": "intent-nightly", "schedule": {"cron": "0 3 * * *"},
...     "pipeline": {"config": "c.yaml"}, "image": "pipeline:1"})
>>> spec = pipeline_spec(schedule)
>>> spec["deploymentSpec"]["executors"]["exec-trainer"]["container"]["resources"]["accelerator"]["resourceType"]
'TPU_V3'
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from tfx_pipeline.scheduling.commands import PIPELINE_MODULE, STAGE_MODULE, pipeline_args
from tfx_pipeline.scheduling.config import ScheduleConfig

PREPROCESS_UNTIL = "Transform"  # The last component that needs no accelerator.


def _container_component(name: str, image: str, command: list[str], args: list[str]) -> Callable:
    """A KFP container component named `name` running a fixed command."""
    from kfp import dsl

    def component():
        return dsl.ContainerSpec(image=image, command=command, args=args)

    component.__name__ = name  # KFP names the component (and its task) after the function.
    return dsl.container_component(component)


def build_pipeline(schedule: ScheduleConfig) -> Callable:
    """The `@dsl.pipeline` function for this schedule."""
    from kfp import dsl

    vertex = schedule.vertex
    preprocess = _container_component(
        "preprocess", schedule.image, ["python", "-m", STAGE_MODULE],
        pipeline_args(schedule.pipeline, vertex.overrides, stage_until=PREPROCESS_UNTIL))
    trainer = _container_component(
        "trainer", schedule.image, ["python", "-m", PIPELINE_MODULE],
        pipeline_args(schedule.pipeline, vertex.overrides))

    @dsl.pipeline(name=schedule.name,
                  description=f"nlp-suite training pipeline ({schedule.pipeline.config}); "
                              f"trainer on {vertex.trainer_tpu.accelerator_count} x "
                              f"{vertex.trainer_tpu.accelerator_type}")
    def pipeline():
        pre = (preprocess()
               .set_caching_options(False)
               .set_cpu_limit(vertex.preprocess.cpu_limit)
               .set_memory_limit(vertex.preprocess.memory_limit))
        (trainer()
         .after(pre)
         .set_caching_options(False)
         .set_cpu_limit(vertex.trainer.cpu_limit)
         .set_memory_limit(vertex.trainer.memory_limit)
         .set_accelerator_type(vertex.trainer_tpu.accelerator_type)
         .set_accelerator_limit(vertex.trainer_tpu.accelerator_count))

    return pipeline


def compile_pipeline(schedule: ScheduleConfig, path: str | Path) -> Path:
    """Compiles the schedule's pipeline to a KFP v2 YAML file at `path`."""
    from kfp import compiler

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(schedule), str(path))
    return path


def pipeline_spec(schedule: ScheduleConfig) -> dict[str, Any]:
    """The compiled PipelineSpec as data."""
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_pipeline(schedule, Path(tmp) / "pipeline.yaml")
        return yaml.safe_load(path.read_text())


def vertex_schedule_request(schedule: ScheduleConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """Body of Vertex AI's `projects.locations.schedules.create` for this schedule.

    `maxConcurrentRunCount: 1` is Vertex's Forbid: no run starts while one is
    going. POST it to
    `https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}/schedules`.
    """
    vertex = schedule.vertex
    job: dict[str, Any] = {
        "displayName": schedule.name,
        "pipelineSpec": spec,
        "runtimeConfig": {"gcsOutputDirectory": vertex.gcs_output_directory},
    }
    if vertex.service_account:
        job["serviceAccount"] = vertex.service_account
    return {
        "displayName": schedule.name,
        "cron": f"TZ={schedule.schedule.timezone} {schedule.schedule.cron}",
        "maxConcurrentRunCount": "1",  # int64 fields are JSON strings in Google APIs.
        "allowQueueing": False,
        "createPipelineJobRequest": {
            "parent": f"projects/{vertex.project}/locations/{vertex.region}",
            "pipelineJob": job,
        },
    }


def render_vertex_schedule_request(schedule: ScheduleConfig, spec: dict[str, Any]) -> str:
    return json.dumps(vertex_schedule_request(schedule, spec), indent=2) + "\n"
