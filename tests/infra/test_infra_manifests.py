"""Every YAML file under infra/ parses; every Kubernetes object in them is
valid against the Kubernetes OpenAPI schema (strict: no unknown fields), and
the workloads have probes and resources."""

from __future__ import annotations

import pytest
import yaml
from kubernetes_validate.utils import ValidationError

from tests.infra.manifests import (
    INFRA,
    documents,
    kubernetes_objects,
    pod_spec,
    validate,
    yaml_files,
)

OBJECTS = dict(kubernetes_objects())
WORKLOADS = {key: obj for key, obj in OBJECTS.items() if obj["kind"] in {"Deployment", "CronJob"}}


def test_infra_has_the_expected_objects():
    kinds = {key.split(":")[1] for key in OBJECTS}
    assert {"Deployment/tf-serving", "Service/tf-serving", "HorizontalPodAutoscaler/tf-serving",
            "Deployment/customer-service", "Service/customer-service", "Deployment/sentiment-monitor",
            "Service/sentiment-monitor", "CronJob/intent-nightly", "PersistentVolumeClaim/nlp-models",
            "Deployment/ranker", "Service/ranker", "PersistentVolumeClaim/ranker-index",
            "Namespace/nlp-suite", "Deployment/dask-scheduler", "Service/dask-scheduler",
            "Deployment/dask-worker", "Job/trainer", "Service/trainer"} <= kinds


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_yaml_parses(path):
    assert documents(path), f"{path} has no YAML document"


@pytest.mark.parametrize("key", sorted(OBJECTS))
def test_object_is_valid_against_the_kubernetes_schema(key):
    try:
        validate(OBJECTS[key])
    except ValidationError as error:
        pytest.fail(f"{key}: {error.message} at {'.'.join(map(str, error.path))}")


def test_validation_catches_a_misspelt_field():
    """The check above can fail: a typo in a probe is rejected."""
    broken = yaml.safe_load(yaml.safe_dump(OBJECTS["apps/customer-service.yaml:Deployment/customer-service"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/"}
    with pytest.raises(ValidationError, match="httpGett"):
        validate(broken)


@pytest.mark.parametrize("key", sorted(WORKLOADS))
def test_every_container_has_resources(key):
    for container in pod_spec(WORKLOADS[key])["containers"]:
        resources = container.get("resources", {})
        assert resources.get("requests"), f"{key}: container {container['name']} has no resource requests"
        assert resources.get("limits", {}).get("memory"), f"{key}: container {container['name']} has no memory limit"


@pytest.mark.parametrize("key", sorted(k for k, o in WORKLOADS.items() if o["kind"] == "Deployment"))
def test_every_long_running_container_has_probes(key):
    for container in pod_spec(WORKLOADS[key])["containers"]:
        assert "readinessProbe" in container and "livenessProbe" in container, (
            f"{key}: container {container['name']} needs a readiness and a liveness probe")
        ports = {p["name"] for p in container.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe"):
            action = next(v for k, v in container[probe].items() if k in {"httpGet", "tcpSocket", "grpc"})
            assert action.get("port") in ports, f"{key}: {probe} uses a port the container does not name"


def test_cronjobs_never_overlap():
    cronjobs = [o for o in OBJECTS.values() if o["kind"] == "CronJob"]
    assert cronjobs
    for job in cronjobs:
        assert job["spec"]["concurrencyPolicy"] == "Forbid"


def test_services_select_their_deployments():
    # A Service selects the pods of the Deployment (or Job: the trainer's headless Service) of its name.
    deployments = {k.split("/")[-1]: o for k, o in OBJECTS.items() if o["kind"] in {"Deployment", "Job"}}
    for key, service in ((k, o) for k, o in OBJECTS.items() if o["kind"] == "Service"):
        name = service["metadata"]["name"]
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), f"{key} selects no pod of {name}"
        ports = {p["name"] for p in pod_spec(deployments[name])["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, f"{key}: unknown targetPort"


def test_hpa_scales_the_serving_deployment():
    hpa = OBJECTS["serving/hpa.yaml:HorizontalPodAutoscaler/tf-serving"]
    target = hpa["spec"]["scaleTargetRef"]
    deployment = OBJECTS[f"serving/deployment.yaml:Deployment/{target['name']}"]
    assert target["kind"] == deployment["kind"]
    # CPU utilization is relative to requests: without one the HPA cannot work.
    assert pod_spec(deployment)["containers"][0]["resources"]["requests"]["cpu"]
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_kustomizations_list_existing_files():
    for path in INFRA.rglob("kustomization.yaml"):
        (kustomization,) = documents(path)
        for resource in kustomization.get("resources", []):
            assert (path.parent / resource).exists(), f"{path}: resource {resource} does not exist"
        for generator in kustomization.get("configMapGenerator", []):
            for file in generator["files"]:
                assert (path.parent / file).is_file(), f"{path}: configMapGenerator file {file} does not exist"


def test_sentiment_monitor_config_loads_and_matches_the_deployment():
    from apps.sentiment_monitor.config import load_config
    config = load_config(INFRA / "apps" / "monitor.yaml")
    container = pod_spec(OBJECTS["apps/sentiment-monitor.yaml:Deployment/sentiment-monitor"])["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (config.dashboard.host, config.dashboard.port) == ("0.0.0.0", ports["http"])
    assert [(s.kind, s.port) for s in config.ingest.sources] == [("http", ports["ingest"])]
    assert config.scoring.address == "tf-serving:8500"


def test_ranker_deployment_is_the_single_writer_of_its_index_volume():
    """One replica, Recreate, a ReadWriteOnce claim: ingestion runs in this pod (infra/README.md, "Ranker")."""
    from apps.ranker.cli import _config, _parser
    deployment = OBJECTS["apps/ranker.yaml:Deployment/ranker"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    args = _parser().parse_args(container["args"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert args.port == {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    config = _config(args)
    assert config.server.address == "tf-serving:8500"
    # The index is on the claim, not in the container's filesystem.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
              if "persistentVolumeClaim" in v}
    (volume,) = [name for name, path in mounts.items() if config.index.directory.is_relative_to(path)]
    claim = OBJECTS[f"apps/ranker.yaml:PersistentVolumeClaim/{claims[volume]}"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsUser"], "the volume must be writable"


def test_model_server_serves_the_ranker_models_within_its_batch_limit():
    from apps.ranker.config import load_config
    from serving.config import read_batching_config, read_model_server_config
    server = load_config().server
    models = {m.name: m.base_path for m in read_model_server_config(INFRA / "serving" / "models.config")}
    for name in (server.embedder_model, server.reranker_model):
        assert models.get(name) == f"/models/{name}", f"models.config does not serve {name}"
    # The server refuses a Predict with more rows than max_batch_size.
    assert server.max_rows_per_call <= read_batching_config(INFRA / "serving" / "batching.config").max_batch_size


def test_servers_started_by_tests_and_benchmarks_use_the_deployed_thread_pools():
    from serving.launcher import DEPLOYED_THREAD_FLAGS

    deployment = OBJECTS["serving/deployment.yaml:Deployment/tf-serving"]
    args = pod_spec(deployment)["containers"][0]["args"]
    assert set(DEPLOYED_THREAD_FLAGS) <= set(args)
