"""Hostile HTTP against every app endpoint, each on loopback as it runs: customer-service (against the real
model server), the ranker (against the real ranking models), the sentiment monitor's ``/items`` ingest and
its dashboard.  Each case is answered with the right status and no internals, the endpoint answers a
normal request correctly right after, memory stays bounded, and whatever ``/items`` refuses is
dead-lettered with the reason."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from apps.customer_service.service import CustomerService
from apps.customer_service.web import ReplyHttpServer
from apps.ranker.config import HttpConfig as RankHttpConfig
from apps.ranker.config import load_config as load_ranker_config
from apps.ranker.config import with_overrides
from apps.ranker.ranker import Ranker
from apps.ranker.web import RankHttpServer
from apps.sentiment_monitor.app import MonitorApp
from apps.sentiment_monitor.config import config_from_dict
from apps.sentiment_monitor.store import Store
from serving.http_server import HttpLimits
from tests.apps.test_customer_service_http import config as customer_service_config  # noqa: F401  (fixture)
from tests.apps.test_ranker_http import index_dir, server_address  # noqa: F401  (fixtures)
from tests.hostile_http import (
    DEEP_JSON,
    LONE_SURROGATE,
    Answer,
    closed_by_server,
    connect,
    peak_memory_growth,
    read_answers,
    request_bytes,
    send_raw,
    transport_attacks,
)

TIMEOUT = 1.0  # header and body timeouts where an endpoint lets the test set them


@dataclass(frozen=True)
class Endpoint:
    name: str
    address: str
    post_path: str
    good_body: bytes  # a request body the endpoint answers 200
    check: Callable[[Answer], bool]  # is the answer to good_body right?
    max_body_bytes: int
    counts: Callable[[], tuple[int, int]] | None = None  # /items: (items stored, lines dead-lettered)
    latest_dead_letter: Callable[[], dict] | None = None

    def good_request(self) -> bytes:
        return request_bytes("POST" if self.post_path else "GET", self.post_path or "/api/data", self.good_body)

    def assert_answers_normally(self) -> None:
        answer = send_raw(self.address, self.good_request())
        assert answer is not None and answer.status == 200 and self.check(answer), (self.name, answer)


@pytest.fixture(scope="module")
def customer_service(customer_service_config) -> Iterator[Endpoint]:  # noqa: F811
    limits = HttpLimits(header_timeout_seconds=TIMEOUT, body_timeout_seconds=TIMEOUT)
    # A loaded shared machine can take the model server past the app's 2 s deadline: not what is tested here.
    patient = dataclasses.replace(customer_service_config, server=dataclasses.replace(
        customer_service_config.server, deadline_seconds=30.0))
    with CustomerService.from_config(patient) as service:
        config = dataclasses.replace(customer_service_config.http, port=0)
        with ReplyHttpServer(service, config, limits) as server:
            yield Endpoint("customer_service", f"127.0.0.1:{server.port}", "/v1/reply",
                           json.dumps({"message": "I lost my card on monday"}).encode(),
                           lambda a: a.json()["intent"] == "lost_or_stolen_card",
                           customer_service_config.limits.max_request_bytes)


@pytest.fixture(scope="module")
def ranker(server_address, index_dir) -> Iterator[Endpoint]:  # noqa: F811
    config = with_overrides(load_ranker_config(), address=server_address, index_path=index_dir)
    config = dataclasses.replace(config, http=RankHttpConfig(port=0))
    with RankHttpServer(Ranker(config), config.http) as server:
        yield Endpoint("ranker", f"127.0.0.1:{server.port}", "/v1/rank",
                       json.dumps({"text": "lightweight tent for camping trips", "k": 3}).encode(),
                       lambda a: len(a.json()["items"]) == 3, config.http.max_request_bytes)


@pytest.fixture(scope="module")
def monitor(tmp_path_factory) -> Iterator[MonitorApp]:
    directory = tmp_path_factory.mktemp("hostile_monitor")
    url = f"sqlite:///{directory / 'state.db'}"
    app = MonitorApp(config_from_dict({
        "store": {"url": url},
        "ingest": {"sources": [{"kind": "http", "port": 0}], "dead_letter_path": str(directory / "dead.jsonl")},
        "scoring": {"address": "127.0.0.1:1"},  # ingest only: nothing is scored here
        "delivery": {"sinks": [{"kind": "jsonl", "path": str(directory / "alerts.jsonl")}]},
        "dashboard": {"enabled": True, "port": 0},
    }))
    app.start_services()
    yield app
    app.close()


def stored(app: MonitorApp) -> tuple[int, int]:
    """(items stored, lines dead-lettered), as the store has them."""
    store = Store.open(app.config.store.url)
    try:
        return sum(store.item_counts().values()), sum(store.dead_letter_counts().values())
    finally:
        store.close()


def latest_dead_letter(app: MonitorApp) -> dict:
    store = Store.open(app.config.store.url)
    try:
        return store.dead_letters(1, newest_first=True)[0]
    finally:
        store.close()


@pytest.fixture(scope="module")
def sentiment_items(monitor) -> Endpoint:
    counter = iter(range(10**6))

    def good_body() -> bytes:  # a new id each time, so each good request stores an item
        return json.dumps({"id": f"ok-{next(counter)}", "timestamp": time.time(), "text": "Kone raises its outlook"}
                          ).encode()

    class Items(Endpoint):
        def good_request(self) -> bytes:
            return request_bytes("POST", "/items", good_body())

    return Items("sentiment_items", monitor.http_addresses[0], "/items", b"", lambda a: a.json()["accepted"] == 1,
                 10 << 20, counts=lambda: stored(monitor), latest_dead_letter=lambda: latest_dead_letter(monitor))


@pytest.fixture(scope="module")
def dashboard(monitor) -> Endpoint:
    return Endpoint("dashboard", monitor.dashboard.address, "", b"", lambda a: "series" in a.json(), 64 * 1024)


ENDPOINTS = ["customer_service", "ranker", "sentiment_items", "dashboard"]
POST_ENDPOINTS = ENDPOINTS[:3]


@pytest.fixture(params=ENDPOINTS)
def endpoint(request) -> Endpoint:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=POST_ENDPOINTS)
def post_endpoint(request) -> Endpoint:
    return request.getfixturevalue(request.param)


ATTACKS = transport_attacks("/v1/any")


@pytest.mark.parametrize(("name", "raw", "status"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_malformed_requests_get_an_answer_and_the_endpoint_stays_up(endpoint, name, raw, status):
    before = endpoint.counts() if endpoint.counts else None
    with peak_memory_growth() as memory:
        answer = send_raw(endpoint.address, raw.replace(b"/v1/any", (endpoint.post_path or "/").encode()))
    assert answer is not None, f"{endpoint.name} {name}: closed without a reply"
    assert answer.status == status and answer.json()["message"] and not answer.leaks_internals(), answer
    assert memory.growth_mb < 30
    endpoint.assert_answers_normally()
    if before is not None:  # /items: the refused request is dead-lettered with the reason, the good one stored
        assert wait_until(lambda: endpoint.counts() == (before[0] + 1, before[1] + 1)), (before, endpoint.counts())


@pytest.mark.parametrize(("name", "body"), [
    ("deep_json", DEEP_JSON),
    ("lone_surrogate", ('{"text": ' + LONE_SURROGATE + ', "message": ' + LONE_SURROGATE + "}").encode()),
    ("invalid_utf8", b'{"text": "\xff\xfe", "message": "\xff\xfe"}'),
])
def test_hostile_json_is_a_400(post_endpoint, name, body):
    before = post_endpoint.counts() if post_endpoint.counts else None
    answer = send_raw(post_endpoint.address, request_bytes("POST", post_endpoint.post_path, body))
    assert answer is not None and answer.status == 400 and not answer.leaks_internals(), (name, answer)
    post_endpoint.assert_answers_normally()
    if before is not None:  # a line in = a line dead-lettered (and the good request's item stored)
        assert post_endpoint.counts() == (before[0] + 1, before[1] + 1)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """The transport's refusals are dead-lettered on a worker thread, just after the reply."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_body_over_the_limit_gets_its_413(post_endpoint):
    body = b'{"text": "' + b"x" * (post_endpoint.max_body_bytes + (1 << 20)) + b'"}'
    with peak_memory_growth() as memory:
        answer = send_raw(post_endpoint.address, request_bytes("POST", post_endpoint.post_path, body))
    assert answer is not None and answer.status == 413 and answer.json()["error"] == "request_too_large", answer
    assert memory.growth_mb < 30 + 2 * len(body) / 2**20  # the client's own copies of the body
    post_endpoint.assert_answers_normally()
    if post_endpoint.latest_dead_letter:  # the refused body's head is dead-lettered, with the reason
        assert wait_until(lambda: "HTTP 413" in post_endpoint.latest_dead_letter()["reason"])


def test_pipelined_requests_are_answered_in_order(post_endpoint):
    with connect(post_endpoint.address) as sock:
        sock.sendall(post_endpoint.good_request() + request_bytes("GET", "/no/such/route") +
                     post_endpoint.good_request())
        answers = read_answers(sock, 3)
    assert [a.status for a in answers] == [200, 404, 200]
    assert post_endpoint.check(answers[0]) and post_endpoint.check(answers[2])


def test_short_body_slow_headers_and_idle_clients_time_out(customer_service):
    endpoint = customer_service
    short = request_bytes("POST", endpoint.post_path, b'{"message": "lost"}').replace(b"Content-Length: 19",
                                                                                     b"Content-Length: 500")
    for raw in (short, b"POST /v1/reply HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
        started = time.monotonic()
        answer = send_raw(endpoint.address, raw, timeout=TIMEOUT + 10)
        assert answer is not None and answer.status == 408 and answer.json()["error"] == "request_timeout"
        assert time.monotonic() - started < TIMEOUT + 3
    idle = [connect(endpoint.address) for _ in range(50)]
    endpoint.assert_answers_normally()  # while they hold their connections
    for sock in idle:
        assert closed_by_server(sock, TIMEOUT + 5)[0]
        sock.close()
    endpoint.assert_answers_normally()
