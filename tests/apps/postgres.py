"""A throwaway PostgreSQL server for tests, on 127.0.0.1 and a free port.

tests/apps/conftest.py makes the fixtures available to every app test.

``postgres_server`` (session) starts a cluster with Debian's binaries
(``/usr/lib/postgresql/<version>/bin``) in a temporary directory, as the
``postgres`` user when running as root (``initdb`` refuses root), and stops
it afterwards.  If ``SUITE_POSTGRES_URL`` is set, that server is used
instead.  ``postgres_database`` gives each test a fresh, empty database, and ``store_url`` runs a test
twice: on SQLite (a file in its ``tmp_path``) and on such a PostgreSQL database.
Without PostgreSQL installed the tests fail, saying how to install it: CI
installs it, so a silent skip would hide a broken set-up.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.launcher import free_port

INSTALL_HINT = ("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install them with "
                "`apt-get install -y postgresql` (CI's set-up does), or point SUITE_POSTGRES_URL at a server")


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_owner(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; run them as the postgres user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A URL like ``postgresql://postgres@127.0.0.1:PORT`` (no database name)."""
    if os.environ.get("SUITE_POSTGRES_URL"):
        yield os.environ["SUITE_POSTGRES_URL"].rstrip("/")
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.fail(INSTALL_HINT)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: pip install 'psycopg[binary]'")
    root = Path(tempfile.mkdtemp(prefix="suite-postgres-"))  # Not under pytest's 0700 tmp: postgres must enter it.
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    root.chmod(0o755)
    port = free_port()
    log = root / "server.log"
    subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                              "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                              f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"{postgres_server}/{name}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """The test's state database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres_database")
