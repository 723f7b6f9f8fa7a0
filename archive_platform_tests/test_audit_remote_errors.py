"""Audit: the error paths of the remote lake (data on S3, catalog on PostgreSQL), as a hostile
user meets them: wrong credentials, a bucket emptied under the archive, an endpoint refusing
connections, the catalog's server going down mid-run. Every reader path fails with ONE clear
error naming the setting to check (a ``ConfigError``: the CLI prints one line, exit 2), never
DuckDB's or pyarrow's raw error, and never a secret. Real servers on loopback (moto, PostgreSQL)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from archive_platform.config import ConfigError
from archive_platform.settings import lake_config
from archive_platform.store import ArchiveStore, ArchiveWriteError
from archive_platform_tests.pg_helpers import _as_service_user, free_port, pg_bin_dir, postgres_server
from archive_platform_tests.s3_helpers import s3_server
from archive_platform_tests.store_helpers import FULL_DAY, options_snapshot

pytestmark = pytest.mark.slow

KEY, SECRET = "AKIAAUDITREMOTE00042", "audit-s3cret-never-shown"
PG_PW = "audit-pg-pw-never-shown"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def s3():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with s3_server() as server:
        yield server


def s3_env(s3, bucket: str, tmp_path, **extra) -> dict[str, str]:
    """The simulated archive's data in ``bucket`` (SQLite catalog under the local root)."""
    s3.client().create_bucket(Bucket=bucket)
    return {"ARCHIVE_SIM_ROOT": str(tmp_path / "sim"), "ARCHIVE_ROOT": str(tmp_path / "live"),
            "ARCHIVE_SIM_S3_URL": f"s3://{bucket}/arch", "ARCHIVE_S3_ENDPOINT": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, **extra}


@contextmanager
def environ(env: dict[str, str]):
    old = dict(os.environ)
    for k in list(os.environ):
        if k.startswith(("ARCHIVE_", "AWS_")):
            del os.environ[k]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "AWS_", "DAGSTER_PG_"))}
    return subprocess.run([str(BIN / "archive-platform"), *args], env={**full, **env},
                          capture_output=True, text=True, timeout=300)


def no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (KEY, SECRET, PG_PW):
            assert secret not in text, text


def one_error_line(result: subprocess.CompletedProcess, *said: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for words in said:
        assert words in lines[0], lines[0]
    no_secret(result.stdout, result.stderr)


def written(env: dict[str, str]) -> ArchiveStore:
    store = ArchiveStore(env["ARCHIVE_SIM_ROOT"], kind="sim", lake=lake_config("sim", env))
    store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    store.close()
    return store


CREDS = "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"


def test_wrong_s3_credentials_fail_every_reader_path_with_one_clear_error(s3, tmp_path):
    """Bug: ``read_day`` raised DuckDB's raw ``HTTPException``; ``days()`` and
    ``partition_bytes()`` pyarrow's raw ``OSError``; ``archive_platform.connect()`` succeeded and
    the first query failed raw; ``sql -c`` printed DuckDB's multi-line error."""
    env = s3_env(s3, "audit-creds", tmp_path)
    with s3.checked_credentials("auditor") as good:
        good_env = {**env, "AWS_ACCESS_KEY_ID": good["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": good["SecretAccessKey"]}
        written(good_env)
        for case, bad in [("unknown key", env),
                          ("wrong secret", {**env, "AWS_ACCESS_KEY_ID": good["AccessKeyId"]})]:
            store = ArchiveStore(env["ARCHIVE_SIM_ROOT"], kind="sim", lake=lake_config("sim", bad))
            errors = []
            for read in (lambda: store.read_day("options", FULL_DAY), lambda: store.days("options"),
                         lambda: store.partition_bytes("options", FULL_DAY)):
                with pytest.raises(ConfigError) as err:
                    read()
                assert isinstance(err.value, OSError) and type(err.value).__name__ == "LakeStorageError"
                errors.append(str(err.value))
            for msg in errors:
                assert msg.startswith("cannot read the archive's data at s3://audit-creds/arch/_lake/data/ "
                                      "(ARCHIVE_SIM_S3_URL, endpoint 127.0.0.1:"), msg
                assert CREDS in msg and "\n" not in msg, msg
            with pytest.raises(ArchiveWriteError) as werr:  # a write names the partition and the settings
                store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
            assert "options 2025-11-26: write_day failed" in str(werr.value) and CREDS in str(werr.value)
            assert "nothing was changed" in str(werr.value)
            store.close()
            with environ(bad):
                import archive_platform

                with pytest.raises(ConfigError) as cerr:  # refused at connect, not at the first query
                    archive_platform.connect(kind="sim")
            assert CREDS in str(cerr.value) and "ARCHIVE_SIM_S3_URL" in str(cerr.value)
            no_secret(*errors, str(werr.value), str(cerr.value), repr(cerr.value), repr(store))
            assert good["SecretAccessKey"] not in " ".join(errors) + str(cerr.value)
            if case == "unknown key":
                one_error_line(cli(bad, "sql", "--sim", "-c", "SELECT count(*) FROM options"),
                               "cannot read the archive's data at s3://audit-creds/arch/_lake/data/", CREDS)
                (tmp_path / "dagster_home").mkdir()
                status = cli({**bad, "DAGSTER_HOME": str(tmp_path / "dagster_home")}, "status")
                assert status.returncode == 2, status.stdout + status.stderr
                last = status.stderr.strip().splitlines()[-1]  # (Dagster warns of no dagster.yaml first)
                assert last.startswith("error: cannot read the archive (") and CREDS in last, status.stderr
                assert "LakeStorageError: cannot read the archive's data at s3://audit-creds/arch/" in last
                assert "Traceback" not in status.stderr
                no_secret(status.stdout, status.stderr)
        # nothing was lost: the good key still reads the day written before
        store = ArchiveStore(env["ARCHIVE_SIM_ROOT"], kind="sim", lake=lake_config("sim", good_env))
        assert store.read_day("options", FULL_DAY).num_rows == 12
        store.close()


def test_a_bucket_emptied_under_the_archive_is_named_as_missing_objects(s3, tmp_path):
    """Bug: reading a day whose objects were deleted raised DuckDB's raw HTTP 404 error."""
    env = s3_env(s3, "audit-emptied", tmp_path)
    written(env)
    client = s3.client()
    for obj in client.list_objects_v2(Bucket="audit-emptied").get("Contents", []):
        client.delete_object(Bucket="audit-emptied", Key=obj["Key"])
    store = ArchiveStore(env["ARCHIVE_SIM_ROOT"], kind="sim", lake=lake_config("sim", env))
    with pytest.raises(ConfigError) as err:
        store.read_day("options", FULL_DAY)
    msg = str(err.value)
    assert msg.startswith("cannot read the archive's data at s3://audit-emptied/arch/_lake/data/ (ARCHIVE_SIM_S3_URL")
    assert "NoSuchKey" in msg and "an object the lake catalog names is missing from s3://audit-emptied/arch" in msg
    assert "restore it from a backup of the bucket" in msg
    store.close()
    # the rest of the archive stays readable: connect() does not refuse for one missing object,
    # the query that needs it fails clearly (``query`` prints one line)
    out = cli(env, "query", "latest_chain", "--symbol", "SYM0", "--at", "2025-11-26T16:00:00-05:00")
    one_error_line(out, "an object the lake catalog names is missing from s3://audit-emptied/arch")
    no_secret(msg)


def test_an_s3_endpoint_refusing_connections_is_named(s3, tmp_path):
    """Bug: DuckDB's raw "IO Error: Could not connect to server" from ``read_day``."""
    env = s3_env(s3, "audit-refused", tmp_path)
    written(env)
    down = {**env, "ARCHIVE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    store = ArchiveStore(env["ARCHIVE_SIM_ROOT"], kind="sim", lake=lake_config("sim", down))
    with pytest.raises(ConfigError) as err:
        store.read_day("options", FULL_DAY)
    assert "is the S3 endpoint of ARCHIVE_S3_ENDPOINT up and reachable?" in str(err.value)
    assert str(err.value).startswith("cannot read the archive's data at s3://audit-refused/arch/_lake/data/")
    store.close()
    with environ(down):
        import archive_platform

        with pytest.raises(ConfigError, match=r"is the S3 endpoint of ARCHIVE_S3_ENDPOINT up and reachable\?"):
            archive_platform.connect(kind="sim")


def test_the_catalog_server_going_down_mid_run_is_one_clear_error_on_read(tmp_path):
    """Bug: once the lake was attached, a read after PostgreSQL went away raised DuckDB's raw
    multi-line ``IOException`` (with a fragment of DuckLake's SQL); it now names the setting,
    and reads work again once the server is back."""
    with postgres_server("lake") as pg:
        env = {"ARCHIVE_SIM_LAKE_CATALOG": f"postgres:host=127.0.0.1 port={pg.port} dbname=lake user={pg.user}",
               "ARCHIVE_LAKE_PG_PASSWORD": PG_PW}
        store = ArchiveStore(tmp_path / "sim", kind="sim", lake=lake_config("sim", env))
        store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
        ctl = [str(pg_bin_dir() / "pg_ctl"), "-D", str(pg.data_dir), "-w"]
        subprocess.run(_as_service_user([*ctl, "-m", "fast", "stop"]), check=True, capture_output=True)
        try:
            for read in (lambda: store.read_day("options", FULL_DAY), lambda: store.days("options")):
                with pytest.raises(ConfigError) as err:
                    read()
                msg = str(err.value)
                assert isinstance(err.value, OSError) and "\n" not in msg
                assert msg.startswith("cannot open the lake catalog of ARCHIVE_SIM_LAKE_CATALOG (PostgreSQL "
                                      f"dbname=lake host=127.0.0.1 port={pg.port}"), msg
                assert "Connection refused" in msg and "LINE 2" not in msg
                no_secret(msg)
        finally:
            opts = f"-p {pg.port} -k {pg.data_dir.parent} -c listen_addresses=127.0.0.1"
            subprocess.run(_as_service_user([*ctl, "-o", opts, "-l", str(pg.data_dir.parent / "server.log"),
                                             "start"]), check=True, capture_output=True)
        assert store.read_day("options", FULL_DAY).num_rows == 12
        store.close()


def test_reading_a_catalog_database_that_holds_no_lake_creates_nothing(tmp_path):
    """Bug: with a PostgreSQL catalog every store read attached the lake read-write, so
    ``read_day``/``days`` (``status``, the coverage ledger) on a database holding no lake (a typo
    in ARCHIVE_LAKE_PG_DB or the conninfo's dbname) CREATED a DuckLake catalog there, claiming
    this machine's data path; readers of the right root were then refused. Reads never create a
    lake: they read nothing, and ``connect()`` says "no lake catalog in ..."."""
    import psycopg2

    with postgres_server("lake") as pg:
        conn = psycopg2.connect(pg.url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('CREATE DATABASE "typo"')
        conn.close()
        env = {"ARCHIVE_SIM_ROOT": str(tmp_path / "sim"), "ARCHIVE_ROOT": str(tmp_path / "live"),
               "ARCHIVE_SIM_LAKE_CATALOG": f"postgres:host=127.0.0.1 port={pg.port} dbname=typo user={pg.user}",
               "ARCHIVE_LAKE_PG_PASSWORD": PG_PW}
        store = ArchiveStore(tmp_path / "sim", kind="sim", lake=lake_config("sim", env))
        assert store.read_day("options", FULL_DAY).num_rows == 0
        assert store.days("options") == [] and store.partition_files("options", FULL_DAY) == []
        store.close()
        from dataclasses import replace

        assert replace(pg, db="typo").query(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'archive_sim'") == [(0,)]
        with environ(env):
            import archive_platform

            with pytest.raises(FileNotFoundError, match=r"^no lake catalog in ARCHIVE_SIM_LAKE_CATALOG "
                                                        r"\(PostgreSQL dbname=typo "):
                archive_platform.connect(kind="sim")
        # once written, the same store reads it (the check does not hide a real lake)
        store = ArchiveStore(tmp_path / "sim", kind="sim", lake=lake_config("sim", env))
        store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
        store.close()
        reader = ArchiveStore(tmp_path / "sim", kind="sim", lake=lake_config("sim", env))
        assert reader.days("options") == [FULL_DAY] and reader.read_day("options", FULL_DAY).num_rows == 12
        reader.close()
