"""Scheduled pipeline runs: one schedule file, three ways to run it.

A schedule (``infra/schedules/*.yaml``, typed by :class:`ScheduleConfig`)
says when the pipeline runs, with which configuration, where its data and
models live and on what hardware. From it this package makes:

- a Kubernetes ``CronJob`` running the pipeline image (:mod:`.cronjob`);
- a Kubeflow Pipelines v2 / Vertex AI Pipelines spec with the trainer on a
  TPU, and the Vertex ``Schedule`` request that runs it (:mod:`.kfp_pipeline`);
- a single-machine scheduler that runs the pipeline on the cron schedule,
  never two runs at once, logging each run as JSON lines (:mod:`.scheduler`).

Command line: ``python -m tfx_pipeline.scheduling --help`` (:mod:`.cli`).
"""

from tfx_pipeline.scheduling.config import ScheduleConfig, load_schedule

__all__ = ["ScheduleConfig", "load_schedule"]
