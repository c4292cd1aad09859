"""Fixtures for the serving tests: real SavedModels, real servers on loopback.

The conformance suite runs against :func:`target`.  By default that is an
in-process server started from the same kind of files a real TF Serving
reads (a models.config written here, ``infra/serving/batching.config`` and
``infra/serving/monitoring.config``).  Point it at any TF Serving instead
with environment variables::

    TF_SERVING_GRPC_ADDRESS=host:8500        (required to use an external server)
    TF_SERVING_REST_ADDRESS=host:8501        (REST tests skip without it)
    TF_SERVING_TEXT_MODEL=intent             text classifier following the export contract
    TF_SERVING_CLASSIFY_SIGNATURE=classify
    TF_SERVING_REGRESS_MODEL=...             optional: model with a 'regress' signature
    TF_SERVING_PAIR_MODEL=...                optional: two-input text model (query, item_text)
    TF_SERVING_VERSION_LABELS=stable=1,canary=2   optional labels of the text model
    TF_SERVING_MAX_BATCH_SIZE=32             optional: server batching limit
    TF_SERVING_METRICS_PATH=/monitoring/prometheus/metrics   optional
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

import serving_saved_models as saved_models  # noqa: E402

from serving.launcher import free_port as free_port  # noqa: E402  (the tests import it from here)

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "serving"


@dataclass(frozen=True)
class Target:
    """A server under test and what it serves."""

    grpc_address: str
    rest_address: str | None
    text_model: str = "intent"
    classify_signature: str = "classify"
    regress_model: str | None = None
    pair_model: str | None = None
    labels: dict[str, int] = field(default_factory=dict)
    max_batch_size: int | None = None
    metrics_path: str | None = None
    external: bool = False


@dataclass(frozen=True)
class Exports:
    """SavedModels built once per test session, to be published as versions."""

    intent_v1: Path
    intent_v2: Path
    regressor: Path
    pair: Path
    root: Path


def wait_for(condition: Callable[[], object], timeout: float = 60.0, interval: float = 0.05, what: str = "") -> object:
    """Polls until ``condition()`` is truthy; the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> Exports:
    root = tmp_path_factory.mktemp("exports")
    return Exports(
        intent_v1=saved_models.build_text_classifier(root / "intent_v1", seed=1),
        intent_v2=saved_models.build_text_classifier(root / "intent_v2", seed=2),
        regressor=saved_models.build_regressor(root / "regressor", slope=2.0, intercept=1.0),
        pair=saved_models.build_pair_scorer(root / "pair"),
        root=root,
    )


def write_models_config(path: Path, models: dict[str, Path], extra: dict[str, str] | None = None) -> Path:
    """A ModelServerConfig text file, as written for tensorflow_model_server."""
    from serving.config import write_model_server_config

    return write_model_server_config(path, models, extra)


def in_process_options(flags: list[str], **endpoint_changes):
    """ServerOptions from tensorflow_model_server flags, listening on loopback, free ports."""
    from serving.cli import parse_flags

    options = parse_flags(flags)
    endpoints = dataclasses.replace(
        options.endpoints,
        **{"grpc_port": 0, "rest_port": 0, "bind_address": "127.0.0.1", **endpoint_changes},
    )
    models = dataclasses.replace(options.models, file_system_poll_wait_seconds=0.2)
    return dataclasses.replace(options, endpoints=endpoints, models=models)


@pytest.fixture(scope="session")
def conformance_server(exports, tmp_path_factory) -> Iterator[object]:
    """Our server, configured from TF Serving style files (not started if external)."""
    if os.environ.get("TF_SERVING_GRPC_ADDRESS"):
        yield None
        return
    from serving.server import ModelServer

    base = tmp_path_factory.mktemp("conformance_models")
    saved_models.publish_version(exports.intent_v1, base / "intent", 1)
    saved_models.publish_version(exports.intent_v2, base / "intent", 2)
    saved_models.publish_version(exports.regressor, base / "regressor", 1)
    saved_models.publish_version(exports.pair, base / "reranker", 1)
    config = write_models_config(
        base / "models.config",
        {"intent": base / "intent", "regressor": base / "regressor", "reranker": base / "reranker"},
        extra={
            "intent": "  model_version_policy { all {} }\n"
            '  version_labels { key: "stable" value: 1 }\n'
            '  version_labels { key: "canary" value: 2 }\n'
        },
    )
    options = in_process_options(
        [
            f"--model_config_file={config}",
            "--enable_batching",
            f"--batching_parameters_file={INFRA / 'batching.config'}",
            f"--monitoring_config_file={INFRA / 'monitoring.config'}",
        ]
    )
    server = ModelServer(options).start()
    yield server
    server.stop(drain_timeout_seconds=5)


@pytest.fixture(scope="session")
def target(conformance_server) -> Target:
    env = os.environ
    if conformance_server is None:
        labels = {}
        for item in filter(None, env.get("TF_SERVING_VERSION_LABELS", "").split(",")):
            key, value = item.split("=")
            labels[key.strip()] = int(value)
        batch = env.get("TF_SERVING_MAX_BATCH_SIZE")
        return Target(
            grpc_address=env["TF_SERVING_GRPC_ADDRESS"],
            rest_address=env.get("TF_SERVING_REST_ADDRESS"),
            text_model=env.get("TF_SERVING_TEXT_MODEL", "intent"),
            classify_signature=env.get("TF_SERVING_CLASSIFY_SIGNATURE", "classify"),
            regress_model=env.get("TF_SERVING_REGRESS_MODEL"),
            pair_model=env.get("TF_SERVING_PAIR_MODEL"),
            labels=labels,
            max_batch_size=int(batch) if batch else None,
            metrics_path=env.get("TF_SERVING_METRICS_PATH"),
            external=True,
        )
    options = conformance_server.options
    return Target(
        grpc_address=conformance_server.grpc_address,
        rest_address=conformance_server.rest_address,
        regress_model="regressor",
        pair_model="reranker",
        labels={"stable": 1, "canary": 2},
        max_batch_size=options.batching.max_batch_size if options.batching else None,
        metrics_path=options.monitoring.prometheus_path if options.monitoring.prometheus_enabled else None,
    )
