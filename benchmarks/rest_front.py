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

    python -m benchmarks rest_front --model_path work/models/intent/1 --clients 16 --seconds 20 --rounds 3
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from benchmarks.loadgen import closed_loop
from benchmarks.serving import DEFAULT_DATA, INFRA_BATCHING, base_path_for, read_texts
from serving.launcher import ModelServerProcess, free_port

FRONTS = ("uvicorn", "stdlib", "stdlib_nodelay")


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

    def __init__(self, routes, port: int, nodelay: bool) -> None:
        self.routes = routes
        handler = type("Handler", (_LegacyHandler,), {"disable_nagle_algorithm": nodelay})
        super().__init__(("127.0.0.1", port), handler)


def _legacy_flag(name: str) -> str:
    return f"--{name}_port"


def serve(argv: Sequence[str]) -> None:
    """The child process: one model server (``argv``: its flags) and the old fronts on the ports given
    by ``--stdlib_port`` and ``--stdlib_nodelay_port``; runs until SIGTERM."""
    from serving.cli import parse_flags
    from serving.server import ModelServer

    parser = argparse.ArgumentParser(prog="python -m benchmarks.rest_front serve", allow_abbrev=False)
    for name in FRONTS[1:]:
        parser.add_argument(_legacy_flag(name), type=int, required=True)
    ports, flags = parser.parse_known_args(argv)
    server = ModelServer(parse_flags(flags)).start()
    legacy = [_LegacyServer(server.rest_routes, getattr(ports, f"{name}_port"), nodelay=name.endswith("nodelay"))
              for name in FRONTS[1:]]
    for front in legacy:
        threading.Thread(target=front.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    for front in legacy:
        front.shutdown()
    server.stop(drain_timeout_seconds=5)


# -- the load ----------------------------------------------------------------------------------


class RestClient:
    """One client's keep-alive connection, POSTing ``{"instances": [text]}`` (reconnecting after a failure)."""

    def __init__(self, port: int, model_name: str) -> None:
        self._port = port
        self._path = f"/v1/models/{model_name}:predict"
        self._connection: http.client.HTTPConnection | None = None

    @classmethod
    def factory(cls, port: int, model_name: str) -> Callable[[], RestClient]:
        """Makes one client (one connection) per load-generator client."""
        return lambda: cls(port, model_name)

    def __call__(self, text: str) -> None:
        connection = self._connection
        if connection is None:
            connection = self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=60)
        try:
            connection.request("POST", self._path, json.dumps({"instances": [text]}),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self._connection = None
            connection.close()
            raise
        if response.status != 200 or b"predictions" not in body:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")


def run(config: RestBenchmarkConfig) -> dict:
    texts = read_texts(config.data)
    legacy_ports = {name: free_port() for name in FRONTS[1:]}
    with tempfile.TemporaryDirectory(prefix="rest-benchmark-") as tmp:
        flags = [f"--model_name={config.model_name}",
                 f"--model_base_path={base_path_for(config.model_path, Path(tmp))}", "--enable_batching",
                 f"--batching_parameters_file={config.batching_parameters_file}",
                 "--tensorflow_intra_op_parallelism=1",
                 *(f"{_legacy_flag(name)}={port}" for name, port in legacy_ports.items())]
        with ModelServerProcess(["serve", *flags], Path(tmp) / "server.log", module="benchmarks.rest_front") as server:
            for port in legacy_ports.values():
                server.wait_for_port(port)
            assert server.rest_port is not None
            ports = {"uvicorn": server.rest_port, **legacy_ports}
            clients = {name: RestClient.factory(port, config.model_name) for name, port in ports.items()}
            for name, client in clients.items():
                closed_loop(f"{name} warm-up", client, texts, config.clients, config.warmup_seconds)
            rounds = []
            for index in range(config.rounds):
                order = FRONTS[index % len(FRONTS):] + FRONTS[:index % len(FRONTS)]
                results = {name: closed_loop(name, clients[name], texts, config.clients, config.seconds)
                           for name in order}
                rounds.append({name: results[name].summary() for name in FRONTS})
    return report(config, rounds)


def report(config: RestBenchmarkConfig, rounds: Sequence[dict]) -> dict:
    """Per-round figures, and the new front's ratios to each old one on the median round."""
    def ratios(round_: dict, old: str) -> dict:
        new, was = round_["uvicorn"], round_[old]
        return {"throughput": round(new["throughput_rps"] / was["throughput_rps"], 3),
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
            print(f"  {name:15s} {phase['throughput_rps']:8.1f} req/s  p50 {phase['p50_ms']:6.1f} ms  "
                  f"p99 {phase['p99_ms']:6.1f} ms  errors {phase['errors']}")
    for name, verdict in result["targets"].items():
        print(f"{name}: throughput x{verdict['throughput']}, p99 x{verdict['p99']} (median round) -> "
              f"{'met' if verdict['met'] else 'NOT met'} (target: throughput >= 0.9, p99 <= 1.1)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # the child process run() starts
        serve(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks rest_front", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["run"], default="run")
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
