"""The customer-service app as a library and a CLI, against a real model server
(`model_server`: the tiny intent model the pipeline trained on the demo data)."""

from __future__ import annotations

import dataclasses
import doctest
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from apps.customer_service import cli, templates, tuning
from apps.customer_service.classifier import IntentClassifier
from apps.customer_service.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_TEMPLATES_PATH,
    AppConfig,
    ConfigError,
    PolicyConfig,
    load_config,
    with_server_address,
)
from apps.customer_service.errors import InvalidMessage, ModelUnavailable
from apps.customer_service.messages import Context, CustomerMessage
from apps.customer_service.service import CustomerService
from apps.customer_service.templates import Catalog, TemplateError
from serving.launcher import free_port as closed_port  # a loopback port nothing listens on
from tests.conftest import REPO, SHARED_DATA

# A row of the demo data (tfx_pipeline/demo_data.py), so the tiny model knows it well.
LOST_CARD = "I lost my card on monday"
CARD_ARRIVAL = "When will my card arrive"


def with_policy(config: AppConfig, **changes) -> AppConfig:
    return dataclasses.replace(config, policy=dataclasses.replace(config.policy, **changes))


@pytest.fixture(scope="module")
def config(model_server) -> AppConfig:
    """The packaged config pointed at the test server; threshold 0 so every message is answered."""
    return with_policy(with_server_address(load_config(), model_server.grpc_address), threshold=0.0)


@pytest.fixture(scope="module")
def service(config):
    with CustomerService.from_config(config) as service:
        yield service


# -- templates ----------------------------------------------------------------------------


def test_catalog_has_a_template_for_every_banking77_intent():
    categories = SHARED_DATA / "banking77" / "categories.json"
    assert categories.is_file(), f"Banking77 categories not found at {categories} (set SUITE_SHARED_DATA)"
    intents = json.loads(categories.read_text())
    assert len(intents) == 77
    assert Catalog.load(DEFAULT_TEMPLATES_PATH).missing(intents) == []


def test_served_model_has_no_intent_without_a_template(service):
    known = service.classifier.known_intents()
    assert len(known) == 8  # the demo data's intents
    assert service.missing_templates() == []


def test_every_reply_reads_naturally_with_and_without_context():
    catalog = Catalog.load(DEFAULT_TEMPLATES_PATH)
    for intent in catalog.intents:
        bare = catalog.render(intent, {})
        named = catalog.render(intent, {"customer_name": "Ana", "channel": "chat"})
        for reply in (bare, named):
            assert not any(mark in reply for mark in ("{", "}", "[[", "]]")), (intent, reply)
            assert "  " not in reply and " ," not in reply, (intent, reply)
        assert bare.startswith("Hi, ") and named.startswith("Hi Ana, "), intent
    # A blank name counts as missing; a name holding template syntax is inserted literally.
    assert catalog.render("card_arrival", {"customer_name": "   "}).startswith("Hi, ")
    assert catalog.render("card_arrival", {"customer_name": "{app_name}"}).startswith("Hi {app_name}, ")


def test_catalog_refuses_templates_that_could_show_a_raw_placeholder(tmp_path):
    with pytest.raises(TemplateError, match=r"customer_name.*outside \[\["):
        Catalog(intents={"card_arrival": "Dear {customer_name}, it is on its way."}, facts={})
    with pytest.raises(TemplateError, match="unknown placeholder.*branch"):
        Catalog(intents={"card_arrival": "Visit {branch}."}, facts={"app_name": "the app"})
    path = tmp_path / "catalog.yaml"
    path.write_text("intents:\n  card_arrival: ''\n")
    with pytest.raises(TemplateError, match=r"empty template.*card_arrival"):
        Catalog.load(path)


def test_module_examples_hold():
    for module in (templates, tuning):
        assert doctest.testmod(module).failed == 0, module.__name__


# -- configuration --------------------------------------------------------------------------


def test_config_names_what_is_wrong(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  adress: 127.0.0.1:1\n")
    with pytest.raises(ConfigError, match="unknown key server.adress; expected one of: address, "):
        load_config(path)
    path.write_text("http:\n  port: eighty\n")  # once accepted unchecked
    with pytest.raises(ConfigError, match=r"config.yaml: http.port: expected int, got 'eighty'"):
        load_config(path)
    path.write_text("http:\n  port: ${CS_TEST_PORT:-8181}\n")
    assert load_config(path).http.port == 8181
    path.write_text("policy:\n  threshold: 1.5\n")
    with pytest.raises(ConfigError, match=r"policy.threshold must be in \[0, 1\], got 1.5"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


# -- replies ------------------------------------------------------------------------------------


def test_reply_answers_with_the_template_of_the_predicted_intent(service):
    suggestion = service.reply(f"  {LOST_CARD} \n", Context(customer_name="Ana", channel="chat"))
    assert suggestion.message == LOST_CARD
    assert suggestion.intent.intent == "lost_or_stolen_card"
    assert suggestion.decision.action == "answer"
    assert suggestion.reply == service.catalog.render("lost_or_stolen_card", {"customer_name": "Ana"})
    assert suggestion.reply.startswith("Hi Ana, ")
    assert suggestion.channel == "chat" and suggestion.model_version == 1
    # Top-3 alternatives: the next most probable intents, in order, none of them the top one.
    confidences = [suggestion.intent.confidence] + [a.confidence for a in suggestion.alternatives]
    assert len(suggestion.alternatives) == 3
    assert confidences == sorted(confidences, reverse=True)
    assert suggestion.intent.intent not in {a.intent for a in suggestion.alternatives}
    assert 0.0 < sum(confidences) <= 1.0 + 1e-6


def test_hand_off_below_the_threshold_and_answer_at_it(service, config):
    confidence = service.reply(CARD_ARRIVAL).intent.confidence
    above = CustomerService(with_policy(config, threshold=min(1.0, confidence + 1e-3)), service.classifier,
                            service.catalog)
    handed_off = above.reply(CARD_ARRIVAL)
    assert handed_off.decision.action == "handoff"
    assert "below the threshold" in handed_off.decision.reason
    assert handed_off.reply is None
    assert handed_off.intent.intent == "card_arrival" and len(handed_off.alternatives) == 3
    at = CustomerService(with_policy(config, threshold=confidence), service.classifier, service.catalog)
    assert at.reply(CARD_ARRIVAL).decision.action == "answer"


def test_the_same_question_again_goes_to_a_human(service):
    repeated = service.reply(LOST_CARD, Context(history=("I lost my card two days ago",)))
    assert repeated.decision.action == "handoff"
    assert "again" in repeated.decision.reason and repeated.reply is None
    other = service.reply(LOST_CARD, Context(history=(CARD_ARRIVAL,)))
    assert other.decision.action == "answer"


def test_several_messages_go_to_the_server_in_one_predict_request(service, config):
    texts = [LOST_CARD, CARD_ARRIVAL, "How can I cancel my membership", "I want a new pin for my card", LOST_CARD]
    before = service.classifier.client.attempts
    suggestions = service.reply_many([CustomerMessage(text) for text in texts])
    assert service.classifier.client.attempts - before == 1
    assert [s.message for s in suggestions] == texts
    assert suggestions[0].intent == suggestions[4].intent
    assert {s.intent.intent for s in suggestions[:4]} == {
        "lost_or_stolen_card", "card_arrival", "terminate_account", "change_pin"}
    # Past the batch limit the messages are split into as few requests as it allows.
    small_batches = IntentClassifier(dataclasses.replace(config.server, max_batch_size=2), service.classifier.client)
    before = service.classifier.client.attempts
    assert len(small_batches.classify(texts)) == 5
    assert service.classifier.client.attempts - before == 3


@pytest.mark.parametrize(("message", "problem"), [
    ("", "empty_message"),
    (" \t\n ", "empty_message"),
    ("x" * 1001, "message_too_long"),
    (b"my card \xff\xfe is broken", "undecodable_bytes"),
    ("broken \ud800 text", "undecodable_bytes"),
])
def test_bad_messages_are_refused_with_the_problem_named(service, message, problem):
    before = service.classifier.client.attempts
    with pytest.raises(InvalidMessage) as caught:
        service.reply(message)
    assert caught.value.problem == problem
    assert 400 <= caught.value.status < 500
    assert service.classifier.client.attempts == before  # refused before reaching the server
    assert service.reply(LOST_CARD).decision.action == "answer"  # and the app keeps going


def test_unreachable_server_is_an_error_not_a_reply(config):
    address = f"127.0.0.1:{closed_port()}"
    with CustomerService.from_config(with_server_address(config, address)) as down:
        with pytest.raises(ModelUnavailable, match=f"{address}.*UNAVAILABLE"):
            down.reply(LOST_CARD)
        assert down.classifier.client.attempts == config.server.max_attempts  # UNAVAILABLE was retried


def test_server_over_its_deadline_is_an_error_not_a_reply(config):
    hasty = dataclasses.replace(config, server=dataclasses.replace(config.server, deadline_seconds=1e-4))
    with CustomerService.from_config(hasty) as service:
        with pytest.raises(ModelUnavailable, match="DEADLINE_EXCEEDED"):
            service.reply(LOST_CARD)


# -- threshold tuning -----------------------------------------------------------------------


def test_tuned_threshold_meets_the_target_precision_on_the_validation_split(model_server, demo_data_dir, tmp_path):
    config_path = tmp_path / "config.yaml"
    shutil.copy(DEFAULT_CONFIG_PATH, config_path)
    shutil.copy(DEFAULT_TEMPLATES_PATH, tmp_path / "templates.yaml")
    out = io.StringIO()
    code = cli.main(["--config", str(config_path), "--server", model_server.grpc_address, "tune-threshold",
                     "--data", str(demo_data_dir / "intent.csv"), "--target-precision", "0.95"], out=out)
    assert code == cli.EXIT_OK
    report = json.loads(out.getvalue())
    policy = load_config(config_path).policy
    assert policy.threshold == report["threshold"] and report["reached"]
    assert policy.coverage == round(report["coverage"], 4) and policy.tuned_model_version == 1
    assert "/intent.csv eval split" in policy.tuned_on
    # The rest of the file is kept.
    written, packaged = (yaml.safe_load(path.read_text()) for path in (config_path, DEFAULT_CONFIG_PATH))
    assert written["server"] == packaged["server"] and written["limits"] == packaged["limits"]

    # Replaying the validation split through the app gives the reported coverage and precision.
    tuned = with_server_address(load_config(config_path), model_server.grpc_address)
    with CustomerService.from_config(tuned) as service:
        validation = tuning.validation_rows(demo_data_dir / "intent.csv")
        rows = [row for row in validation if row.intent in service.classifier.known_intents()]
        assert len(rows) == report["messages"] > 10
        assert report["skipped_unknown_intent"] == len(validation) - len(rows)
        suggestions = service.reply_many([CustomerMessage(row.text) for row in rows])
    answered = [(s, row) for s, row in zip(suggestions, rows) if s.decision.action == "answer"]
    assert len(answered) / len(rows) == pytest.approx(report["coverage"])
    assert sum(s.intent.intent == row.intent for s, row in answered) / len(answered) >= 0.95


def test_threshold_choice_trades_coverage_for_precision():
    confidences = [0.99, 0.95, 0.9, 0.9, 0.8, 0.6, 0.5, 0.3]
    correct = [True, True, True, False, True, True, False, False]
    strict = tuning.choose_threshold(confidences, correct, 1.0)
    assert (strict.coverage, strict.precision) == (2 / 8, 1.0) and 0.9 < strict.threshold < 0.95
    # The tie at 0.9 (one right, one wrong) is answered or handed off together.
    loose = tuning.choose_threshold(confidences, correct, 0.8)
    assert loose.coverage == 6 / 8 and loose.precision == pytest.approx(5 / 6) and 0.5 < loose.threshold < 0.6
    impossible = tuning.choose_threshold([0.9, 0.8], [False, True], 0.95)
    assert not impossible.reached and impossible.coverage == 0.0
    assert PolicyConfig(threshold=impossible.threshold).threshold == 1.0


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_replies_to_one_message(model_server):
    out = io.StringIO()
    code = cli.main(["--server", model_server.grpc_address, "reply", LOST_CARD, "--customer-name", "Ana"], out=out)
    assert code == cli.EXIT_OK
    result = json.loads(out.getvalue())
    assert result["intent"] == "lost_or_stolen_card" and result["decision"] in ("answer", "handoff")
    assert set(result) >= {"confidence", "reply", "reason", "alternatives"} and len(result["alternatives"]) == 3


def test_cli_answers_a_file_line_by_line_and_names_bad_lines(model_server, tmp_path):
    messages = tmp_path / "messages.txt"
    messages.write_bytes(f"{LOST_CARD}\n   \nmy card \xff is broken\n{CARD_ARRIVAL}\n".encode("latin-1"))
    out = io.StringIO()
    code = cli.main(["--server", model_server.grpc_address, "reply", "--file", str(messages)], out=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == cli.EXIT_INVALID_INPUT  # some lines were bad; the good ones are still answered
    assert [line["line"] for line in lines] == [1, 2, 3, 4]
    assert [line.get("intent") for line in lines] == ["lost_or_stolen_card", None, None, "card_arrival"]
    assert [line.get("error") for line in lines] == [None, "empty_message", "undecodable_bytes", None]


def test_cli_reads_stdin(model_server):
    command = [sys.executable, "-m", "apps.customer_service", "--server", model_server.grpc_address,
               "reply", "--file", "-"]
    done = subprocess.run(command, input=f"{LOST_CARD}\n{CARD_ARRIVAL}\n".encode(), capture_output=True,
                          cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == cli.EXIT_OK, done.stderr.decode()[-2000:]
    intents = [json.loads(line)["intent"] for line in done.stdout.decode().splitlines()]
    assert intents == ["lost_or_stolen_card", "card_arrival"]


def test_cli_reports_an_unreachable_server_without_a_reply(capsys):
    out = io.StringIO()
    code = cli.main(["--server", f"127.0.0.1:{closed_port()}", "reply", LOST_CARD], out=out)
    assert code == cli.EXIT_MODEL
    assert out.getvalue() == ""  # no made-up reply
    assert "error: model server 127.0.0.1:" in capsys.readouterr().err


def test_cli_refuses_an_empty_message(capsys):
    assert cli.main(["--server", f"127.0.0.1:{closed_port()}", "reply", "   "]) == cli.EXIT_INVALID_INPUT
    assert "message is empty or only whitespace" in capsys.readouterr().err


# -- the benchmark --------------------------------------------------------------------------------


def test_benchmark_runs_end_to_end_and_reports_its_numbers(trained_suite, demo_data_dir):
    """A short run on the tiny model: a server and the app in their own processes, loopback only."""
    from benchmarks import customer_service as benchmark

    out = io.StringIO()
    code = benchmark.main(["--model-base-path", str(trained_suite.model_base_path / "intent"),
                           "--single-requests", "10", "--warmup-requests", "2", "--clients", "2", "--seconds", "1",
                           "--data", str(demo_data_dir / "intent.csv"), "--json"], out=out)
    assert code == 0
    report = json.loads(out.getvalue())
    for name in ("server", "app"):
        assert report["single"][name]["requests"] == 10 and report["single"][name]["errors"] == 0
        assert report["concurrent"][name]["requests"] > 0 and report["concurrent"][name]["errors"] == 0
    ratio = report["single"]["app"]["p50_ms"] / report["single"]["server"]["p50_ms"]
    assert report["single"]["overhead_ratio_p50"] == pytest.approx(ratio, abs=0.01)
    quality = report["quality"]
    assert quality["messages"] > 10 and 0.0 <= quality["coverage"] <= 1.0
    assert quality["reached"] and quality["precision"] >= 0.95
