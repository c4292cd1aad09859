"""The ranker's HTTP JSON endpoint on loopback, against a real model server serving the pipeline-trained
tiny ranking models (`ranking_model_server`)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket

import pytest

from apps.ranker.config import HttpConfig, load_config, with_overrides
from apps.ranker.ranker import Ranker
from apps.ranker.web import RankHttpServer


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str,
            body: bytes | dict | None = None) -> tuple[int, dict, http.client.HTTPMessage]:
    payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        # The headers are case-insensitive, as HTTP header names are.
        return response.status, json.loads(response.read()), response.headers
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server_address(ranking_model_server) -> str:
    """The shared real server on loopback serving the pipeline-trained tiny catalog_embedder and
    catalog_reranker (tests/conftest.py).  They are weak: tests assert behaviour, not ranking quality."""
    return ranking_model_server.grpc_address


@pytest.fixture(scope="module")
def index_dir(server_address, demo_data_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ranker_http_index") / "index"
    with Ranker(with_overrides(load_config(), address=server_address, index_path=directory)) as ranker:
        ranker.ingest(demo_data_dir / "catalog" / "corpus.jsonl", full=True)
    return directory


def serve(address: str, index, reranker_model: str | None = None, **retrieval):
    retrieval = {"rerank_depth": 100, "request_budget_ms": 0.0, **retrieval}  # no budget fallbacks under load
    config = with_overrides(load_config(), address=address, index_path=index, reranker_model=reranker_model,
                            **retrieval)
    config = dataclasses.replace(config, http=HttpConfig(port=0, retry_after_seconds=7, max_request_bytes=4096))
    return RankHttpServer(Ranker(config), config.http)


@pytest.fixture(scope="module")
def port(server_address, index_dir):
    with serve(server_address, index_dir) as server:
        yield server.port


def test_rank_returns_scored_items_with_their_stages(port):
    status, body, _ = request(port, "POST", "/v1/rank", {
        "text": "lightweight tent for camping trips", "filters": {"in_stock": True}, "exclude": ["tent-budget"],
        "recent": ["ghost"], "k": 3})
    assert status == 200, body
    assert len(body["items"]) == 3 and body["degraded"] is False and body["stages"] == ["bm25", "vector", "rerank"]
    first = body["items"][0]
    assert {"id", "score", "found_by", "bm25_rank", "vector_rank", "rerank_score", "fused_score"} <= set(first)
    assert all(item["metadata"]["in_stock"] and item["id"] != "tent-budget" for item in body["items"])
    assert body["warnings"][0]["code"] == "unknown_recent_ids" and body["warnings"][0]["ids"] == ["ghost"]
    status, health, _ = request(port, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["index"]["items"] == 72


@pytest.mark.parametrize("body, status, problem", [
    (b"{not json", 400, "invalid_json"),
    (b"\xff\xfe", 400, "invalid_json"),
    ([1, 2], 400, "invalid_field"),
    ({"txt": "tent"}, 400, "invalid_field"),
    ({"text": 3}, 400, "invalid_field"),
    ({"text": "tent", "k": "5"}, 400, "invalid_field"),
    ({"text": "tent", "candidates": "a,b"}, 400, "invalid_field"),
    ({"text": "tent", "filters": {"price": {"under": 5}}}, 422, "invalid_filter"),
    ({"text": "tent", "k": 0}, 422, "invalid_k"),
    ({"text": ""}, 422, "empty_context"),
    ({"recent": ["ghost"]}, 422, "unknown_recent_items"),
    ({"text": "x" * 5000}, 413, "request_too_large"),
])
def test_bad_input_is_a_4xx_naming_the_problem(port, body, status, problem):
    got, answer, _ = request(port, "POST", "/v1/rank", body)
    assert (got, answer["error"]) == (status, problem), answer
    assert answer["message"]


def test_without_a_blessed_reranker_the_answer_and_the_metrics_say_hybrid(server_address, index_dir):
    with serve(server_address, index_dir, reranker_model="catalog_reranker_unblessed") as server:
        for _ in range(2):
            status, body, _ = request(server.port, "POST", "/v1/rank", {"text": "tent", "k": 3})
            assert status == 200 and body["rerank"]["status"] == "no_reranker", body
            assert body["stages"] == ["bm25", "vector"] and all(i["stage"] == "fusion" for i in body["items"])
        request(server.port, "POST", "/v1/rank", {"text": "tent", "rerank": False})
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", "/metrics")
        metrics = connection.getresponse().read().decode()
        connection.close()
    assert 'ranker_requests_total{rerank_status="no_reranker"} 2' in metrics
    assert 'ranker_requests_total{rerank_status="off"} 1' in metrics
    assert 'ranker_requests_total{rerank_status="reranked"} 0' in metrics


def test_unknown_route_is_404(port):
    assert request(port, "POST", "/v1/nope", {})[0] == 404
    assert request(port, "GET", "/nope")[0] == 404


def test_empty_index_is_409(server_address, tmp_path):
    with serve(server_address, tmp_path / "empty") as server:
        status, body, _ = request(server.port, "POST", "/v1/rank", {"text": "tent"})
    assert (status, body["error"]) == (409, "empty_index")


def test_model_server_down_is_503_with_retry_after_or_a_flagged_degraded_answer(index_dir):
    address = f"127.0.0.1:{closed_port()}"
    with serve(address, index_dir) as server:
        status, body, headers = request(server.port, "POST", "/v1/rank", {"text": "tent"})
    assert (status, body["error"], headers["Retry-After"]) == (503, "model_unavailable", "7")
    with serve(address, index_dir, degraded_mode=True) as server:
        status, body, _ = request(server.port, "POST", "/v1/rank", {"text": "tent", "k": 2})
    assert status == 200 and body["degraded"] is True and "UNAVAILABLE" in body["degraded_reason"]
    assert len(body["items"]) == 2 and all(item["found_by"] == ["bm25"] for item in body["items"])
