"""Input sources and the dead-letter file.

Every source hands out *batches of complete lines* together with the
position to store once they are saved, so that saving the items and the new
position in one transaction makes a restart resume exactly after the last
saved line:

- :class:`FileFollower`: one JSON-lines file that keeps growing (``tail -f``);
  the position is the byte offset after the last complete line.  A partly
  written last line waits until its newline arrives.  A line longer than
  ``max_line_bytes`` is handed out as its head (a
  :class:`~apps.sentiment_monitor.items.LineHead`, which knows the whole
  length), to be dead-lettered as too long.  A file that shrank
  (truncated or replaced) is read again from the start; item ids keep that
  from counting anything twice.
- :class:`DirectorySource`: every file matching a pattern in a directory,
  in name order, each followed as above with its own position.
- :class:`StdinSource`: standard input (the position is a line count, kept
  for the record; a pipe cannot be re-read).
- ``POST /items`` with one JSON object or JSON lines: :mod:`apps.sentiment_monitor.http_ingest`.

Example:

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "news.jsonl"
>>> _ = path.write_text('{"a": 1}\\n{"b": 2')      # the second line is still being written
>>> follower = FileFollower(path, "news")
>>> follower.read(position=None, max_lines=10)
Batch(lines=[(0, b'{"a": 1}')], position='9')
>>> with path.open("a") as handle: _ = handle.write("}\\n")
>>> follower.read(position="9", max_lines=10)
Batch(lines=[(9, b'{"b": 2}')], position='18')
>>> with path.open("a") as handle: _ = handle.write("x" * 5000 + "\\n")
>>> line = FileFollower(path, "news", max_line_bytes=1000).read(position="18", max_lines=10).lines[0][1]
>>> len(line), line.size
(1000, 5000)
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from apps.sentiment_monitor.items import LineHead

log = logging.getLogger(__name__)


@dataclass
class Batch:
    lines: list[tuple[int, bytes]] = field(default_factory=list)  # (where the line starts, the line)
    position: str | None = None  # store this once the lines are saved; None: nothing to store


class FileFollower:
    """Reads complete lines of a growing file from a byte offset."""

    def __init__(self, path: Path, key: str, *, max_line_bytes: int = 1 << 20, chunk_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self.key = key
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = max(chunk_bytes, max_line_bytes + 1)  # a chunk always holds a whole allowed line

    def read(self, position: str | None, max_lines: int) -> Batch:
        offset = int(position) if position else 0
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return Batch()  # Not there yet: a followed file may be created later.
        if size < offset:
            log.warning("%s shrank from %d to %d bytes (truncated or replaced): reading it from the start",
                        self.path, offset, size)
            offset = 0
        if size == offset:
            return Batch()
        lines: list[tuple[int, bytes]] = []
        with self.path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(self.chunk_bytes)
        start = 0
        while len(lines) < max_lines:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[start:end].rstrip(b"\r")
            if len(line) > self.max_line_bytes:
                line = LineHead(line[:self.max_line_bytes], len(line))
            if line.strip():
                lines.append((offset + start, line))
            start = end + 1
        if start == 0 and len(data) == self.chunk_bytes:
            # One line longer than a chunk: hand out its head, to be dead-lettered as too long, rather than
            # stall the source forever.
            newline = self._find_newline(offset + len(data))
            if newline is not None:
                return Batch([(offset, LineHead(data[:self.max_line_bytes], newline - offset))], str(newline + 1))
        return Batch(lines, str(offset + start)) if start else Batch()

    def _find_newline(self, offset: int) -> int | None:
        with self.path.open("rb") as handle:
            handle.seek(offset)
            while chunk := handle.read(self.chunk_bytes):
                found = chunk.find(b"\n")
                if found >= 0:
                    return offset + found
                offset += len(chunk)
        return None


class DirectorySource:
    """Every file matching ``pattern`` in ``directory`` (new ones too), each with its own position."""

    def __init__(self, directory: Path, key: str, pattern: str = "*.jsonl", *, max_line_bytes: int = 1 << 20) -> None:
        self.directory = Path(directory)
        self.key = key
        self.pattern = pattern
        self.max_line_bytes = max_line_bytes

    def followers(self) -> list[FileFollower]:
        if not self.directory.is_dir():
            return []
        return [FileFollower(path, f"{self.key}/{path.name}", max_line_bytes=self.max_line_bytes)
                for path in sorted(self.directory.glob(self.pattern)) if path.is_file()]


class StdinSource:
    """Lines of a stream (standard input by default), read by a thread so polling never blocks."""

    def __init__(self, key: str = "stdin", stream: IO[bytes] | None = None) -> None:
        self.key = key
        self._stream = stream if stream is not None else sys.stdin.buffer
        self._lines: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
        self._count = 0
        self.finished = False
        threading.Thread(target=self._pump, name="stdin-source", daemon=True).start()

    def _pump(self) -> None:
        for line in self._stream:
            self._lines.put(line.rstrip(b"\r\n"))
        self._lines.put(None)

    def read(self, position: str | None, max_lines: int) -> Batch:
        batch = Batch()
        while len(batch.lines) < max_lines:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self.finished = True
                break
            self._count += 1
            if line.strip():
                batch.lines.append((self._count, line))
        if batch.lines:
            batch.position = str(self._count)
        return batch


class DeadLetters:
    """Appends rejected lines (their head, if long), with the stage and reason, to a JSON-lines file.

    A copy for people and log shippers: the record is the store's ``dead_letters`` table, written in the
    same transaction as the source's position.  The file is written just before that commits, so it
    misses nothing and, after a crash at that moment, may repeat a line."""

    HEAD_BYTES = 4096

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, source_key: str, where: int, line: bytes, reason: str, *, stage: str = "parse",
              line_bytes: int | None = None) -> None:
        record = {"source": source_key, "position": where, "stage": stage, "reason": reason,
                  "line": line[:self.HEAD_BYTES].decode("utf-8", "replace"),
                  "line_bytes": len(line) if line_bytes is None else line_bytes}
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())  # Written before the position moves past the line.

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
