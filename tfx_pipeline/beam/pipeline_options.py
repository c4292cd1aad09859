"""Running a Beam pipeline from the components, with explicit runner options."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

# Beam names DaskRunner nowhere; ours completes Beam's (tfx_pipeline/beam/dask_runner.py).
DASK_RUNNER = "tfx_pipeline.beam.dask_runner.DaskRunner"


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        # Beam 2.77's default runner, and DirectRunner too, first try to
        # download a Prism binary; FnApiRunner is what they fall back to.
        standard.runner = "FnApiRunner"
    elif standard.runner == "DaskRunner":
        standard.runner = DASK_RUNNER
    return options


class CountedPipeline:
    """A Beam pipeline whose counters are read back after it finishes."""

    def __init__(self, beam_args: Sequence[str]):
        self.pipeline = beam.Pipeline(options=pipeline_options(beam_args))
        self.counters: dict[str, int] = {}

    def run(self) -> dict[str, int]:
        result = self.pipeline.run()
        result.wait_until_finish()
        for counter in result.metrics().query(MetricsFilter())["counters"]:
            name = counter.key.metric.name
            self.counters[name] = self.counters.get(name, 0) + (counter.committed or counter.attempted or 0)
        return self.counters


@contextlib.contextmanager
def counted_pipeline(beam_args: Sequence[str], log: logging.Logger | None = None) -> Iterator[CountedPipeline]:
    """`with counted_pipeline(args) as p: p.pipeline | ...` runs on exit."""
    counted = CountedPipeline(beam_args)
    yield counted
    counted.run()
    if log:
        log.info("beam counters: %s", counted.counters)
