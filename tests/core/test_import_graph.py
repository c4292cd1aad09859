"""The packages' import arrows, read from the source (every import statement, also those
inside functions): apps/ need the serving API and suite_core, not the training pipeline;
suite_core needs none of the suite's packages; tfx_pipeline and serving do not import each other;
benchmarks/ may import them all, and none of them imports benchmarks."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO


def imports(package: str) -> set[tuple[str, str]]:
    """(module path, imported module) for every absolute import under ``package``."""
    found = set()
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(REPO)), alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(REPO)), node.module))
    return found


def arrows(package: str, into: tuple[str, ...]) -> list[str]:
    return sorted(f"{path} -> {module}" for path, module in imports(package) if module.split(".")[0] in into)


@pytest.mark.parametrize("package, forbidden", [
    ("apps", ("tfx_pipeline", "keras_hub", "keras", "apache_beam", "benchmarks")),
    ("suite_core", ("tfx_pipeline", "serving", "apps", "tensorflow", "keras", "apache_beam", "benchmarks")),
    ("serving", ("tfx_pipeline", "apps", "benchmarks")),
    ("tfx_pipeline", ("serving", "apps", "benchmarks")),
])
def test_no_arrow_runs_into_a_package_it_must_not_need(package, forbidden):
    assert arrows(package, forbidden) == []


def test_the_pipeline_cli_and_its_scheduling_cli_do_not_import_each_other():
    found = imports("tfx_pipeline")
    assert ("tfx_pipeline/scheduling/cli.py", "tfx_pipeline.cli") not in found
    assert ("tfx_pipeline/cli.py", "tfx_pipeline.scheduling.cli") in found  # `suite-pipeline schedule ...`


def test_the_check_sees_imports_inside_functions():
    assert ("apps/customer_service/cli.py", "apps.customer_service.service") in imports("apps")  # in main()


def test_the_benchmarks_start_servers_with_the_one_launcher_and_load_them_with_the_one_load_generator():
    found = imports("benchmarks")
    for name in ("serving", "rest_front", "customer_service", "ranker", "sentiment_monitor"):
        assert (f"benchmarks/{name}.py", "serving.launcher") in found, name
    for name in ("serving", "rest_front", "customer_service", "ranker"):
        assert (f"benchmarks/{name}.py", "benchmarks.loadgen") in found, name
