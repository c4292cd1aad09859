"""Servers started as child processes on free loopback ports: the one way the benchmarks, tests and
scripts start ``python -m serving`` (or an app's server) and stop it again.

- :func:`free_port`: a TCP port on 127.0.0.1 that nothing listens on right now;
- :class:`ServerProcess`: a command that listens on a loopback port, its output in a log file;
  started, waited for (until the port answers, or an error with its exit code and the log's tail),
  stopped (SIGTERM, then kill); a context manager;
- :class:`ModelServerProcess`: ``python -m serving`` with the given flags on free gRPC and REST ports,
  started once its models are available;
- :func:`batching_flags`: the flags that turn batching on as deployed (``infra/serving/batching.config``).

Example::

    flags = ["--model_name=intent", "--model_base_path=/models/intent", *batching_flags()]
    with ModelServerProcess(flags, models=("intent",)) as server:
        ...  # server.grpc_address, server.rest_address, server.cpu_seconds()

Loads nothing heavy: the gRPC client is imported only by :meth:`ModelServerProcess.wait_until_available`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Self

REPO = Path(__file__).resolve().parents[1]
INFRA_SERVING = REPO / "infra" / "serving"
LOOPBACK = "127.0.0.1"

__all__ = ["DEPLOYED_THREAD_FLAGS", "INFRA_SERVING", "LOOPBACK", "REPO", "ModelServerProcess", "ServerProcess",
           "batching_flags", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


# infra/serving/deployment.yaml's thread pools: one core per batch thread (num_batch_threads 2).
DEPLOYED_THREAD_FLAGS = ("--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=2")


def batching_flags(parameters_file: Path = INFRA_SERVING / "batching.config") -> list[str]:
    """``--enable_batching`` with the deployed BatchingParameters (or ``parameters_file``) and the
    deployment's thread pools (:data:`DEPLOYED_THREAD_FLAGS`), which that batching is sized for."""
    return ["--enable_batching", f"--batching_parameters_file={parameters_file}", *DEPLOYED_THREAD_FLAGS]


class ServerProcess:
    """``command`` run from ``cwd`` (the repository by default) until :meth:`stop`, listening on ``port``.

    Its stdout and stderr go to ``log_path`` (a temporary file, removed on :meth:`stop`, if not given).
    """

    def __init__(self, command: Sequence[str], port: int, log_path: Path | None = None, *, what: str = "the server",
                 cwd: Path = REPO, env: Mapping[str, str] | None = None, stop_timeout_seconds: float = 60.0) -> None:
        self.command, self.port, self.what = list(command), port, what
        self._cwd, self._env, self._stop_timeout = cwd, env, stop_timeout_seconds
        self._own_log = log_path is None
        self.log_path = log_path
        self._log: IO[str] | None = None
        self._process: subprocess.Popen | None = None

    @property
    def process(self) -> subprocess.Popen:
        if self._process is None:
            raise RuntimeError(f"{self.what} is not started")
        return self._process

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout_seconds: float = 180.0) -> Self:
        """Starts the command; returns once its port answers (see :meth:`wait_for_port`)."""
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="server-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self._log = open(self.log_path, "w")
        env = None if self._env is None else {**os.environ, **self._env}
        self._process = subprocess.Popen(self.command, cwd=self._cwd, env=env, stdout=self._log,
                                         stderr=subprocess.STDOUT)
        try:
            self.wait_for_port(self.port, timeout_seconds)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for_port(self, port: int, timeout_seconds: float = 180.0) -> None:
        """Returns once 127.0.0.1:``port`` accepts connections; raises, with the log's tail, if the
        process exits first or the port stays closed for ``timeout_seconds``."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.what} exited with code {self.process.returncode} before listening on "
                                   f"port {port}; its output ends:\n{self.log_tail()}")
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{self.what} did not listen on port {port} within {timeout_seconds:.0f}s; "
                           f"its output ends:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        if self._log is not None:
            self._log.flush()
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux ``/proc``)."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """The process's resident memory now, in MiB (Linux ``/proc``); NaN if it reports none."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int | None:
        """SIGTERM (the model server drains in-flight requests), kill after the stop timeout; the exit code."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None
        return None if process is None else process.returncode

    def __enter__(self) -> Self:
        return self if self._process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ModelServerProcess(ServerProcess):
    """``python -m <module>`` (the model server by default) with ``flags`` (tensorflow_model_server's,
    see :mod:`serving.cli`) on free loopback ports: gRPC, and REST unless ``rest`` is false.

    :meth:`start` returns once the ports answer and each of ``models`` has an AVAILABLE version.
    ``module`` may be another command that takes the server's ``--port``, ``--rest_api_port`` and
    ``--bind_address`` flags (the REST-front benchmark's child does).
    """

    def __init__(self, flags: Sequence[str], log_path: Path | None = None, *, models: Sequence[str] = (),
                 rest: bool = True, module: str = "serving", env: Mapping[str, str] | None = None,
                 stop_timeout_seconds: float = 60.0) -> None:
        self.models = tuple(models)
        self.grpc_port = free_port()
        self.rest_port = free_port() if rest else None
        ports = [f"--port={self.grpc_port}", f"--bind_address={LOOPBACK}"]
        if self.rest_port is not None:
            ports.append(f"--rest_api_port={self.rest_port}")
        super().__init__([sys.executable, "-m", module, *flags, *ports], self.grpc_port, log_path,
                         what=f"python -m {module}", env=env, stop_timeout_seconds=stop_timeout_seconds)

    @property
    def grpc_address(self) -> str:
        return self.address

    @property
    def rest_address(self) -> str | None:
        return None if self.rest_port is None else f"{LOOPBACK}:{self.rest_port}"

    def start(self, timeout_seconds: float = 600.0) -> Self:
        """Returns once the gRPC port (and the REST one) answers and ``models`` are available."""
        super().start(timeout_seconds)
        try:
            if self.rest_port is not None:
                self.wait_for_port(self.rest_port, timeout_seconds)
            for model in self.models:
                self.wait_until_available(model, timeout_seconds)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_available(self, model: str, timeout_seconds: float = 300.0) -> int:
        """The newest AVAILABLE version of ``model``, once there is one."""
        from serving.client import ClientConfig, ServingClient

        with ServingClient(ClientConfig(address=self.grpc_address)) as client:
            return client.wait_until_available(model, timeout_seconds=timeout_seconds)
