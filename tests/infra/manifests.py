"""Helpers for the infra tests: find, load and schema-check manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
SCHEDULE = INFRA / "schedules" / "banking77.yaml"
SCHEDULE_SOURCE = "infra/schedules/banking77.yaml"  # As the committed files name it.
KUBERNETES_VERSION = "1.37.0"  # The OpenAPI schema kubernetes-validate ships; no cluster needed.

# Files under infra/ that are not Kubernetes objects.
NOT_KUBERNETES = {"schedules", "prometheus", "pipeline/kfp_pipeline.yaml", "apps/monitor.yaml"}


def yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in {".yaml", ".yml"})


def documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kubernetes_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file:kind/name, object) for every Kubernetes object under infra/ (kustomizations excluded)."""
    for path in yaml_files():
        relative = path.relative_to(INFRA).as_posix()
        if any(relative == skip or relative.startswith(skip + "/") for skip in NOT_KUBERNETES):
            continue
        for document in documents(path):
            if document.get("kind") == "Kustomization":
                continue
            yield f"{relative}:{document['kind']}/{document['metadata']['name']}", document


def validate(obj: dict[str, Any]) -> None:
    """Raises kubernetes_validate's ValidationError naming the first bad field.

    Strict: an unknown field (a typo such as `resource:`) is an error too.
    """
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]
