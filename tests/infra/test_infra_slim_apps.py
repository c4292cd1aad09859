"""The app images' environment without Docker: a fresh virtual environment with only
infra/docker/apps-requirements.txt and the collector's copy of the TF Serving API's generated
modules (what the images' final stage holds), the repository on PYTHONPATH as /app is there.

The apps start, import without TensorFlow (``tensorflow`` is the copy's empty package), and the
customer-service desk answers a message through a real model server (run from this environment,
which has TensorFlow) serving a toy SavedModel.

Slow: it creates a virtual environment and installs into it; skipped when that cannot be done
(no package index reachable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.infra.app_image import APPS_REQUIREMENTS, COLLECTOR, CONSTRAINTS, REPO, load_saved_models

pytestmark = pytest.mark.slow

APPS = ("customer_service", "ranker", "sentiment_monitor")
# The modules the apps' commands import when they run (each cli imports them in its subcommands).
APP_MODULES = ("serving.model_client", "serving.http_server", "apps.customer_service.service",
               "apps.customer_service.web", "apps.ranker.ranker", "apps.ranker.web",
               "apps.sentiment_monitor.app", "apps.sentiment_monitor.dashboard")
NETWORK_WORDS = ("Connection", "connection", "Network", "Name or service", "Temporary failure", "timed out")
HEAVY = ("tensorflow.python", "keras", "keras_hub", "apache_beam", "tensorflow_text", "tfx_pipeline")

NO_TENSORFLOW = f"""
import importlib, sys
for name in {APP_MODULES!r}:
    importlib.import_module(name)
tf = sys.modules["tensorflow"]
assert not hasattr(tf, "constant"), tf.__file__
loaded = sorted(n for n in sys.modules if any(n == h or n.startswith(h + ".") for h in {HEAVY!r}))
assert not loaded, loaded
"""

# Predict, Classify (tf.Example inputs), GetModelMetadata (a SignatureDefMap in an Any) and
# GetModelStatus through the client, from the slim environment.
ROUND_TRIP = """
import json, sys
from serving.client import ClientConfig, ServingClient
with ServingClient(ClientConfig(address=sys.argv[1])) as client:
    prediction = client.predict("intent", ["I lost my card", "exchange rate?"])
    names = prediction.to_python()["class_names"]
    classes = client.classify("intent", [{"text": "I lost my card"}], signature="classify")
    signatures = sorted(client.signatures("intent"))
    version = client.wait_until_available("intent", timeout_seconds=30)
assert not hasattr(sys.modules["tensorflow"], "constant")
print(json.dumps({"class_names": names, "classes": classes, "signatures": signatures, "version": version}))
"""


class SlimEnvironment:
    """A virtual environment at ``path`` with the app requirements and the serving protos."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = path / "bin" / "python"

    def build(self) -> None:
        """Creates it; :func:`pytest.skip` with pip's reason when the requirements cannot be installed."""
        self._run_or_skip([sys.executable, "-m", "venv", str(self.path)], "cannot create a virtual environment")
        self._run_or_skip([str(self.python), "-m", "pip", "install", "--disable-pip-version-check",
                           "-c", str(CONSTRAINTS), "-r", str(APPS_REQUIREMENTS)],
                          "cannot install infra/docker/apps-requirements.txt (is the package index reachable?)")
        collected = subprocess.run([sys.executable, str(COLLECTOR), "--output", str(self.site_packages()), "--check"],
                                   capture_output=True, text=True, check=False)
        assert collected.returncode == 0, collected.stderr

    def site_packages(self) -> Path:
        return Path(self.run(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())

    def run(self, args: list[str], env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``python ARGS`` in the slim environment, the repository on PYTHONPATH, from a scratch cwd."""
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        full_env.pop("VIRTUAL_ENV", None)
        return subprocess.run([str(self.python), *args], capture_output=True, text=True, env=full_env,
                              cwd=self.path, timeout=timeout, check=False)

    @staticmethod
    def _run_or_skip(command: list[str], reason: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
        if result.returncode != 0:
            pytest.skip(f"{reason}: {SlimEnvironment._why(result.stdout + result.stderr)}")

    @staticmethod
    def _why(output: str) -> str:
        """pip's first word on the network if it has one (its final ERROR then blames the resolver)."""
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        network = [line for line in lines if any(word in line for word in NETWORK_WORDS)]
        errors = [line for line in lines if line.startswith("ERROR")]
        return (network or errors or lines or ["no output"])[0][:300]


@pytest.fixture(scope="module")
def slim(tmp_path_factory) -> SlimEnvironment:
    environment = SlimEnvironment(tmp_path_factory.mktemp("slim-apps") / "venv")
    environment.build()
    return environment


@pytest.fixture(scope="module")
def intent_server(tmp_path_factory):
    """The model server (this environment's, with TensorFlow) serving a toy text classifier as `intent`."""
    from serving.launcher import ModelServerProcess

    saved_models = load_saved_models()

    root = tmp_path_factory.mktemp("slim-apps-models")
    export = saved_models.build_text_classifier(root / "export", warmup=False)
    saved_models.publish_version(export, root / "intent", 1)
    with ModelServerProcess(["--model_name=intent", f"--model_base_path={root / 'intent'}"], models=("intent",),
                            rest=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}) as server:
        yield server


def saved_models_classes() -> tuple[str, ...]:
    return load_saved_models().CLASSES


def test_the_slim_environment_has_no_tensorflow_distribution(slim):
    listed = slim.run(["-m", "pip", "list", "--format=json", "--disable-pip-version-check"])
    names = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert not {name for name in names if name.startswith(("tensorflow", "keras", "apache-beam", "tf-"))}, names


@pytest.mark.parametrize("app", APPS)
def test_the_app_starts(slim, app):
    result = slim.run(["-m", f"apps.{app}", "--help"])
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_the_apps_modules_import_without_tensorflow(slim):
    result = slim.run(["-c", NO_TENSORFLOW])
    assert result.returncode == 0, result.stderr


def test_the_client_calls_a_real_model_server(slim, intent_server):
    result = slim.run(["-c", ROUND_TRIP, intent_server.grpc_address])
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["version"] == 1 and len(answer["class_names"]) == 2
    assert len(answer["classes"]) == 1 and len(answer["classes"][0]) == len(saved_models_classes())
    assert {"serving_default", "classify", "tokenize"} <= set(answer["signatures"])


def test_the_customer_service_desk_replies_through_the_model_server(slim, intent_server):
    result = slim.run(["-m", "apps.customer_service", "--server", intent_server.grpc_address,
                       "reply", "I lost my card"])
    assert result.returncode == 0, result.stderr
    suggestion = json.loads(result.stdout)
    assert suggestion["model_version"] == 1 and suggestion["intent"] and suggestion["decision"]
