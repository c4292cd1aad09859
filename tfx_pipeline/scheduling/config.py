"""The schedule configuration: when, what, where and on which hardware.

One YAML file maps onto :class:`ScheduleConfig`. Unknown keys, wrong types,
a bad cron expression or an unknown time zone are rejected with the dotted
key and the file name, as for the pipeline configuration.

Example:

>>> schedule = ScheduleConfig.from_dict({
...     "name": "intent-nightly",
...     "schedule": {"cron": "0 3 * * *", "timezone": "Europe/Helsinki"},
...     "pipeline": {"config": "tfx_pipeline/configs/banking77.yaml"},
...     "image": "registry.example.com/nlp-suite/pipeline:0.1.0",
... })
>>> schedule.schedule.cron, schedule.local.lock_file
('0 3 * * *', 'work/scheduler/intent-nightly.lock')
"""

from __future__ import annotations

import dataclasses
import os
import re
import zoneinfo
from typing import Any, Mapping, Optional

from croniter import croniter

# The suite's one loader: the pipeline configuration's rules and error messages.
from suite_core.config import ConfigError, build_dataclass, expand_env, read_yaml

__all__ = ["ConfigError", "ScheduleConfig", "load_schedule"]

# Kubernetes object names (RFC 1123 label), also fine for KFP and Vertex.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """When runs start: a five-field cron expression in a time zone."""

    cron: str  # minute hour day-of-month month day-of-week, e.g. "0 3 * * *"
    timezone: str = "UTC"  # IANA name, e.g. "Europe/Helsinki"


@dataclasses.dataclass(frozen=True)
class PipelineTarget:
    """What one run does: `python -m tfx_pipeline run` with these settings.

    The three locations become `--set` overrides; unset ones keep the value
    of the pipeline configuration file.
    """

    config: str  # Pipeline configuration path, as seen by the running container or machine.
    data_path: Optional[str] = None  # data.path: local, gs://, s3:// (any Beam filesystem).
    pipeline_root: Optional[str] = None
    model_base_path: Optional[str] = None  # push.model_base_path: where the model server reads.
    beam_args: tuple[str, ...] = ()  # Replace the configuration's beam_args when given.
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # Any other dotted key.


@dataclasses.dataclass(frozen=True)
class Resources:
    """Kubernetes-style quantities, e.g. {cpu: "2", memory: 8Gi}."""

    requests: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"cpu": "2", "memory": "8Gi"})
    limits: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"cpu": "4", "memory": "16Gi"})


@dataclasses.dataclass(frozen=True)
class Volume:
    """A PersistentVolumeClaim mounted into the pipeline container."""

    name: str
    claim_name: str
    mount_path: str
    read_only: bool = False


@dataclasses.dataclass(frozen=True)
class KubernetesTarget:
    namespace: Optional[str] = None
    service_account: Optional[str] = None
    volumes: tuple[Volume, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # A run that starts later than this after its time is skipped (e.g. cluster down).
    starting_deadline_seconds: int = 3600
    active_deadline_seconds: int = 6 * 3600  # A hung run is killed, freeing the next slot.
    backoff_limit: int = 1


@dataclasses.dataclass(frozen=True)
class TpuSpec:
    """The trainer's accelerator on Vertex AI, as in its MachineSpec."""

    accelerator_type: str = "TPU_V3"  # TPU_V2, TPU_V3, ...
    accelerator_count: int = 8  # TPU cores.


@dataclasses.dataclass(frozen=True)
class StepResources:
    cpu_limit: str = "4"
    memory_limit: str = "16G"


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    """Vertex AI Pipelines: where it runs and what differs from Kubernetes."""

    project: str = ""
    region: str = "us-central1"
    # Vertex's own artifact root (PipelineJob runtimeConfig.gcsOutputDirectory).
    gcs_output_directory: str = ""
    service_account: Optional[str] = None
    # Overrides on top of `pipeline`: Vertex mounts buckets at /gcs/<bucket>, so
    # pipeline_root and model_base_path usually differ from the cluster's.
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    preprocess: StepResources = StepResources()
    trainer: StepResources = StepResources(cpu_limit="8", memory_limit="64G")
    trainer_tpu: TpuSpec = TpuSpec()


@dataclasses.dataclass(frozen=True)
class LocalTarget:
    """The single-machine scheduler (`run-scheduler`)."""

    lock_file: str = "work/scheduler/${name}.lock"
    log_file: str = "work/scheduler/${name}.jsonl"
    # Runs this instead of the pipeline command when given (e.g. a wrapper script).
    command: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    name: str  # Names the CronJob, the KFP pipeline and the lock; lowercase letters, digits, '-'.
    schedule: CronSchedule
    pipeline: PipelineTarget
    image: str  # The pipeline container image (infra/docker/pipeline.Dockerfile).
    resources: Resources = Resources()
    kubernetes: KubernetesTarget = KubernetesTarget()
    vertex: VertexTarget = VertexTarget()
    local: LocalTarget = LocalTarget()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<schedule>") -> "ScheduleConfig":
        config = build_dataclass(cls, data, "", source)
        config._check(source)
        return config.resolved()

    def resolved(self) -> "ScheduleConfig":
        """Fills `${name}` in the local paths."""
        local = dataclasses.replace(
            self.local,
            lock_file=self.local.lock_file.replace("${name}", self.name),
            log_file=self.local.log_file.replace("${name}", self.name),
        )
        return dataclasses.replace(self, local=local)

    def _check(self, source: str) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"{source}: name: {self.name!r} must be 1-52 lowercase letters, digits or '-', "
                              "starting and ending with a letter or digit (it names Kubernetes objects)")
        if len(self.schedule.cron.split()) != 5 or not croniter.is_valid(self.schedule.cron):
            raise ConfigError(f"{source}: schedule.cron: {self.schedule.cron!r} is not a five-field cron "
                              "expression (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'")
        try:
            zoneinfo.ZoneInfo(self.schedule.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{source}: schedule.timezone: unknown time zone {self.schedule.timezone!r}; "
                              "use an IANA name such as 'UTC' or 'Europe/Helsinki'") from None
        if self.vertex.trainer_tpu.accelerator_count < 1:
            raise ConfigError(f"{source}: vertex.trainer_tpu.accelerator_count: must be at least 1")


def load_schedule(path: str | os.PathLike) -> ScheduleConfig:
    """Reads a schedule file, expanding ${VAR} and ${VAR:-default} in strings (``${name}``
    is the schedule's name, filled in by :meth:`ScheduleConfig.resolved`)."""
    return ScheduleConfig.from_dict(expand_env(read_yaml(path, "schedule file"), keep=("name",)), source=str(path))
