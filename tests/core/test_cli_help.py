"""Every command line answers `--help` without loading TensorFlow or printing its log lines,
and TensorFlow's C++ logging is quiet by default (suite_core.tf_logging).

Each check runs in a fresh interpreter: `tensorflow` in `sys.modules` afterwards is the
deterministic stand-in for "fast" (TensorFlow's import is the seconds `--help` used to take).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import REPO

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
MODULES = ["tfx_pipeline", "serving", "apps.customer_service", "apps.sentiment_monitor", "apps.ranker", "benchmarks"]
HEAVY = ("tensorflow", "keras", "apache_beam")
# TensorFlow's and absl's C++ log lines: "I0000 00:00:17.. 123 port.cc:153] ...", and their banners.
TF_LOG = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuda|cuInit|cpu_feature_guard", re.MULTILINE)

RUN = """
import runpy, sys
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target, "--help"]
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        module, function = target.split(":")
        getattr(__import__(module, fromlist=[function]), function)(["--help"])
except SystemExit as exit:
    code = exit.code or 0
else:
    code = 0
print("LOADED:" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
""".format(heavy=HEAVY)


def help_of(kind: str, target: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the default, not the tests'
    return subprocess.run([sys.executable, "-c", RUN, kind, target], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)


@pytest.mark.parametrize("kind, target", [("script", target) for target in SCRIPTS.values()] +
                         [("module", module) for module in MODULES], ids=[*SCRIPTS, *MODULES])
def test_help_loads_no_tensorflow_and_prints_no_tensorflow_log(kind, target):
    done = help_of(kind, target)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    loaded = done.stderr.rsplit("LOADED:", 1)[1].strip()
    assert loaded == "", f"--help imported {loaded}"
    assert not TF_LOG.search(done.stdout + done.stderr), done.stderr[-2000:]


QUIET = """
import os, sys
from suite_core.tf_logging import quiet_tensorflow
quiet_tensorflow(sys.argv[1:])
print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
"""


@pytest.mark.parametrize("user_level, argv, expected", [
    (None, ["run"], "3"),  # quiet by default
    (None, ["run", "--verbose"], "None"),  # TensorFlow's own default: everything
    (None, ["run", "-v"], "None"),
    (None, ["run", "--", "-v"], "3"),  # after `--`: Beam's options, not ours
    ("1", ["run"], "1"),  # the user's setting wins
    ("0", ["run", "--verbose"], "0"),
])
def test_tensorflow_log_level(user_level, argv, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if user_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = user_level
    done = subprocess.run([sys.executable, "-c", QUIET, *argv], capture_output=True, text=True, cwd=REPO, env=env,
                          check=True, timeout=60)
    assert done.stdout.strip() == expected


def tensorflow_log_lines(argv: list[str]) -> list[str]:
    """TensorFlow's C++ log lines when a command (argv) has run an op, as the CLIs set the level."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("import sys; from suite_core.tf_logging import quiet_tensorflow; quiet_tensorflow(sys.argv[1:]); "
            "import tensorflow as tf; tf.constant(1) + 1")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return re.findall(r"^[IWEF]\d{4} .*$", done.stderr, re.MULTILINE)


def test_once_tensorflow_runs_its_warnings_and_errors_are_shown_only_with_verbose():
    quiet, verbose = tensorflow_log_lines(["run"]), tensorflow_log_lines(["run", "--verbose"])
    # Lines TensorFlow writes before its logging starts ignore the level (TensorFlow 2.21); the rest obey it.
    assert not [line for line in quiet if line[0] in "WEF"], quiet
    assert len(verbose) > len(quiet), (verbose, quiet)
