"""Examples/s per core of an exported classifier, timed in a fresh process on one thread.

One thread is one core: the figure times a price per core-hour is the cost,
and it does not depend on how many cores the measuring machine has or how
busy its other cores are. A process of its own per model makes its peak
resident memory that model's alone (the TensorFlow runtime included), sampled
after loading and after each batch size.

Example (prints one JSON object):

    python -m tfx_pipeline.compression.speed --model work/models/intent/1 --texts texts.json \
        --batch-sizes 1 32 --seconds 4      # texts.json: {"text": [...], "text_pair": null}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence


def measure_in_process(model_dir: str | Path, texts: Sequence[str], batch_sizes: Sequence[int],
                       seconds: float, text_pairs: Sequence[str] | None = None) -> dict[str, Any]:
    """Throughput per batch size of `serving_default` on `texts` (and `text_pairs`
    for pair classifiers; taken in order, cycling), and batch-1 latency percentiles.
    Call in a process whose TensorFlow thread pools are already set (see `main`)."""
    import tensorflow as tf

    from tfx_pipeline.evaluation.predict import load_saved_model

    started = time.monotonic()
    signature = load_saved_model(Path(model_dir)).signatures["serving_default"]
    load_seconds = time.monotonic() - started
    result: dict[str, Any] = {"load_seconds": round(load_seconds, 2), "examples_per_second": {}}
    resident = [_resident_mib()]  # Sampled after loading and after each batch size: the peak of those.
    for batch_size in batch_sizes:
        # Consecutive texts, cycling: the eval split's mix of lengths, as traffic brings it.
        rows = [range(start, start + batch_size) for start in range(0, max(len(texts), batch_size), batch_size)]
        batches = [{"text": tf.constant([texts[i % len(texts)] for i in row]),
                    **({"text_pair": tf.constant([text_pairs[i % len(texts)] for i in row])} if text_pairs else {})}
                   for row in rows]
        rate, latencies = time_calls(lambda batch: signature(**batch), batches, batch_size, seconds)
        result["examples_per_second"][str(batch_size)] = round(rate, 2)
        resident.append(_resident_mib())
        if batch_size == 1:
            result["latency_ms_batch_1"] = latency_ms(latencies)
    result["peak_memory_mib"] = round(max(resident), 1)
    return result


def time_calls(call: Callable[[Any], object], batches: Sequence[Any], batch_size: int,
               seconds: float) -> tuple[float, list[float]]:
    """(examples/s, each call's seconds) of `call` on `batches` of `batch_size` rows, taken in turn
    for `seconds`; the first three batches (the first padded widths) run once before the clock."""
    for batch in batches[:3]:
        call(batch)
    latencies: list[float] = []
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        call_started = time.perf_counter()
        call(batches[len(latencies) % len(batches)])
        latencies.append(time.perf_counter() - call_started)
    return batch_size * len(latencies) / (time.perf_counter() - begin), latencies


def latency_ms(latencies: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of call durations in seconds, in milliseconds.

    >>> latency_ms([0.001, 0.002, 0.003])
    {'p50': 2.0, 'p99': 2.98}
    """
    import numpy as np

    return {"p50": round(float(np.percentile(latencies, 50)) * 1000, 3),
            "p99": round(float(np.percentile(latencies, 99)) * 1000, 3)}


def _resident_mib() -> float:
    """This process's resident memory now. Not ru_maxrss: a child forked from a big parent
    starts with the parent's resident size as its peak, and execve keeps it."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure(model_dir: str | Path, texts: Sequence[str], batch_sizes: Sequence[int], seconds: float,
            text_pairs: Sequence[str] | None = None, timeout: float = 900) -> dict[str, Any]:
    """`measure_in_process` in a child process on one thread; its JSON result."""
    with tempfile.TemporaryDirectory() as scratch:
        texts_file = Path(scratch) / "texts.json"
        texts_file.write_text(json.dumps({"text": list(texts), "text_pair": list(text_pairs) if text_pairs else None}))
        command = [sys.executable, "-m", "tfx_pipeline.compression.speed", "--model", str(model_dir),
                   "--texts", str(texts_file), "--seconds", str(seconds),
                   "--batch-sizes", *map(str, batch_sizes)]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if completed.returncode != 0:
        raise RuntimeError(f"speed measurement of {model_dir} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def compare(models: dict[str, str | Path], texts: Sequence[str], batch_sizes: Sequence[int], seconds: float,
            rounds: int, text_pairs: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each model measured `rounds` times, the models taking turns, so that a
    slow minute on a shared machine hits all of them; each keeps its best round
    (interference only ever slows a run down)."""
    best: dict[str, dict[str, Any]] = {}
    for _ in range(max(rounds, 1)):
        for name, model_dir in models.items():
            measured = measure(model_dir, texts, batch_sizes, seconds, text_pairs)
            kept = best.setdefault(name, measured)
            for size, rate in measured["examples_per_second"].items():
                if rate > kept["examples_per_second"][size]:
                    kept["examples_per_second"][size] = rate
                    if size == "1":
                        kept["latency_ms_batch_1"] = measured["latency_ms_batch_1"]
            kept["peak_memory_mib"] = max(kept["peak_memory_mib"], measured["peak_memory_mib"])
    return best


def cost_per_million(examples_per_second_per_core: float, price_per_core_hour: float) -> float:
    """Price of 1M predictions at this throughput per core.

    >>> round(cost_per_million(100.0, 0.05), 4)  # 10,000 core-seconds
    0.1389
    """
    return 1e6 / max(examples_per_second_per_core, 1e-9) / 3600 * price_per_core_hour


def model_size_mib(model_dir: str | Path) -> float:
    """Bytes of a SavedModel directory (graph, variables, assets), in MiB."""
    return round(sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file()) / 2**20, 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--texts", required=True, help='JSON {"text": [...], "text_pair": [...] or null}')
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    import tensorflow as tf

    import tfx_pipeline  # noqa: F401  The suite's TensorFlow settings (oneDNN) before TensorFlow loads.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    texts = json.loads(Path(args.texts).read_text())
    print(json.dumps(measure_in_process(args.model, texts["text"], args.batch_sizes, args.seconds,
                                        texts["text_pair"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
