"""Model lifecycle: new versions under load, broken versions, retirement, labels, reload."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import serving_saved_models as saved_models
from conftest import in_process_options, wait_for, write_models_config
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from serving.client import ClientConfig, RetryPolicy, ServingClient, ServingRpcError, model_spec
from serving.config import BatchingConfig, ModelConfig, VersionPolicy
from serving.errors import ServingError
from serving.metrics import ServerMetrics
from serving.model_manager import ModelManager, VersionState
from serving.options import EndpointOptions, ModelSourceOptions, ServerOptions
from serving.servable import Servable
from serving.server import ModelServer


def start_server(base: Path, *, batching: BatchingConfig | None = None, models=None) -> ModelServer:
    models = models or (ModelConfig("intent", str(base / "intent")),)
    return ModelServer(
        ServerOptions(
            endpoints=EndpointOptions(grpc_port=0, rest_port=0, bind_address="127.0.0.1"),
            models=ModelSourceOptions(models=models, file_system_poll_wait_seconds=0.2),
            batching=batching,
        )
    ).start()


def client_for(server: ModelServer, **retry) -> ServingClient:
    return ServingClient(
        ClientConfig(
            address=server.grpc_address, timeout_seconds=60, retry=RetryPolicy(**retry) if retry else RetryPolicy())
    )


def test_new_version_under_load_without_a_failed_request(exports, tmp_path):
    saved_models.publish_version(exports.intent_v1, tmp_path / "intent", 1)
    server = start_server(
        tmp_path, batching=BatchingConfig(max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2)
    )
    client = client_for(server, max_attempts=1)  # a retry would hide a failure
    stop = threading.Event()
    answers: list[tuple[float, float, int]] = []  # (sent, answered, version), in completion order
    failures: list[BaseException] = []
    lock = threading.Lock()

    def load() -> None:
        texts = ["I lost my card", "exchange rate", "where is my card"]
        while not stop.is_set():
            try:
                sent = time.monotonic()
                result = client.predict("intent", texts)
                assert result.outputs["class_ids"].shape == (3,)
                with lock:
                    answers.append((sent, time.monotonic(), result.version))
            except BaseException as exc:  # noqa: BLE001 - every failure counts
                with lock:
                    failures.append(exc)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: len(answers) >= 20, what="load on version 1")
        saved_models.publish_version(exports.intent_v2, tmp_path / "intent", 2)
        wait_for(lambda: client.model_status("intent") == {2: "AVAILABLE", 1: "END"}, what="v1 retired")
        count = len(answers)
        wait_for(lambda: len(answers) >= count + 20, what="load on version 2")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        client.close()
        server.stop(drain_timeout_seconds=10)
    assert failures == []
    assert answers[0][2] == 1 and answers[-1][2] == 2
    # Requests in flight at the switch may finish on version 1; once version 2
    # has answered, no request sent afterwards goes back to version 1.
    first_v2_answer = min(answered for _, answered, version in answers if version == 2)
    assert [version for sent, _, version in answers if sent > first_v2_answer] == \
        [2] * sum(1 for sent, _, _ in answers if sent > first_v2_answer)


@pytest.fixture
def broken_exports(exports) -> dict[str, Path]:
    no_default = exports.root / "no_serving_default"
    if not no_default.exists():
        # Warm-up asks for serving_default, which this export lacks.
        saved_models.build_text_classifier(no_default, signatures=("classify", "tokenize"))
    return {"no_serving_default": no_default}


def test_broken_versions_are_reported_and_never_served(exports, broken_exports, tmp_path):
    base = tmp_path / "intent"
    saved_models.publish_version(exports.intent_v1, base, 1)
    server = start_server(tmp_path)
    client = client_for(server)
    status_stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.grpc_address))
    try:
        publishers = [
            (2, lambda: saved_models.publish_missing_files(exports.intent_v1, base, 2), "Could not find SavedModel"),
            (3, lambda: saved_models.publish_unloadable(exports.intent_v1, base, 3), "saved_model.pb"),
            (4, lambda: saved_models.publish_version(broken_exports["no_serving_default"], base, 4),
             "serving_default"),
        ]
        for version, publish, fragment in publishers:
            publish()
            wait_for(lambda v=version: client.model_status("intent").get(v) == "END", what=f"v{version} failed")
            response = status_stub.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec("intent", version=version)), timeout=10
            )
            error = response.model_version_status[0].status
            assert error.error_code != 0 and fragment in error.error_message, error
            # Still served by version 1, which stays AVAILABLE.
            assert client.predict("intent", ["lost card"]).version == 1
            assert client.model_status("intent")[1] == "AVAILABLE"
        # The manager still takes a good version afterwards.
        saved_models.publish_version(exports.intent_v2, base, 5)
        wait_for(lambda: client.predict("intent", ["lost card"]).version == 5, what="v5 served")
        wait_for(lambda: client.model_status("intent").get(1) == "END", what="v1 retired")
    finally:
        client.close()
        server.stop(drain_timeout_seconds=5)


def state_of(manager: ModelManager, version: int) -> VersionState | None:
    try:
        return manager.status("intent", version)[0].state
    except ServingError:
        return None  # not discovered yet


class GatedLoader:
    """Loads real SavedModels, but holds chosen versions until released."""

    def __init__(self, held: set[int]) -> None:
        self.held = held
        self.release = threading.Event()

    def __call__(self, name: str, version: int, path: Path) -> Servable:
        if version in self.held:
            self.release.wait(60)
        return Servable.load(name, version, path)


def test_version_still_loading_is_failed_precondition(exports, tmp_path):
    base = tmp_path / "intent"
    saved_models.publish_version(exports.intent_v1, base, 1)
    loader = GatedLoader(held={2})
    manager = ModelManager(
        ModelSourceOptions(file_system_poll_wait_seconds=0.2), ServerMetrics(), loader=loader
    )
    manager.start([ModelConfig("intent", str(base), policy=VersionPolicy("all"))])
    try:
        saved_models.publish_version(exports.intent_v2, base, 2)
        wait_for(lambda: state_of(manager, 2) == VersionState.LOADING, what="v2 loading")
        with pytest.raises(ServingError) as info:
            manager.acquire("intent", version=2)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION and "not yet available" in info.value.message
        with manager.acquire("intent") as servable:  # latest AVAILABLE is still 1
            assert servable.version == 1
        loader.release.set()
        wait_for(lambda: state_of(manager, 2) == VersionState.AVAILABLE, what="v2 available")
        with manager.acquire("intent", version=2) as servable:
            assert servable.version == 2
    finally:
        loader.release.set()
        manager.stop()


def test_retired_version_waits_for_its_requests(exports, tmp_path):
    base = tmp_path / "intent"
    saved_models.publish_version(exports.intent_v1, base, 1)
    unloaded: list[Servable] = []
    manager = ModelManager(
        ModelSourceOptions(file_system_poll_wait_seconds=0.2), ServerMetrics(), on_unloaded=unloaded.append
    )
    manager.start([ModelConfig("intent", str(base))])
    try:
        handle = manager.acquire("intent")
        saved_models.publish_version(exports.intent_v2, base, 2)
        wait_for(lambda: state_of(manager, 2) == VersionState.AVAILABLE, what="v2 available")
        wait_for(lambda: state_of(manager, 1) == VersionState.UNLOADING, what="v1 unloading")
        assert unloaded == []
        # The held version still answers while new requests go to version 2.
        outputs = handle.servable.run(
            handle.servable.signature("serving_default"), {"text": np.array([b"card"], dtype=object)}
        )
        assert outputs["class_ids"].shape == (1,)
        with manager.acquire("intent") as latest:
            assert latest.version == 2
        handle.release()
        wait_for(lambda: state_of(manager, 1) == VersionState.END, what="v1 unloaded")
        assert [s.version for s in unloaded] == [1]
    finally:
        manager.stop()


def test_reload_config_labels_and_models(exports, tmp_path):
    saved_models.publish_version(exports.intent_v1, tmp_path / "intent", 1)
    saved_models.publish_version(exports.intent_v2, tmp_path / "intent", 2)
    saved_models.publish_version(exports.regressor, tmp_path / "regressor", 1)
    server = start_server(tmp_path, models=(ModelConfig("intent", str(tmp_path / "intent"), VersionPolicy("all")),))
    client = client_for(server)
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.grpc_address))

    def reload(labels: dict[str, int], with_regressor: bool) -> None:
        config = model_server_config_pb2.ModelServerConfig()
        intent = config.model_config_list.config.add(name="intent", base_path=str(tmp_path / "intent"))
        intent.model_version_policy.all.SetInParent()
        intent.version_labels.update(labels)
        if with_regressor:
            config.model_config_list.config.add(name="regressor", base_path=str(tmp_path / "regressor"))
        response = stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=60)
        assert response.status.error_code == 0

    try:
        with pytest.raises(ServingRpcError) as info:
            client.predict("intent", ["x"], label="stable")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        reload({"stable": 1, "canary": 2}, with_regressor=True)
        assert client.predict("intent", ["x"], label="stable").version == 1
        assert client.predict("intent", ["x"], label="canary").version == 2
        assert client.regress("regressor", [{"x": 1.0}], signature="regress") == [3.0]
        # A label may only point at an AVAILABLE version.
        with pytest.raises(grpc.RpcError) as rejected:
            reload({"stable": 7}, with_regressor=True)
        assert rejected.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "version 7" in rejected.value.details()
        # Removing a model stops serving it.
        reload({"stable": 2}, with_regressor=False)
        assert client.predict("intent", ["x"], label="stable").version == 2
        with pytest.raises(ServingRpcError) as gone:
            client.regress("regressor", [{"x": 1.0}], signature="regress")
        assert gone.value.code == grpc.StatusCode.NOT_FOUND
    finally:
        client.close()
        server.stop(drain_timeout_seconds=5)


def test_model_config_file_is_polled(exports, tmp_path, caplog):
    saved_models.publish_version(exports.intent_v1, tmp_path / "intent", 1)
    saved_models.publish_version(exports.regressor, tmp_path / "regressor", 1)
    config = write_models_config(tmp_path / "models.config", {"intent": tmp_path / "intent"})
    options = in_process_options([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"])
    options = dataclasses.replace(
        options, models=dataclasses.replace(options.models, model_config_file_poll_wait_seconds=0.2)
    )
    server = ModelServer(options).start()
    client = client_for(server, max_attempts=1)
    try:
        write_models_config(config, {"intent": tmp_path / "intent", "regressor": tmp_path / "regressor"})
        wait_for(lambda: _serves(client, "regressor"), what="regressor added from the config file")
        config.write_text("model_config_list { config { name: 'broken' ")  # a bad edit is not applied
        wait_for(lambda: any("keeping the current models" in r.getMessage() for r in caplog.records),
                 what="the bad config file read and refused")
        assert client.predict("intent", ["still served"]).version == 1
        assert client.regress("regressor", [{"x": 0.0}], signature="regress") == [1.0]
    finally:
        client.close()
        server.stop(drain_timeout_seconds=5)


def _serves(client: ServingClient, model: str) -> bool:
    try:
        return "AVAILABLE" in client.model_status(model).values()
    except ServingRpcError:
        return False
