"""The archive on S3-compatible storage (moto server on loopback) with its catalog on PostgreSQL
(a real server from Debian's binaries): writes through ``ArchiveStore``, the plain-layout
object, retries, a failed upload, time travel, another process reading with
``archive_platform.connect()``, advisory writer locks, and secrets kept out of everything stored."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.lake.catalog import LakeLocation
from archive_platform.settings import lake_config
from archive_platform.store import ArchiveStore, ArchiveWriteError
from archive_platform_tests.pg_helpers import postgres_server
from archive_platform_tests.s3_helpers import s3_server
from archive_platform_tests.store_helpers import FULL_DAY, HALF_DAY, make_table, options_snapshot

pytestmark = pytest.mark.slow

# moto and a trust-auth PostgreSQL accept any credentials: these only have to be recognisable
KEY, SECRET, PG_PW = "AKIAARCHIVETEST0042", "s3cret-value-never-shown", "pg-password-never-shown"
KEY_COLS = ["snapshot_time", "symbol", "strike", "right"]


@pytest.fixture(scope="module")
def servers():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    with s3_server() as s3, postgres_server("lake") as pg:
        s3.client().create_bucket(Bucket="archive")
        yield s3, pg


def lake_env(s3, pg, prefix: str, bucket: str = "archive") -> dict[str, str]:
    """Each test gets its own S3 prefix and catalog database (named like the prefix)."""
    import psycopg2

    conn = psycopg2.connect(pg.url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{prefix}"')
        cur.execute(f'CREATE DATABASE "{prefix}"')
    conn.close()
    return {"ARCHIVE_SIM_S3_URL": f"s3://{bucket}/{prefix}", "ARCHIVE_S3_ENDPOINT": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
            "ARCHIVE_SIM_LAKE_CATALOG": f"postgres:host=127.0.0.1 port={pg.port} dbname={prefix} user={pg.user}",
            "ARCHIVE_LAKE_PG_PASSWORD": PG_PW}


def catalog_query(pg, db: str, sql: str) -> list[tuple]:
    return replace(pg, db=db).query(sql)


def make_store(tmp_path, env):
    return ArchiveStore(tmp_path / "root", kind="sim", lake=lake_config("sim", env))


def objects(s3, prefix: str) -> list[str]:
    """Object keys under the prefix, without the empty "folder/" markers pyarrow leaves when it
    deletes a folder's last object (no reader's ``*.parquet`` glob matches them)."""
    out = s3.client().list_objects_v2(Bucket="archive", Prefix=prefix + "/").get("Contents", [])
    return sorted(o["Key"] for o in out if not o["Key"].endswith("/"))


def read_object(s3, key: str):
    import io

    body = s3.client().get_object(Bucket="archive", Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body)), body


def reader(env: dict[str, str], root, sql: str, as_of: str | None = None) -> subprocess.CompletedProcess:
    """``archive_platform.connect()`` in a fresh interpreter configured only by the environment."""
    code = ("import json, sys, datetime, archive_platform\n"
            "as_of = datetime.datetime.fromisoformat(sys.argv[3]) if sys.argv[3] else None\n"
            "con = archive_platform.connect(kind='sim', root=sys.argv[1], as_of=as_of)\n"
            "print(json.dumps(con.execute(sys.argv[2]).fetchall(), default=str))\n")
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "AWS_"))}
    return subprocess.run([sys.executable, "-c", code, str(root), sql, as_of or ""], env={**full, **env},
                          capture_output=True, text=True, timeout=120)


def test_writes_on_s3_with_a_postgres_catalog_are_read_by_another_process(servers, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="archive_platform")
    s3, pg = servers
    env = lake_env(s3, pg, "rt")
    store = make_store(tmp_path, env)
    store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    before_appends = datetime.now(timezone.utc)
    time.sleep(0.05)
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 2))
    again = store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1, shift=5.0))  # re-delivery
    assert again.rows_written == 12 and str(again.path).startswith("s3://archive/rt/_lake/data/")
    flow = make_table("uw_flow", HALF_DAY, 7)
    store.write_day("uw_flow", HALF_DAY, flow)
    store.write_day("uw_flow", HALF_DAY, flow)  # a retried write converges

    # nothing under the local root but the marker and temp/lock folders; no SQLite catalog
    local = sorted(p.relative_to(tmp_path / "root").as_posix() for p in (tmp_path / "root").rglob("*") if p.is_file())
    assert all(p.startswith("_lake/locks/") or p == "_archive.json" for p in local), local
    assert not (tmp_path / "root" / "_lake" / "catalog.sqlite").exists()
    assert {r[0] for r in catalog_query(pg, "rt", "SELECT table_name FROM information_schema.tables WHERE "
                                        "table_schema = 'archive_sim'")} >= {"ducklake_data_file", "ducklake_snapshot"}

    # before compaction: three objects for the options day; the reader sees 36 rows, one version
    files = store.partition_files("options", FULL_DAY)
    assert len(files) == 3 and all(f.startswith("s3://archive/rt/_lake/data/main/options/") for f in files)
    # parts bound for S3 are lz4-compressed (uncompressed ones would cost more on the network)
    parts = [read_object(s3, str(f).split("s3://archive/", 1)[1])[1] for f in files if "/part-" in str(f)]
    assert parts and all(pq.ParquetFile(pa.BufferReader(p)).metadata.row_group(0).column(0).compression
                         == "LZ4" for p in parts)
    assert sum(f.stat().st_size for f in files) == store.partition_bytes("options", FULL_DAY) > 0
    res = store.compact_day("options", FULL_DAY)
    assert res.path == "s3://archive/rt/options/date=2025-11-26/options_20251126.parquet" == store.daily_path("options", FULL_DAY)
    assert store.compact_day("options", FULL_DAY).skipped
    got = store.read_day("options", FULL_DAY)
    assert got.num_rows == 36 and sorted(set(got["bid"].to_pylist()))  # three snapshots x 12

    # the plain-layout object holds the day's rows exactly once, the same as the lake
    plain, body = read_object(s3, "rt/options/date=2025-11-26/options_20251126.parquet")
    assert plain.num_rows == 36
    assert len({tuple(r[k] for k in KEY_COLS) for r in plain.to_pylist()}) == 36
    # the plain file declares every column nullable (the lake's Parquet writer does); same values
    assert plain.schema.field("symbol").type == pa.string() and plain.schema.metadata == got.schema.metadata
    assert plain.select(got.column_names).cast(got.schema).sort_by([(k, "ascending") for k in KEY_COLS]).equals(
        got.sort_by([(k, "ascending") for k in KEY_COLS]))
    redelivered = [r["bid"] for r in plain.to_pylist() if r["snapshot_time"] == options_snapshot(FULL_DAY, 1)["snapshot_time"][0].as_py()]
    assert redelivered and all(b >= 5.0 for b in redelivered)
    assert "rt/uw_flow/date=2025-11-28/uw_flow_20251128.parquet" in objects(s3, "rt")

    # another process, configured by the environment only, reads the same archive
    out = reader(env, tmp_path / "root", "SELECT count(*), count(DISTINCT snapshot_time) FROM options; ")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[36, 3]]
    out = reader(env, tmp_path / "root", "SELECT count(*) FROM uw_flow WHERE date = DATE '2025-11-28'")
    assert json.loads(out.stdout) == [[7]], out.stderr
    past = reader(env, tmp_path / "root", "SELECT count(*) FROM options", before_appends.isoformat())
    assert json.loads(past.stdout) == [[12]], past.stderr  # time travel: before the appends

    # secrets: nowhere in the catalog, the bucket, the local root, logs or the reader's output
    dump = ""
    for table in ("ducklake_data_file", "ducklake_metadata", "ducklake_snapshot_changes", "ducklake_table"):
        dump += json.dumps(catalog_query(pg, "rt", f"SELECT string_agg(t::text, ' ') FROM archive_sim.{table} t"))
    dump += body.decode("latin-1") + out.stdout + out.stderr + past.stderr + caplog.text
    dump += "".join(p.read_text(errors="replace") for p in (tmp_path / "root").rglob("*") if p.is_file())
    dump += repr(store) + repr(store.lake.location) + repr(res)
    assert "s3://archive/rt/_lake/data/" in dump  # the dump does hold the catalog's data path
    for secret in (KEY, SECRET, PG_PW):
        assert secret not in dump
    store.close()


def test_a_failed_upload_raises_and_registers_nothing(servers, tmp_path):
    s3, pg = servers
    env = lake_env(s3, pg, "nb", bucket="missing-bucket")
    store = make_store(tmp_path, env)
    table = options_snapshot(FULL_DAY, 0)
    with pytest.raises(ArchiveWriteError) as err:
        store.write_day("options", FULL_DAY, table)
    msg = str(err.value)
    assert "options 2025-11-26: write_day failed" in msg and "nothing was changed" in msg
    assert SECRET not in msg and KEY not in msg
    assert catalog_query(pg, "nb", "SELECT count(*) FROM archive_sim.ducklake_data_file") == [(0,)]
    assert store.read_day("options", FULL_DAY).num_rows == 0 and store.days("options") == []
    assert not list((tmp_path / "root" / "_lake" / "tmp").iterdir())  # the local temp file is gone
    # once the bucket exists, the same write succeeds and is the only thing registered
    s3.client().create_bucket(Bucket="missing-bucket")
    store.write_day("options", FULL_DAY, table)
    assert store.read_day("options", FULL_DAY).num_rows == 12
    assert catalog_query(pg, "nb", "SELECT count(*) FROM archive_sim.ducklake_data_file WHERE end_snapshot IS NULL") == [(1,)]
    store.close()


def test_a_failed_append_after_upload_leaves_no_object_and_the_day_unchanged(servers, tmp_path, monkeypatch):
    """The upload landed but registering failed: the object is removed, readers see the old day."""
    s3, pg = servers
    store = make_store(tmp_path, lake_env(s3, pg, "fa"))
    store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    before = objects(s3, "fa")
    from archive_platform.lake import engine

    def refuse(step):
        if step == "append:insert":
            raise OSError(28, "No space left on device (injected)")
    monkeypatch.setattr(engine, "crash_point", refuse)
    with pytest.raises(ArchiveWriteError, match="append failed"):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
    assert objects(s3, "fa") == before
    assert store.read_day("options", FULL_DAY).num_rows == 12
    store.close()


WRITER = """
import sys
from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import FULL_DAY, options_snapshot
ArchiveStore(sys.argv[1], kind="sim").write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
"""


@pytest.mark.parametrize("step", ["write_day:file", "write_day:commit"])
def test_a_writer_killed_mid_write_leaves_an_orphan_or_a_whole_day(servers, tmp_path, step):
    """SIGKILL after the upload: the object is an unregistered orphan that expiry deletes. After
    the commit: the day is whole for readers, and the next compaction publishes it."""
    s3, pg = servers
    env = lake_env(s3, pg, "k" + step[-4:])
    prefix = "k" + step[-4:]
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "AWS_"))}
    run = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "root")], timeout=120,
                         env={**full, **env, "ARCHIVE_LAKE_CRASH_AT": step}, capture_output=True, text=True)
    assert run.returncode == -9, run.stderr
    store = make_store(tmp_path, env)
    data = [k for k in objects(s3, prefix) if "/_lake/data/" in k]
    assert len(data) == 1 and f"{prefix}/options/date=2025-11-26/options_20251126.parquet" not in objects(s3, prefix)
    if step == "write_day:file":
        assert store.read_day("options", FULL_DAY).num_rows == 0 and store.days("options") == []
        from datetime import timedelta

        gone = store.lake.expire(timedelta(0))
        assert [g.rsplit("/", 1)[-1] for g in gone] == [data[0].rsplit("/", 1)[-1]]
        assert [k for k in objects(s3, prefix) if "/_lake/data/" in k] == []
        store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))  # the retry
    else:
        assert store.read_day("options", FULL_DAY).num_rows == 12
        assert store.compact_day("options", FULL_DAY).skipped  # already one file: only publishes
    plain, _ = read_object(s3, f"{prefix}/options/date=2025-11-26/options_20251126.parquet")
    assert plain.num_rows == 12 and store.read_day("options", FULL_DAY).num_rows == 12
    store.close()


def test_the_sql_shell_reads_the_archive_on_s3_without_writing_a_secret(servers, tmp_path):
    """`archive-platform sql` on S3 + PostgreSQL: the DuckDB CLI's init script creates the
    secrets with getenv(), so the key and passwords reach DuckDB but never a file."""
    s3, pg = servers
    env = lake_env(s3, pg, "sh")
    store = make_store(tmp_path, env)
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5))
    store.close()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "AWS_"))}
    cli = str(Path(sys.executable).parent / "archive-platform")
    out = subprocess.run([cli, "sql", "--sim", "--root", str(tmp_path / "root"), "-c",
                          "SELECT count(*) AS n, max(date)::VARCHAR AS d FROM gex"],
                         env={**full, **env, "TMPDIR": str(scratch)}, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    row = [c.strip() for c in out.stdout.strip().splitlines()[-2].split("│")[1:-1]]
    assert row == ["5", "2025-11-26"], out.stdout
    # the init script's own statements print nothing (CREATE SECRET printed a "Success" table)
    assert out.stdout.count("┌") == 1 and "Success" not in out.stdout, out.stdout
    assert not list(scratch.glob("archive-sql-*"))  # the init script and its folder are gone
    for secret in (SECRET, PG_PW):
        assert secret not in out.stdout + out.stderr


def test_a_day_archived_empty_is_known_on_s3(servers, tmp_path):
    """A session without executions: stored as an empty day, not "never archived"."""
    s3, pg = servers
    store = make_store(tmp_path, lake_env(s3, pg, "em"))
    store.write_day("trades", FULL_DAY, make_table("trades", FULL_DAY, 0))
    store.write_day("trades", HALF_DAY, make_table("trades", HALF_DAY, 3))
    assert store.days("trades") == [FULL_DAY, HALF_DAY]
    assert store.partition_files("trades", FULL_DAY) and store.read_day("trades", FULL_DAY).num_rows == 0
    plain, _ = read_object(s3, "em/trades/date=2025-11-26/trades_20251126.parquet")
    assert plain.num_rows == 0
    assert store.compact_day("trades", FULL_DAY).skipped  # end-of-day compaction keeps it
    assert store.days("trades") == [FULL_DAY, HALF_DAY]
    store.close()


def test_the_catalog_password_is_used_and_never_shown(servers, tmp_path):
    """A catalog user that must authenticate: the password reaches PostgreSQL (DuckDB's catalog
    connection and the advisory-lock session) from ARCHIVE_LAKE_PG_PASSWORD only."""
    s3, pg = servers
    env = lake_env(s3, pg, "pw")
    if not pg.query("SELECT 1 FROM pg_roles WHERE rolname = 'lakeuser'"):
        pg.query(f"CREATE ROLE lakeuser LOGIN PASSWORD '{PG_PW}'")
    pg.query('ALTER DATABASE "pw" OWNER TO lakeuser')
    hba = pg.data_dir / "pg_hba.conf"
    hba.write_text("host all lakeuser 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    pg.query("SELECT pg_reload_conf()")
    env["ARCHIVE_SIM_LAKE_CATALOG"] = env["ARCHIVE_SIM_LAKE_CATALOG"].replace(f"user={pg.user}", "user=lakeuser")
    wrong = make_store(tmp_path / "wrong", {**env, "ARCHIVE_LAKE_PG_PASSWORD": "wrong-password-1234"})
    with pytest.raises(ArchiveWriteError) as err:
        wrong.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    assert "password authentication failed" in str(err.value) and "wrong-password-1234" not in str(err.value)
    store = make_store(tmp_path / "right", env)
    store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
    assert store.read_day("options", FULL_DAY).num_rows == 24
    assert catalog_query(pg, "pw", "SELECT tableowner FROM pg_tables WHERE schemaname = 'archive_sim' "
                                   "AND tablename = 'ducklake_data_file'") == [("lakeuser",)]
    store.close()


def test_writers_of_one_partition_take_turns_on_a_postgres_advisory_lock(servers, tmp_path):
    s3, pg = servers
    cfg = lake_config("sim", lake_env(s3, pg, "lk"))
    a = LakeLocation.for_root(tmp_path / "a", config=cfg)  # two "machines": different local roots
    b = LakeLocation.for_root(tmp_path / "b", config=cfg)
    order: list[str] = []

    def second_writer() -> None:
        with b.writer_lock("options", "2025-11-26"):
            order.append("b")

    with a.writer_lock("options", "2025-11-26"):
        t = threading.Thread(target=second_writer)
        t.start()
        deadline = time.monotonic() + 30
        while not pg.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0][0]:
            assert time.monotonic() < deadline, "the second writer never queued on the lock"
            time.sleep(0.05)
        with b.writer_lock("options", "2025-11-27"):  # another day is not blocked
            order.append("other day")
        order.append("a done")
    t.join(30)
    assert order == ["other day", "a done", "b"]
    deadline = time.monotonic() + 30  # a closed session's backend exits just after the client
    while pg.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") != [(0,)]:
        assert time.monotonic() < deadline, "an advisory lock outlived its writer"
        time.sleep(0.05)
    assert not (tmp_path / "a" / "_lake" / "locks").exists() or not list((tmp_path / "a" / "_lake" / "locks").iterdir())
