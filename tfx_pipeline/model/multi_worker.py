"""Multi-worker training: `run_fn` in N processes joined by TF_CONFIG.

`training.distribution.strategy: multi_worker_mirrored` trains with
`tf.distribute.MultiWorkerMirroredStrategy`, whose cluster comes from
TF_CONFIG (gRPC between the workers). On Kubernetes each pod of an indexed
Job is one worker (`infra/pipeline/multi_worker_trainer.yaml`); on one
machine `training.distribution.workers: N` makes the Trainer start N local
worker processes on loopback ports (`LocalWorkers`).

Worker 0 is the chief: it writes the model, the run log and the backup the
Trainer reads, and its success is the run's. The others write theirs under
`worker-<i>/` in the Trainer's execution directory, as TensorFlow's
multi-worker guide has non-chief workers save to their own place. When a
worker dies the others cannot go on (every step all-reduces), so the launcher
stops them all and starts the set again; each worker resumes from its last
epoch backup (keras.callbacks.BackupAndRestore), the same epoch
on every worker since they back up in lockstep.

Example:

>>> tf_config(["127.0.0.1:2222", "127.0.0.1:2223"], 1)["task"]
{'type': 'worker', 'index': 1}
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tfx_pipeline.config import ConfigError
from tfx_pipeline.dsl import PipelineError

ARGS_FILE = "trainer_args.pkl"
_POLL_SECONDS = 0.5


def tf_config(addresses: Sequence[str], index: int) -> dict[str, Any]:
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}


def tf_config_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """TF_CONFIG as given, or built for a Kubernetes indexed Job from
    `TRAINER_WORKER_HOSTS` (host:port, comma-separated) and `JOB_COMPLETION_INDEX`."""
    if environ.get("TF_CONFIG"):
        return json.loads(environ["TF_CONFIG"])
    hosts, index = environ.get("TRAINER_WORKER_HOSTS"), environ.get("JOB_COMPLETION_INDEX")
    if not hosts or index is None:
        raise PipelineError("a multi-worker training process needs TF_CONFIG, or TRAINER_WORKER_HOSTS and "
                            "JOB_COMPLETION_INDEX (a Kubernetes indexed Job)")
    return tf_config(hosts.split(","), int(index))


def for_worker(args, index: int):
    """The chief's arguments as given; another worker's outputs in `worker-<index>/` beside the
    chief's backup (not inside it: the chief deletes its backup when training ends)."""
    if index == 0:
        return args
    own = args.backup_dir.parent / f"worker-{index}"
    return dataclasses.replace(args, serving_model_dir=own / "model", backup_dir=own / "backup",
                               model_run_dir=own / "model_run")


def free_loopback_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclasses.dataclass
class WorkerProcess:
    index: int
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


class LocalWorkers:
    """Runs `run_fn(args)` as `workers` processes on loopback ports; starts
    the whole set again, up to `max_restarts` times, when one of them fails."""

    def __init__(self, args, workers: int, work_dir: Path, max_restarts: int = 2):
        strategy = args.training.distribution.strategy
        if strategy != "multi_worker_mirrored":
            raise ConfigError(f"training.distribution.workers={workers} needs training.distribution.strategy: "
                              f"multi_worker_mirrored, not {strategy!r}")
        if workers < 2:
            raise ConfigError(f"training.distribution.workers={workers}: local multi-worker training "
                                "needs at least 2 workers")
        self.args, self.workers, self.work_dir, self.max_restarts = args, workers, work_dir, max_restarts

    def run(self) -> dict[str, Any]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        args_path = self.work_dir / ARGS_FILE
        args_path.write_bytes(pickle.dumps(self.args))
        summary_path = self.work_dir / "chief_summary.json"
        failed: WorkerProcess | None = None
        for attempt in range(self.max_restarts + 1):
            summary_path.unlink(missing_ok=True)
            failed = self._run_once(args_path, summary_path, attempt)
            if failed is None:
                for index in range(1, self.workers):  # The other workers' copies of what the chief wrote.
                    shutil.rmtree(for_worker(self.args, index).backup_dir.parent, ignore_errors=True)
                return {**json.loads(summary_path.read_text()), "workers": self.workers, "restarts": attempt}
        assert failed is not None
        raise PipelineError(f"multi-worker training: worker {failed.index} failed (exit status "
                            f"{failed.process.returncode}) {self.max_restarts + 1} times; its log "
                            f"{failed.log_path} ends:\n{failed.log_tail()}")

    def _run_once(self, args_path: Path, summary_path: Path, attempt: int) -> WorkerProcess | None:
        """Starts every worker; returns the first that failed (the rest stopped), or None."""
        addresses = [f"127.0.0.1:{port}" for port in free_loopback_ports(self.workers)]
        processes = [self._start(index, addresses, args_path, summary_path, attempt) for index in range(self.workers)]
        try:
            while True:
                # The chief's success is the run's: the others' copies are thrown away, and a worker
                # still exporting may fail once the chief has exited.
                if processes[0].process.poll() == 0:
                    return None
                failed = next((w for w in processes if w.process.poll() not in (None, 0)), None)
                if failed is not None:
                    return failed
                time.sleep(_POLL_SECONDS)
        finally:
            for worker in processes:
                if worker.process.poll() is None:
                    worker.process.kill()
                worker.process.wait()

    def _start(self, index: int, addresses: list[str], args_path: Path, summary_path: Path,
               attempt: int) -> WorkerProcess:
        log_path = self.work_dir / f"worker-{index}.attempt-{attempt}.log"
        command = [sys.executable, "-m", "tfx_pipeline", "train-worker", "--trainer-args", str(args_path),
                   f"--task-index={index}"]
        if index == 0:
            command += ["--summary", str(summary_path)]
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config(addresses, index))}
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        return WorkerProcess(index, process, log_path)


def run_worker(args_path: Path, summary_path: Path | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """One worker: TF_CONFIG from `environ`, then `run_fn` on its share of the cluster."""
    config = tf_config_from_environment(environ)
    os.environ["TF_CONFIG"] = json.dumps(config)  # Before TensorFlow reads it.
    from tfx_pipeline.model.training import run_fn

    args = for_worker(pickle.loads(args_path.read_bytes()), int(config["task"]["index"]))
    summary = run_fn(args)
    if summary_path is not None:
        summary_path.write_text(json.dumps(summary))
    return summary
