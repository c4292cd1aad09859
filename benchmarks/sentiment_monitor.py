"""Benchmark: sustained items/s end to end, alert latency p50/p99, and the
model server's own throughput for the same batches, in one run.

1. Throughput: the demo stream (``--items``) is written to a followed file
   at once; the monitor ingests, scores (one Predict per batch), counts and
   evaluates rules with SQLite; items/s = items / time until all are
   processed.
2. Alert latency: items are appended to the file at ``--latency-rate``
   items/s (below capacity, so the figure is the pipeline's, not a queue's);
   the strong-negative rule fires on every negative ``wire`` item (cooldown
   0), and a local webhook receiver notes when each alert arrives.  Latency
   = webhook received - trigger item's line written.
3. Server alone: the batches of step 1 (same sizes, same texts) sent
   directly with :class:`serving.client.ServingClient`, one after another.

Either point at a running server (``--address``) or let the benchmark start
``python -m serving`` on ``--model-base-path`` with batching on.  Example::

    python -m benchmarks sentiment_monitor --model-base-path /work/fulltrain/models/sentiment --items 3000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from apps.sentiment_monitor.config import (
    BaselineShiftRule,
    DeliveryConfig,
    IngestConfig,
    MonitorConfig,
    NegativeShareRule,
    RulesConfig,
    ScoringConfig,
    SinkConfig,
    SourceConfig,
    StoreConfig,
    StrongNegativeRule,
    load_config,
)
from apps.sentiment_monitor.demo_stream import Surge, demo_items
from apps.sentiment_monitor.items import item_to_record
from benchmarks.command import parse_args
from serving.launcher import ModelServerProcess, batching_flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sentiment_monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines")
    parser.add_argument("--address", help="host:port of a running server (else --model-base-path)")
    parser.add_argument("--model-base-path", help="start `python -m serving` on this model (batching on)")
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--items", type=int, default=3000, help="items for the throughput run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-items", type=int, default=400)
    parser.add_argument("--latency-rate", type=float, default=20.0, help="items/s appended in the latency run")
    parser.add_argument("--work-dir", help="where files and databases go (default: a temporary directory)")
    return parser


class WebhookReceiver:
    """A local HTTP server that notes when each alert arrives (by its idempotency key)."""

    def __init__(self) -> None:
        self.received: dict[str, tuple[float, dict]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.setdefault(self.headers["Idempotency-Key"], (time.time(), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _config(work: Path, name: str, address: str, model: str, batch_size: int, **changes) -> MonitorConfig:
    base = load_config()
    return dataclasses.replace(
        base, store=StoreConfig(url=f"sqlite:///{work / (name + '.db')}"),
        ingest=IngestConfig(sources=(SourceConfig(kind="file", path=str(work / f"{name}.jsonl")),),
                            dead_letter_path=str(work / f"{name}.dead.jsonl"), poll_seconds=0.005),
        scoring=ScoringConfig(address=address, model=model, batch_size=batch_size), **changes)


def _run_until(app, condition, timeout: float) -> None:
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(0.01)
    app.stop()
    thread.join(30)


def throughput(work: Path, address: str, model: str, items: int, batch_size: int) -> dict:
    from apps.sentiment_monitor.app import MonitorApp

    stream = list(demo_items(items, start=time.time() - 6 * 3600, seed=5, late_items=0))
    path = work / "throughput.jsonl"
    path.write_text("".join(json.dumps(item_to_record(i)) + "\n" for i in stream))
    app = MonitorApp(_config(work, "throughput", address, model, batch_size))
    started = time.perf_counter()
    _run_until(app, lambda: app.progress.processed >= len(stream), timeout=3600)
    elapsed = time.perf_counter() - started
    return {"items": app.progress.processed, "seconds": elapsed, "items_per_second": app.progress.processed / elapsed,
            "batches": app.progress.batch_sizes, "texts": [i.text for i in stream]}


def alert_latency(work: Path, address: str, model: str, items: int, rate: float, batch_size: int) -> dict:
    from apps.sentiment_monitor.app import MonitorApp

    receiver = WebhookReceiver()
    # Only the single-item rule, on every negative wire item: each alert has one trigger item to time.
    rules = RulesConfig(negative_share=NegativeShareRule(enabled=False),
                        baseline_shift=BaselineShiftRule(enabled=False),
                        strong_negative=StrongNegativeRule(min_negative_probability=0.5, sources=("wire",)),
                        cooldown_seconds=0.0)
    config = _config(work, "latency", address, model, batch_size, rules=rules,
                     delivery=DeliveryConfig(sinks=(SinkConfig(kind="webhook", url=receiver.url),), poll_seconds=0.01))
    app = MonitorApp(config)
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    written: dict[str, float] = {}
    stream = demo_items(items, start=time.time() - 3600, span_seconds=3600, seed=9, late_items=0, wire_share=0.4,
                        surge=Surge(duration=0.5))
    with (work / "latency.jsonl").open("a") as handle:
        for item in stream:
            handle.write(json.dumps(item_to_record(item)) + "\n")
            handle.flush()
            written[item.id] = time.time()
            time.sleep(1.0 / rate)
    deadline = time.time() + 60
    while time.time() < deadline and app.progress.processed < len(written):
        time.sleep(0.05)
    time.sleep(1.0)  # The last deliveries.
    app.stop()
    thread.join(30)
    receiver.stop()
    latencies = [received - written[body["trigger_item_id"]] for received, body in receiver.received.values()]
    return {"alerts": len(latencies), "latencies": latencies}


def server_throughput(address: str, model: str, batches: list[int], texts: list[str]) -> dict:
    from serving.client import ClientConfig, ServingClient

    with ServingClient(ClientConfig(address=address)) as client:
        client.predict(model, texts[:1])  # Warm the channel.
        offset = 0
        started = time.perf_counter()
        for size in batches:
            client.predict(model, texts[offset:offset + size])
            offset += size
        elapsed = time.perf_counter() - started
    return {"items": offset, "seconds": elapsed, "items_per_second": offset / elapsed}


def run_benchmark(args: argparse.Namespace) -> dict:
    from serving.client import ClientConfig, ServingClient

    if not args.address and not args.model_base_path:
        raise SystemExit("benchmark: give --address of a running server or --model-base-path to start one")
    server = None
    address = args.address
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="sentiment-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if not address:
        server = ModelServerProcess([f"--model_name={args.model}", f"--model_base_path={args.model_base_path}",
                                     *batching_flags()], work / "model_server.log").start()
        address = server.grpc_address
    try:
        with ServingClient(ClientConfig(address=address)) as client:
            version = client.wait_until_available(args.model, timeout_seconds=300)
        print(f"model {args.model} version {version} at {address}; work dir {work}")
        end_to_end = throughput(work, address, args.model, args.items, args.batch_size)
        alone = server_throughput(address, args.model, end_to_end["batches"], end_to_end["texts"])
        latency = alert_latency(work, address, args.model, args.latency_items, args.latency_rate, args.batch_size)
    finally:
        if server is not None:
            server.stop()
    batches = np.array(end_to_end["batches"])
    results = {
        "end_to_end_items_per_second": round(end_to_end["items_per_second"], 1),
        "end_to_end_items": end_to_end["items"],
        "batches": len(batches), "mean_batch_size": round(float(batches.mean()), 1) if len(batches) else 0,
        "server_items_per_second_same_batches": round(alone["items_per_second"], 1),
        "end_to_end_share_of_server": round(end_to_end["items_per_second"] / alone["items_per_second"], 3),
        "alerts_measured": latency["alerts"],
        "alert_latency_p50_ms": round(float(np.percentile(latency["latencies"], 50)) * 1000, 1)
        if latency["latencies"] else None,
        "alert_latency_p99_ms": round(float(np.percentile(latency["latencies"], 99)) * 1000, 1)
        if latency["latencies"] else None,
        "latency_rate_items_per_second": args.latency_rate,
        "cpu_count": os.cpu_count(),
    }
    for key, value in results.items():
        print(f"{key:40s} {value}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
