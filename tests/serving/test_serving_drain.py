"""SIGTERM: the server (a real `python -m serving` process) drains, then exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request

import grpc
import serving_saved_models as saved_models
from conftest import INFRA, REPO, free_port, wait_for

from serving.client import ClientConfig, RetryPolicy, ServingClient, ServingRpcError

IN_FLIGHT = 4


def queue_depth(rest_port: int) -> float:
    url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("serving_batch_queue_depth{") and 'model="intent"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sigterm_drains_in_flight_requests_then_exits(exports, tmp_path):
    saved_models.publish_version(exports.intent_v1, tmp_path / "intent", 1)
    batching = tmp_path / "batching.config"
    # Requests wait up to 3 s for company, so they are reliably in flight at SIGTERM.
    batching.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 3000000 }\n"
                        "num_batch_threads { value: 1 }\n")
    grpc_port, rest_port = free_port(), free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "serving",
                f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--bind_address=127.0.0.1",
                "--model_name=intent", f"--model_base_path={tmp_path / 'intent'}",
                "--enable_batching", f"--batching_parameters_file={batching}",
                f"--monitoring_config_file={INFRA / 'monitoring.config'}",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    client = ServingClient(ClientConfig(address=f"127.0.0.1:{grpc_port}", timeout_seconds=60,
                                        retry=RetryPolicy(max_attempts=1)))
    try:
        waiting = ServingClient(ClientConfig(address=f"127.0.0.1:{grpc_port}",
                                             retry=RetryPolicy(max_attempts=200, max_backoff_seconds=0.5)))
        waiting.wait_until_available("intent", timeout_seconds=120)
        waiting.close()

        results: list[object] = []

        def call(index: int) -> None:
            try:
                results.append(client.predict("intent", [f"request {index}"]))
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                results.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        wait_for(lambda: queue_depth(rest_port) == IN_FLIGHT, what="requests queued")

        process.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                client.predict("intent", ["after SIGTERM"], timeout=30)
                return False  # admitted before draining began: fine, it was answered
            except ServingRpcError as exc:
                assert exc.code == grpc.StatusCode.UNAVAILABLE, exc
                return True

        wait_for(refused, what="new requests refused")
        for thread in threads:
            thread.join(60)
        assert len(results) == IN_FLIGHT
        assert all(not isinstance(r, Exception) for r in results), results
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "draining" in log_path.read_text()

