"""Dynamic batching: merging, padding, splitting, limits -- and same answers as unbatched."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import serving_saved_models as saved_models
from conftest import wait_for

from apps.ranker.config import load_config
from serving import batching, errors
from serving.batching import BatchScheduler, QueueId
from serving.client import ClientConfig, RetryPolicy, ServingClient, ServingRpcError
from serving.config import BatchingConfig, ModelConfig, read_batching_config
from serving.errors import ServingError
from serving.launcher import INFRA_SERVING, REPO
from serving.metrics import ServerMetrics
from serving.options import EndpointOptions, ModelSourceOptions, ServerOptions
from serving.server import ModelServer
from suite_core.config import ConfigError

QUEUE = QueueId("m", 1, "serving_default")


class RecordingFunction:
    """A real batch function (doubles x) that records the batches it ran."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = gate
        self.running = threading.Event()

    def __call__(self, inputs):
        self.running.set()
        if self.gate is not None:
            self.gate.wait(30)
        x = inputs["x"]
        self.batches.append(x.copy())
        return {"y": x * 2, "label": np.array([f"row{v}".encode() for v in x[:, 0]], dtype=object)}


@pytest.fixture
def make_scheduler():
    schedulers = []

    def make(**config) -> BatchScheduler:
        scheduler = BatchScheduler(BatchingConfig(**config), ServerMetrics())
        schedulers.append(scheduler)
        return scheduler

    yield make
    for scheduler in schedulers:
        scheduler.stop(timeout=10)


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[v] for v in values], dtype=np.float32)}


def test_full_batch_runs_at_once_and_results_split_back(make_scheduler):
    scheduler = make_scheduler(max_batch_size=4, batch_timeout_micros=30_000_000, num_batch_threads=1)
    function = RecordingFunction()
    queue = scheduler.queue(QUEUE, function)
    futures = [queue.submit(rows(1, 2)), queue.submit(rows(3)), queue.submit(rows(4))]
    results = [f.result(timeout=30) for f in futures]
    assert len(function.batches) == 1 and function.batches[0][:, 0].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(results[0]["y"], [[2], [4]])
    np.testing.assert_array_equal(results[1]["y"], [[6]])
    assert results[2]["label"].tolist() == [b"row4.0"]


def test_padding_repeats_the_last_row_and_drops_its_outputs(make_scheduler):
    scheduler = make_scheduler(
        max_batch_size=8, batch_timeout_micros=0, allowed_batch_sizes=(4, 8), num_batch_threads=1
    )
    function = RecordingFunction()
    result = scheduler.queue(QUEUE, function).submit(rows(5, 6, 7)).result(timeout=30)
    assert function.batches[0][:, 0].tolist() == [5, 6, 7, 7]
    np.testing.assert_array_equal(result["y"], [[10], [12], [14]])


def test_queue_full_is_resource_exhausted(make_scheduler):
    scheduler = make_scheduler(
        max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1, num_batch_threads=1
    )
    gate = threading.Event()
    function = RecordingFunction(gate)
    queue = scheduler.queue(QUEUE, function)
    running = queue.submit(rows(1))  # taken by the only worker, which then blocks
    assert function.running.wait(30)
    queued = queue.submit(rows(2, 3))  # fills the one batch the queue may hold
    with pytest.raises(ServingError) as info:
        queue.submit(rows(4))
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue" in info.value.message
    gate.set()
    assert running.result(timeout=30)["y"].tolist() == [[2]]
    assert queued.result(timeout=30)["y"].tolist() == [[4], [6]]
    assert queue.submit(rows(9)).result(timeout=30)["y"].tolist() == [[18]]  # accepts again


def test_oversized_task_is_invalid_argument(make_scheduler):
    queue = make_scheduler(max_batch_size=2).queue(QUEUE, RecordingFunction())
    with pytest.raises(ServingError) as info:
        queue.submit(rows(1, 2, 3))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 3 is larger than maximum input batch size 2" in info.value.message


class ConcurrencyFunction(RecordingFunction):
    """Records the batches, and how many ran at the same moment (each waits for company briefly)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock, self.running_now, self.most_at_once = threading.Lock(), 0, 0
        self.together = threading.Barrier(2)

    def __call__(self, inputs):
        with self.lock:
            self.running_now += 1
            self.most_at_once = max(self.most_at_once, self.running_now)
        try:
            self.together.wait(5)
        except threading.BrokenBarrierError:
            pass
        try:
            return super().__call__(inputs)
        finally:
            with self.lock:
                self.running_now -= 1


def test_a_large_request_splits_into_equal_batches_that_run_side_by_side(make_scheduler):
    scheduler = make_scheduler(max_batch_size=32, max_execution_batch_size=8, enable_large_batch_splitting=True,
                               num_batch_threads=2, group_by_text_length=False)
    function = ConcurrencyFunction()
    result = scheduler.queue(QUEUE, function).submit(rows(*range(10))).result(timeout=30)
    assert sorted(len(batch) for batch in function.batches) == [5, 5]  # not 8 + 2
    assert function.most_at_once == 2
    np.testing.assert_array_equal(result["y"][:, 0], [2 * v for v in range(10)])
    assert result["label"].tolist() == [f"row{float(v)}".encode() for v in range(10)]


def test_a_split_request_fails_whole_when_a_piece_fails(make_scheduler):
    scheduler = make_scheduler(max_batch_size=8, max_execution_batch_size=2, enable_large_batch_splitting=True,
                               num_batch_threads=2, group_by_text_length=False)

    def fails_on_three(inputs):
        if 3 in inputs["x"][:, 0]:
            raise errors.invalid_argument("row 3 is bad")
        return {"y": inputs["x"]}

    with pytest.raises(ServingError, match="row 3 is bad"):
        scheduler.queue(QUEUE, fails_on_three).submit(rows(1, 2, 3, 4)).result(timeout=30)


def test_without_splitting_a_request_is_one_batch(make_scheduler):
    scheduler = make_scheduler(max_batch_size=32, max_execution_batch_size=8, num_batch_threads=2)
    function = RecordingFunction()
    scheduler.queue(QUEUE, function).submit(rows(*range(10))).result(timeout=30)
    assert [len(batch) for batch in function.batches] == [10]


def test_splitting_settings_are_checked():
    with pytest.raises(ConfigError, match="max_execution_batch_size must be in"):
        BatchingConfig(max_batch_size=8, max_execution_batch_size=16, enable_large_batch_splitting=True)
    with pytest.raises(ConfigError, match=r"must equal max_execution_batch_size \(4\)"):
        BatchingConfig(max_batch_size=8, max_execution_batch_size=4, enable_large_batch_splitting=True,
                       allowed_batch_sizes=(2, 8))


def test_the_deployed_batching_file_splits_a_rerank_across_the_batch_threads():
    config = read_batching_config(INFRA_SERVING / "batching.config")
    assert config.enable_large_batch_splitting
    assert config.num_batch_threads >= 2
    # The ranker's default depth (apps/ranker/config.yaml) fits one request, in more than one batch.
    depth = load_config(REPO / "apps" / "ranker" / "config.yaml").retrieval.rerank_depth
    assert config.batch_size_limit < depth <= config.max_batch_size


def test_mismatched_row_counts_are_invalid_argument(make_scheduler):
    queue = make_scheduler(max_batch_size=4).queue(QUEUE, RecordingFunction())
    with pytest.raises(ServingError, match="0th-dimension"):
        queue.submit({"x": np.zeros((2, 1)), "z": np.zeros((3, 1))})


def test_variable_length_inputs_pad_or_stay_apart(make_scheduler):
    def widths(inputs):
        return {"n": np.full(len(inputs["x"]), inputs["x"].shape[1])}

    apart = make_scheduler(max_batch_size=4, batch_timeout_micros=30_000_000, num_batch_threads=1)
    queue = apart.queue(QUEUE, widths)
    # Interleaved widths still form one batch per width, each full at 4 rows.
    futures = [queue.submit({"x": np.zeros((2, width))}) for width in (2, 5, 2, 5)]
    assert [f.result(timeout=30)["n"].tolist() for f in futures] == [[2, 2], [5, 5], [2, 2], [5, 5]]

    padded = make_scheduler(
        max_batch_size=4, batch_timeout_micros=30_000_000, num_batch_threads=1, pad_variable_length_inputs=True
    )
    seen = []

    def sums(inputs):
        seen.append(inputs["x"].copy())
        return {"n": inputs["x"].sum(axis=1)}

    queue = padded.queue(QUEUE, sums)
    a = queue.submit({"x": np.ones((1, 2))})
    b = queue.submit({"x": np.ones((3, 5))})  # padded with zeros into one batch of 4
    assert a.result(timeout=30)["n"].tolist() == [2] and b.result(timeout=30)["n"].tolist() == [5, 5, 5]
    assert len(seen) == 1 and seen[0].shape == (4, 5)


def test_texts_are_grouped_by_length(make_scheduler):
    scheduler = make_scheduler(max_batch_size=2, batch_timeout_micros=30_000_000, num_batch_threads=1)
    seen = []

    def lengths(inputs):
        seen.append([len(t) for t in inputs["text"]])
        return {"n": np.array([len(t) for t in inputs["text"]])}

    queue = scheduler.queue(QUEUE, lengths)
    short, long = b"lost card", b" ".join([b"word"] * 40)
    futures = [queue.submit({"text": np.array([t], dtype=object)}) for t in (short, long, short, long)]
    assert [f.result(timeout=30)["n"].tolist() for f in futures] == [[9], [len(long)], [9], [len(long)]]
    assert sorted(seen) == [[9, 9], [len(long), len(long)]]


SHORT, LONG = b"lost card", b" ".join([b"word"] * 40)  # 9 and 199 characters; 4 and 42 tokens


@pytest.mark.parametrize("waiting, batches", [
    (2, [[9], [199]]),  # Even two waiting texts of different lengths run apart,
    (4, [[9, 9], [199, 199]]),
    (12, [[9] * 6, [199] * 6]),  # as many do: one batch per length group.
])
def test_waiting_texts_run_by_length_however_few(make_scheduler, waiting, batches):
    scheduler = make_scheduler(max_batch_size=16, batch_timeout_micros=0, num_batch_threads=1)
    gate, seen = threading.Event(), []

    def lengths(inputs):
        gate.wait(30)  # The first batch holds the only worker while the rest queue up.
        seen.append([len(t) for t in inputs["text"]])
        return {"n": np.array([len(t) for t in inputs["text"]])}

    queue = scheduler.queue(QUEUE, lengths)
    blocker = queue.submit({"text": np.array([b"first"], dtype=object)})
    wait_for(lambda: queue._batches == [])  # The worker has taken it.
    texts = [(SHORT, LONG)[i % 2] for i in range(waiting)]
    futures = [queue.submit({"text": np.array([text], dtype=object)}) for text in texts]
    gate.set()
    blocker.result(timeout=30)
    assert [f.result(timeout=30)["n"][0] for f in futures] == [len(text) for text in texts]
    assert sorted(sorted(batch) for batch in seen[1:]) == batches


def test_biggest_group_runs_first_and_a_passed_over_one_soon_after(make_scheduler):
    scheduler = make_scheduler(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    gate, seen = threading.Event(), []

    def lengths(inputs):
        gate.wait(30)
        seen.append("long" if len(inputs["text"][0]) == len(LONG) else f"short x{len(inputs['text'])}")
        return {"n": np.zeros(len(inputs["text"]))}

    queue = scheduler.queue(QUEUE, lengths)
    blocker = queue.submit({"text": np.array([b"first"], dtype=object)})
    wait_for(lambda: queue._batches == [])
    # Queued: one long text first, then more full batches of short ones than it may be passed over.
    passes = batching.MAX_TIMES_PASSED_OVER
    short_batches = passes + 2
    texts = [LONG] + [SHORT] * (4 * short_batches)
    futures = [queue.submit({"text": np.array([text], dtype=object)}) for text in texts]
    gate.set()
    blocker.result(timeout=30)
    for future in futures:
        future.result(timeout=30)
    assert seen[1:] == ["short x4"] * passes + ["long"] + ["short x4"] * (short_batches - passes)


def test_grouped_queue_limit_counts_rows(make_scheduler):
    scheduler = make_scheduler(
        max_batch_size=4, batch_timeout_micros=30_000_000, max_enqueued_batches=1, num_batch_threads=1
    )
    queue = scheduler.queue(QUEUE, lambda inputs: {"n": np.zeros(len(inputs["text"]))})
    first = queue.submit({"text": np.array([b"short"] * 3, dtype=object)})
    with pytest.raises(ServingError) as info:  # another bucket, but 3 + 2 rows > 1 batch of 4
        queue.submit({"text": np.array([b" ".join([b"w"] * 40)] * 2, dtype=object)})
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    queue.submit({"text": np.array([b"tiny"], dtype=object)})  # fills the first batch
    assert first.result(timeout=30)["n"].shape == (3,)


def test_closed_queue_drains_then_refuses(make_scheduler):
    scheduler = make_scheduler(max_batch_size=8, batch_timeout_micros=30_000_000, num_batch_threads=1)
    queue = scheduler.queue(QUEUE, RecordingFunction())
    pending = queue.submit(rows(1))
    scheduler.close_queues("m", 1)
    assert pending.result(timeout=30)["y"].tolist() == [[2]]  # ran without waiting 30 s
    with pytest.raises(ServingError) as info:
        queue.submit(rows(2))
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


# -- end to end, through the server ------------------------------------------------


@pytest.fixture(scope="module")
def batching_server(exports, tmp_path_factory):
    base = tmp_path_factory.mktemp("batching_models")
    saved_models.publish_version(exports.intent_v1, base / "intent", 1)
    server = ModelServer(
        ServerOptions(
            endpoints=EndpointOptions(grpc_port=0, rest_port=0, bind_address="127.0.0.1"),
            models=ModelSourceOptions(models=(ModelConfig("intent", str(base / "intent")),)),
            batching=BatchingConfig(
                max_batch_size=8,
                batch_timeout_micros=20_000_000,  # only a full batch runs early
                max_enqueued_batches=1,
                num_batch_threads=1,
                allowed_batch_sizes=(4, 8),
            ),
        )
    ).start()
    yield server
    server.stop(drain_timeout_seconds=5)


def unbatched_reference(export_dir, texts):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_dir))
    outputs = loaded.signatures["serving_default"](text=tf.constant(texts))
    return {name: value.numpy() for name, value in outputs.items()}


def test_batched_results_equal_unbatched_calls(batching_server, exports):
    texts = ["I lost my card", "exchange rate please", "", "balance not updated after transfer",
             "card arrival", "a much longer message about my card that still has not arrived", "x", "hello"]
    client = ServingClient(ClientConfig(address=batching_server.grpc_address, timeout_seconds=60))
    with ThreadPoolExecutor(len(texts)) as pool:
        results = list(pool.map(lambda t: client.predict("intent", [t]), texts))
    reference = {t: unbatched_reference(exports.intent_v1, [t]) for t in texts}
    for text, result in zip(texts, results):
        expected = reference[text]
        np.testing.assert_allclose(result.outputs["probabilities"], expected["probabilities"], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(result.outputs["class_ids"], expected["class_ids"])
        np.testing.assert_array_equal(result.outputs["class_names"], expected["class_names"])
    exposition = batching_server.metrics.exposition().decode()
    # All eight single-row requests went through one call of eight rows.
    assert 'serving_batch_size_count{model="intent",signature="serving_default",version="1"} 1.0' in exposition
    assert 'serving_batch_size_sum{model="intent",signature="serving_default",version="1"} 8.0' in exposition
    client.close()


def test_unbatchable_signature_runs_directly(batching_server):
    # tokenize pads to the longest text: batching would change each answer's width.
    client = ServingClient(ClientConfig(address=batching_server.grpc_address, timeout_seconds=30))
    result = client.predict("intent", ["short"], signature="tokenize")
    assert result.outputs["token_ids"].shape == (1, 16)
    client.close()


def test_server_queue_full_is_resource_exhausted(batching_server):
    config = ClientConfig(address=batching_server.grpc_address, timeout_seconds=60, retry=RetryPolicy(max_attempts=1))
    client = ServingClient(config)
    with ThreadPoolExecutor(1) as pool:
        # One row opens the only batch the queue may hold; it waits for company.
        waiting = pool.submit(client.predict, "intent", ["one"])
        wait_for(lambda: _depth(batching_server) == 1, what="first request queued")
        with pytest.raises(ServingRpcError) as info:
            client.predict("intent", ["eight"] * 8)  # does not fit: would need a second batch
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue" in info.value.details
        with pytest.raises(ServingRpcError) as oversized:
            client.predict("intent", ["x"] * 9)
        assert oversized.value.code == grpc.StatusCode.INVALID_ARGUMENT
        # Seven more rows fill the batch, which then runs: both get answers.
        filler = client.predict("intent", ["fill"] * 7)
        assert filler.outputs["class_ids"].shape == (7,)
        assert waiting.result(timeout=60).outputs["class_ids"].shape == (1,)
    client.close()


def _depth(server) -> float:
    for line in server.metrics.exposition().decode().splitlines():
        if line.startswith("serving_batch_queue_depth{") and 'model="intent"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
