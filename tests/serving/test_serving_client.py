"""serving.client against a real server (ours, or the TF Serving in TF_SERVING_*)."""

from __future__ import annotations

import shutil
import subprocess
import threading

import grpc
import numpy as np
import pytest
import serving_saved_models as saved_models
from conftest import free_port, in_process_options, wait_for

from serving.client import (
    ClientConfig,
    RetryPolicy,
    ServingClient,
    ServingRpcError,
    TlsOptions,
    build_predict_request,
    make_example,
)
from serving.server import ModelServer

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_seconds=0.01, max_backoff_seconds=0.05)


@pytest.fixture(scope="module")
def client(target):
    with ServingClient(ClientConfig(address=target.grpc_address, timeout_seconds=30)) as client:
        yield client


def test_predict_from_list_of_strings(client, target):
    prediction = client.predict(target.text_model, ["I lost my card", "exchange rate"])
    assert prediction.model == target.text_model and prediction.signature == "serving_default"
    assert prediction.outputs["probabilities"].shape[0] == 2
    python = prediction.to_python()
    assert all(isinstance(name, str) for name in python["class_names"])
    assert isinstance(python["class_ids"][0], int)


def test_predict_with_several_inputs(client, target):
    if not target.pair_model:
        pytest.skip("no two-input model described")
    prediction = client.predict(
        target.pair_model, {"query": ["lost card", "rate"], "item_text": ["I lost my card", "card"]}
    )
    scores = prediction.outputs["scores"]
    assert scores.shape == (2,) and scores[0] > scores[1]


def test_classify_and_regress_helpers(client, target):
    rows = client.classify(target.text_model, [{"text": "lost card"}], signature=target.classify_signature)
    assert len(rows) == 1 and all(isinstance(label, str) for label, _ in rows[0])
    if target.regress_model:
        values = client.regress(target.regress_model, [{"x": 2.0}], signature="regress")
        assert len(values) == 1


def test_status_metadata_and_version_choice(client, target):
    status = client.model_status(target.text_model)
    latest = max(v for v, state in status.items() if state == "AVAILABLE")
    assert client.wait_until_available(target.text_model, timeout_seconds=5) == latest
    assert client.predict(target.text_model, ["x"], version=latest).version == latest
    for label, version in target.labels.items():
        assert client.predict(target.text_model, ["x"], label=label).version == version
    signatures = client.signatures(target.text_model)
    assert "text" in signatures["serving_default"].inputs


def test_request_helpers():
    request = build_predict_request("m", {"query": ["a"], "ids": np.array([[1, 2]], dtype=np.int64)}, signature="s")
    assert request.model_spec.signature_name == "s"
    assert request.inputs["query"].string_val == [b"a"] and request.inputs["query"].dtype == 7
    assert list(request.inputs["ids"].int64_val) == [1, 2]
    example = make_example({"text": "hi", "n": 3, "x": [0.5, 1.5]})
    assert example.features.feature["text"].bytes_list.value == [b"hi"]
    assert example.features.feature["n"].int64_list.value == [3]
    assert list(example.features.feature["x"].float_list.value) == [0.5, 1.5]
    with pytest.raises(ValueError):
        build_predict_request("m", ["x"], version=1, label="stable")


def test_errors_other_than_unavailable_are_not_retried(target):
    with ServingClient(ClientConfig(address=target.grpc_address, retry=FAST_RETRY)) as client:
        with pytest.raises(ServingRpcError) as info:
            client.predict("no_such_model", ["x"])
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        assert info.value.attempts == 1 and client.attempts == 1


def test_unavailable_is_retried_then_raised():
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    with ServingClient(ClientConfig(address=address, timeout_seconds=2, retry=FAST_RETRY)) as client:
        with pytest.raises(ServingRpcError) as info:
            client.predict("intent", ["x"])
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.attempts == 3 and client.attempts == 3


def test_retries_reach_a_server_that_comes_up(exports, tmp_path):
    saved_models.publish_version(exports.intent_v1, tmp_path / "intent", 1)
    port = free_port()
    patient = RetryPolicy(max_attempts=500, initial_backoff_seconds=0.05, max_backoff_seconds=0.2)
    client = ServingClient(ClientConfig(address=f"127.0.0.1:{port}", timeout_seconds=5, retry=patient))
    outcome: list[object] = []
    caller = threading.Thread(target=lambda: outcome.append(client.predict("intent", ["lost card"])))
    caller.start()
    wait_for(lambda: client.attempts >= 2, what="a failed first attempt")
    server = ModelServer(
        in_process_options([f"--model_base_path={tmp_path / 'intent'}", "--model_name=intent"], grpc_port=port)
    ).start()
    try:
        caller.join(60)
        assert outcome and outcome[0].version == 1
        assert client.attempts > 2
    finally:
        client.close()
        server.stop(drain_timeout_seconds=5)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_tls(exports, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )
    ssl_config = tmp_path / "ssl.config"
    ssl_config.write_text(
        "server_key: " + _text_proto_string(key.read_text()) + "\nserver_cert: " + _text_proto_string(cert.read_text())
    )
    saved_models.publish_version(exports.intent_v1, tmp_path / "intent", 1)
    options = in_process_options(
        [f"--model_base_path={tmp_path / 'intent'}", "--model_name=intent", f"--ssl_config_file={ssl_config}"]
    )
    server = ModelServer(options).start()
    try:
        tls = TlsOptions(root_certificates=cert.read_bytes(), server_name_override="localhost")
        with ServingClient(ClientConfig(address=server.grpc_address, tls=tls)) as client:
            assert client.predict("intent", ["lost card"]).version == 1
        with ServingClient(ClientConfig(address=server.grpc_address, retry=FAST_RETRY, timeout_seconds=2)) as plain:
            with pytest.raises(ServingRpcError) as info:
                plain.predict("intent", ["x"])
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(drain_timeout_seconds=5)


def _text_proto_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
