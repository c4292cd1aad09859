"""The suite's one configuration loader (suite_core.config): types, dotted-key errors,
${VAR} expansion, --set overrides, defaults merged under a user file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Mapping, Optional

import pytest

from suite_core.config import ConfigError, build_dataclass, expand_env, load_dataclass, parse_override


@dataclasses.dataclass(frozen=True)
class Retry:
    attempts: int = 2
    backoff_seconds: float = 0.5


@dataclasses.dataclass(frozen=True)
class Server:
    address: str
    retry: Retry = Retry()
    tls: bool = False
    mode: Literal["fast", "safe"] = "safe"
    labels: tuple[str, ...] = ()
    weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    root: Optional[Path] = None


@dataclasses.dataclass(frozen=True)
class App:
    server: Server
    name: str = "app"


def build(data, source="app.yaml"):
    return build_dataclass(App, data, "", source)


def test_a_mapping_becomes_the_typed_dataclasses():
    app = build({"server": {"address": "h:1", "retry": {"attempts": 5, "backoff_seconds": 1},
                            "labels": ["a", "b"], "weights": {"x": 1}, "root": "/srv", "mode": "fast"}})
    assert app == App(Server("h:1", Retry(5, 1.0), labels=("a", "b"), weights={"x": 1.0}, root=Path("/srv"),
                             mode="fast"))
    assert isinstance(app.server.retry.backoff_seconds, float) and isinstance(app.server.root, Path)
    assert build({"server": {"address": "h:1", "retry": None}}).server.retry == Retry()  # an empty section


@pytest.mark.parametrize("data, message", [
    ({"server": {"address": "h:1", "retry": {"attempts": "eighty"}}},
     "app.yaml: server.retry.attempts: expected int, got 'eighty'"),
    ({"server": {"address": "h:1", "retry": {"attempts": True}}}, "server.retry.attempts: expected int, got True"),
    ({"server": {"address": "h:1", "retry": {"attempts": 2.5}}}, "server.retry.attempts: expected int, got 2.5"),
    ({"server": {"address": 8500}}, "server.address: expected str, got 8500"),
    ({"server": {"address": "h:1", "tls": "maybe"}}, "server.tls: expected true or false, got 'maybe'"),
    ({"server": {"address": "h:1", "mode": "quick"}}, "server.mode: 'quick' is not one of 'fast', 'safe'"),
    ({"server": {"address": "h:1", "labels": "a"}}, "server.labels: expected a list, got 'a'"),
    ({"server": {"address": "h:1", "labels": ["a", 3]}}, r"server.labels\[1\]: expected str, got 3"),
    ({"server": {"address": "h:1", "weights": {"x": "heavy"}}}, "server.weights.x: expected float, got 'heavy'"),
    ({"server": {"address": "h:1", "retry": {"atempts": 1}}},
     "app.yaml: unknown key server.retry.atempts; expected one of: attempts, backoff_seconds"),
    ({"server": {"retry": {}}}, "app.yaml: missing required key server.address"),
    ({}, "app.yaml: missing required key server"),
    ({"server": ["h:1"]}, r"server: expected a mapping, got \['h:1'\]"),
])
def test_a_wrong_value_is_an_error_naming_the_dotted_key(data, message):
    with pytest.raises(ConfigError, match=message):
        build(data)


def test_strings_that_spell_numbers_or_booleans_are_taken_where_those_are_expected():
    # What ${PORT:-8080} and an unparsed command-line value give.
    app = build({"server": {"address": "h:1", "retry": {"attempts": "3", "backoff_seconds": "0.25"}, "tls": "yes"}})
    assert app.server.retry == Retry(3, 0.25) and app.server.tls is True


def test_environment_variables_and_their_defaults_are_expanded(monkeypatch):
    monkeypatch.setenv("SUITE_TEST_HOST", "model-server")
    monkeypatch.delenv("SUITE_TEST_PORT", raising=False)
    data = {"server": {"address": "${SUITE_TEST_HOST}:${SUITE_TEST_PORT:-8500}",
                       "retry": {"attempts": "${SUITE_TEST_ATTEMPTS:-4}"}, "labels": ["${SUITE_TEST_HOST}"]},
            "name": "${name}"}
    app = build(expand_env(data, keep=("name",)))
    assert app.server.address == "model-server:8500" and app.server.retry.attempts == 4
    assert app.server.labels == ("model-server",) and app.name == "${name}"  # kept for its owner to fill in
    with pytest.raises(ConfigError, match="environment variable SUITE_TEST_PORT is not set"):
        expand_env({"port": "${SUITE_TEST_PORT}"})


def test_a_file_over_the_defaults_then_set_overrides(tmp_path, monkeypatch):
    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("server:\n  address: 127.0.0.1:8500\n  retry: {attempts: 2, backoff_seconds: 0.5}\n")
    user = tmp_path / "user.yaml"
    user.write_text("server:\n  retry: {attempts: 7}\n  tls: ${SUITE_TEST_TLS:-false}\n")
    monkeypatch.setenv("SUITE_TEST_TLS", "true")
    app = load_dataclass(App, user, defaults=defaults,
                         overrides=["server.labels=[a, b]", "name=intent", "server.weights.x=2"])
    assert app.server.address == "127.0.0.1:8500"  # from the defaults
    assert app.server.retry == Retry(7, 0.5)  # the user's attempts over the defaults' section
    assert app.server.tls is True and app.server.labels == ("a", "b") and app.name == "intent"
    assert app.server.weights == {"x": 2.0}
    # A bad --set value is named by its key and the user's file.
    with pytest.raises(ConfigError, match=f"{user}: server.retry.attempts: expected int, got 'many'"):
        load_dataclass(App, user, defaults=defaults, overrides=["server.retry.attempts=many"])
    with pytest.raises(ConfigError, match="unknown key server.adress"):
        load_dataclass(App, defaults=defaults, overrides={"server.adress": "x"})
    with pytest.raises(ConfigError, match="override 'server.tls': expected KEY=VALUE"):
        parse_override("server.tls")
    with pytest.raises(ConfigError, match="override name.x: name is not a section"):
        load_dataclass(App, user, defaults=defaults, overrides=["name=a", "name.x=1"])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="schedule file not found: .*nope.yaml"):
        load_dataclass(App, tmp_path / "nope.yaml", what="schedule file")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping at the top level"):
        load_dataclass(App, tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("server: {address: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_dataclass(App, tmp_path / "bad.yaml")


def test_the_pipeline_scheduler_server_and_apps_raise_the_one_config_error():
    from apps.customer_service import config as customer_service
    from apps.ranker import config as ranker
    from apps.sentiment_monitor import config as sentiment_monitor
    from serving import config as serving
    from tfx_pipeline import config as pipeline
    from tfx_pipeline.scheduling import config as scheduling
    for module in (customer_service, ranker, sentiment_monitor, serving, pipeline, scheduling):
        assert module.ConfigError is ConfigError, module.__name__
    with pytest.raises(ConfigError, match="http.port: expected int, got 'eighty'"):
        customer_service.config_from_dict({"http": {"port": "eighty"}})
