"""The customer-service app's HTTP JSON endpoint and agent page, against a real
model server (`model_server`) and, for the page, a headless Chromium."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import shutil
import socket
import tempfile
from collections.abc import Iterator

import pytest

from apps.customer_service.config import AppConfig, load_config, with_server_address
from apps.customer_service.service import CustomerService
from apps.customer_service.web import ReplyHttpServer

LOST_CARD = "I lost my card on monday"  # a row of the demo data
CARD_ARRIVAL = "When will my card arrive"
CHROMEDRIVER = "/usr/bin/chromedriver"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(port: int, path: str, body: bytes | dict) -> tuple[int, dict, http.client.HTTPMessage]:
    """(status, JSON body, headers) of a POST to the app on loopback."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        # The headers are case-insensitive, as HTTP header names are.
        return response.status, json.loads(response.read()), response.headers
    finally:
        connection.close()


def get(port: int, path: str) -> tuple[int, bytes, http.client.HTTPMessage]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(), response.headers  # case-insensitive, as HTTP header names are
    finally:
        connection.close()


@pytest.fixture(scope="module")
def config(model_server) -> AppConfig:
    base = with_server_address(load_config(), model_server.grpc_address)
    return dataclasses.replace(base, policy=dataclasses.replace(base.policy, threshold=0.0))


@contextlib.contextmanager
def running_app(config: AppConfig) -> Iterator[ReplyHttpServer]:
    """The app's HTTP server on a free loopback port."""
    with CustomerService.from_config(config) as service:
        with ReplyHttpServer(service, dataclasses.replace(config.http, port=0)) as server:
            yield server


@pytest.fixture(scope="module")
def app(config) -> Iterator[ReplyHttpServer]:
    with running_app(config) as server:
        yield server


# -- the JSON endpoint ---------------------------------------------------------------------------


def test_reply_endpoint_returns_the_suggestion(app):
    status, body, _ = post(app.port, "/v1/reply", {"message": LOST_CARD, "context": {"customer_name": "Ana"}})
    assert status == 200
    assert body["intent"] == "lost_or_stolen_card" and body["decision"] == "answer"
    assert body["reply"].startswith("Hi Ana, ") and "freeze" in body["reply"]
    assert len(body["alternatives"]) == 3 and 0 < body["confidence"] <= 1
    assert body["reason"]


def test_replies_endpoint_answers_several_messages_in_order(app):
    status, body, _ = post(app.port, "/v1/replies", {"messages": [
        {"message": CARD_ARRIVAL}, {"message": LOST_CARD, "context": {"channel": "email"}}]})
    assert status == 200
    assert [r["intent"] for r in body["results"]] == ["card_arrival", "lost_or_stolen_card"]
    assert body["results"][1]["channel"] == "email"


@pytest.mark.parametrize(("body", "status", "error", "named"), [
    ({"message": ""}, 422, "empty_message", "empty"),
    ({"message": " \n\t "}, 422, "empty_message", "whitespace"),
    ({"message": "card " * 300}, 413, "message_too_long", "limit is 1000"),
    (b'{"message": "my card \xff\xfe is broken"}', 400, "undecodable_bytes", "not valid UTF-8"),
    (b'{"message": "broken \\ud800 text"}', 400, "undecodable_bytes", "unpaired surrogate"),
    (b'{"message": ', 400, "invalid_json", "not valid JSON"),
    ({"text": LOST_CARD}, 400, "missing_message", "no 'message'"),
    ({"message": LOST_CARD, "context": {"name": "Ana"}}, 400, "invalid_field", "unknown field"),
    ({"messages": [{"message": LOST_CARD}, {"message": " "}]}, 422, "empty_message", "messages[1]"),
])
def test_bad_requests_get_a_4xx_naming_the_problem_and_the_app_keeps_running(app, body, status, error, named):
    path = "/v1/replies" if isinstance(body, dict) and "messages" in body else "/v1/reply"
    got_status, got, _ = post(app.port, path, body)
    assert (got_status, got["error"]) == (status, error)
    assert named in got["message"]
    assert post(app.port, "/v1/reply", {"message": LOST_CARD})[0] == 200


def test_request_body_over_the_limit_is_refused_unread(config):
    small = dataclasses.replace(config, limits=dataclasses.replace(config.limits, max_request_bytes=100))
    with running_app(small) as app:
        status, body, _ = post(app.port, "/v1/reply", {"message": "x" * 200})
        assert (status, body["error"]) == (413, "request_too_large")


def test_model_server_unreachable_is_503_with_retry_after(config):
    with running_app(with_server_address(config, f"127.0.0.1:{closed_port()}")) as app:
        status, body, headers = post(app.port, "/v1/reply", {"message": LOST_CARD})
        assert (status, body["error"]) == (503, "model_unavailable")
        assert headers["Retry-After"] == str(config.http.retry_after_seconds)
        assert "reply" not in body and "UNAVAILABLE" in body["message"]
        assert get(app.port, "/healthz")[0] == 200  # the app itself is still up


def test_model_server_over_its_deadline_is_503(config):
    hasty = dataclasses.replace(config, server=dataclasses.replace(config.server, deadline_seconds=1e-4))
    with running_app(hasty) as app:
        status, body, headers = post(app.port, "/v1/reply", {"message": LOST_CARD})
        assert (status, body["error"]) == (503, "model_unavailable")
        assert "DEADLINE_EXCEEDED" in body["message"] and "Retry-After" in headers


def test_info_and_static_routes(app, config):
    status, raw, _ = get(app.port, "/v1/info")
    assert status == 200 and json.loads(raw)["threshold"] == config.policy.threshold
    status, raw, headers = get(app.port, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b'id="message"' in raw
    assert get(app.port, "/static/app.js")[0] == 200
    assert get(app.port, "/static/../config.yaml")[0] == 404
    assert get(app.port, "/nowhere")[0] == 404


# -- the agent page in headless Chromium ------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium")
    if chromium is None or shutil.which("chromedriver") is None:
        pytest.fail("the agent-page test needs Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="cs-chromium-")
    # The background-networking flags keep Chromium off the (closed) network.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def submit(browser, url: str, message: str, customer_name: str = "") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    browser.find_element(By.ID, "message").send_keys(message)
    if customer_name:
        browser.find_element(By.ID, "customer-name").send_keys(customer_name)
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "result").is_displayed()
                                     or b.find_element(By.ID, "error").is_displayed())
    WebDriverWait(browser, 10).until(expected_conditions.element_to_be_clickable((By.ID, "submit")))


def test_agent_page_shows_the_suggested_reply(browser, app):
    from selenium.webdriver.common.by import By

    submit(browser, f"{app.url}/", LOST_CARD, customer_name="Ana")
    text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
    assert text("policy").startswith("Hand-off threshold 0 %")  # from /v1/info: the test config's threshold
    assert browser.find_element(By.ID, "decision").get_attribute("data-decision") == "answer"
    assert text("intent") == "lost_or_stolen_card"
    assert text("reply").startswith("Hi Ana, ") and "freeze" in text("reply")
    alternatives = browser.find_elements(By.CSS_SELECTOR, "#alternatives li")
    assert len(alternatives) == 3 and all("%" in item.text for item in alternatives)
    # The bar is as wide as the confidence.
    confidence = int(browser.find_element(By.ID, "confidence-bar").get_attribute("aria-valuenow"))
    fill = browser.find_element(By.ID, "confidence-fill").size["width"]
    bar = browser.find_element(By.ID, "confidence-bar").size["width"]
    assert fill == pytest.approx(bar * confidence / 100, abs=2)
    assert text("confidence-text") == f"({confidence} %)"
    browser.find_element(By.ID, "copy").click()
    assert browser.find_element(By.ID, "copied").is_displayed()


def test_agent_page_shows_hand_off_and_errors(browser, config):
    from selenium.webdriver.common.by import By

    strict = dataclasses.replace(config, policy=dataclasses.replace(config.policy, threshold=1.0))
    with running_app(strict) as app:
        submit(browser, f"{app.url}/", CARD_ARRIVAL)
        assert browser.find_element(By.ID, "decision").get_attribute("data-decision") == "handoff"
        assert "Hand off" in browser.find_element(By.ID, "decision").text
        assert "below the threshold" in browser.find_element(By.ID, "reason").text
        assert not browser.find_element(By.ID, "reply-block").is_displayed()

    with running_app(with_server_address(config, f"127.0.0.1:{closed_port()}")) as app:
        submit(browser, f"{app.url}/", CARD_ARRIVAL)
        error = browser.find_element(By.ID, "error")
        assert error.is_displayed() and "did not answer" in error.text
        assert not browser.find_element(By.ID, "result").is_displayed()
