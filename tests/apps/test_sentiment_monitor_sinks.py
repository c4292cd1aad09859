"""Alert delivery against real receivers on loopback: a local HTTP server
for the webhook and Slack sinks, aiosmtpd for e-mail, a file for the log;
retries with back-off, stored delivery status, and a failing sink that does
not hold up the others."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.sentiment_monitor.alerts import Alert, alert_id
from apps.sentiment_monitor.config import DeliveryConfig, SinkConfig, load_config
from apps.sentiment_monitor.dashboard import Dashboard
from apps.sentiment_monitor.delivery import Deliverer, deliver_due
from apps.sentiment_monitor.sinks import build_sink
from apps.sentiment_monitor.store import Store

ALERT = Alert(alert_id("negative_share", "NOK", 3600.0, 7200.0), "negative_share", "NOK", "critical", 3600.0, 7200.0,
              4000.0, "n-7", {"negative_share": 0.83, "threshold": 0.6, "count": 6},
              ({"id": "n-7", "timestamp": 4000.0, "text": "Nokia lowers its profit guidance", "source": "wire",
                "label": "negative", "p_negative": 0.97},), created_at=1.0)


class Receiver:
    """An HTTP server recording POSTs; answers ``fail_first`` requests with 503 first, every request
    with 503 while ``down``, and requests for the alert ids in ``refused`` with 500 (those in ``stuck``
    only after ``stuck_seconds``, so the sender times out)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict, dict]] = []
        self.fail_first = fail_first
        self.down = False
        self.refused: set[str] = set()
        self.stuck: set[str] = set()
        self.stuck_seconds = 2.0
        self.refusals = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key", "")
                if key in receiver.stuck:
                    time.sleep(receiver.stuck_seconds)
                if receiver.fail_first > 0 or receiver.down or key in receiver.refused | receiver.stuck:
                    receiver.fail_first = max(0, receiver.fail_first - 1)
                    receiver.refusals += 1
                    self.send_response(503 if key not in receiver.refused else 500)
                else:
                    receiver.requests.append((dict(self.headers), body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    class Inbox(Message):
        def __init__(self) -> None:
            super().__init__()
            self.messages = []

        def handle_message(self, message) -> None:
            self.messages.append(message)

    inbox = Inbox()
    inbox.port = closed_port()  # The controller checks its port by connecting, so it cannot be 0.
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def store(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # Nothing listens once the socket is closed.


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_webhook_posts_the_alert_json_with_an_idempotency_key(receiver, store):
    with store.transaction():
        store.add_alert(ALERT, ["webhook"])
    assert deliver_due(store, build_sink(SinkConfig(kind="webhook", url=receiver.url)), DeliveryConfig()) == 1
    [(headers, body)] = receiver.requests
    assert headers["Idempotency-Key"] == ALERT.alert_id == body["alert_id"]
    assert body["entity"] == "NOK" and body["severity"] == "critical" and body["figures"]["negative_share"] == 0.83
    assert body["window"] == {"start": "1970-01-01T01:00:00Z", "end": "1970-01-01T02:00:00Z"}
    assert body["evidence"][0]["text"] == "Nokia lowers its profit guidance"
    assert store.deliveries() == [{"alert_id": ALERT.alert_id, "sink": "webhook", "status": "delivered",
                                   "attempts": 1, "last_error": ""}]
    assert deliver_due(store, build_sink(SinkConfig(kind="webhook", url=receiver.url)), DeliveryConfig()) == 0


def test_slack_sink_sends_a_message_with_text_and_blocks(receiver, store):
    with store.transaction():
        store.add_alert(ALERT, ["slack"])
    deliver_due(store, build_sink(SinkConfig(kind="slack", url=receiver.url)), DeliveryConfig())
    [(_, body)] = receiver.requests
    assert ALERT.alert_id in body["text"] and "NOK" in body["text"]
    assert [b["type"] for b in body["blocks"]] == ["section", "section", "context"]
    assert "Nokia lowers its profit guidance" in body["blocks"][1]["text"]["text"]


def test_email_sink_sends_over_smtp(smtp_server, store):
    with store.transaction():
        store.add_alert(ALERT, ["email"])
    sink = build_sink(SinkConfig(kind="email", host="127.0.0.1", port=smtp_server.port, sender="monitor@desk.test",
                                 recipients=("risk@desk.test", "ops@desk.test")))
    assert deliver_due(store, sink, DeliveryConfig()) == 1
    [message] = smtp_server.messages
    assert message["Subject"] == "[critical] NOK: negative_share"
    assert message["To"] == "risk@desk.test, ops@desk.test"
    assert message["Message-ID"] == f"<{ALERT.alert_id}@sentiment-monitor>"
    body = message_from_bytes(message.as_bytes()).get_payload(decode=True).decode()
    assert "Nokia lowers its profit guidance" in body and "negative_share: 0.83" in body


def test_failed_attempts_back_off_and_are_retried_until_delivered(store):
    receiver = Receiver(fail_first=2)
    try:
        with store.transaction():
            store.add_alert(ALERT, ["webhook"])
        sink = build_sink(SinkConfig(kind="webhook", url=receiver.url))
        config = DeliveryConfig(initial_backoff_seconds=60, max_backoff_seconds=600, max_attempts=5)
        now = time.time()
        assert deliver_due(store, sink, config, now=now) == 0
        [status] = store.deliveries()
        assert (status["status"], status["attempts"]) == ("retrying", 1) and "503" in status["last_error"]
        assert deliver_due(store, sink, config, now=now + 59) == 0, "not due again before the back-off has passed"
        assert deliver_due(store, sink, config, now=now + 61) == 0  # Second 503; next wait is 120 s.
        assert deliver_due(store, sink, config, now=now + 62) == 0
        assert deliver_due(store, sink, config, now=now + 61 + 121) == 1
        assert store.deliveries()[0]["status"] == "delivered" and store.deliveries()[0]["attempts"] == 3
        assert len(receiver.requests) == 1
    finally:
        receiver.close()


def test_a_sink_that_keeps_failing_is_dead_lettered_without_holding_up_the_others(receiver, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store.open(url)
    sinks = (SinkConfig(kind="webhook", name="down", url=f"http://127.0.0.1:{closed_port()}/hook"),
             SinkConfig(kind="webhook", name="up", url=receiver.url),
             SinkConfig(kind="jsonl", name="log", path=str(tmp_path / "alerts.jsonl")))
    config = DeliveryConfig(sinks=sinks, max_attempts=3, initial_backoff_seconds=0.05, poll_seconds=0.02)
    alerts = [Alert(alert_id("negative_share", ticker, 0.0, 3600.0), "negative_share", ticker, "warning", 0.0,
                    3600.0, 100.0, "x", {}, (), 1.0) for ticker in ("NOK", "UPM", "KNEBV")]
    with store.transaction():
        for alert in alerts:
            store.add_alert(alert, [s.key for s in sinks])
    deliverer = Deliverer(config, [build_sink(s) for s in sinks], open_store=lambda: Store.open(url)).start()
    try:
        wait_for(lambda: {d["status"] for d in store.deliveries() if d["sink"] == "down"} == {"dead_lettered"})
        wait_for(lambda: all(d["status"] == "delivered" for d in store.deliveries() if d["sink"] != "down"))
    finally:
        deliverer.stop()
    assert sorted(body["entity"] for _, body in receiver.requests) == ["KNEBV", "NOK", "UPM"]
    logged = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert sorted(r["alert_id"] for r in logged) == sorted(a.alert_id for a in alerts)
    down = [d for d in store.deliveries() if d["sink"] == "down"]
    assert all(d["attempts"] == 3 and "Connection refused" in d["last_error"] for d in down)
    store.close()

    # What Prometheus scrapes (infra/prometheus/alerts.yml alerts on the failures counter).
    dashboard = Dashboard(load_config(overrides={"dashboard.port": 0}), open_store=lambda: Store.open(url)).start()
    try:
        metrics = urllib.request.urlopen(f"http://{dashboard.address}/metrics", timeout=10).read().decode()
        health = urllib.request.urlopen(f"http://{dashboard.address}/healthz", timeout=10).read().decode()
    finally:
        dashboard.stop()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in metrics.splitlines() if line and not line.startswith("#")}
    down_key, up_key = 'sentiment_monitor_delivery_failures_total{sink="down"}', \
        'sentiment_monitor_delivery_failures_total{sink="up"}'
    assert samples[down_key] == 9.0 and samples[up_key] == 0.0  # 3 alerts x 3 refused attempts.
    assert samples['sentiment_monitor_deliveries{sink="down",status="dead_lettered"}'] == 3.0
    assert health == "ok; 0 deliveries pending\n"
