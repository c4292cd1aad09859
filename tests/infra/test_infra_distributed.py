"""The Dask cluster and the multi-worker training Job in infra/distributed/ agree
with the code that uses them."""

from __future__ import annotations

from tests.infra.manifests import INFRA, documents, pod_spec
from tfx_pipeline.beam.pipeline_options import pipeline_options
from tfx_pipeline.model.multi_worker import tf_config_from_environment


def objects(file_name: str) -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents(INFRA / "distributed" / file_name)}


def test_dask_workers_join_the_scheduler_service():
    cluster = objects("dask-cluster.yaml")
    ports = cluster["Service/dask-scheduler"]["spec"]["ports"]
    service_port = next(p["port"] for p in ports if p["name"] == "scheduler")
    worker = pod_spec(cluster["Deployment/dask-worker"])["containers"][0]
    assert f"tcp://dask-scheduler:{service_port}" in worker["command"]
    assert worker["command"][worker["command"].index("--nthreads") + 1] == "1"
    # The address the README gives the Beam components reaches that scheduler.
    options = pipeline_options(["--runner=DaskRunner", f"--dask_client_address=tcp://dask-scheduler:{service_port}"])
    assert options.get_all_options()["runner"] == "tfx_pipeline.beam.dask_runner.DaskRunner"


def test_every_trainer_pod_gets_its_own_worker_index_and_finds_the_others():
    trainer = objects("multi-worker-trainer.yaml")
    job, service = trainer["Job/trainer"], trainer["Service/trainer"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]  # All at once.
    assert spec["successPolicy"] == {"rules": [{"succeededIndexes": "0"}]}  # The chief's success, as LocalWorkers.
    pod = pod_spec(job)
    assert pod["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    hosts = env["TRAINER_WORKER_HOSTS"].split(",")
    assert hosts == [f"trainer-{k}.trainer:2222" for k in range(spec["completions"])]
    for index in range(spec["completions"]):
        config = tf_config_from_environment({**env, "JOB_COMPLETION_INDEX": str(index)})
        assert config == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
    assert pod["containers"][0]["command"][:4] == ["python", "-m", "tfx_pipeline", "train-worker"]
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert trainer[f"PersistentVolumeClaim/{claim}"]["spec"]["accessModes"] == ["ReadWriteMany"]  # Pods on any node.
