"""A non-blocking, exclusive lock on a file, released when the process dies.

`fcntl.flock` locks belong to the open file, so a crashed or killed run never
leaves a stale lock behind (unlike a "lock file exists" check). The holder's
pid is written into the file for whoever wonders who holds it.

Example:

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "run.lock")
>>> with RunLock(path) as first:
...     second = RunLock(path)
...     (first.acquired, second.acquire())
(True, False)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RunLock:
    """`acquire()` returns False instead of waiting when someone else holds it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def acquired(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the current holder, or '' if unknown."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        if not self.acquire():
            raise BlockingIOError(f"{self.path} is held by pid {self.holder() or '?'}")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
