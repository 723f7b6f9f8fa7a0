"""A throwaway PostgreSQL server for tests: ``initdb`` in a temp folder, a free loopback port.

Debian's ``postgresql`` package provides the binaries (under /usr/lib/postgresql/<ver>/bin);
``.ci/run`` installs it. Without them the tests that need PostgreSQL are skipped with that
reason. PostgreSQL refuses to run as root, so when the tests run as root the cluster folder is
given to the ``postgres`` user and every server command runs through ``runuser -u postgres``.
Authentication is ``trust`` on 127.0.0.1 only; the cluster and its folder are deleted at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICE_USER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin_dir() -> Path | None:
    """The newest PostgreSQL server bin folder installed, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    db: str
    data_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.db}"

    def env(self) -> dict[str, str]:
        """The variables deploy/instance/storage-postgres.yaml reads (trust auth: empty password)."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_USER": self.user, "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": self.db}

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg2  # installed with dagster-postgres

        with contextlib.closing(psycopg2.connect(self.url)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows


def _as_service_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root and `runuser` is missing: PostgreSQL cannot run as root")
    return [runuser, "-u", SERVICE_USER, "--", *cmd]


@contextlib.contextmanager
def postgres_server(db: str = "dagster") -> Iterator[PgServer]:
    """Start a fresh cluster, create ``db``, yield it; stop and delete everything afterwards."""
    bindir = pg_bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="archive-pg-"))
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            pytest.skip(f"running as root and there is no '{SERVICE_USER}' user to run PostgreSQL as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        user = SERVICE_USER
    data = root / "data"
    port = free_port()
    run = lambda cmd: subprocess.run(_as_service_user(cmd), check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
             "--no-sync"])
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c max_connections=100")
        run([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "server.log"),
             "-w", "-t", "60", "start"])
        try:
            run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db])
            yield PgServer("127.0.0.1", port, user, db, data)
        finally:
            subprocess.run(_as_service_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                             "-w", "stop"]), capture_output=True)
    except subprocess.CalledProcessError as exc:
        log = root / "server.log"
        raise RuntimeError(f"PostgreSQL failed: {exc.cmd}: {exc.stderr}\n"
                           f"{log.read_text() if log.exists() else ''}") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)
