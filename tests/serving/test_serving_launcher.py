"""serving.launcher with stand-in commands (no model, no TensorFlow): it waits for the port, names a
command that died before listening with its output's tail, and stops what it started."""

from __future__ import annotations

import socket
import sys

import pytest

from serving.launcher import ModelServerProcess, ServerProcess, free_port


def test_start_returns_once_the_port_answers_and_stop_terminates_the_process(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with ServerProcess([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], port, log) as server:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert server.address == f"127.0.0.1:{port}" and server.cpu_seconds() >= 0 and server.rss_mb() > 0
    assert server.process.poll() is not None  # SIGTERM ended it
    assert log.exists()  # a log it was given is kept


def test_a_command_that_exits_before_listening_is_reported_with_its_output(tmp_path):
    command = [sys.executable, "-c", "import sys; print('no model here', file=sys.stderr); sys.exit(3)"]
    server = ServerProcess(command, free_port(), what="the stand-in")
    with pytest.raises(RuntimeError, match=r"(?s)the stand-in exited with code 3 before listening.*no model here"):
        server.start(timeout_seconds=30)
    assert server.log_path is None  # its own temporary log is removed


def test_the_model_server_gets_free_loopback_ports_after_its_own_flags():
    server = ModelServerProcess(["--model_name=intent"], rest=False)
    assert server.command[1:4] == ["-m", "serving", "--model_name=intent"]
    assert f"--port={server.grpc_port}" in server.command and "--bind_address=127.0.0.1" in server.command
    assert server.rest_address is None and not any(flag.startswith("--rest_api_port") for flag in server.command)
    with_rest = ModelServerProcess([])
    assert with_rest.rest_address == f"127.0.0.1:{with_rest.rest_port}" != with_rest.grpc_address
