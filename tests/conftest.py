"""Shared fixtures: the demo data, tiny-BERT pipeline configurations, and one
pipeline-trained tiny model per session that the server and app tests serve."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterator

import pytest

import tfx_pipeline  # noqa: F401  Sets the Keras backend before anything imports Keras.
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.demo_data import write_demo_data

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tfx_pipeline" / "configs"
SHARED_DATA = Path(os.environ.get("SUITE_SHARED_DATA", REPO.parent / "shared" / "data"))

# 2 layers, hidden 64, on MiniLM's vocabulary: learns the demo data in seconds.
TINY_BERT = {"num_layers": 2, "num_heads": 2, "hidden_dim": 64, "intermediate_dim": 128}


def tiny_config(task: str, data_dir: Path, work_dir: Path, **overrides) -> PipelineConfig:
    """The demo configuration of `task` ("intent", "sentiment", "catalog_embedder"
    or "catalog_reranker") with a tiny BERT, writing everything under `work_dir`."""
    file_name = {"intent": "intent.csv", "sentiment": "sentiment.jsonl",
                 "catalog_embedder": "catalog", "catalog_reranker": "catalog"}[task]
    values = {
        "data.path": str(data_dir / file_name),
        "pipeline_root": str(work_dir / "pipelines" / task),
        "push.model_base_path": str(work_dir / "models"),
        "model.backbone.architecture": TINY_BERT,
        "model.sequence_length": 32,
        "training.epochs": 6,
        "training.learning_rate": 1e-3,
        "training.batch_size": 16,
        **overrides,
    }
    return PipelineConfig.from_file(CONFIGS / f"demo_{task}.yaml", values)


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("demo_data")
    write_demo_data(directory)
    return directory


@dataclasses.dataclass(frozen=True)
class TrainedSuite:
    work_dir: Path
    model_base_path: Path  # <base>/intent/1, <base>/sentiment/1
    records: dict  # task -> the first run's record


@pytest.fixture(scope="session")
def trained_suite(demo_data_dir, tmp_path_factory) -> TrainedSuite:
    """Runs the tiny pipeline once per demo task; its pushed models are served by later tests."""
    from tfx_pipeline.pipeline import create_pipeline
    from tfx_pipeline.runner import LocalDagRunner

    work_dir = tmp_path_factory.mktemp("trained")
    records = {task: LocalDagRunner().run(create_pipeline(tiny_config(task, demo_data_dir, work_dir)))
               for task in ("intent", "sentiment")}
    return TrainedSuite(work_dir, work_dir / "models", records)


SERVED_MODELS = ("intent", "sentiment")
# Trained in this order: the re-ranker mines with the embedder.
RANKING_MODELS = ("catalog_embedder", "catalog_reranker")


@pytest.fixture(scope="session")
def trained_ranking_models(demo_data_dir, tmp_path_factory) -> TrainedSuite:
    """The tiny embedder and re-ranker, trained by the pipeline on the demo catalog."""
    from tfx_pipeline.pipeline import create_pipeline
    from tfx_pipeline.runner import LocalDagRunner

    work_dir = tmp_path_factory.mktemp("trained_ranking")
    # Any tiny model is pushed (the app tests serve both): no floor, and a re-ranker need not beat hybrid.
    overrides = {"training.epochs": 4, "model.sequence_length": 64, "evaluation.thresholds.lower_bound": 0.0,
                 "evaluation.thresholds.min_gain_over_hybrid": -1.0}
    records = {task: LocalDagRunner().run(create_pipeline(tiny_config(task, demo_data_dir, work_dir, **overrides)))
               for task in RANKING_MODELS}
    return TrainedSuite(work_dir, work_dir / "models", records)


def start_model_server(model_base_path: Path, names: tuple[str, ...], config_dir: Path):
    """A real server on free loopback ports serving `names`, batching on."""
    from serving.cli import parse_flags
    from serving.config import write_model_server_config
    from serving.server import ModelServer

    config = write_model_server_config(config_dir / "models.config", {name: model_base_path / name for name in names})
    options = parse_flags([f"--model_config_file={config}", "--enable_batching",
                           f"--batching_parameters_file={REPO / 'infra/serving/batching.config'}"])
    options = dataclasses.replace(
        options,
        endpoints=dataclasses.replace(options.endpoints, grpc_port=0, rest_port=0, bind_address="127.0.0.1"),
        models=dataclasses.replace(options.models, file_system_poll_wait_seconds=0.5))
    return ModelServer(options).start()


@pytest.fixture(scope="session")
def model_server(trained_suite, tmp_path_factory) -> Iterator[object]:
    """A real server on loopback serving the pipeline-trained `intent` and `sentiment`
    models, batching on; `.grpc_address` is `127.0.0.1:<port>`."""
    server = start_model_server(trained_suite.model_base_path, SERVED_MODELS, tmp_path_factory.mktemp("model_server"))
    yield server
    server.stop(drain_timeout_seconds=5)


@pytest.fixture(scope="session")
def ranking_model_server(trained_ranking_models, tmp_path_factory) -> Iterator[object]:
    """A real server on loopback serving the pipeline-trained `catalog_embedder` and
    `catalog_reranker`; `.grpc_address` is `127.0.0.1:<port>`."""
    server = start_model_server(trained_ranking_models.model_base_path, RANKING_MODELS,
                                tmp_path_factory.mktemp("ranking_model_server"))
    yield server
    server.stop(drain_timeout_seconds=5)
