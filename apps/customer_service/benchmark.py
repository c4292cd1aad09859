"""End-to-end benchmark: HTTP -> app -> gRPC -> model and back, against the server alone.

In one run, on loopback only:

1. starts ``python -m serving`` on ``--model-base-path`` (batching on), or
   uses a running server (``--server``);
2. starts the app (``python -m apps.customer_service serve``) in its own
   process, so the load generator does not share its interpreter;
3. one client, one message at a time: p50/p99 latency through the app's
   HTTP endpoint, and of the same Predict request sent straight to the
   server; their ratio is the app's overhead;
4. ``--clients`` concurrent clients for ``--seconds``: throughput and
   latency through the app, and straight to the server;
5. accuracy and coverage at the target precision on the validation split
   (``--data``, default Banking77's eval split), when the data is there.

Not a test: it prints numbers.  Example::

    python -m apps.customer_service benchmark --model-base-path /work/fulltrain/models/intent \\
        --clients 16 --seconds 30
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from apps.customer_service.classifier import _OUTPUTS, IntentClassifier
from apps.customer_service.config import AppConfig, with_server_address
from apps.customer_service.tuning import REPO, default_data_path, tune, validation_rows
from serving.client import ClientConfig, ServingClient

SAMPLE_MESSAGES = (
    "I still haven't received my new card, when will it arrive?",
    "My card was declined at the supermarket today",
    "What exchange rate do you use for euros?",
    "How do I change my PIN?",
)


@dataclass(frozen=True)
class BenchmarkConfig:
    """How hard and how long to load."""

    single_requests: int = 200  # sequential requests for p50/p99 of one message
    clients: int = 8  # concurrent closed-loop clients
    seconds: float = 20.0  # of concurrent load, per target
    warmup_requests: int = 20
    target_precision: float = 0.95
    data: Path | None = None  # validation CSV; None: Banking77 in the shared data, if present


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = BenchmarkConfig()
    parser.add_argument("--model-base-path", type=Path,
                        help="start a model server on this base path (<path>/<version>/saved_model.pb)")
    parser.add_argument("--single-requests", type=int, default=defaults.single_requests)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--warmup-requests", type=int, default=defaults.warmup_requests)
    parser.add_argument("--target-precision", type=float, default=defaults.target_precision)
    parser.add_argument("--data", type=Path, help="validation CSV (default: Banking77 in the shared data)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening on port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout:.0f}s")


class _Process:
    """A child process on loopback, stopped with the benchmark."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(list(args), cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_model_server(model_base_path: Path, model_name: str, workdir: Path) -> tuple[_Process, str]:
    port = _free_port()
    server = _Process([
        sys.executable, "-m", "serving", f"--port={port}", f"--rest_api_port={_free_port()}",
        "--bind_address=127.0.0.1", f"--model_name={model_name}", f"--model_base_path={model_base_path}",
        "--enable_batching", f"--batching_parameters_file={REPO / 'infra/serving/batching.config'}",
    ], workdir / "model_server.log")
    address = f"127.0.0.1:{port}"
    with ServingClient(ClientConfig(address=address)) as client:
        try:
            client.wait_until_available(model_name, timeout_seconds=300)
        except Exception:
            server.stop()
            raise
    return server, address


def start_app(config_path: Path, server_address: str, workdir: Path) -> tuple[_Process, int]:
    port = _free_port()
    app = _Process([sys.executable, "-m", "apps.customer_service", "--config", str(config_path),
                    "--server", server_address, "serve", "--host", "127.0.0.1", "--port", str(port)],
                   workdir / "app.log")
    _wait_for_port(port, app.process, "the app")
    return app, port


# -- load -------------------------------------------------------------------------------------


@dataclass
class Latencies:
    name: str
    seconds: float
    samples_ms: list[float]
    errors: int = 0

    def summary(self) -> dict:
        samples = np.asarray(self.samples_ms) if self.samples_ms else np.asarray([np.nan])
        return {"name": self.name, "requests": len(self.samples_ms), "errors": self.errors,
                "throughput_rps": round(len(self.samples_ms) / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(float(np.percentile(samples, 50)), 2),
                "p99_ms": round(float(np.percentile(samples, 99)), 2)}


def http_caller(port: int) -> Callable[[], Callable[[str], None]]:
    """A factory of per-client callers, each on its own keep-alive connection."""

    def make() -> Callable[[str], None]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def call(text: str) -> None:
            connection.request("POST", "/v1/reply", json.dumps({"message": text}),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        return call
    return make


def grpc_caller(address: str, model_name: str) -> Callable[[], Callable[[str], None]]:
    """The same Predict request the app sends, straight to the server (one shared channel)."""
    client = ServingClient(ClientConfig(address=address))

    def make() -> Callable[[str], None]:
        return lambda text: client.predict(model_name, [text], output_filter=_OUTPUTS)
    return make


def sequential(name: str, make: Callable[[], Callable[[str], None]], texts: Sequence[str], requests: int,
               warmup: int) -> Latencies:
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


def concurrent(name: str, make: Callable[[], Callable[[str], None]], texts: Sequence[str], clients: int,
               seconds: float) -> Latencies:
    """Closed loop: each client sends its next request as soon as the last one returns."""
    samples: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        call, i = make(), offset
        mine, failed = [], 0
        while time.perf_counter() < stop_at:
            begin = time.perf_counter()
            try:
                call(texts[i % len(texts)])
                mine.append((time.perf_counter() - begin) * 1000)
            except Exception:
                failed += 1
            i += clients
        with lock:
            samples.extend(mine)
            errors[0] += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Latencies(name, time.perf_counter() - started, samples, errors[0])


# -- the run ----------------------------------------------------------------------------------


def run(app_config: AppConfig, config_path: Path, bench: BenchmarkConfig, model_base_path: Path | None,
        log: TextIO) -> dict:
    if bench.data is not None and not bench.data.is_file():
        raise FileNotFoundError(f"validation data not found: {bench.data}")
    data = bench.data or default_data_path()
    rows = validation_rows(data) if data.is_file() else []  # the default may be absent: skip quality then
    texts = [row.text for row in rows] or list(SAMPLE_MESSAGES)
    report: dict = {"config": dataclasses.asdict(bench) | {"data": str(data) if rows else None}}
    with tempfile.TemporaryDirectory(prefix="cs-bench-") as tmp:
        workdir = Path(tmp)
        started: list[_Process] = []
        try:
            address = app_config.server.address
            if model_base_path is not None:
                print(f"starting the model server on {model_base_path} ...", file=log, flush=True)
                server, address = start_model_server(model_base_path, app_config.server.model_name, workdir)
                started.append(server)
            print(f"starting the app against {address} ...", file=log, flush=True)
            app, port = start_app(config_path, address, workdir)
            started.append(app)

            print("one message at a time ...", file=log, flush=True)
            model = app_config.server.model_name
            direct = sequential("grpc_direct", grpc_caller(address, model), texts, bench.single_requests,
                                bench.warmup_requests)
            through_app = sequential("http_app", http_caller(port), texts, bench.single_requests,
                                     bench.warmup_requests)
            report["single"] = {"server": direct.summary(), "app": through_app.summary()}
            report["single"]["overhead_ratio_p50"] = round(
                report["single"]["app"]["p50_ms"] / report["single"]["server"]["p50_ms"], 2)
            report["single"]["overhead_ratio_p99"] = round(
                report["single"]["app"]["p99_ms"] / report["single"]["server"]["p99_ms"], 2)

            print(f"{bench.clients} concurrent clients for {bench.seconds:.0f}s each ...", file=log, flush=True)
            load_direct = concurrent("grpc_direct", grpc_caller(address, model), texts, bench.clients, bench.seconds)
            load_app = concurrent("http_app", http_caller(port), texts, bench.clients, bench.seconds)
            report["concurrent"] = {"clients": bench.clients, "server": load_direct.summary(),
                                    "app": load_app.summary()}

            if rows:
                print(f"accuracy and coverage on {len(rows)} validation messages ...", file=log, flush=True)
                server_config = dataclasses.replace(with_server_address(app_config, address).server,
                                                    deadline_seconds=60.0)
                with IntentClassifier(server_config) as classifier:
                    tuning = tune(classifier, rows, bench.target_precision)
                result = tuning.result
                report["quality"] = {"model_version": tuning.model_version, "messages": result.messages,
                                     "accuracy": round(result.accuracy, 4),
                                     "target_precision": bench.target_precision,
                                     "threshold": round(result.threshold, 4),
                                     "coverage": round(result.coverage, 4),
                                     "precision": round(result.precision, 4), "reached": result.reached}
        finally:
            for process in reversed(started):
                process.stop()
    return report


def print_report(report: dict, out: TextIO) -> None:
    single = report["single"]
    print("\nOne message, sequential (ms):", file=out)
    for key in ("server", "app"):
        s = single[key]
        print(f"  {s['name']:<12} p50 {s['p50_ms']:8.2f}  p99 {s['p99_ms']:8.2f}  ({s['requests']} requests)", file=out)
    print(f"  app / server: p50 x{single['overhead_ratio_p50']}, p99 x{single['overhead_ratio_p99']}", file=out)
    load = report["concurrent"]
    print(f"\n{load['clients']} concurrent clients:", file=out)
    for key in ("server", "app"):
        s = load[key]
        print(f"  {s['name']:<12} {s['throughput_rps']:8.1f} req/s  p50 {s['p50_ms']:8.2f}  p99 {s['p99_ms']:8.2f}"
              f"  errors {s['errors']}", file=out)
    if "quality" in report:
        q = report["quality"]
        print(f"\nValidation split ({q['messages']} messages, model v{q['model_version']}): accuracy "
              f"{q['accuracy']:.2%}; at {q['target_precision']:.0%} precision: threshold {q['threshold']:.3f}, "
              f"coverage {q['coverage']:.2%} (precision {q['precision']:.2%})", file=out)
    else:
        print("\nno validation data found: accuracy and coverage skipped (--data)", file=out)


def run_from_args(args: argparse.Namespace, app_config: AppConfig, out: TextIO) -> int:
    bench = BenchmarkConfig(single_requests=args.single_requests, clients=args.clients, seconds=args.seconds,
                            warmup_requests=args.warmup_requests, target_precision=args.target_precision,
                            data=args.data)
    report = run(app_config, args.config, bench, args.model_base_path, sys.stderr)
    if args.json:
        print(json.dumps(report), file=out)
    else:
        print_report(report, out)
    return 0
