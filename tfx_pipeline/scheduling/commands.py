"""The command lines a scheduled run executes, shared by every target.

The CronJob, the KFP steps and the local scheduler all run the pipeline's
own CLI, so a scheduled run is exactly a run someone could type.

Example:

>>> from tfx_pipeline.scheduling.config import PipelineTarget
>>> target = PipelineTarget(config="c.yaml", data_path="gs://b/train.csv",
...                         beam_args=("--runner=DataflowRunner",))
>>> pipeline_args(target)
['run', '--config', 'c.yaml', '--set', 'data.path=gs://b/train.csv', '--', '--runner=DataflowRunner']
>>> pipeline_args(target, {"training.epochs": 2}, stage_until="Transform")[:4]
['run-until', 'Transform', '--config', 'c.yaml']
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import yaml

from tfx_pipeline.scheduling.config import PipelineTarget

# `python -m <module>` of the two entry points a container runs.
PIPELINE_MODULE = "tfx_pipeline"
STAGE_MODULE = "tfx_pipeline.scheduling"


def overrides_of(target: PipelineTarget, extra: Mapping[str, Any] = {}) -> dict[str, Any]:
    """Dotted key -> value: the three locations, then `overrides`, then `extra`."""
    result: dict[str, Any] = {}
    for key, value in (("data.path", target.data_path), ("pipeline_root", target.pipeline_root),
                       ("push.model_base_path", target.model_base_path)):
        if value is not None:
            result[key] = value
    result.update(target.overrides)
    result.update(extra)
    return result


def pipeline_args(target: PipelineTarget, extra_overrides: Mapping[str, Any] = {},
                  stage_until: Optional[str] = None) -> list[str]:
    """Arguments after `python -m tfx_pipeline` (or `... scheduling` for a stage)."""
    head = ["run"] if stage_until is None else ["run-until", stage_until]
    args = [*head, "--config", target.config]
    for key, value in overrides_of(target, extra_overrides).items():
        args += ["--set", f"{key}={_yaml_value(value)}"]
    if target.beam_args:
        args += ["--", *target.beam_args]
    return args


def _yaml_value(value: Any) -> str:
    """Text that `--set` (which parses YAML) reads back as `value`."""
    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)  # JSON is YAML: quotes a string like "01" or "true", keeps lists.
