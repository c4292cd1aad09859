"""The data components on a real Dask cluster (a scheduler and 2 worker processes
on loopback) give what FnApiRunner gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tiny_config
from tfx_pipeline.beam.dask_runner import set_up_dofn_count
from tfx_pipeline.beam.examples import read_split_records
from tfx_pipeline.dsl import Pipeline
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runner import LocalDagRunner

distributed = pytest.importorskip("distributed")

DATA_COMPONENTS = ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform")


@pytest.fixture(scope="module")
def dask_cluster():
    """A scheduler and two worker processes (one thread each), on 127.0.0.1 only."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster


def run_data_components(demo_data_dir: Path, work_dir: Path, beam_args: tuple[str, ...]) -> dict:
    config = tiny_config("intent", demo_data_dir, work_dir).replace(beam_args=beam_args)
    full = create_pipeline(config)
    data_only = Pipeline(full.name, full.root, [c for c in full.components if c.id in DATA_COMPONENTS], beam_args)
    record = LocalDagRunner().run(data_only)
    return {c["id"]: c["artifacts"] for c in record["components"]}


def split_records(artifact: dict) -> dict[str, list[bytes]]:
    """Each split's serialized examples, sorted: shards and their order are the runner's choice."""
    return {split: sorted(read_split_records(artifact["uri"], split)) for split in ("train", "eval")}


def counts(artifact: dict) -> dict:
    """An artifact's properties but its own location."""
    return {name: value for name, value in artifact["properties"].items() if name != "quarantine_dir"}


def quarantine_lines(directory: str) -> list[str]:
    return sorted(line for path in Path(directory).glob("rows*.jsonl") for line in path.read_text().splitlines())


def test_data_components_on_a_dask_cluster_match_fn_api_runner(dask_cluster, demo_data_dir, tmp_path):
    local = run_data_components(demo_data_dir, tmp_path / "fn_api", ("--runner=FnApiRunner",))
    dask = run_data_components(demo_data_dir, tmp_path / "dask",
                               ("--runner=DaskRunner", f"--dask_client_address={dask_cluster.scheduler_address}"))

    # Both worker processes ran bundles, each through DoFns it set up once and kept.
    with distributed.Client(dask_cluster.scheduler_address) as client:
        set_up = client.run(set_up_dofn_count)
    assert len(set_up) == 2 and all(n > 0 for n in set_up.values()), set_up

    # Counters (rows read, split counts, quarantine reasons) come back from the workers.
    for component, artifact in (("ExampleGen", "examples"), ("ExampleValidator", "anomalies"),
                                ("ExampleValidator", "examples"), ("Transform", "transformed_examples")):
        assert counts(dask[component][artifact]) == counts(local[component][artifact]), component
    assert local["ExampleGen"]["examples"]["properties"]["quarantined"]  # The demo data has bad rows.

    # Every serialized example is byte-identical, split by split, at each stage.
    for component, artifact in (("ExampleGen", "examples"), ("ExampleValidator", "examples"),
                                ("Transform", "transformed_examples")):
        expected = split_records(local[component][artifact])
        assert expected["train"] and expected["eval"]
        assert split_records(dask[component][artifact]) == expected, component

    # Statistics files byte for byte; quarantined rows line for line.
    statistics = [Path(run["StatisticsGen"]["statistics"]["uri"]) / "statistics.json" for run in (local, dask)]
    assert statistics[0].read_bytes() == statistics[1].read_bytes()
    assert json.loads(statistics[0].read_text())["train"]["num_examples"] > 0
    for quarantine in (lambda run: run["ExampleGen"]["examples"]["properties"]["quarantine_dir"],
                       lambda run: run["ExampleValidator"]["anomalies"]["uri"] + "/quarantine"):
        expected = quarantine_lines(quarantine(local))
        assert expected and quarantine_lines(quarantine(dask)) == expected
