"""Artifact storage on any Beam filesystem: local paths, `gs://`, `s3://`, `hdfs://`.

The pipeline root and the model base path are URIs, carried as strings.
Beam stages hand them straight to Beam IO, so Dataflow, Flink or Spark
workers read and write the bucket themselves; everything else the pipeline
reads or writes goes through this module, over the same `FileSystems`, so a
laptop directory and a bucket take one code path. Credentials and endpoints
come from the pipeline's Beam options (`configure`).

Libraries that only read local files (TensorFlow training and export, the
tokenizer's vocabulary) work on a local copy: `local_copy` downloads a
directory, `local_output` publishes one. On a local URI both use the
directory itself.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> write_json(join(root, "state", "schema.json"), {"labels": ["a", "b"]})
>>> read_json(join(root, "state", "schema.json"))
{'labels': ['a', 'b']}
>>> [relative(p, root) for p in list_files(root)]
['state/schema.json']
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions


def configure(beam_args: Sequence[str]) -> None:
    """Gives the filesystems the pipeline's options (S3 endpoint and keys, GCP project...).

    Beam keeps these per process; its workers receive them with the pipeline.
    """
    FileSystems.set_options(PipelineOptions(list(beam_args)))


def is_local(uri: str | os.PathLike) -> bool:
    return FileSystems.get_scheme(str(uri)) in (None, "file")


def join(base: str | os.PathLike, *parts: str) -> str:
    return FileSystems.join(str(base), *parts)


def relative(uri: str, base: str | os.PathLike) -> str:
    """`uri`'s path below `base`, with forward slashes."""
    prefix = str(base).rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise ValueError(f"{uri} is not under {base}")
    return uri[len(prefix):]


def exists(uri: str | os.PathLike) -> bool:
    """True for an existing file (a directory only on local disk: object stores have none)."""
    return FileSystems.exists(str(uri))


def last_updated(uri: str | os.PathLike) -> float:
    """Seconds since the epoch when the file was last written."""
    return FileSystems.last_updated(str(uri))


def has_files(uri: str | os.PathLike) -> bool:
    """True when anything lies below `uri`: the object-store sense of "the directory exists"."""
    if is_local(uri):
        return Path(uri).is_dir() and any(Path(uri).iterdir())
    return bool(list_files(uri))


def read_bytes(uri: str | os.PathLike) -> bytes:
    # Uncompressed: Beam would otherwise inflate a `.gz` file on the way.
    with FileSystems.open(str(uri), compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def read_text(uri: str | os.PathLike) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str | os.PathLike, text: str) -> None:
    """Writes a whole file atomically: a reader sees the old content or the new, never half.

    On local disk through a rename; an object store replaces an object in one PUT.
    """
    uri = str(uri)
    if is_local(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return
    with FileSystems.create(uri, mime_type="text/plain", compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(text.encode("utf-8"))


def read_json(uri: str | os.PathLike) -> Any:
    return json.loads(read_text(uri))


def write_json(uri: str | os.PathLike, data: Any) -> None:
    write_text(uri, json.dumps(data, indent=2, sort_keys=True, default=str))


def delete_tree(uri: str | os.PathLike) -> None:
    """Removes a directory and everything below it; nothing there is fine."""
    if is_local(uri):
        shutil.rmtree(uri, ignore_errors=True)
        return
    files = list_files(uri)
    if files:
        FileSystems.delete(files)


def glob(pattern: str) -> list[str]:
    """Files matching `pattern` (`*` within a path segment, `**` across), sorted."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def file_states(pattern: str) -> list[tuple[str, int, float]]:
    """(path, size, last modified) of each file matching `pattern`: what a cache key needs."""
    return sorted((m.path, m.size_in_bytes, m.last_updated_in_seconds)
                  for m in FileSystems.match([pattern])[0].metadata_list)


def list_files(uri: str | os.PathLike) -> list[str]:
    """Every file below `uri`, sorted."""
    return glob(join(uri, "**"))


def copy_file(source: str, destination: str) -> None:
    """Copies one file's bytes as they are, between any two filesystems."""
    with FileSystems.open(source, compression_type=CompressionTypes.UNCOMPRESSED) as reader, \
            FileSystems.create(destination, compression_type=CompressionTypes.UNCOMPRESSED) as writer:
        shutil.copyfileobj(reader, writer, length=8 << 20)


def copy_tree(source: str | os.PathLike, destination: str | os.PathLike, last: Sequence[str] = ()) -> None:
    """Copies a directory's files, between any two filesystems.

    Files named in `last` (relative paths) are written after all others: a
    reader that waits for them (TF Serving for `saved_model.pb`) never sees
    a partial copy.
    """
    files = sorted(list_files(source), key=lambda uri: relative(uri, source) in last)
    for uri in files:
        copy_file(uri, join(destination, relative(uri, source)))


@contextlib.contextmanager
def local_copy(uri: str | os.PathLike) -> Iterator[Path]:
    """A local directory holding `uri`'s files: `uri` itself when local, else a temporary download."""
    if is_local(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="suite-artifact-") as tmp:
        copy_tree(uri, tmp)
        yield Path(tmp)


@contextlib.contextmanager
def local_output(uri: str | os.PathLike) -> Iterator[Path]:
    """A local directory to write `uri`'s files into: `uri` itself when local, else a
    temporary one uploaded when the block succeeds."""
    if is_local(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="suite-artifact-") as tmp:
        yield Path(tmp)
        copy_tree(tmp, uri)
