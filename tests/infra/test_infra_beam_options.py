"""The Beam options infra/README.md documents for Dataflow, Flink and Spark,
and those of the committed schedule, are options Beam 2.77 knows and accepts."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from tests.infra.manifests import INFRA, SCHEDULE
from tfx_pipeline.scheduling.config import load_schedule


def readme_beam_commands() -> list[list[str]]:
    """The Beam options (after ` -- `) of each pipeline command in the README's code blocks."""
    joined, current = [], ""
    for line in (INFRA / "README.md").read_text().splitlines():
        if current or line.startswith("    "):
            current += " " + line.strip().rstrip("\\")
            if not line.endswith("\\"):
                joined.append(current.strip())
                current = ""
    commands = [c.split(" -- ", 1)[1] for c in joined
                if " -- " in c and (c.startswith("python -m tfx_pipeline run") or c.startswith("..."))]
    return [[a for a in c.split() if a.startswith("--")] for c in commands]


COMMANDS = readme_beam_commands()


def test_the_readme_documents_each_runner():
    runners = {a.split("=", 1)[1] for c in COMMANDS for a in c if a.startswith("--runner=")}
    assert {"DataflowRunner", "FlinkRunner", "SparkRunner", "FnApiRunner"} <= runners


@pytest.mark.parametrize("args", COMMANDS, ids=lambda c: next(a for a in c if a.startswith("--runner=")))
def test_readme_options_are_beam_options(args):
    args = [a.replace("$REGISTRY", "registry.example.com") for a in args]
    known = PipelineOptions(args).get_all_options(drop_default=False)  # Also checks choices (e.g. Flink versions).
    unknown = [a for a in args if a.split("=", 1)[0][2:] not in known]
    assert not unknown, f"infra/README.md documents options Beam does not know: {unknown}"


def test_schedule_beam_options_are_beam_options():
    args = list(load_schedule(SCHEDULE).pipeline.beam_args)
    known = PipelineOptions(args).get_all_options(drop_default=False)
    assert [a for a in args if a.split("=", 1)[0][2:] not in known] == []
