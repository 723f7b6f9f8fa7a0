"""The archive's PostgreSQL catalog refusing a connection (wrong password, missing database,
server down, nothing written yet): one clear error naming the setting, never a password, for
readers (``archive_platform.connect()``, ``archive-platform sql``/``query``) and writers (an
``ArchiveWriteError`` naming the partition, nothing changed). A real PostgreSQL server on
loopback; the catalog's user authenticates with scram-sha-256."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archive_platform.config import ConfigError
from archive_platform.settings import lake_config
from archive_platform.store import ArchiveStore, ArchiveWriteError
from archive_platform_tests.pg_helpers import free_port, postgres_server
from archive_platform_tests.store_helpers import FULL_DAY, HALF_DAY, options_snapshot

pytestmark = pytest.mark.slow

PW = "catalog-pw-never-shown"
WRONG = "wrong-pw-never-shown"
USER = "lakeauth"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pg():
    with postgres_server("lake") as server:
        server.query(f"CREATE ROLE {USER} LOGIN PASSWORD '{PW}'")
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text(f"host all {USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        server.query("SELECT pg_reload_conf()")
        yield server


def _db(pg, name: str) -> str:
    import psycopg2

    conn = psycopg2.connect(pg.url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}" OWNER {USER}')
    conn.close()
    return name


def _env(tmp_path, port: int, db: str, password: str = PW) -> dict[str, str]:
    return {"ARCHIVE_SIM_ROOT": str(tmp_path / "sim"), "ARCHIVE_ROOT": str(tmp_path / "live"),
            "ARCHIVE_SIM_LAKE_CATALOG": f"postgres:host=127.0.0.1 port={port} dbname={db} user={USER}",
            "ARCHIVE_LAKE_PG_PASSWORD": password}


def _connect_error(env: dict[str, str]) -> BaseException:
    import archive_platform

    old = dict(os.environ)
    os.environ.update(env)
    try:
        with pytest.raises(Exception) as err:
            archive_platform.connect(kind="sim")
    finally:
        os.environ.clear()
        os.environ.update(old)
    return err.value


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "AWS_", "DAGSTER_PG_"))}
    return subprocess.run([str(BIN / "archive-platform"), *args], env={**full, **env},
                          capture_output=True, text=True, timeout=300)


def _one_line(result: subprocess.CompletedProcess, said: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    for pw in (PW, WRONG):
        assert pw not in result.stdout + result.stderr


def test_nothing_written_yet_is_said_as_for_a_local_root(pg, tmp_path):
    env = _env(tmp_path, pg.port, _db(pg, "empty"))
    err = _connect_error(env)
    assert isinstance(err, FileNotFoundError), repr(err)
    assert str(err).startswith("no lake catalog in ARCHIVE_SIM_LAKE_CATALOG (PostgreSQL dbname=empty ")
    assert "nothing has been written to this archive yet" in str(err) and PW not in str(err)
    out = _cli(env, "sql", "--sim", "-c", "SELECT 1")  # a usage error, as for an empty local root
    assert out.returncode == 2 and "Traceback" not in out.stderr and PW not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("Error: no lake catalog in ARCHIVE_SIM_LAKE_CATALOG")


@pytest.mark.parametrize(("case", "said", "hint"), [
    ("wrong password", 'password authentication failed for user "lakeauth"', "check ARCHIVE_LAKE_PG_PASSWORD"),
    ("missing database", 'database "nosuchdb" does not exist', "create the database"),
    ("server down", "Connection refused", ""),
])
def test_a_catalog_that_refuses_the_connection_is_one_clear_error(pg, tmp_path, case, said, hint):
    db = _db(pg, "refuse")
    ArchiveStore(tmp_path / "sim", kind="sim", lake=lake_config("sim", _env(tmp_path, pg.port, db))).write_day(
        "options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    env = {"wrong password": _env(tmp_path, pg.port, db, WRONG),
           "missing database": _env(tmp_path, pg.port, "nosuchdb"),
           "server down": _env(tmp_path, free_port(), db)}[case]
    err = _connect_error(env)
    # a ConfigError (the CLI's one line) that is also an OSError (a write names its partition)
    assert isinstance(err, ConfigError) and isinstance(err, OSError), repr(err)
    msg = str(err)
    assert msg.startswith("cannot open the lake catalog of ARCHIVE_SIM_LAKE_CATALOG (PostgreSQL ")
    assert said in msg and hint in msg and "\n" not in msg
    assert PW not in msg and WRONG not in msg
    _one_line(_cli(env, "sql", "--sim", "-c", "SELECT count(*) FROM options"),
              "cannot open the lake catalog of ARCHIVE_SIM_LAKE_CATALOG")
    # `query --live` opens the archive through connect() with the live archive's settings
    live = {k: v for k, v in env.items() if k != "ARCHIVE_SIM_LAKE_CATALOG"}
    live["ARCHIVE_LAKE_CATALOG"] = env["ARCHIVE_SIM_LAKE_CATALOG"]
    _one_line(_cli(live, "query", "latest_chain", "--live", "--root", str(tmp_path / "live")),
              "cannot open the lake catalog of ARCHIVE_LAKE_CATALOG")
    # and `query` (the simulated archive) with the simulated one's
    _one_line(_cli(env, "query", "latest_chain", "--root", str(tmp_path / "sim")),
              "cannot open the lake catalog of ARCHIVE_SIM_LAKE_CATALOG")
    # the right settings still read the day
    store = ArchiveStore(tmp_path / "sim", kind="sim", lake=lake_config("sim", _env(tmp_path, pg.port, db)))
    assert store.read_day("options", FULL_DAY).num_rows == 12
    store.close()


def test_a_writer_that_cannot_take_its_lock_fails_naming_the_partition_and_changes_nothing(pg, tmp_path):
    """The writer's catalog connection is open, then the catalog refuses new sessions (the
    password rotated): the advisory-lock session of the next write fails. It must be an
    ArchiveWriteError naming the partition and the setting, like any other failed write."""
    db = _db(pg, "lockfail")
    store = ArchiveStore(tmp_path / "sim", kind="sim", lake=lake_config("sim", _env(tmp_path, pg.port, db)))
    store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    pg.query(f"ALTER ROLE {USER} PASSWORD 'rotated-pw-elsewhere'")
    try:
        with pytest.raises(ArchiveWriteError) as err:
            store.write_day("options", HALF_DAY, options_snapshot(HALF_DAY, 0))
        msg = str(err.value)
        assert "options 2025-11-28: write_day failed" in msg
        assert "cannot take the writer lock in the lake catalog of ARCHIVE_SIM_LAKE_CATALOG" in msg
        assert 'password authentication failed for user "lakeauth"' in msg and PW not in msg
        assert "nothing was changed" in msg
    finally:
        pg.query(f"ALTER ROLE {USER} PASSWORD '{PW}'")
    assert store.days("options") == [FULL_DAY]
    assert store.read_day("options", HALF_DAY).num_rows == 0
    store.write_day("options", HALF_DAY, options_snapshot(HALF_DAY, 0))  # the retry, once resolved
    assert store.read_day("options", HALF_DAY).num_rows == 12
    store.close()
