"""Executes a `Pipeline` on this machine, component by component.

Each execution lives in `<root>/<component id>/<fingerprint>/`, where the
fingerprint hashes the component's configuration, the fingerprints of its
input artifacts, outside state it depends on and the pipeline's source code.
A directory with `_SUCCESS` is a cache hit. A killed run leaves the last
component's directory without `_SUCCESS`; running again skips everything that
finished and restarts that component in the same directory (the Trainer picks
up its checkpoints there).

Every run writes a record, `<root>/runs/<run id>.json`, updated after each
component so that even a crashed run can be inspected.

The root may be a bucket (`gs://…`, `s3://…`): Beam components write there
from their workers. Components with `LOCAL_FILES` run in a local working
directory, `<local cache>/<component id>/<fingerprint>/`, with local copies
of their inputs, and their outputs are uploaded when they finish; the
working directory is kept, so a killed Trainer on the same machine resumes
from its checkpoints.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from tfx_pipeline import storage
from tfx_pipeline.dsl import Artifact, Component, ExecutionContext, Pipeline, PipelineError

_SUCCESS = "_SUCCESS"
_OUTPUTS = "outputs.json"


# Code that cannot change what a component writes; editing it keeps caches valid.
_NOT_IN_CACHE_KEY = ("cli.py", "__main__.py", "scheduling/")


@functools.cache
def source_fingerprint() -> str:
    """Hash of the pipeline's code: a code change invalidates cached results."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(_NOT_IN_CACHE_KEY):
            continue
        digest.update(relative.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


class LocalDagRunner:
    """Runs the components in order; Beam steps use the pipeline's Beam args.

    `local_cache` is where components with `LOCAL_FILES` work when the
    pipeline root is not a local path (default: a folder in the temp dir).
    """

    def __init__(self, log: logging.Logger | None = None, local_cache: str | Path | None = None):
        self.log = log or logging.getLogger("tfx_pipeline")
        self.local_cache = Path(local_cache or Path(tempfile.gettempdir()) / "suite-pipeline-cache")

    def run(self, pipeline: Pipeline, run_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        record: dict[str, Any] = {
            "run_id": run_id,
            "pipeline": pipeline.name,
            "pipeline_root": str(pipeline.root),
            "started": _now(),
            "status": "running",
            "components": [],
            **(run_metadata or {}),
        }
        storage.configure(pipeline.beam_args)
        record_path = storage.join(pipeline.root, "runs", f"{run_id}.json")
        storage.write_json(record_path, record)
        produced: dict[tuple[str, str], Artifact] = {}
        try:
            for component in pipeline.components:
                entry = self._run_component(pipeline, component, produced, run_id)
                record["components"].append(entry)
                storage.write_json(record_path, record)
            record["status"] = "succeeded"
        except BaseException as error:  # Recorded, then re-raised: KeyboardInterrupt too.
            record["status"] = "failed"
            record["error"] = f"{type(error).__name__}: {error}"
            if not isinstance(error, (PipelineError, KeyboardInterrupt)):
                record["traceback"] = traceback.format_exc()
            raise
        finally:
            record["finished"] = _now()
            record.update(_summarise(produced))
            storage.write_json(record_path, record)
        return record

    def _run_component(self, pipeline: Pipeline, component, produced, run_id: str) -> dict[str, Any]:
        inputs = {key: produced[(ch.producer, ch.key)] for key, ch in component.inputs.items()}
        execution_fp = fingerprint({
            "component": type(component).__name__,
            "source": source_fingerprint(),
            "config": component.fingerprint_data(),
            "external": component.external_fingerprint(),
            "inputs": {key: artifact.fingerprint for key, artifact in inputs.items()},
        })
        execution_dir = storage.join(pipeline.root, component.id, execution_fp)
        started = time.monotonic()
        cached = storage.exists(storage.join(execution_dir, _SUCCESS))
        if cached:
            self.log.info("%s: cached (%s)", component.id, execution_dir)
            outputs = {key: Artifact.from_json(a)
                       for key, a in storage.read_json(storage.join(execution_dir, _OUTPUTS)).items()}
        else:
            resumed = storage.has_files(execution_dir)
            self.log.info("%s: %s in %s", component.id, "resuming" if resumed else "running", execution_dir)
            output_dirs = {key: storage.join(execution_dir, key) for key in component.outputs}
            for directory in output_dirs.values():  # Leftovers of a killed attempt.
                storage.delete_tree(directory)
            ctx = ExecutionContext(inputs, output_dirs, execution_dir, pipeline.beam_args, run_id,
                                   self.log.getChild(component.id))
            properties = self._execute(component, ctx, execution_fp)
            outputs = {
                key: Artifact(channel.type_name, output_dirs[key],
                              component.output_fingerprint(key, output_dirs[key], execution_fp),
                              dict(properties.get(key, {})))
                for key, channel in component.outputs.items()
            }
            storage.write_json(storage.join(execution_dir, _OUTPUTS), {key: a.to_json() for key, a in outputs.items()})
            # Not empty: S3 refuses an upload of no bytes.
            storage.write_text(storage.join(execution_dir, _SUCCESS), f"{run_id}\n")
        for key, artifact in outputs.items():
            produced[(component.id, key)] = artifact
        return {
            "id": component.id,
            "fingerprint": execution_fp,
            "cached": cached,
            "duration_s": round(time.monotonic() - started, 3),
            "external_inputs": component.external_fingerprint(),
            "artifacts": {key: a.to_json() for key, a in outputs.items()},
        }

    def _execute(self, component: Component, ctx: ExecutionContext, execution_fp: str) -> Mapping[str, Any]:
        """Runs `component`; one with `LOCAL_FILES` and a remote root works on local copies."""
        if not component.LOCAL_FILES or storage.is_local(ctx.execution_dir):
            return component.execute(ctx)
        workdir = self.local_cache / component.id / execution_fp
        local_inputs = {}
        for key, artifact in ctx.inputs.items():
            local = workdir / "inputs" / key
            if not local.is_dir():  # Inputs are immutable: a copy made before a crash is still good.
                partial = local.with_name(key + ".partial")
                partial.mkdir(parents=True, exist_ok=True)
                storage.copy_tree(artifact.uri, partial)
                partial.rename(local)
            local_inputs[key] = dataclasses.replace(artifact, uri=str(local))
        local_outputs = {key: str(workdir / key) for key in ctx.output_dirs}
        for directory in local_outputs.values():
            storage.delete_tree(directory)
        self.log.info("%s: working in %s", component.id, workdir)
        properties = component.execute(dataclasses.replace(
            ctx, inputs=local_inputs, output_dirs=local_outputs, execution_dir=str(workdir)))
        for key, directory in local_outputs.items():
            storage.copy_tree(directory, ctx.output_dirs[key])
        # Properties that name a local output file name its published copy instead.
        moves = [(local, ctx.output_dirs[key]) for key, local in local_outputs.items()]
        return _replace_prefixes(properties, moves)


def _replace_prefixes(value: Any, moves: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in moves:
            if value == old or value.startswith(old + "/"):
                return new + value[len(old):]
        return value
    if isinstance(value, Mapping):
        return {key: _replace_prefixes(item, moves) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_prefixes(item, moves) for item in value]
    return value


def _summarise(produced: Mapping[tuple[str, str], Artifact]) -> dict[str, Any]:
    """The headline facts of a run, lifted from artifact properties."""
    summary: dict[str, Any] = {}
    for (_, key), artifact in produced.items():
        if key == "evaluation":
            summary["metrics"] = artifact.properties.get("headline")
        elif key == "blessing":
            summary["blessed"] = artifact.properties.get("blessed")
            summary["blessing_reason"] = artifact.properties.get("reason")
        elif key == "pushed_model":
            summary["pushed_version"] = artifact.properties.get("version")
            summary["pushed_path"] = artifact.properties.get("path")
        elif key in ("variant_evaluation", "variant_blessing", "pushed_variant"):
            # Compression variants: headline (cost per 1M predictions included), decision, push.
            entry = summary.setdefault("variants", {}).setdefault(artifact.properties.get("variant"), {})
            if key == "variant_evaluation":
                entry.update(model_name=artifact.properties.get("model_name"),
                             metrics=artifact.properties.get("headline"))
            elif key == "variant_blessing":
                entry.update(blessed=artifact.properties.get("blessed"), reason=artifact.properties.get("reason"))
            else:
                entry.update(pushed_version=artifact.properties.get("version"),
                             pushed_path=artifact.properties.get("path"))
    return summary


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """Run records under a pipeline root, newest first."""
    return [storage.read_json(uri) for uri in reversed(storage.glob(storage.join(root, "runs", "*.json")))]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
