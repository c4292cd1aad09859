"""infra/serving: the Kubernetes manifests for TF Serving, and that our server takes the same args."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from serving.cli import parse_flags

INFRA = Path(REPO) / "infra" / "serving"


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    documents = {}
    for name in ("deployment.yaml", "service.yaml"):
        for document in yaml.safe_load_all((INFRA / name).read_text()):
            documents[document["kind"]] = document
    return documents


@pytest.fixture(scope="module")
def container(manifests) -> dict:
    (container,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_runs_official_image_with_config_files(container, manifests):
    assert container["image"].startswith("tensorflow/serving:")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in manifests["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert mounts["models"] == "/models" and "persistentVolumeClaim" in volumes["models"]
    assert mounts["config"] == "/config" and volumes["config"]["configMap"]["name"] == "tf-serving-config"
    args = container["args"]
    for name in ("models.config", "batching.config", "monitoring.config"):
        assert any(arg.endswith(f"=/config/{name}") for arg in args), name


def test_probes_check_model_status_and_liveness(container):
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/v1/models/intent" and readiness["port"] == "http"
    assert "tcpSocket" in container["livenessProbe"] or "httpGet" in container["livenessProbe"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}


def test_service_selects_the_pods(manifests):
    service, deployment = manifests["Service"], manifests["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 8500, "http": 8501}


def test_config_map_is_generated_from_the_config_files():
    kustomization = yaml.safe_load((INFRA / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "tf-serving-config"
    for name in generator["files"]:
        assert (INFRA / name).is_file()
    assert set(kustomization["resources"]) == {"deployment.yaml", "service.yaml", "hpa.yaml"}


def test_our_server_accepts_the_container_args(container):
    args = [arg.replace("=/config/", f"={INFRA}/") for arg in container["args"]]
    options = parse_flags(args)
    assert [m.name for m in options.models.models][:2] == ["intent", "sentiment"]
    assert options.batching is not None and options.monitoring.prometheus_enabled
    assert options.endpoints.grpc_port == 8500 and options.endpoints.rest_port == 8501
