"""The load generator every benchmark uses, on loopback only.

- :class:`Latencies`: one load phase (requests, errors, per-request latencies, seconds) and its summary
  (requests, errors, throughput, p50, p99; any percentile);
- :func:`sequential`: one client, one request at a time;
- :func:`closed_loop`: N clients for T seconds, each sending its next request as soon as the last returns;
- :func:`open_loop`: requests at a fixed rate, latency counted from the scheduled send time;
- :func:`load_line`: a summary as one report row.

All three take a *factory* of callers: :func:`closed_loop` makes one caller per client (e.g. one
keep-alive connection each), the others make one.  A caller sends one request for a text and raises
on failure.  Example::

    result = closed_loop("app", lambda: (lambda text: None), ["a", "b"], clients=4, seconds=5)
    result.summary()    # {'name': 'app', 'requests': ..., 'errors': 0, 'throughput_rps': ..., 'p50_ms': ..., ...}
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

#: Makes a caller; a caller sends one request for a text and raises on failure.
CallerFactory = Callable[[], Callable[[str], None]]

__all__ = ["CallerFactory", "Latencies", "closed_loop", "load_line", "open_loop", "sequential"]


@dataclass
class Latencies:
    """One load phase: its name, wall-clock ``seconds``, per-request latencies in ms and failed requests."""

    name: str
    seconds: float
    samples_ms: list[float] = field(default_factory=list, repr=False)
    errors: int = 0

    @property
    def requests(self) -> int:
        """Requests answered (failed ones are in ``errors``, not timed)."""
        return len(self.samples_ms)

    @property
    def throughput(self) -> float:
        """Answered requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency in ms; NaN without samples."""
        return float(np.percentile(self.samples_ms, q)) if self.samples_ms else float("nan")

    def summary(self) -> dict:
        """``name``, ``requests``, ``errors``, ``throughput_rps`` and ``p50_ms``/``p99_ms`` (NaN without samples)."""
        return {"name": self.name, "requests": self.requests, "errors": self.errors,
                "throughput_rps": round(self.throughput, 1),
                "p50_ms": round(self.percentile(50), 2), "p99_ms": round(self.percentile(99), 2)}


def load_line(summary: dict, width: int = 12) -> str:
    """One report row of a :meth:`Latencies.summary`: name (padded to ``width``), req/s, p50/p99 ms, errors."""
    return (f"  {summary['name']:<{width}} {summary['throughput_rps']:8.1f} req/s  p50 {summary['p50_ms']:8.2f}"
            f"  p99 {summary['p99_ms']:8.2f}  errors {summary['errors']}")


def sequential(name: str, make: CallerFactory, texts: Sequence[str], requests: int, warmup: int = 0) -> Latencies:
    """One client, one request at a time: ``warmup`` unmeasured requests, then ``requests`` measured ones
    (cycling through ``texts``).  An error propagates."""
    call = make()
    for i in range(warmup):
        call(texts[i % len(texts)])
    samples = []
    started = time.perf_counter()
    for i in range(requests):
        begin = time.perf_counter()
        call(texts[i % len(texts)])
        samples.append((time.perf_counter() - begin) * 1000)
    return Latencies(name, time.perf_counter() - started, samples)


def closed_loop(name: str, make: CallerFactory, texts: Sequence[str], clients: int, seconds: float) -> Latencies:
    """``clients`` threads, each with its own caller, sending a random text (seeded per client) as soon as
    the last request returns, for ``seconds``.  Failed requests are counted in ``errors``, not timed."""
    result = Latencies(name, seconds)
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(seed: int) -> None:
        call, rng = make(), random.Random(seed)
        mine, failed = [], 0
        while time.perf_counter() < stop_at:
            text = texts[rng.randrange(len(texts))]
            begin = time.perf_counter()
            try:
                call(text)
                mine.append((time.perf_counter() - begin) * 1000)
            except Exception:  # noqa: BLE001 - counted, the load goes on
                failed += 1
        with lock:
            result.samples_ms.extend(mine)
            result.errors += failed

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    return result


def open_loop(name: str, make: CallerFactory, texts: Sequence[str], rate: float, seconds: float,
              on_tick: Callable[[], None] | None = None) -> Latencies:
    """Requests sent at ``rate`` per second for ``seconds`` from a pool of threads sharing one caller
    (it must be thread-safe); latency counts from the scheduled send time.  ``on_tick`` runs every 5 s."""
    call = make()
    result = Latencies(name, seconds)
    lock = threading.Lock()
    rng = random.Random(1)

    def send(scheduled: float, text: str) -> None:
        try:
            call(text)
            latency = (time.perf_counter() - scheduled) * 1000
            with lock:
                result.samples_ms.append(latency)
        except Exception:  # noqa: BLE001 - counted, the load goes on
            with lock:
                result.errors += 1

    started = time.perf_counter()
    next_tick = started
    with ThreadPoolExecutor(max_workers=256) as pool:
        index = 0
        while True:
            scheduled = started + index / rate
            if scheduled - started >= seconds:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, scheduled, texts[rng.randrange(len(texts))])
            index += 1
            if on_tick is not None and time.perf_counter() >= next_tick:
                on_tick()
                next_tick += 5.0
    result.seconds = time.perf_counter() - started
    return result
