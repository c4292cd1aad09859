"""The REST predict path on the suite's HTTP server against the ``http.server`` one it replaced.

One server process loads the model once (batching on, as deployed) and
serves the same :class:`serving.rest_api.RestRoutes` behind three HTTP
fronts on three ports:

- ``uvicorn``: what the server runs (:mod:`serving.http_server`);
- ``stdlib``: the ``ThreadingHTTPServer`` front as it was (a thread per
  connection, headers and body in two writes, Nagle's algorithm on);
- ``stdlib_nodelay``: the same with Nagle off, the fairest old baseline.

Closed-loop clients on keep-alive connections send one text per request
(``{"instances": [text]}``); each round runs every front for ``--seconds``,
in a rotating order (this machine's speed drifts from minute to minute), and
the report gives throughput, p50 and p99 per front and round, and the new
server's ratios to each old one on the median round.  Target: throughput at
least 0.9 of the old, p99 at most 1.1 of it.

Not part of the tests (a scaled-down run is): it prints numbers.  Example::

    python -m serving.rest_benchmark --model_path work/models/intent/1 --clients 16 --seconds 20 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from serving.benchmark import (
    DEFAULT_DATA,
    INFRA_BATCHING,
    REPO,
    _base_path_for,
    closed_loop,
    read_texts,
)

FRONTS = ("uvicorn", "stdlib", "stdlib_nodelay")
_PORTS_LINE = "rest-benchmark ports: "


@dataclass(frozen=True)
class RestBenchmarkConfig:
    model_path: Path
    model_name: str = "intent"
    data: Path = DEFAULT_DATA
    clients: int = 16
    seconds: float = 20.0
    warmup_seconds: float = 5.0
    rounds: int = 3
    batching_parameters_file: Path = INFRA_BATCHING


# -- the old front --------------------------------------------------------------------------


class _LegacyHandler(BaseHTTPRequestHandler):
    """The REST API's ``http.server`` handler before it moved to uvicorn (reading, routing, writing)."""

    protocol_version = "HTTP/1.1"
    server: _LegacyServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.server.routes.answer(method, self.path.split("?", 1)[0], body, "benchmark")
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args) -> None:
        pass


class _LegacyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, routes, nodelay: bool) -> None:
        self.routes = routes
        handler = type("Handler", (_LegacyHandler,), {"disable_nagle_algorithm": nodelay})
        super().__init__(("127.0.0.1", 0), handler)


def serve(model_path: Path, model_name: str, batching_file: Path) -> None:
    """The child process: one model server, three REST fronts; prints their ports, runs until SIGTERM."""
    from serving.cli import parse_flags
    from serving.server import ModelServer

    workdir = Path(tempfile.mkdtemp(prefix="rest-benchmark-"))
    options = parse_flags([
        f"--model_name={model_name}", f"--model_base_path={_base_path_for(model_path, workdir)}",
        "--port=0", "--bind_address=127.0.0.1", "--enable_batching",
        f"--batching_parameters_file={batching_file}", "--tensorflow_intra_op_parallelism=1",
    ])
    options = dataclasses.replace(options, endpoints=dataclasses.replace(options.endpoints, rest_port=0))
    server = ModelServer(options).start()
    legacy = {name: _LegacyServer(server.rest_routes, nodelay=name.endswith("nodelay")) for name in FRONTS[1:]}
    for front in legacy.values():
        threading.Thread(target=front.serve_forever, daemon=True).start()
    ports = {"uvicorn": server.rest_port, **{name: front.server_address[1] for name, front in legacy.items()}}
    print(_PORTS_LINE + json.dumps(ports), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    for front in legacy.values():
        front.shutdown()
    server.stop(drain_timeout_seconds=5)


# -- the load ----------------------------------------------------------------------------------


class RestClient:
    """One keep-alive connection per client thread, POSTing ``{"instances": [text]}``."""

    def __init__(self, port: int, model_name: str) -> None:
        self._port = port
        self._path = f"/v1/models/{model_name}:predict"
        self._local = threading.local()

    def __call__(self, text: str) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=60)
        try:
            connection.request("POST", self._path, json.dumps({"instances": [text]}),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self._local.connection = None
            connection.close()
            raise
        if response.status != 200 or b"predictions" not in body:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")


def run(config: RestBenchmarkConfig) -> dict:
    texts = read_texts(config.data)
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.rest_benchmark", "serve", f"--model_path={config.model_path}",
         f"--model_name={config.model_name}", f"--batching_parameters_file={config.batching_parameters_file}"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        ports = _read_ports(process)
        clients = {name: RestClient(port, config.model_name) for name, port in ports.items()}
        for name, client in clients.items():
            closed_loop(f"{name} warm-up", client, texts, config.clients, config.warmup_seconds)
        rounds = []
        for index in range(config.rounds):
            order = FRONTS[index % len(FRONTS):] + FRONTS[:index % len(FRONTS)]
            results = {name: closed_loop(name, clients[name], texts, config.clients, config.seconds) for name in order}
            rounds.append({name: results[name].summary() for name in FRONTS})
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return report(config, rounds)


def _read_ports(process: subprocess.Popen) -> dict[str, int]:
    for line in process.stdout:  # type: ignore[union-attr]
        if line.startswith(_PORTS_LINE):
            return json.loads(line[len(_PORTS_LINE):])
    raise SystemExit(f"the benchmark server exited ({process.wait()}) before listening")


def report(config: RestBenchmarkConfig, rounds: Sequence[dict]) -> dict:
    """Per-round figures, and the new front's ratios to each old one on the median round."""
    def ratios(round_: dict, old: str) -> dict:
        new, was = round_["uvicorn"], round_[old]
        return {"throughput": round(new["throughput_per_s"] / was["throughput_per_s"], 3),
                "p99": round(new["p99_ms"] / was["p99_ms"], 3)}

    verdicts = {}
    for old in FRONTS[1:]:
        per_round = [ratios(r, old) for r in rounds]
        median = per_round[int(np.argsort([r["throughput"] for r in per_round])[len(per_round) // 2])]
        verdicts[f"uvicorn_vs_{old}"] = {**median, "met": median["throughput"] >= 0.9 and median["p99"] <= 1.1,
                                         "rounds": per_round}
    return {"config": {"clients": config.clients, "seconds": config.seconds, "rounds": config.rounds,
                       "model_path": str(config.model_path)},
            "rounds": list(rounds), "targets": verdicts}


def print_report(result: dict) -> None:
    for index, round_ in enumerate(result["rounds"], 1):
        print(f"round {index}:")
        for name, phase in round_.items():
            print(f"  {name:15s} {phase['throughput_per_s']:8.1f} req/s  p50 {phase['p50_ms']:6.1f} ms  "
                  f"p99 {phase['p99_ms']:6.1f} ms  errors {phase['errors']}")
    for name, verdict in result["targets"].items():
        print(f"{name}: throughput x{verdict['throughput']}, p99 x{verdict['p99']} (median round) -> "
              f"{'met' if verdict['met'] else 'NOT met'} (target: throughput >= 0.9, p99 <= 1.1)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.rest_benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["run", "serve"], default="run")
    parser.add_argument("--model_path", type=Path, required=True, help="a version dir or a model base path")
    parser.add_argument("--model_name", default="intent")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV with a 'text' column")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="per front and round")
    parser.add_argument("--warmup_seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batching_parameters_file", type=Path, default=INFRA_BATCHING)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.model_path, args.model_name, args.batching_parameters_file)
        return 0
    result = run(RestBenchmarkConfig(
        model_path=args.model_path, model_name=args.model_name, data=args.data, clients=args.clients,
        seconds=args.seconds, warmup_seconds=args.warmup_seconds, rounds=args.rounds,
        batching_parameters_file=args.batching_parameters_file))
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
