"""Hostile input against the real server (gRPC and REST, batching on): every case is answered with the
right status and no internals, the server stays up and answers a normal request correctly right after,
and the memory it takes stays bounded.  Also the self-healing of model versions (a slow copy, a broken
newest version at start-up, load retries)."""

from __future__ import annotations

import json
import shutil
import statistics
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import serving_saved_models as saved_models
from conftest import INFRA, in_process_options, wait_for
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import tensors
from serving.client import model_spec
from serving.server import ModelServer
from tests.hostile_http import (
    DEEP_JSON,
    LONE_SURROGATE,
    closed_by_server,
    connect,
    peak_memory_growth,
    read_answers,
    request_bytes,
    send_raw,
    transport_attacks,
)

MAX_MESSAGE = 4 * 1024 * 1024
MAX_BODY = 1024 * 1024
TIMEOUT = 1.0  # header and body timeouts of the server under test
PREDICT = "/v1/models/intent:predict"
TEXTS = ["I lost my card", "what is the exchange rate"]


@pytest.fixture(scope="module")
def server(exports, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile_models")
    saved_models.publish_version(exports.intent_v1, base / "intent", 1)
    options = in_process_options([
        "--model_name=intent", f"--model_base_path={base / 'intent'}",
        "--enable_batching", f"--batching_parameters_file={INFRA / 'batching.config'}",
        f"--grpc_max_message_size={MAX_MESSAGE}", f"--rest_api_max_body_bytes={MAX_BODY}",
        f"--rest_api_header_timeout_seconds={TIMEOUT}", f"--rest_api_body_timeout_seconds={TIMEOUT}",
    ])
    server = ModelServer(options).start()
    yield server
    server.stop(drain_timeout_seconds=5)


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_address, options=[("grpc.max_send_message_length", 64 << 20)])
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def expected(stub) -> list[str]:
    return grpc_predict(stub)


def grpc_predict(stub) -> list[str]:
    request = predict_pb2.PredictRequest(model_spec=model_spec("intent"))
    request.inputs["text"].CopyFrom(tensors.to_tensor_proto(np.array(TEXTS, dtype=object)))
    outputs = stub.Predict(request, timeout=30).outputs
    return [name.decode() for name in tensors.to_ndarray(outputs["class_names"])]


def rest_predict(server) -> list[str]:
    body = json.dumps({"instances": TEXTS}).encode()
    request = urllib.request.Request(f"http://{server.rest_address}{PREDICT}", body)
    with urllib.request.urlopen(request, timeout=30) as r:
        return [row["class_names"] for row in json.loads(r.read())["predictions"]]


def assert_still_serving(server, stub, expected) -> None:
    assert rest_predict(server) == expected
    assert grpc_predict(stub) == expected


# -- gRPC ------------------------------------------------------------------------------------


def declared(shape: list[int], dtype=types_pb2.DT_STRING, **values) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape]), **values)
    return proto


@pytest.mark.parametrize(("shape", "proto_values", "fragment"), [
    ([2**40], {"string_val": [b"x"]}, "the limit is"),
    ([2**32, 2**32], {"string_val": [b"x"]}, "the limit is"),
    ([50_000_000], {"string_val": [b"x"]}, "the limit is"),
    ([50_000_000], {"dtype": types_pb2.DT_FLOAT, "float_val": [1.0]}, "the limit is"),
    ([2], {"string_val": [b"a", b"b", b"c"]}, "3 were given"),
    ([-5], {"string_val": [b"x"]}, "negative"),
    ([3], {"dtype": types_pb2.DT_FLOAT, "tensor_content": b"\0" * 5}, "tensor_content holds 5 bytes"),
    ([1], {"dtype": types_pb2.DT_RESOURCE}, "unsupported tensor dtype"),
])
def test_grpc_declared_sizes_are_checked_before_any_allocation(server, stub, expected, shape, proto_values,
                                                                fragment):
    values = dict(proto_values)
    proto = declared(shape, values.pop("dtype", types_pb2.DT_STRING), **values)
    request = predict_pb2.PredictRequest(model_spec=model_spec("intent"))
    request.inputs["text"].CopyFrom(proto)
    with peak_memory_growth() as memory, pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in info.value.details()
    assert "Traceback" not in info.value.details()
    assert memory.growth_mb < 30, f"a {request.ByteSize()}-byte request took {memory.growth_mb:.0f} MB"
    assert_still_serving(server, stub, expected)


def test_grpc_message_over_the_configured_maximum_is_refused(server, stub, expected):
    request = predict_pb2.PredictRequest(model_spec=model_spec("intent"))
    request.inputs["text"].CopyFrom(tensors.to_tensor_proto(np.array(["valid text " * 100] * 6000, dtype=object)))
    assert request.ByteSize() > MAX_MESSAGE
    with peak_memory_growth() as memory, pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert memory.growth_mb < 4 * request.ByteSize() / 2**20 + 30  # the client's copy and grpc's buffers
    assert_still_serving(server, stub, expected)


def test_grpc_text_that_is_not_utf8_is_answered_not_crashed(server, stub, expected):
    request = predict_pb2.PredictRequest(model_spec=model_spec("intent"))
    request.inputs["text"].CopyFrom(declared([2], string_val=[b"\xff\xfe broken", b"\xed\xb2\x80 surrogate"]))
    try:
        stub.Predict(request, timeout=30)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "Traceback" not in error.details()
    assert_still_serving(server, stub, expected)


# -- REST: transport ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "raw", "status"), transport_attacks(PREDICT), ids=lambda v: v if
                         isinstance(v, str) else "")
def test_rest_malformed_requests_get_an_answer(server, stub, expected, name, raw, status):
    with peak_memory_growth() as memory:
        answer = send_raw(server.rest_address, raw)
    assert answer is not None, f"{name}: the connection was closed without a reply"
    assert answer.status == status, (name, answer)
    assert set(answer.json()) == {"error"} and not answer.leaks_internals()
    assert memory.growth_mb < 30
    assert_still_serving(server, stub, expected)


@pytest.mark.parametrize(("name", "body", "fragment"), [
    ("lone_surrogate", ('{"instances": [' + LONE_SURROGATE + "]}").encode(), "surrogate"),
    ("lone_surrogate_in_signature", ('{"signature_name": ' + LONE_SURROGATE + ', "instances": ["x"]}').encode(),
     "surrogate"),
    ("deep_json", b'{"instances": ' + DEEP_JSON + b"}", "nested too deeply"),
    ("deep_json_document", DEEP_JSON, "nested too deeply"),
    ("deep_but_parseable", b'{"instances": ' + b"[" * 900 + b'"x"' + b"]" * 900 + b"}", ""),
    ("invalid_utf8", b'{"instances": ["\xff\xfe"]}', "UTF-8"),
])
def test_rest_hostile_json_is_a_400_without_internals(server, stub, expected, name, body, fragment):
    answer = send_raw(server.rest_address, request_bytes("POST", PREDICT, body))
    assert answer is not None and answer.status == 400, (name, answer)
    error = answer.json()["error"]
    assert fragment in error and not answer.leaks_internals(), error
    assert_still_serving(server, stub, expected)


def test_rest_body_over_the_limit_gets_its_413(server, stub, expected):
    body = json.dumps({"instances": ["x" * 1000] * 20_000}).encode()  # 20 MB, sent whole before reading
    assert len(body) > 19 * MAX_BODY
    answer = send_raw(server.rest_address, request_bytes("POST", PREDICT, body))
    assert answer is not None and answer.status == 413 and "limit" in answer.json()["error"]
    declared_only = request_bytes("POST", PREDICT).replace(b"Content-Length: 0", b"Content-Length: 999999999999")
    answer = send_raw(server.rest_address, declared_only)
    assert answer is not None and answer.status == 413
    assert_still_serving(server, stub, expected)


def test_rest_short_body_and_slow_headers_time_out(server, stub, expected):
    for raw, status in [(request_bytes("POST", PREDICT, b'{"instances": ["x"]}').replace(b"Content-Length: 20",
                                                                                      b"Content-Length: 100"), 408),
                        (f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode(), 408)]:
        started = time.monotonic()
        answer = send_raw(server.rest_address, raw, timeout=TIMEOUT + 10)
        assert answer is not None and answer.status == status, answer
        assert time.monotonic() - started < TIMEOUT + 3
    assert_still_serving(server, stub, expected)


def test_rest_pipelined_requests_are_answered_in_order(server, stub, expected):
    one = request_bytes("POST", PREDICT, json.dumps({"instances": TEXTS[:1]}).encode())
    two = request_bytes("POST", PREDICT, json.dumps({"instances": TEXTS}).encode())
    with connect(server.rest_address) as sock:
        sock.sendall(one + two + request_bytes("GET", "/v1/models/intent"))
        answers = read_answers(sock, 3)
    assert [a.status for a in answers] == [200, 200, 200]
    assert [len(a.json()["predictions"]) for a in answers[:2]] == [1, 2]
    assert answers[2].json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_slowloris_idle_connections_cost_normal_traffic_nothing(server, stub, expected):
    def latencies(count: int) -> list[float]:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            assert rest_predict(server) == expected
            times.append(time.perf_counter() - started)
        return times

    baseline = statistics.median(latencies(15))
    with peak_memory_growth() as memory:
        idle = [connect(server.rest_address) for _ in range(200)]
        for i, sock in enumerate(idle):
            if i % 2:  # half send part of a request line and stop; half send nothing at all
                sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: ".encode())
        during = latencies(15)
    assert statistics.median(during) < 3 * baseline + 0.02, (baseline, during)
    assert max(during) < 1.0 and memory.growth_mb < 50
    # The server lets none of them linger: each is answered 408 or closed after the header timeout.
    for sock in idle:
        closed, _ = closed_by_server(sock, TIMEOUT + 5)
        assert closed
        sock.close()
    assert_still_serving(server, stub, expected)


def test_rest_in_flight_requests_are_bounded(exports, tmp_path):
    """With one REST worker and requests held 1.5 s by the batch timeout, a second request gets 503 at once."""
    saved_models.publish_version(exports.intent_v1, tmp_path / "intent", 1)
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1500000 }\n")
    server = ModelServer(in_process_options([
        "--model_name=intent", f"--model_base_path={tmp_path / 'intent'}", "--enable_batching",
        f"--batching_parameters_file={batching}", "--rest_api_num_threads=1"])).start()
    try:
        slow = threading.Thread(target=rest_predict, args=(server,))
        slow.start()
        time.sleep(0.5)
        body = json.dumps({"instances": TEXTS}).encode()
        answer = send_raw(server.rest_address, request_bytes("POST", PREDICT, body))
        slow.join()
        assert answer is not None and answer.status == 503 and "retry" in answer.json()["error"]
        assert len(rest_predict(server)) == 2
    finally:
        server.stop(drain_timeout_seconds=5)


# -- self-healing versions -------------------------------------------------------------------------


def start(base, **flags) -> ModelServer:
    extra = [f"--{name}={value}" for name, value in flags.items()]
    return ModelServer(in_process_options(["--model_name=intent", f"--model_base_path={base}", *extra])).start()


def served_version(server) -> int:
    with urllib.request.urlopen(f"http://{server.rest_address}/v1/models/intent/metadata", timeout=10) as response:
        return int(json.loads(response.read())["model_spec"]["version"])


def test_a_version_copied_in_slowly_is_served_once_complete(exports, tmp_path):
    base = tmp_path / "intent"
    saved_models.publish_version(exports.intent_v1, base, 1)
    server = start(base)
    try:
        # `cp -r` by hand: the files of version 2 arrive in chunks, with pauses longer than the poll.
        target = base / "2"
        files = sorted(p for p in exports.intent_v2.rglob("*") if p.is_file())
        for source in files:
            destination = target / source.relative_to(exports.intent_v2)
            destination.parent.mkdir(parents=True, exist_ok=True)
            data = source.read_bytes()
            with open(destination, "wb") as handle:
                for start_at in range(0, len(data), max(1, len(data) // 3)):
                    handle.write(data[start_at:start_at + max(1, len(data) // 3)])
                    handle.flush()
                    time.sleep(0.3)
            assert served_version(server) == 1  # never a half-copied version
        wait_for(lambda: served_version(server) == 2, timeout=30, what="version 2 served once complete")
        status = json.loads(urllib.request.urlopen(f"http://{server.rest_address}/v1/models/intent").read())
        assert {e["version"]: e["state"] for e in status["model_version_status"]} == {"2": "AVAILABLE", "1": "END"}
    finally:
        server.stop(drain_timeout_seconds=5)


def test_restart_with_a_broken_newest_version_serves_the_older_one_and_retries(exports, tmp_path):
    base = tmp_path / "intent"
    saved_models.publish_version(exports.intent_v1, base, 1)
    saved_models.publish_unloadable(exports.intent_v1, base, 2)
    server = start(base, max_num_load_retries=3, load_retry_interval_micros=300_000)
    try:
        assert served_version(server) == 1
        status = json.loads(urllib.request.urlopen(f"http://{server.rest_address}/v1/models/intent").read())
        states = {e["version"]: e for e in status["model_version_status"]}
        assert states["1"]["state"] == "AVAILABLE"
        assert states["2"]["state"] == "END" and states["2"]["status"]["error_message"]
        metrics = server.metrics.exposition().decode()
        assert 'serving_model_version_load_error{model="intent",version="2"} 1.0' in metrics
        wait_for(lambda: 'serving_model_load_failures_total{model="intent",version="2"} 4.0'
                 in server.metrics.exposition().decode(), timeout=20, what="three retries of version 2")
        # Fixed in place (same directory, new files): loaded, served, the older one retired.
        shutil.rmtree(base / "2")
        saved_models.publish_version(exports.intent_v2, base, 2)
        wait_for(lambda: served_version(server) == 2, timeout=30, what="the repaired version 2")
    finally:
        server.stop(drain_timeout_seconds=5)
