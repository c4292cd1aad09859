"""Helpers for the app-image tests: the protobuf collector, the apps' import graph, their requirements.

The app images (infra/docker/{customer-service,ranker,sentiment-monitor}.Dockerfile) carry no
TensorFlow: their requirements are ``infra/docker/apps-requirements.txt`` and the TF Serving
API's generated modules come from ``infra/docker/collect_serving_protos.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
DOCKER = INFRA / "docker"
COLLECTOR = DOCKER / "collect_serving_protos.py"
APPS_REQUIREMENTS = DOCKER / "apps-requirements.txt"
CONSTRAINTS = REPO / "constraints.txt"
APP_IMAGES = ("customer-service", "ranker", "sentiment-monitor")
FIRST_PARTY = {"apps", "serving", "suite_core", "tfx_pipeline", "benchmarks", "tests"}
PROTO_PACKAGES = {"tensorflow", "tensorflow_serving"}  # In the images as the collector's copy only.


def load_collector() -> ModuleType:
    """``infra/docker/collect_serving_protos.py`` as a module (infra/docker is no package)."""
    return _load("collect_serving_protos", COLLECTOR)


def load_saved_models() -> ModuleType:
    """tests/serving/serving_saved_models.py (the toy SavedModels; imports TensorFlow)."""
    return _load("serving_saved_models", REPO / "tests" / "serving" / "serving_saved_models.py")


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built.
    spec.loader.exec_module(module)
    return module


def _source(module: str) -> Path | None:
    path = REPO / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> set[str]:
    """Absolute imports of a file, also those inside functions; ``from a import b`` gives a and a.b."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def app_modules() -> dict[str, Path]:
    """Every first-party module the apps reach (apps/ and what it imports of serving/, suite_core/)."""
    pending = [".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for p in (REPO / "apps").rglob("*.py")]
    reached: dict[str, Path] = {}
    while pending:
        module = pending.pop()
        path = None if module in reached else _source(module)
        if path is None:
            continue
        reached[module] = path
        parts = module.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]  # Its packages run first.
        pending += [name for name in _imported(path) if name.split(".")[0] in FIRST_PARTY]
    return dict(sorted(reached.items()))


def external_imports() -> dict[str, set[str]]:
    """``{imported module: files}`` for the non-standard, non-first-party imports of the apps' modules."""
    found: dict[str, set[str]] = {}
    for path in app_modules().values():
        for name in _imported(path):
            top = name.split(".")[0]
            if top not in FIRST_PARTY and top not in sys.stdlib_module_names:
                found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """``{normalized name: version}`` of the ``name==version`` lines (extras and comments dropped)."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if match:
            found[normalized(match.group(1))] = match.group(2)
    return found
