"""Runs the pipeline's components up to and including one of them.

This is how the KFP pipeline splits one run over two machines: the
`preprocess` step runs up to `Transform` on a CPU machine (the Beam work goes
to Dataflow), then the `trainer` step on the TPU machine runs the whole
pipeline. Both use the same `pipeline_root`, so the runner's cache finds the
preprocessing already done (same fingerprints) and the trainer step starts at
`Trainer`.

Example (the components of a pipeline, as `create_pipeline` lists them):

>>> from tfx_pipeline.config import PipelineConfig
>>> config = PipelineConfig.from_dict({"name": "intent", "data": {
...     "path": "train.csv", "text_column": "text", "label_column": "category"}})
>>> [c.id for c in prefix_pipeline(config, "Transform").components][-2:]
['ExampleValidator', 'Transform']
"""

from __future__ import annotations

from tfx_pipeline.config import ConfigError, PipelineConfig
from tfx_pipeline.dsl import Pipeline


def prefix_pipeline(config: PipelineConfig, until: str) -> Pipeline:
    """The pipeline cut after component `until`."""
    from tfx_pipeline.pipeline import create_pipeline

    full = create_pipeline(config)
    ids = [c.id for c in full.components]
    if until not in ids:
        raise ConfigError(f"run-until: no component {until!r}; the pipeline has {', '.join(ids)}")
    return Pipeline(name=full.name, root=full.root, components=full.components[: ids.index(until) + 1],
                    beam_args=full.beam_args)


def run_until(config: PipelineConfig, until: str, config_path: str) -> dict:
    """Runs the prefix with the local runner; returns its run record."""
    from tfx_pipeline.runner import LocalDagRunner

    return LocalDagRunner(local_cache=config.local_cache or None).run(prefix_pipeline(config, until),
                                run_metadata={"config_path": config_path, "config": config.to_dict(),
                                              "until": until})
