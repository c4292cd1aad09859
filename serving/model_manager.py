"""Model versions: discovery, loading, warm-up, states and safe retirement.

For every configured model the manager watches ``base_path`` for numbered
version directories (anything else -- such as a pusher's temp dir before its
atomic rename -- is ignored), asks the version policy which of them to serve,
and loads those in background threads.  A version becomes AVAILABLE only
after its warm-up requests succeed.  Like TF Serving's availability-
preserving policy, a version that is no longer wanted is retired only once a
wanted version is AVAILABLE (or nothing is wanted any more), and it is
unloaded only after the requests holding it have finished.

Bad deploys heal without an operator:

- a version is loaded only once its directory has settled: its files
  unchanged since the previous look, or, at first sight, none modified in
  the last :data:`SETTLE_SECONDS`; so a plain ``cp -r`` into the base path
  is picked up once the copy is complete;
- a version that fails to load is kept in END state with its error (in
  GetModelStatus and the ``serving_model_version_load_error`` metric) and
  tried again ``max_num_load_retries`` times, ``load_retry_interval`` apart
  (TF Serving's flags and defaults), and afresh whenever its files change;
- the policy chooses among the versions that have not failed, so with the
  newest version broken the newest one that loads is served, at start-up
  too; start-up fails only when a model has no version to serve at all.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from serving import errors
from serving.config import ModelConfig
from serving.errors import ServingError
from serving.metrics import ServerMetrics
from serving.options import ModelSourceOptions
from serving.servable import Servable
from serving.warmup import run_warmup

log = logging.getLogger(__name__)

UNLOAD_WAIT_AT_STOP_SECONDS = 10.0
SETTLE_SECONDS = 1.0  # a version first seen with a file younger than this waits for the next look


class VersionState(enum.Enum):
    """``ModelVersionStatus.State``, with the same numbers."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class VersionStatus:
    """A snapshot of one version for GetModelStatus."""

    version: int
    state: VersionState
    error: ServingError | None = None


@dataclass(frozen=True)
class DiskVersion:
    """A version directory as one look at the base path found it."""

    path: Path
    fingerprint: tuple[int, int, int]
    settled: bool  # complete enough to try loading


@dataclass(eq=False)
class _Version:
    number: int
    path: Path
    fingerprint: tuple[int, int, int]
    state: VersionState = VersionState.START
    servable: Servable | None = None
    error: ServingError | None = None
    in_flight: int = 0
    attempts: int = 1  # loads tried on these files
    retry_at: float = 0.0  # monotonic time of the next try after a failure

    @property
    def failed(self) -> bool:
        return self.state == VersionState.END and self.error is not None


@dataclass(eq=False)
class _Model:
    name: str
    config: ModelConfig | None  # None once removed from the config
    labels: dict[str, int] = field(default_factory=dict)
    versions: dict[int, _Version] = field(default_factory=dict)
    aspired: frozenset[int] = frozenset()
    on_disk: dict[int, DiskVersion] = field(default_factory=dict)  # as of the last look


Loader = Callable[[str, int, Path], Servable]


def discover_versions(base_path: str) -> dict[int, Path]:
    """Numbered version directories under a model's base path."""
    try:
        entries = list(os.scandir(base_path))
    except FileNotFoundError:
        return {}
    except NotADirectoryError:
        return {}
    versions = {}
    for entry in entries:
        if entry.name.isascii() and entry.name.isdigit() and entry.is_dir():
            versions[int(entry.name)] = Path(entry.path)
    return versions


def fingerprint(path: Path) -> tuple[int, int, int]:
    """(files, bytes, newest modification) of a version's whole tree: changes while it is being written."""
    files = size = newest = 0
    for directory, _, names in os.walk(path):
        try:
            newest = max(newest, os.stat(directory).st_mtime_ns)
        except OSError:
            continue
        for name in names:
            try:
                stat = os.stat(os.path.join(directory, name))
            except OSError:
                continue  # removed while we looked
            files, size, newest = files + 1, size + stat.st_size, max(newest, stat.st_mtime_ns)
    return files, size, newest


def look_at_versions(base_path: str, previous: dict[int, DiskVersion]) -> dict[int, DiskVersion]:
    """The version directories under a base path, each marked settled or still being written."""
    now_ns = time.time_ns()
    found = {}
    for number, path in discover_versions(base_path).items():
        print_ = fingerprint(path)
        before = previous.get(number)
        if before is not None:
            settled = before.fingerprint == print_
        else:
            settled = print_[0] > 0 and now_ns - print_[2] > SETTLE_SECONDS * 1e9
        found[number] = DiskVersion(path, print_, settled)
    return found


class ServableHandle:
    """A version held for one request; releasing it lets retirement proceed."""

    def __init__(self, manager: ModelManager, record: _Version) -> None:
        self._manager = manager
        self._record: _Version | None = record
        self.servable: Servable = record.servable  # type: ignore[assignment]

    def __enter__(self) -> Servable:
        return self.servable

    def __exit__(self, *exc_info) -> None:
        self.release()

    def release(self) -> None:
        if self._record is not None:
            self._manager._release(self._record)
            self._record = None


class ModelManager:
    """Owns every model version of one server."""

    def __init__(
        self,
        options: ModelSourceOptions,
        metrics: ServerMetrics,
        *,
        loader: Loader = Servable.load,
        on_unloaded: Callable[[Servable], None] = lambda servable: None,
    ) -> None:
        self._options = options
        self._metrics = metrics
        self._loader = loader
        self._on_unloaded = on_unloaded
        self._cond = threading.Condition()
        self._reconcile_lock = threading.Lock()  # one discovery pass at a time
        self._config_lock = threading.Lock()  # one config change at a time
        self._models: dict[str, _Model] = {}
        self._loads = ThreadPoolExecutor(max(1, options.num_load_threads), thread_name_prefix="model-load")
        self._unloads = ThreadPoolExecutor(1, thread_name_prefix="model-unload")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- configuration ------------------------------------------------------------

    def start(self, models: Iterable[ModelConfig]) -> None:
        """Loads the initial models (waiting for them) and starts watching."""
        self.reload(models)
        if self._options.file_system_poll_wait_seconds > 0:
            self._spawn("fs-poll", self._poll_file_system)
        if self._options.model_config_file and self._options.model_config_file_poll_wait_seconds > 0:
            self._spawn("config-poll", self._poll_config_file)

    def reload(self, models: Iterable[ModelConfig]) -> None:
        """Makes ``models`` the served set (HandleReloadConfigRequest semantics).

        Waits until every newly added model has loaded what its policy asks
        for; fails with the load error if a new model has no version
        available, and with FAILED_PRECONDITION if a version label points at
        a version that is not AVAILABLE.
        """
        configs = {config.name: config for config in models}
        with self._config_lock:
            with self._cond:
                added = [name for name in configs if self._models.get(name) is None
                         or self._models[name].config is None]
                for name, config in configs.items():
                    model = self._models.setdefault(name, _Model(name=name, config=config))
                    model.config = config
                for name, model in self._models.items():
                    if name not in configs:
                        model.config = None
                        model.labels = {}
            for name in list(self._models):
                self._reconcile(name)
            if any(not v.settled for name in configs for v in self._models[name].on_disk.values()):
                # A second look tells a finished copy from one still being written.
                self._stop.wait(min(SETTLE_SECONDS, self._options.file_system_poll_wait_seconds or SETTLE_SECONDS))
                for name in configs:
                    self._reconcile(name)
            self._wait_for_loads(configs)
            self._check_new_models(added)
            self._assign_labels(configs)

    def _wait_for_loads(self, names: Iterable[str]) -> None:
        with self._cond:
            for name in names:
                model = self._models[name]
                self._cond.wait_for(functools.partial(self._stopped_or_settled, model))

    def _stopped_or_settled(self, model: _Model) -> bool:
        """Stopping, or no aspired version of ``model`` is still starting or loading."""
        loading = (VersionState.START, VersionState.LOADING)
        return self._stop.is_set() or not any(model.versions[v].state in loading for v in model.aspired)

    def _check_new_models(self, added: Iterable[str]) -> None:
        """A newly added model must end up with a version to serve (as in TF Serving)."""
        with self._cond:
            for name in added:
                model = self._models[name]
                if any(record.state == VersionState.AVAILABLE for record in model.versions.values()):
                    continue
                failed = sorted((r.number, r.error) for r in model.versions.values() if r.error is not None)
                if not failed:
                    where = model.config.base_path if model.config is not None else "?"
                    log.warning("model %s: no complete versions found under %s", name, where)
                    continue
                details = "; ".join(f"version {number}: {error.message}" for number, error in failed)
                raise ServingError(failed[-1][1].code, f"model {name}: no version became available ({details})")

    def _assign_labels(self, configs: dict[str, ModelConfig]) -> None:
        with self._cond:
            if not self._options.allow_version_labels_for_unavailable_models:
                for name, config in configs.items():
                    model = self._models[name]
                    for version in config.version_labels.values():
                        record = model.versions.get(version)
                        if record is None or record.state != VersionState.AVAILABLE:
                            raise errors.failed_precondition(
                                f"Request to assign label to version {version} of model {name}, "
                                "which is not currently available for inference"
                            )
            for name, config in configs.items():
                self._models[name].labels = dict(config.version_labels)

    # -- discovery and loading ----------------------------------------------------

    def _reconcile(self, name: str) -> None:
        """Looks at the disk, then schedules loads, retries and retirements."""
        with self._reconcile_lock:
            with self._cond:
                model = self._models[name]
                config, previous = model.config, model.on_disk
            on_disk = look_at_versions(config.base_path, previous) if config is not None else {}
            with self._cond:
                model.on_disk = on_disk
                self._apply(model)

    def _apply(self, model: _Model) -> None:
        """Brings the model's versions in line with the policy and the last look (lock held)."""
        now = time.monotonic()
        options = self._options
        for number, record in list(model.versions.items()):
            seen = model.on_disk.get(number)
            if not record.failed or seen is None or not seen.settled:
                continue
            if seen.fingerprint != record.fingerprint:
                self._schedule_load(model, number, seen)  # new files: a fresh start
            elif record.attempts <= options.max_num_load_retries and now >= record.retry_at:
                self._schedule_load(model, number, seen, attempts=record.attempts + 1)
        candidates = [n for n, seen in model.on_disk.items()
                      if seen.settled and not (n in model.versions and model.versions[n].failed)]
        model.aspired = model.config.policy.select(candidates) if model.config is not None else frozenset()
        for number in model.aspired:
            known = model.versions.get(number)
            if known is None or (known.state == VersionState.END and known.error is None):
                self._schedule_load(model, number, model.on_disk[number])  # new, or retired and wanted again
        self._retire_unwanted(model)

    def _schedule_load(self, model: _Model, number: int, seen: DiskVersion, attempts: int = 1) -> None:
        record = _Version(number=number, path=seen.path, fingerprint=seen.fingerprint, attempts=attempts)
        model.versions[number] = record
        self._set_state(model, record, VersionState.START)
        self._loads.submit(self._load, model, record)

    def _load(self, model: _Model, record: _Version) -> None:
        with self._cond:
            if self._stop.is_set():
                return
            self._set_state(model, record, VersionState.LOADING)
        started = time.monotonic()
        error: ServingError | None = None
        servable = None
        try:
            servable = self._loader(model.name, record.number, record.path)
            if self._options.enable_model_warmup:
                count = run_warmup(servable)
                if count:
                    log.info("model %s version %d: replayed %d warm-up requests", model.name, record.number, count)
        except ServingError as exc:
            error = exc
        except Exception as exc:  # a loader bug must not leave the version LOADING forever
            log.exception("model %s version %d: unexpected load failure", model.name, record.number)
            error = errors.internal(f"{type(exc).__name__}: {exc}")
        seconds = time.monotonic() - started
        version = str(record.number)
        with self._cond:
            if error is not None:
                record.error = error
                record.retry_at = time.monotonic() + self._options.load_retry_interval_seconds
                self._set_state(model, record, VersionState.END)
                self._metrics.model_load_failures.labels(model=model.name, version=version).inc()
                self._metrics.model_load_error.labels(model=model.name, version=version).set(1)
                tries_left = max(0, self._options.max_num_load_retries + 1 - record.attempts)
                log.error("model %s version %d failed to load (attempt %d, %d more): %s", model.name,
                          record.number, record.attempts, tries_left, error.message)
            else:
                record.servable = servable
                self._set_state(model, record, VersionState.AVAILABLE)
                self._metrics.model_load_seconds.labels(model=model.name, version=version).observe(seconds)
                self._metrics.model_load_error.labels(model=model.name, version=version).set(0)
                log.info("model %s version %d AVAILABLE (%.2fs)", model.name, record.number, seconds)
            self._apply(model)  # a failure may let an older version be chosen; a success retire one
            self._cond.notify_all()

    def _retire_unwanted(self, model: _Model) -> None:
        """Starts retiring loaded versions the policy no longer wants (lock held)."""
        aspired_available = any(
            model.versions[v].state == VersionState.AVAILABLE for v in model.aspired if v in model.versions
        )
        if model.aspired and not aspired_available:
            return  # keep serving what we have until a wanted version is up
        for record in model.versions.values():
            if record.state == VersionState.AVAILABLE and record.number not in model.aspired:
                self._set_state(model, record, VersionState.UNLOADING)
                self._unloads.submit(self._unload, model, record)

    def _unload(self, model: _Model, record: _Version, wait_seconds: float | None = None) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: record.in_flight == 0, wait_seconds):
                log.warning("model %s version %d: unloading with %d requests still holding it",
                            model.name, record.number, record.in_flight)
            servable, record.servable = record.servable, None
            self._set_state(model, record, VersionState.END)
            self._cond.notify_all()
        if servable is not None:
            self._on_unloaded(servable)
        log.info("model %s version %d unloaded", model.name, record.number)

    def _set_state(self, model: _Model, record: _Version, state: VersionState) -> None:
        record.state = state
        self._metrics.set_version_state(model.name, record.number, state.name)

    # -- requests ------------------------------------------------------------------

    def acquire(self, name: str, version: int | None = None, label: str | None = None) -> ServableHandle:
        """Holds the version a request asks for (latest AVAILABLE if unspecified)."""
        with self._cond:
            model = self._models.get(name)
            if model is None or model.config is None:
                if version is not None:
                    raise errors.not_found(f"Servable not found for request: Specific({name}, {version})")
                raise errors.not_found(f"Servable not found for request: Latest({name})")
            if label:
                version = self._resolve_label(model, label)
            record: _Version | None
            if version is None:
                available = [r for r in model.versions.values() if r.state == VersionState.AVAILABLE]
                if not available:
                    raise errors.not_found(f"Servable not found for request: Latest({name})")
                record = max(available, key=lambda r: r.number)
            else:
                record = model.versions.get(version)
                if record is None or record.state in (VersionState.UNLOADING, VersionState.END):
                    raise errors.not_found(f"Servable not found for request: Specific({name}, {version})")
                if record.state != VersionState.AVAILABLE:
                    raise errors.failed_precondition(
                        f"Version {version} of model {name} is not yet available (state {record.state.name})"
                    )
            record.in_flight += 1
            return ServableHandle(self, record)

    def _release(self, record: _Version) -> None:
        with self._cond:
            record.in_flight -= 1
            if record.in_flight == 0 and record.state == VersionState.UNLOADING:
                self._cond.notify_all()

    @staticmethod
    def _resolve_label(model: _Model, label: str) -> int:
        try:
            return model.labels[label]
        except KeyError:
            # TF Serving's code and wording for an unknown label.
            raise errors.invalid_argument(f"Unrecognized servable version label: {label}") from None

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """Version states, newest first (GetModelStatus semantics)."""
        with self._cond:
            model = self._models.get(name)
            if model is not None and label:
                if model.config is None:
                    raise errors.invalid_argument(f"Unrecognized servable version label: {label}")
                version = self._resolve_label(model, label)
            records = model.versions if model is not None else {}
            if version is not None:
                record = records.get(version)
                if record is None:
                    raise errors.not_found(f"Could not find version {version} of model {name}")
                return [VersionStatus(record.number, record.state, record.error)]
            if not records:
                raise errors.not_found(f"Could not find any versions of model {name}")
            return [
                VersionStatus(r.number, r.state, r.error)
                for r in sorted(records.values(), key=lambda r: r.number, reverse=True)
            ]

    def model_names(self) -> list[str]:
        with self._cond:
            return sorted(name for name, model in self._models.items() if model.config is not None)

    # -- watching -------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_file_system(self) -> None:
        while not self._stop.wait(self._options.file_system_poll_wait_seconds):
            for name in list(self._models):
                try:
                    self._reconcile(name)
                except Exception:
                    log.exception("model %s: version discovery failed", name)

    def _poll_config_file(self) -> None:
        from serving.config import ConfigError, read_model_server_config

        path = self._options.model_config_file
        assert path is not None  # The poll is only started for a model config file.
        last = None
        while not self._stop.wait(self._options.model_config_file_poll_wait_seconds):
            try:
                models = read_model_server_config(path)
            except ConfigError as exc:
                log.error("keeping the current models: %s", exc)
                continue
            if models == last:
                continue
            try:
                self.reload(models)
                last = models
                log.info("applied model config file %s", path)
            except ServingError as exc:
                log.error("model config file %s not fully applied: %s", path, exc.message)
                last = models

    def stop(self) -> None:
        """Stops watching and loading, then unloads every version."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        self._loads.shutdown(wait=True, cancel_futures=True)
        with self._cond:
            for model in self._models.values():
                for record in model.versions.values():
                    if record.state == VersionState.AVAILABLE:
                        self._set_state(model, record, VersionState.UNLOADING)
                        # Bounded: a request stuck past the drain must not hang shutdown.
                        self._unloads.submit(self._unload, model, record, UNLOAD_WAIT_AT_STOP_SECONDS)
        self._unloads.shutdown(wait=True)
