"""The server serving what the pipeline pushed: the contract between the two parts."""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from serving.client import ClientConfig, ServingClient, ServingRpcError
from tfx_pipeline.evaluation.predict import predict_probabilities

TEXTS = ["My new card still hasn't arrived", "I want to close my account", "how do I change my pin"]


@pytest.fixture(scope="module")
def client(model_server):
    with ServingClient(ClientConfig(address=model_server.grpc_address)) as client:
        yield client


def test_predict_returns_what_the_saved_model_computes_in_process(client, trained_suite):
    served = client.predict("intent", TEXTS)
    assert served.version == 1
    expected, class_names = predict_probabilities(trained_suite.model_base_path / "intent" / "1", TEXTS)
    np.testing.assert_allclose(served.outputs["probabilities"], expected, rtol=1e-4, atol=1e-5)
    python = served.to_python()
    assert python["class_names"] == ["card_arrival", "terminate_account", "change_pin"]
    assert python["all_class_names"][0] == class_names


def test_classify_api_uses_the_classify_signature(client):
    rows = client.classify("sentiment", [{"text": "Nokia net sales rose 30 % in the quarter"},
                                         {"text": "Kone cuts 40 jobs as demand weakens"}], signature="classify")
    best = [max(row, key=lambda pair: pair[1])[0] for row in rows]
    assert best == ["positive", "negative"]
    assert all(abs(sum(score for _, score in row) - 1) < 1e-4 for row in rows)


def test_metadata_lists_the_exported_signatures(client):
    signatures = client.signatures("intent")
    assert {"serving_default", "classify", "tokenize"} <= set(signatures)
    assert signatures["classify"].method_name == "tensorflow/serving/classify"
    assert list(signatures["serving_default"].inputs) == ["text"]


def test_rest_predict_on_the_pipeline_model(model_server):
    body = json.dumps({"instances": TEXTS[:2]}).encode()
    request = urllib.request.Request(f"http://{model_server.rest_address}/v1/models/intent:predict", data=body,
                                     headers={"Content-Type": "application/json"})
    predictions = json.loads(urllib.request.urlopen(request, timeout=30).read())["predictions"]
    assert [p["class_names"] for p in predictions] == ["card_arrival", "terminate_account"]
    with pytest.raises(urllib.error.HTTPError) as error:
        bad = urllib.request.Request(f"http://{model_server.rest_address}/v1/models/intent:predict",
                                     data=json.dumps({"instances": [{"txt": "x"}]}).encode())
        urllib.request.urlopen(bad, timeout=30)
    assert error.value.code == 400 and "txt" in json.loads(error.value.read())["error"]


def test_wrong_input_name_is_invalid_argument_and_the_server_keeps_serving(client):
    with pytest.raises(ServingRpcError) as error:
        client.predict("intent", TEXTS, input_name="sentence")
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "sentence" in str(error.value)
    assert client.predict("intent", TEXTS[:1]).to_python()["class_names"] == ["card_arrival"]
