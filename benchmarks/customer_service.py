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

    python -m benchmarks customer_service --model-base-path /work/fulltrain/models/intent \\
        --clients 16 --seconds 30
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from apps.customer_service.config import DEFAULT_CONFIG_PATH, AppConfig, load_config, with_server_address
from apps.customer_service.tuning import default_data_path, tune, validation_rows
from benchmarks.command import parse_args, write_report
from benchmarks.loadgen import CallerFactory, closed_loop, load_line, sequential
from serving.launcher import ModelServerProcess, ServerProcess, batching_flags, free_port

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks customer_service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="the app's YAML config "
                        "(default: packaged)")
    parser.add_argument("--server", help="model server host:port, overriding the config")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines")
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
    return parser


def start_model_server(model_base_path: Path, model_name: str, workdir: Path) -> ModelServerProcess:
    """``python -m serving`` on the model, batching on as deployed, once the model is available."""
    return ModelServerProcess([f"--model_name={model_name}", f"--model_base_path={model_base_path}",
                               *batching_flags()], workdir / "model_server.log", models=(model_name,)).start()


def start_app(config_path: Path, server_address: str, workdir: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess([sys.executable, "-m", "apps.customer_service", "--config", str(config_path),
                          "--server", server_address, "serve", "--host", "127.0.0.1", "--port", str(port)],
                         port, workdir / "app.log", what="the app", stop_timeout_seconds=30).start()


# -- load -------------------------------------------------------------------------------------


def http_caller(port: int) -> CallerFactory:
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


def grpc_caller(address: str, model_name: str) -> CallerFactory:
    """The same Predict request the app sends, straight to the server (one shared channel)."""
    from apps.customer_service.classifier import _OUTPUTS
    from serving.client import ClientConfig, ServingClient

    client = ServingClient(ClientConfig(address=address))

    def make() -> Callable[[str], None]:
        def call(text: str) -> None:
            client.predict(model_name, [text], output_filter=_OUTPUTS)
        return call
    return make


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
        started: list[ServerProcess] = []
        try:
            address = app_config.server.address
            if model_base_path is not None:
                print(f"starting the model server on {model_base_path} ...", file=log, flush=True)
                server = start_model_server(model_base_path, app_config.server.model_name, workdir)
                started.append(server)
                address = server.grpc_address
            print(f"starting the app against {address} ...", file=log, flush=True)
            app = start_app(config_path, address, workdir)
            started.append(app)
            port = app.port

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
            load_direct = closed_loop("grpc_direct", grpc_caller(address, model), texts, bench.clients,
                                      bench.seconds)
            load_app = closed_loop("http_app", http_caller(port), texts, bench.clients, bench.seconds)
            report["concurrent"] = {"clients": bench.clients, "server": load_direct.summary(),
                                    "app": load_app.summary()}

            if rows:
                print(f"accuracy and coverage on {len(rows)} validation messages ...", file=log, flush=True)
                server_config = dataclasses.replace(with_server_address(app_config, address).server,
                                                    deadline_seconds=60.0)
                from apps.customer_service.classifier import IntentClassifier

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
        print(load_line(load[key]), file=out)
    if "quality" in report:
        q = report["quality"]
        print(f"\nValidation split ({q['messages']} messages, model v{q['model_version']}): accuracy "
              f"{q['accuracy']:.2%}; at {q['target_precision']:.0%} precision: threshold {q['threshold']:.3f}, "
              f"coverage {q['coverage']:.2%} (precision {q['precision']:.2%})", file=out)
    else:
        print("\nno validation data found: accuracy and coverage skipped (--data)", file=out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parse_args(build_parser(), argv)
    app_config = load_config(args.config)
    if args.server:
        app_config = with_server_address(app_config, args.server)
    bench = BenchmarkConfig(single_requests=args.single_requests, clients=args.clients, seconds=args.seconds,
                            warmup_requests=args.warmup_requests, target_precision=args.target_precision,
                            data=args.data)
    report = run(app_config, args.config, bench, args.model_base_path, sys.stderr)
    return write_report(report, args.json, print_report, out)


if __name__ == "__main__":
    sys.exit(main())
