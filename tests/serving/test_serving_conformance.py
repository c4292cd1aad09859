"""TF Serving API conformance: the behaviours apps and tools rely on.

Runs against our server by default and against any TF Serving given in
``TF_SERVING_*`` variables (see conftest.py), so a difference from the real
server shows up as a failure here.  Assertions stick to what TF Serving
itself guarantees: codes, response shapes, and messages naming the problem.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import tensors
from serving.client import build_examples_input, build_predict_request, model_spec

pytestmark = pytest.mark.conformance

TEXTS = ["I am still waiting on my card?", "what is the exchange rate today", "my balance did not update"]
PREDICT_OUTPUTS = {"probabilities", "class_ids", "class_names", "all_class_names"}


@pytest.fixture(scope="module")
def channel(target):
    with grpc.insecure_channel(target.grpc_address) as channel:
        yield channel


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="module")
def latest_version(models, target) -> int:
    response = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(target.text_model)), timeout=10
    )
    available = [s.version for s in response.model_version_status if s.state == 30]
    assert available, f"no AVAILABLE version of {target.text_model}"
    return max(available)


def text_request(target, texts=TEXTS, **spec) -> predict_pb2.PredictRequest:
    return build_predict_request(target.text_model, texts, **spec)


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


def assert_still_serving(predictions, target) -> None:
    """After any bad request, a good one must still succeed."""
    response = predictions.Predict(text_request(target, ["still here?"]), timeout=10)
    assert tensors.to_ndarray(response.outputs["class_ids"]).shape == (1,)


# -- gRPC: PredictionService ----------------------------------------------------


def test_predict_latest_default_signature(predictions, target, latest_version):
    response = predictions.Predict(text_request(target), timeout=10)
    assert response.model_spec.name == target.text_model
    assert response.model_spec.version.value == latest_version
    assert response.model_spec.signature_name == "serving_default"
    outputs = {name: tensors.to_ndarray(proto) for name, proto in response.outputs.items()}
    assert set(outputs) == PREDICT_OUTPUTS
    probabilities, class_ids = outputs["probabilities"], outputs["class_ids"]
    assert probabilities.dtype == np.float32 and probabilities.shape[0] == len(TEXTS)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(class_ids, probabilities.argmax(axis=1))
    assert outputs["all_class_names"].shape == probabilities.shape
    expected_names = outputs["all_class_names"][np.arange(len(TEXTS)), class_ids]
    np.testing.assert_array_equal(outputs["class_names"], expected_names)
    # TF Serving writes typed fields, which clients read directly.
    assert len(response.outputs["probabilities"].float_val) == probabilities.size


def test_predict_output_filter(predictions, target):
    response = predictions.Predict(text_request(target, output_filter=["class_names"]), timeout=10)
    assert set(response.outputs) == {"class_names"}


def test_predict_specific_version_and_label(predictions, target, models):
    status = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(target.text_model)), timeout=10
    )
    for entry in status.model_version_status:
        if entry.state == 30:
            response = predictions.Predict(text_request(target, version=entry.version), timeout=10)
            assert response.model_spec.version.value == entry.version
    for label, version in target.labels.items():
        response = predictions.Predict(text_request(target, label=label), timeout=10)
        assert response.model_spec.version.value == version


def test_versions_answer_differently_when_several_are_served(predictions, target):
    if len(set(target.labels.values())) < 2:
        pytest.skip("needs two labelled versions")
    results = []
    for label in target.labels:
        response = predictions.Predict(text_request(target, label=label), timeout=10)
        results.append(tensors.to_ndarray(response.outputs["probabilities"]))
    assert not np.allclose(results[0], results[1])


def test_predict_tokenize_signature(predictions, target):
    response = predictions.Predict(text_request(target, signature="tokenize"), timeout=10)
    token_ids = tensors.to_ndarray(response.outputs["token_ids"])
    mask = tensors.to_ndarray(response.outputs["padding_mask"])
    assert token_ids.dtype == np.int32 and token_ids.shape[0] == len(TEXTS)
    assert token_ids.shape == mask.shape and token_ids.shape[1] % 16 == 0


def test_classify(predictions, target):
    request = classification_pb2.ClassificationRequest(
        model_spec=model_spec(target.text_model, signature=target.classify_signature),
        input=build_examples_input([{"text": t} for t in TEXTS]),
    )
    response = predictions.Classify(request, timeout=10)
    assert response.model_spec.signature_name == target.classify_signature
    predicted = tensors.to_ndarray(predictions.Predict(text_request(target), timeout=10).outputs["probabilities"])
    assert len(response.result.classifications) == len(TEXTS)
    for row, classifications in zip(predicted, response.result.classifications):
        scores = [c.score for c in classifications.classes]
        assert all(c.label for c in classifications.classes)
        np.testing.assert_allclose(scores, row, rtol=1e-5, atol=1e-6)


def test_classify_with_context(predictions, target):
    request = classification_pb2.ClassificationRequest(
        model_spec=model_spec(target.text_model, signature=target.classify_signature),
        input=build_examples_input([{}, {"text": "exchange rate"}], context={"text": "lost card"}),
    )
    response = predictions.Classify(request, timeout=10)
    with_context = [[c.score for c in row.classes] for row in response.result.classifications]
    plain = classification_pb2.ClassificationRequest(
        model_spec=request.model_spec, input=build_examples_input([{"text": "lost card"}, {"text": "exchange rate"}])
    )
    classifications = predictions.Classify(plain, timeout=10).result.classifications
    expected = [[c.score for c in row.classes] for row in classifications]
    np.testing.assert_allclose(with_context, expected, rtol=1e-5)


def test_regress(predictions, target):
    if not target.regress_model:
        pytest.skip("no regress model described")
    request = regression_pb2.RegressionRequest(
        model_spec=model_spec(target.regress_model, signature="regress"),
        input=build_examples_input([{"x": 1.5}, {"x": -2.0}, {"x": 0.0}]),
    )
    response = predictions.Regress(request, timeout=10)
    values = [r.value for r in response.result.regressions]
    assert len(values) == 3 and all(np.isfinite(values))
    if not target.external:
        np.testing.assert_allclose(values, [4.0, -3.0, 1.0])


def test_multi_inference(predictions, target):
    task = inference_pb2.InferenceTask(
        model_spec=model_spec(target.text_model, signature=target.classify_signature),
        method_name="tensorflow/serving/classify",
    )
    request = inference_pb2.MultiInferenceRequest(tasks=[task], input=build_examples_input([{"text": TEXTS[0]}]))
    response = predictions.MultiInference(request, timeout=10)
    assert len(response.results) == 1
    result = response.results[0]
    assert result.model_spec.signature_name == target.classify_signature
    assert len(result.classification_result.classifications) == 1


def test_get_model_metadata(predictions, target, latest_version):
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_spec(target.text_model), metadata_field=["signature_def"]
    )
    response = predictions.GetModelMetadata(request, timeout=10)
    assert response.model_spec.name == target.text_model
    assert response.model_spec.version.value == latest_version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    signatures = signature_map.signature_def
    default = signatures["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs["text"].dtype == 7  # DT_STRING
    assert [d.size for d in default.inputs["text"].tensor_shape.dim] == [-1]
    assert set(default.outputs) == PREDICT_OUTPUTS
    assert signatures[target.classify_signature].method_name == "tensorflow/serving/classify"
    assert "tokenize" in signatures


def test_get_model_status(models, target, latest_version):
    response = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(target.text_model)), timeout=10
    )
    states = {s.version: s.state for s in response.model_version_status}
    assert states[latest_version] == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    only = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(target.text_model, version=latest_version)),
        timeout=10,
    )
    assert [s.version for s in only.model_version_status] == [latest_version]
    assert only.model_version_status[0].status.error_code == 0


# -- gRPC: errors -------------------------------------------------------------------


def test_unknown_model_is_not_found(predictions, models, target):
    error = rpc_error(predictions.Predict, build_predict_request("no_such_model", TEXTS))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no_such_model" in error.details()
    error = rpc_error(
        models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec("no_such_model"))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no_such_model" in error.details()
    assert_still_serving(predictions, target)


def test_unknown_version_is_not_found(predictions, models, target):
    error = rpc_error(predictions.Predict, text_request(target, version=987654))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "987654" in error.details()
    error = rpc_error(
        models.GetModelStatus,
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(target.text_model, version=987654)),
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and "987654" in error.details()
    assert_still_serving(predictions, target)


def test_unknown_label_is_rejected(predictions, target):
    error = rpc_error(predictions.Predict, text_request(target, label="no_such_label"))
    # TF Serving answers INVALID_ARGUMENT "Unrecognized servable version label: ...".
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no_such_label" in error.details()
    assert_still_serving(predictions, target)


def test_wrong_input_name(predictions, target):
    error = rpc_error(predictions.Predict, build_predict_request(target.text_model, TEXTS, input_name="txt"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "txt" in error.details() or "text" in error.details()
    assert_still_serving(predictions, target)


def test_extra_input(predictions, target):
    request = build_predict_request(target.text_model, {"text": TEXTS, "other": TEXTS})
    error = rpc_error(predictions.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "other" in error.details()
    assert_still_serving(predictions, target)


def test_wrong_dtype(predictions, target):
    request = build_predict_request(target.text_model, np.array([1.0, 2.0], dtype=np.float32))
    error = rpc_error(predictions.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "string" in error.details() and "float" in error.details()
    assert_still_serving(predictions, target)


def test_wrong_shape(predictions, target):
    request = build_predict_request(target.text_model, [["a", "b"], ["c", "d"]])
    error = rpc_error(predictions.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_still_serving(predictions, target)


def test_unknown_signature(predictions, target):
    error = rpc_error(predictions.Predict, text_request(target, signature="no_such_signature"))
    # TF Serving's Predict answers FAILED_PRECONDITION: Serving signature key "..." not found.
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no_such_signature" in error.details()
    assert_still_serving(predictions, target)


def test_classify_on_predict_signature(predictions, target):
    request = classification_pb2.ClassificationRequest(
        model_spec=model_spec(target.text_model, signature="serving_default"),
        input=build_examples_input([{"text": "x"}]),
    )
    error = rpc_error(predictions.Classify, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "classify" in error.details()
    assert_still_serving(predictions, target)


def test_classify_empty_input(predictions, target):
    request = classification_pb2.ClassificationRequest(
        model_spec=model_spec(target.text_model, signature=target.classify_signature)
    )
    error = rpc_error(predictions.Classify, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in error.details().lower()


def test_oversized_request(predictions, target):
    if not target.max_batch_size:
        pytest.skip("server batching limit not described")
    error = rpc_error(predictions.Predict, text_request(target, ["x"] * (target.max_batch_size + 1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(target.max_batch_size + 1) in error.details()
    assert_still_serving(predictions, target)


def test_metadata_needs_a_field(predictions, target):
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=model_spec(target.text_model))
    error = rpc_error(predictions.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata_field" in error.details()


# -- REST -----------------------------------------------------------------------------


def rest(target, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict | str]:
    if not target.rest_address:
        pytest.skip("no REST address")
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"http://{target.rest_address}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def test_rest_model_status(target, latest_version):
    status, body = rest(target, "GET", f"/v1/models/{target.text_model}")
    assert status == 200
    entries = {e["version"]: e for e in body["model_version_status"]}
    entry = entries[str(latest_version)]
    assert entry["state"] == "AVAILABLE"
    assert entry["status"] == {"error_code": "OK", "error_message": ""}
    status, body = rest(target, "GET", f"/v1/models/{target.text_model}/versions/{latest_version}")
    assert status == 200 and [e["version"] for e in body["model_version_status"]] == [str(latest_version)]
    for label, version in target.labels.items():
        status, body = rest(target, "GET", f"/v1/models/{target.text_model}/labels/{label}")
        assert status == 200 and body["model_version_status"][0]["version"] == str(version)


def test_rest_metadata(target, latest_version):
    status, body = rest(target, "GET", f"/v1/models/{target.text_model}/metadata")
    assert status == 200
    assert body["model_spec"]["name"] == target.text_model
    assert body["model_spec"]["version"] == str(latest_version)
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["text"]["dtype"] == "DT_STRING"
    assert signatures[target.classify_signature]["method_name"] == "tensorflow/serving/classify"


def test_rest_predict_row_format(target, predictions):
    status, body = rest(target, "POST", f"/v1/models/{target.text_model}:predict", {"instances": TEXTS})
    assert status == 200
    rows = body["predictions"]
    assert len(rows) == len(TEXTS) and set(rows[0]) == PREDICT_OUTPUTS
    expected = tensors.to_ndarray(predictions.Predict(text_request(target), timeout=10).outputs["probabilities"])
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, rtol=1e-6)
    assert isinstance(rows[0]["class_names"], str) and isinstance(rows[0]["class_ids"], int)


def test_rest_predict_columnar_format(target):
    status, body = rest(target, "POST", f"/v1/models/{target.text_model}:predict", {"inputs": {"text": TEXTS}})
    assert status == 200
    outputs = body["outputs"]
    assert set(outputs) == PREDICT_OUTPUTS and len(outputs["class_names"]) == len(TEXTS)
    status, plain = rest(target, "POST", f"/v1/models/{target.text_model}:predict", {"inputs": TEXTS})
    assert status == 200 and plain["outputs"]["class_names"] == outputs["class_names"]


def test_rest_predict_base64(target):
    encoded = [{"b64": base64.b64encode(t.encode()).decode()} for t in TEXTS]
    _, plain = rest(target, "POST", f"/v1/models/{target.text_model}:predict", {"instances": TEXTS})
    status, body = rest(target, "POST", f"/v1/models/{target.text_model}:predict", {"instances": encoded})
    assert status == 200 and body == plain


def test_rest_predict_version_label_and_signature(target):
    for label, version in target.labels.items():
        status, by_label = rest(target, "POST", f"/v1/models/{target.text_model}/labels/{label}:predict",
                                {"instances": TEXTS[:1]})
        status2, by_version = rest(target, "POST", f"/v1/models/{target.text_model}/versions/{version}:predict",
                                   {"instances": TEXTS[:1]})
        assert status == status2 == 200 and by_label == by_version
    status, body = rest(target, "POST", f"/v1/models/{target.text_model}:predict",
                        {"signature_name": "tokenize", "instances": TEXTS[:1]})
    assert status == 200 and len(body["predictions"][0]["token_ids"]) % 16 == 0


def test_rest_predict_two_inputs(target):
    if not target.pair_model:
        pytest.skip("no two-input model described")
    instances = [{"query": "lost card", "item_text": "I lost my card"}, {"query": "rate", "item_text": "card"}]
    status, body = rest(target, "POST", f"/v1/models/{target.pair_model}:predict", {"instances": instances})
    assert status == 200 and len(body["predictions"]) == 2
    assert isinstance(body["predictions"][0], float)  # a single output is not wrapped in an object
    status, body = rest(target, "POST", f"/v1/models/{target.pair_model}:predict", {"instances": ["plain"]})
    assert status == 400 and "objects" in body["error"]


def test_rest_classify_and_regress(target):
    status, body = rest(target, "POST", f"/v1/models/{target.text_model}:classify",
                        {"signature_name": target.classify_signature, "examples": [{"text": t} for t in TEXTS]})
    assert status == 200 and len(body["results"]) == len(TEXTS)
    label, score = body["results"][0][0]
    assert isinstance(label, str) and isinstance(score, float)
    if target.regress_model:
        status, body = rest(target, "POST", f"/v1/models/{target.regress_model}:regress",
                            {"signature_name": "regress", "examples": [{"x": 1.5}, {"x": 0.0}]})
        assert status == 200 and len(body["results"]) == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("POST", "/v1/models/no_such_model:predict", {"instances": ["x"]}, 404, "no_such_model"),
        ("GET", "/v1/models/no_such_model", None, 404, "no_such_model"),
        ("POST", "/v1/models/{model}/versions/987654:predict", {"instances": ["x"]}, 404, "987654"),
        ("GET", "/v1/models/{model}/versions/987654", None, 404, "987654"),
        ("POST", "/v1/models/{model}/labels/no_such_label:predict", {"instances": ["x"]}, 400, "no_such_label"),
        ("POST", "/v1/models/{model}:predict", {"instances": [{"txt": "x"}]}, 400, "txt"),
        ("POST", "/v1/models/{model}:predict", {"instances": [1.5]}, 400, "string"),
        ("POST", "/v1/models/{model}:predict", {"instances": [["a", "b"]]}, 400, ""),
        ("POST", "/v1/models/{model}:predict", {"instances": []}, 400, "instances"),
        ("POST", "/v1/models/{model}:predict", {"instances": ["x"], "inputs": ["x"]}, 400, "instances"),
        ("POST", "/v1/models/{model}:predict", {"signature_name": "nope", "instances": ["x"]}, 400, "nope"),
        ("POST", "/v1/models/{model}:predict", {"no": "keys"}, 400, "instances"),
        ("POST", "/v1/models/{model}:predict", {"instances": [{"b64": "***"}]}, 400, "base64"),
        ("POST", "/v1/models/{model}:classify", {"signature_name": "classify"}, 400, "examples"),
        ("GET", "/v1/models", None, 400, "model name"),
    ],
)
def test_rest_errors(target, predictions, method, path, body, status, fragment):
    got_status, got = rest(target, method, path.format(model=target.text_model), body)
    assert got_status == status
    assert isinstance(got, dict) and set(got) == {"error"}
    assert fragment.lower() in got["error"].lower()
    assert_still_serving(predictions, target)


def test_rest_malformed_json(target, predictions):
    status, body = rest(target, "POST", f"/v1/models/{target.text_model}:predict", raw=b"{not json")
    assert status == 400 and "JSON Parse error" in body["error"]
    assert_still_serving(predictions, target)


def test_prometheus_endpoint(target):
    if not target.metrics_path:
        pytest.skip("no metrics path described")
    status, body = rest(target, "GET", target.metrics_path)
    assert status == 200 and "# TYPE" in body
