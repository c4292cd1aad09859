"""Server-side dynamic batching, modelled on TF Serving's shared batch scheduler.

Each (model version, signature) has a :class:`BatchQueue`.  Requests join an
open batch until it holds ``max_batch_size`` rows or its first request has
waited ``batch_timeout_micros``; a pool of ``num_batch_threads`` workers
shared by all queues runs ready batches, oldest first.  A batch is padded up
to the next ``allowed_batch_sizes`` entry by repeating its last row (a real
input, so padding never lengthens a text batch), the signature runs once,
and every request gets back exactly its own rows.  A full queue refuses more
with RESOURCE_EXHAUSTED; a request larger than ``max_batch_size`` is INVALID_ARGUMENT.
With ``enable_large_batch_splitting`` a request larger than ``max_execution_batch_size``
runs as several batches at once (one 20-pair re-rank on two single-threaded batch
threads: see ``infra/serving/batching.config``).

Text requests are grouped by estimated token length (``group_by_text_length``):
our text models pad each call to its longest text, so one long text in a
batch of short ones multiplies the work of the whole batch.  Groups stay
apart however few rows wait: a short text merged with a long one waits as
long as the long one.  (MiniLM at half the saturation rate, `python -m
benchmarks serving` phases: p99 42-48 ms, against 50-68 ms when up to 8
waiting rows ran as one mixed batch; six runs of each, alternating.)

With several length groups ready, a worker takes the one holding the most
rows: small batches cost nearly as much per call as big ones, so running the
oldest group first (TF Serving's order, right when all batches are alike)
would spend the cores on batches of one or two.  So that no group starves,
one passed over ``MAX_TIMES_PASSED_OVER`` times runs next, oldest first.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from serving import errors
from serving.config import BatchingConfig
from serving.errors import ServingError
from serving.metrics import ServerMetrics

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
BatchFunction = Callable[[Arrays], Arrays]


@dataclass(frozen=True)
class QueueId:
    """What a queue batches for; also its metric labels."""

    model: str
    version: int
    signature: str


@dataclass(eq=False)
class _Task:
    inputs: Arrays
    rows: int
    future: Future


# A ready batch skipped for bigger ones this many times runs next.  Measured with
# MiniLM, 64 clients, three 20 s runs back to back, twice (`python -m benchmarks serving`
# is too slow for a sweep): oldest first 141.1 / 142.8 req/s, passed over at most
# 2 times 137.9 / 144.4, 8 times 148.6 / 149.9 (mean batch 14 rows instead of 12).
MAX_TIMES_PASSED_OVER = 8


@dataclass(eq=False)
class _Batch:
    shape_key: tuple  # What may share a batch: input names, dtypes, inner shapes...
    length_bucket: int | None  # ...and, among those, which text length group.
    opened_at: float
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0
    closed: bool = False
    times_passed_over: int = 0


def task_rows(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows in a request: the shared size of every input's first dimension."""
    sizes = set()
    for name, array in inputs.items():
        if array.ndim == 0:
            raise errors.invalid_argument(
                f"Batching Run() input tensors must have at least one dimension; '{name}' is a scalar"
            )
        sizes.add(array.shape[0])
    if len(sizes) != 1:
        raise errors.invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


_TOKEN = re.compile(r"\w+|[^\w\s]")
TOKEN_BUCKET = 16  # our text models pad each call to a multiple of 16 tokens


def estimate_tokens(value: object) -> int:
    """Rough BERT token count of one text: words and punctuation, plus [CLS]/[SEP]."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return len(_TOKEN.findall(text)) + 2


def length_bucket(inputs: Mapping[str, np.ndarray]) -> int | None:
    """Which padded length a text request will need (None if it has no text input).

    The models pad a call to its longest text, so a batch mixing one long
    text with short ones pays for padding on every row.  Requests are grouped
    by this bucket (16-token steps, texts of one row summed for pair models)
    so each batch pads little.  Only the grouping uses it; results do not
    depend on it.
    """
    columns = [a for a in inputs.values() if a.dtype == object and a.ndim == 1]
    if not columns:
        return None
    longest = max(sum(estimate_tokens(column[row]) for column in columns) for row in range(len(columns[0])))
    return (longest + TOKEN_BUCKET - 1) // TOKEN_BUCKET


def _concat(arrays: list[np.ndarray], pad_variable_length: bool) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0]
    if pad_variable_length and len({a.shape[1:] for a in arrays}) > 1:
        target = tuple(max(sizes) for sizes in zip(*(a.shape[1:] for a in arrays)))
        fill = b"" if arrays[0].dtype == object else 0
        padded = []
        for array in arrays:
            out = np.full((array.shape[0], *target), fill, dtype=array.dtype)
            out[tuple(slice(0, n) for n in array.shape)] = array
            padded.append(out)
        arrays = padded
    return np.concatenate(arrays, axis=0)


def _joined(futures: list[Future]) -> Future:
    """One future for a split request: its pieces' outputs in row order, or the first error."""
    joined: Future = Future()
    joined.set_running_or_notify_cancel()
    lock, left = threading.Lock(), [len(futures)]

    def piece_done(_: Future) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        errors_seen = [f.exception() for f in futures if f.exception() is not None]
        if errors_seen:
            joined.set_exception(errors_seen[0])
            return
        parts = [f.result() for f in futures]
        try:
            joined.set_result({name: _concat([part[name] for part in parts], pad_variable_length=True)
                               for name in parts[0]})
        except ValueError as exc:
            joined.set_exception(errors.internal(f"cannot join the outputs of a split request: {exc}"))

    for future in futures:
        future.add_done_callback(piece_done)
    return joined


class BatchQueue:
    """Requests for one (model version, signature) waiting to be batched."""

    def __init__(
        self, scheduler: BatchScheduler, queue_id: QueueId, function: BatchFunction, metrics: ServerMetrics
    ) -> None:
        self.id = queue_id
        self._scheduler = scheduler
        self._config = scheduler.config
        self._function = function
        labels = dict(model=queue_id.model, version=str(queue_id.version), signature=queue_id.signature)
        # This queue's metric series, looked up once: `labels()` takes a lock and is on every request's path.
        self._queue_depth = metrics.queue_depth.labels(**labels)
        self._batch_size = metrics.batch_size.labels(**labels)
        self._batch_padding_rows = metrics.batch_padding_rows.labels(**labels)
        self._batches: list[_Batch] = []
        self._queued_rows = 0
        self._closing = False

    # -- called by request threads -------------------------------------------------

    def submit(self, inputs: Arrays) -> Future:
        """Enqueues a request; its future resolves to that request's outputs.

        With ``enable_large_batch_splitting``, a request of more rows than a batch runs
        (``max_execution_batch_size``) is cut into the fewest equal pieces that fit, each
        batched on its own, so idle batch threads share it; the outputs are joined back
        in row order.  (TF Serving fills the open batch first; equal pieces finish together.)
        """
        rows = task_rows(inputs)
        config = self._config
        if rows > config.max_batch_size:
            raise errors.invalid_argument(
                f"Task size {rows} is larger than maximum input batch size {config.max_batch_size}"
            )
        if config.pad_variable_length_inputs:
            key: tuple = tuple((name, a.ndim, a.dtype.str) for name, a in sorted(inputs.items()))
        else:
            key = tuple((name, a.shape[1:], a.dtype.str) for name, a in sorted(inputs.items()))
        limit = config.batch_size_limit
        pieces = -(-rows // limit)
        bounds = np.linspace(0, rows, pieces + 1).round().astype(int)
        tasks = [_Task(inputs={name: a[start:end] for name, a in inputs.items()} if pieces > 1 else inputs,
                       rows=int(end - start), future=Future()) for start, end in zip(bounds, bounds[1:])]
        with self._scheduler.condition:
            if self._closing:
                raise errors.unavailable(
                    f"Batch queue for model {self.id.model} version {self.id.version} is shutting down"
                )
            if any(self._open_batch(key, self._bucket(task.inputs), task.rows) is None for task in tasks):
                self._check_capacity(rows, grouped=config.group_by_text_length or pieces > 1)
            for task in tasks:
                bucket = self._bucket(task.inputs)
                batch = self._open_batch(key, bucket, task.rows)
                if batch is None:
                    for full in self._batches:
                        if not full.closed and full.shape_key == key and full.length_bucket == bucket:
                            full.closed = True  # full enough: let it run
                    batch = _Batch(shape_key=key, length_bucket=bucket, opened_at=time.monotonic())
                    self._batches.append(batch)
                batch.tasks.append(task)
                batch.rows += task.rows
                self._queued_rows += task.rows
                if batch.rows >= limit:
                    batch.closed = True
                self._queue_depth.inc()
            self._scheduler.condition.notify(len(tasks))
        return tasks[0].future if len(tasks) == 1 else _joined([task.future for task in tasks])

    def _bucket(self, inputs: Arrays) -> int | None:
        return length_bucket(inputs) if self._config.group_by_text_length else None

    def _open_batch(self, key: tuple, bucket: int | None, rows: int) -> _Batch | None:
        """The open batch that ``rows`` more rows of this kind may join, if any."""
        return next((b for b in self._batches if not b.closed and b.shape_key == key and b.length_bucket == bucket
                     and b.rows + rows <= self._config.batch_size_limit), None)

    def _check_capacity(self, rows: int, grouped: bool) -> None:
        """RESOURCE_EXHAUSTED when another batch would exceed max_enqueued_batches.

        Requests grouped by text length (or split) spread over several open
        batches, so there the same bound is applied to rows (max_enqueued_batches
        full batches' worth) rather than to the number of batches.
        """
        config = self._config
        if grouped:
            full = self._queued_rows + rows > config.max_enqueued_batches * config.batch_size_limit
        else:
            full = len(self._batches) >= config.max_enqueued_batches
        if full:
            raise errors.resource_exhausted(
                "The batch scheduling queue to which this task was submitted is full "
                f"(model {self.id.model} version {self.id.version} signature {self.id.signature}: "
                f"{len(self._batches)} batches, {self._queued_rows} requests' rows enqueued; "
                f"max_enqueued_batches {config.max_enqueued_batches})"
            )

    def close(self) -> None:
        """Refuses new requests; queued ones run without waiting for the timeout."""
        with self._scheduler.condition:
            self._closing = True
            self._scheduler.condition.notify_all()

    # -- called by the scheduler with its lock held -----------------------------

    def _batch_ready_at(self, batch: _Batch) -> float:
        if batch.closed or self._closing:
            return batch.opened_at
        return batch.opened_at + self._config.batch_timeout_micros / 1e6

    def _ready_at(self) -> float | None:
        """When the earliest batch may run (None if empty)."""
        return min((self._batch_ready_at(b) for b in self._batches), default=None)

    def _pop(self) -> _Batch:
        """Removes the batch to run next.

        Of the ready batches: the oldest that was passed over too often, else
        the one with the most rows.
        """
        now = time.monotonic()
        ready = [b for b in self._batches if self._batch_ready_at(b) <= now]
        starving = [b for b in ready if b.times_passed_over >= MAX_TIMES_PASSED_OVER]
        if starving:
            batch = min(starving, key=self._batch_ready_at)
        else:
            batch = max(ready, key=lambda b: (b.rows, -self._batch_ready_at(b)))
        self._batches.remove(batch)
        for other in ready:
            if other in self._batches:
                other.times_passed_over += 1
        self._queued_rows -= batch.rows
        self._queue_depth.dec(len(batch.tasks))
        return batch

    @property
    def _drained(self) -> bool:
        return self._closing and not self._batches

    # -- called by a worker thread without the lock ----------------------------

    def _run(self, batch: _Batch) -> None:
        tasks = [t for t in batch.tasks if t.future.set_running_or_notify_cancel()]
        if not tasks:
            return
        try:
            outputs, padded = self._run_tasks(tasks)
        except ServingError as exc:
            for task in tasks:
                task.future.set_exception(exc)
            return
        except Exception as exc:  # never let a worker die: the callers are waiting
            log.exception("batch for %s failed", self.id)
            error = errors.internal(f"batched call failed: {type(exc).__name__}: {exc}")
            for task in tasks:
                task.future.set_exception(error)
            return
        offset = 0
        for task in tasks:
            task.future.set_result({name: value[offset : offset + task.rows] for name, value in outputs.items()})
            offset += task.rows

    def _run_tasks(self, tasks: list[_Task]) -> tuple[Arrays, int]:
        rows = sum(t.rows for t in tasks)
        pad = self._config.padded_size(rows) - rows
        merged = {
            name: _concat([t.inputs[name] for t in tasks], self._config.pad_variable_length_inputs)
            for name in tasks[0].inputs
        }
        if pad:
            # Repeat the last real row: valid input, and no longer than the rest.
            merged = {name: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for name, a in merged.items()}
            self._batch_padding_rows.inc(pad)
        self._batch_size.observe(rows)
        outputs = self._function(merged)
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != rows + pad:
                raise errors.internal(
                    f"Batched output tensor '{name}' has shape {list(value.shape)}; "
                    f"its 0th dimension should be the batch size {rows + pad}"
                )
        return outputs, rows + pad


class BatchScheduler:
    """Worker threads shared by every batch queue of a server."""

    def __init__(self, config: BatchingConfig, metrics: ServerMetrics) -> None:
        self.config = config
        self.condition = threading.Condition()
        self._metrics = metrics
        self._queues: dict[QueueId, BatchQueue] = {}
        self._stopping = False
        self._workers = [
            threading.Thread(target=self._work, name=f"batch-worker-{i}", daemon=True)
            for i in range(config.num_batch_threads)
        ]
        for worker in self._workers:
            worker.start()

    def queue(self, queue_id: QueueId, function: BatchFunction) -> BatchQueue:
        """The queue for ``queue_id``, created on first use."""
        with self.condition:
            queue = self._queues.get(queue_id)
            if queue is None:
                if self._stopping:
                    raise errors.unavailable("Server is shutting down")
                queue = BatchQueue(self, queue_id, function, self._metrics)
                self._queues[queue_id] = queue
            return queue

    def close_queues(self, model: str, version: int) -> None:
        """Closes a retired version's queues; workers drop them once empty."""
        with self.condition:
            for queue_id, queue in self._queues.items():
                if queue_id.model == model and queue_id.version == version:
                    queue.close()

    def stop(self, timeout: float | None = None) -> None:
        """Runs what is queued, then stops the workers."""
        with self.condition:
            self._stopping = True
            for queue in self._queues.values():
                queue.close()
            self.condition.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    def _next(self) -> tuple[BatchQueue, _Batch] | None:
        """Waits for the oldest ready batch; None once stopping and all drained."""
        with self.condition:
            while True:
                now = time.monotonic()
                chosen, chosen_at, wake_at = None, None, None
                for queue_id, queue in list(self._queues.items()):
                    if queue._drained:
                        del self._queues[queue_id]
                        self._metrics.forget_queue(queue_id.model, queue_id.version, queue_id.signature)
                        continue
                    ready_at = queue._ready_at()
                    if ready_at is None:
                        continue
                    if ready_at <= now:
                        if chosen_at is None or ready_at < chosen_at:
                            chosen, chosen_at = queue, ready_at
                    elif wake_at is None or ready_at < wake_at:
                        wake_at = ready_at
                if chosen is not None:
                    return chosen, chosen._pop()
                if self._stopping and not self._queues:
                    return None
                self.condition.wait(None if wake_at is None else wake_at - now)

    def _work(self) -> None:
        while True:
            picked = self._next()
            if picked is None:
                return
            queue, batch = picked
            queue._run(batch)
