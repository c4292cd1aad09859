"""Prometheus metrics at the monitoring path, per server."""

from __future__ import annotations

import urllib.request

import pytest
import serving_saved_models as saved_models
from prometheus_client.parser import text_string_to_metric_families

from serving.client import ClientConfig, RetryPolicy, ServingClient, ServingRpcError
from serving.config import BatchingConfig, ModelConfig, MonitoringConfig
from serving.metrics import ServerMetrics
from serving.options import EndpointOptions, ModelSourceOptions, ServerOptions
from serving.server import ModelServer

PATH = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def server(exports, tmp_path_factory):
    base = tmp_path_factory.mktemp("metrics_models")
    saved_models.publish_version(exports.intent_v1, base / "intent", 1)
    server = ModelServer(
        ServerOptions(
            endpoints=EndpointOptions(grpc_port=0, rest_port=0, bind_address="127.0.0.1"),
            models=ModelSourceOptions(models=(ModelConfig("intent", str(base / "intent")),)),
            batching=BatchingConfig(max_batch_size=4, batch_timeout_micros=1000, num_batch_threads=1),
            monitoring=MonitoringConfig(prometheus_enabled=True, prometheus_path=PATH),
        )
    ).start()
    yield server
    server.stop(drain_timeout_seconds=5)


def scrape(server) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://{server.rest_address}{PATH}", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_batch_and_model_metrics(server):
    client = ServingClient(ClientConfig(address=server.grpc_address, retry=RetryPolicy(max_attempts=1)))
    client.predict("intent", ["lost card", "exchange rate"])
    client.predict("intent", ["balance"])
    with pytest.raises(ServingRpcError):
        client.predict("missing_model", ["x"])
    with pytest.raises(ServingRpcError):
        client.predict("intent", ["x"], input_name="wrong")
    client.close()

    samples = scrape(server)
    ok = dict(model="intent", version="1", signature="serving_default", api="predict", code="OK")
    assert value(samples, "serving_requests_total", **ok) == 2
    assert value(samples, "serving_request_latency_seconds_count", **ok) == 2
    assert value(samples, "serving_request_latency_seconds_bucket", le="+Inf", **ok) == 2
    missing = dict(model="missing_model", version="", signature="", api="predict", code="NOT_FOUND")
    assert value(samples, "serving_requests_total", **missing) == 1
    bad = dict(model="intent", version="1", signature="serving_default", api="predict", code="INVALID_ARGUMENT")
    assert value(samples, "serving_requests_total", **bad) == 1

    queue = dict(model="intent", version="1", signature="serving_default")
    assert value(samples, "serving_batch_size_sum", **queue) == 3  # rows of the two good requests
    assert value(samples, "serving_batch_queue_depth", **queue) == 0
    assert value(samples, "serving_model_load_seconds_count", model="intent", version="1") == 1
    assert value(samples, "serving_model_version_state", model="intent", version="1",
                 serving_model_version_state="AVAILABLE") == 1
    assert value(samples, "serving_model_version_state", model="intent", version="1",
                 serving_model_version_state="LOADING") == 0


def test_each_server_counts_only_its_own_requests(server):
    other = ServerMetrics()
    other.observe_request(model="intent", version="1", signature="s", api="predict", code="OK", seconds=0.1)
    assert b'model="intent"' in other.exposition()
    before = scrape(server)
    assert value(before, "serving_requests_total", model="intent", version="1", signature="s",
                 api="predict", code="OK") == 0


def test_metrics_path_is_absent_when_disabled(exports, tmp_path):
    saved_models.publish_version(exports.intent_v1, tmp_path / "intent", 1)
    server = ModelServer(
        ServerOptions(
            endpoints=EndpointOptions(grpc_port=0, rest_port=0, bind_address="127.0.0.1"),
            models=ModelSourceOptions(models=(ModelConfig("intent", str(tmp_path / "intent")),)),
        )
    ).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://{server.rest_address}{PATH}", timeout=10)
        assert info.value.code == 404
    finally:
        server.stop(drain_timeout_seconds=5)
