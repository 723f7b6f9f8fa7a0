"""Dagster as separate processes on PostgreSQL: code server (``dagster api grpc``), daemon and
webserver, started here on loopback, with the simulated archive on an S3 server (moto) and its
lake catalog in the same PostgreSQL. A backfill of 3 NYSE sessions launched through the
webserver's GraphQL API by ``archive-platform backfill``, and one of 2 UTC days of the crypto
datasets, complete by the daemon: the rows are in the bucket, the runs and materializations in
PostgreSQL, and ``archive_platform.connect()`` in another process reads them. A run whose
worker is killed is failed and retried by the instance's run monitoring and run retries."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from datetime import date

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from archive_platform.backfill import IN_PROCESS, backfill, backfill_status, launch_asset_backfill, wait_for_backfill
from archive_platform.datasets import DATASETS
from archive_platform.defs.derived_assets import RECONCILE
from archive_platform.schemas import ArchiveType, spec_for

#: what `archive-platform backfill` archives by default: every NYSE dataset
NYSE = [t for t in ArchiveType if spec_for(t).calendar_name == "nyse"]
from archive_platform_tests.dagster_helpers import sim_env
from archive_platform_tests.deploy_helpers import LOCATION, install_instance, topology
from archive_platform_tests.pg_helpers import postgres_server
from archive_platform_tests.s3_helpers import s3_server

pytestmark = pytest.mark.slow

DAYS = [date(2025, 11, 3), date(2025, 11, 4), date(2025, 11, 5)]  # three NYSE sessions
UTC_DAYS = [date(2025, 11, 8), date(2025, 11, 9)]  # a weekend: UTC days that are no NYSE session
CRYPTO = [t for t in ArchiveType if spec_for(t).calendar_name == "utc"]
BUCKET, PREFIX = "archive", "sim"
KILL_DAY = date(2025, 11, 6)
# Tight instance settings so a dead worker is noticed within seconds on a busy 2-core machine.
TEST_OVERRIDES = {"run_monitoring": {"poll_interval_seconds": 5, "start_timeout_seconds": 180}}

SECRETS = ("AKIATOPOLOGYKEY00042", "topology-s3-secret-never-shown", "topology-pg-pw-never-shown")

LAUNCH_RUN = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    with postgres_server() as pg, s3_server() as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        home = tmp / "home"
        config = install_instance(home, "postgres", TEST_OVERRIDES)
        assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
        # the simulated archive: data in the bucket, catalog in the instance's database
        # moto and a trust-auth PostgreSQL accept any credentials: these are recognisable, so
        # test_no_secret_reaches_the_instance_or_the_logs can search for them
        lake = {"ARCHIVE_SIM_S3_URL": f"s3://{BUCKET}/{PREFIX}", "ARCHIVE_S3_ENDPOINT": s3.endpoint_url,
                "AWS_ACCESS_KEY_ID": SECRETS[0], "AWS_SECRET_ACCESS_KEY": SECRETS[1],
                "ARCHIVE_SIM_LAKE_CATALOG": "postgres"}
        env = {**sim_env(tmp), **pg.env(), "DAGSTER_PG_PASSWORD": SECRETS[2], **lake}
        with topology(home, env) as topo:
            yield topo, pg, tmp, s3, env


def _sql_runs(pg, backfill_id=None):
    sql = "SELECT r.run_id, r.status FROM runs r"
    if backfill_id:
        sql += " JOIN run_tags t ON t.run_id = r.run_id AND t.key = 'dagster/backfill' AND t.value = %s"
        return pg.query(sql, (backfill_id,))
    return pg.query(sql)


def _day_rows(s3, t: ArchiveType, day: date) -> int | None:
    """Rows of the day's plain-layout object in the bucket (None: no object)."""
    spec = spec_for(t)
    key = f"{PREFIX}/{spec.directory}/date={day}/{spec.file_stem}_{day:%Y%m%d}.parquet"
    try:
        body = s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except s3.client().exceptions.NoSuchKey:
        return None
    return pq.read_metadata(io.BytesIO(body)).num_rows


def _read_elsewhere(env, sql: str):
    """``archive_platform.connect()`` in another process, configured by the environment only."""
    code = ("import json, sys, archive_platform\n"
            "con = archive_platform.connect(kind='sim')\n"
            "print(json.dumps(con.execute(sys.argv[1]).fetchall(), default=str))\n")
    out = subprocess.run([sys.executable, "-c", code, sql], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_backfill_command_runs_asset_backfill_through_webserver_and_daemon(stack):
    topo, pg, tmp, s3, env = stack
    result = CliRunner().invoke(backfill, ["--from", str(DAYS[0]), "--to", str(DAYS[-1]), "--url", topo.url,
                                           "--timeout", "900"], catch_exceptions=False)
    assert result.exit_code == 0, result.output + topo.log_tail("daemon") + topo.log_tail("code_server")
    backfill_id = re.search(rf"^backfill (\w+): 3 sessions x {len(NYSE)} assets", result.output, re.M).group(1)
    final = backfill_status(topo.url, backfill_id)
    assert final.succeeded
    assert {a.asset: (a.targeted, a.materialized, a.failed) for a in final.assets} == {
        t.value: (3, 3, 0) for t in NYSE}
    n = 3 * len(NYSE)
    assert f"{n}/{n} asset partitions materialized" in result.output

    # the rows are in the bucket the code server was configured with, not under the local root
    stored = {}
    for t in NYSE:
        for day in DAYS:
            stored[t.value, str(day)] = rows = _day_rows(s3, t, day)
            assert rows is not None, f"{t.value} {day} not stored in s3://{BUCKET}/{PREFIX}"
            if t is not ArchiveType.TRADES:  # executions may be empty by design
                assert rows > 0, f"{t.value} {day} is empty"
    assert not (tmp / "sim" / "_lake" / "catalog.sqlite").exists()
    assert not (tmp / "sim" / "options").exists()
    # the lake's catalog is in the instance's database: its data path is the bucket, and it
    # lists at least one live file per options day
    assert pg.query("SELECT value FROM archive_sim.ducklake_metadata WHERE key = 'data_path'") == [
        (f"s3://{BUCKET}/{PREFIX}/_lake/data/",)]
    assert pg.query("SELECT count(*) FROM archive_sim.ducklake_data_file f JOIN archive_sim.ducklake_table t "
                    "USING (table_id) WHERE t.table_name = 'options' AND f.end_snapshot IS NULL "
                    "AND t.end_snapshot IS NULL")[0][0] >= 3
    # another process reads the same rows through the lake (catalog in PostgreSQL, data in S3)
    for t in (ArchiveType.OPTIONS, ArchiveType.STOCKS_1M):
        got = dict(_read_elsewhere(env, f"SELECT CAST(date AS VARCHAR), count(*) FROM {t.value} GROUP BY 1"))
        assert got == {str(d): stored[t.value, str(d)] for d in DAYS}

    # the runs and the materializations are in PostgreSQL: the backfill policy (5 sessions a run)
    # makes one run for the three sessions
    runs = _sql_runs(pg, backfill_id)
    assert [s for _, s in runs] == ["SUCCESS"]
    mats = pg.query(
        "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
        "AND run_id = %s", (runs[0][0],))
    assert sorted(mats) == sorted((f'["{t.value}"]', str(d)) for t in NYSE for d in DAYS)
    checks = pg.query("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION' "
                      "AND run_id = %s", (runs[0][0],))
    # the five checks of every dataset and the derived datasets' reconcile checks, once per day
    # (a chunked run records each day's own result)
    assert checks[0][0] == 3 * (5 * len(NYSE) + len(RECONCILE))


def test_backfill_of_utc_days_writes_the_crypto_datasets_to_the_bucket(stack):
    topo, pg, tmp, s3, env = stack
    keys = [str(d) for d in UTC_DAYS]
    backfill_id = launch_asset_backfill(topo.url, [t.value for t in CRYPTO], keys, title="utc days",
                                        run_config=IN_PROCESS)
    final = wait_for_backfill(topo.url, backfill_id, timeout=900)
    assert final.succeeded, f"{final.status} {final.error}" + topo.log_tail("daemon")
    assert {a.asset: (a.targeted, a.materialized, a.failed) for a in final.assets} == {
        t.value: (2, 2, 0) for t in CRYPTO}
    runs = _sql_runs(pg, backfill_id)
    assert runs and {s for _, s in runs} == {"SUCCESS"}
    run_ids = tuple(r for r, _ in runs)
    mats = pg.query("SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = "
                    "'ASSET_MATERIALIZATION' AND run_id IN %s", (run_ids,))
    assert sorted(mats) == sorted((f'["{t.value}"]', k) for t in CRYPTO for k in keys)
    books = {d: _day_rows(s3, ArchiveType.ORDERBOOK_L2, d) for d in UTC_DAYS}
    assert books == {d: 2 * 86_400 for d in UTC_DAYS}  # BTC and ETH, one simulated book a second
    trades = {d: _day_rows(s3, ArchiveType.CRYPTO_TRADES, d) for d in UTC_DAYS}
    assert all(n and n > 100_000 for n in trades.values()), trades
    got = _read_elsewhere(env, "SELECT CAST(date AS VARCHAR), count(*), count(DISTINCT symbol) FROM "
                               "crypto_trades GROUP BY 1 ORDER BY 1")
    assert got == [[str(d), trades[d], 2] for d in UTC_DAYS]


def _worker_pid(pg, run_id: str, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = pg.query("SELECT event FROM event_logs WHERE run_id = %s AND event LIKE %s",
                        (run_id, "%Started process for run (pid: %"))
        if rows:
            return int(re.search(r"Started process for run \(pid: (\d+)\)", rows[0][0]).group(1))
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} never started a worker")


def _wait_status(pg, run_id: str, want: set[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = pg.query("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        if rows and rows[0][0] in want:
            return rows[0][0]
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} not in {want} after {timeout} s: {rows}")


def _tags(pg, run_id: str) -> dict[str, str]:
    return dict(pg.query("SELECT key, value FROM run_tags WHERE run_id = %s", (run_id,)))


def test_killed_run_worker_is_failed_and_retried(stack):
    topo, pg, tmp, s3, env = stack
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                     "jobName": "archive_all"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": str(KILL_DAY)}]},
    }
    launched = topo.graphql(LAUNCH_RUN, {"p": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    pid = _worker_pid(pg, run_id)
    os.kill(pid, signal.SIGKILL)  # the run worker dies mid-way, as under an OOM kill

    assert _wait_status(pg, run_id, {"FAILURE", "SUCCESS"}) == "FAILURE"
    failed_events = pg.query("SELECT event FROM event_logs WHERE run_id = %s AND event LIKE %s",
                             (run_id, "%was terminated by signal 9 (SIGKILL)%"))
    assert failed_events, "no engine event names the killed worker"

    deadline = time.monotonic() + 300
    retry = None
    while retry is None and time.monotonic() < deadline:
        rows = pg.query("SELECT run_id FROM run_tags WHERE key = 'dagster/parent_run_id' AND value = %s", (run_id,))
        retry = rows[0][0] if rows else None
        time.sleep(1)
    assert retry, "run retries did not launch a new run:\n" + topo.log_tail("daemon")
    tags = _tags(pg, retry)
    assert tags["dagster/retry_number"] == "1"
    assert tags["dagster/root_run_id"] == run_id
    assert tags["dagster/partition"] == str(KILL_DAY)
    assert _wait_status(pg, retry, {"SUCCESS", "FAILURE", "CANCELED"}, timeout=600) == "SUCCESS"
    for t in NYSE:
        assert _day_rows(s3, t, KILL_DAY) is not None, f"the retry did not store {t.value} {KILL_DAY}"


def test_no_secret_reaches_the_instance_or_the_logs(stack):
    """After the backfills and runs above: the S3 key and secret and the PostgreSQL password are
    in no table of the instance database (runs and their config, event logs, the lake catalog),
    in no process log, no file of DAGSTER_HOME and no object key."""
    topo, pg, tmp, s3, env = stack
    tables = [r[0] for r in pg.query("SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) "
                                     "FROM information_schema.tables WHERE table_schema NOT IN "
                                     "('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'")]
    assert "runs" in {t.split(".")[-1] for t in tables} and "archive_sim.ducklake_data_file" in tables
    assert pg.query("SELECT count(*) FROM event_logs")[0][0] > 100  # there is something to search
    dump = "".join(str(pg.query(f"SELECT string_agg(t::text, ' ') FROM {t} t")[0][0]) for t in tables)
    # job and definitions snapshots are stored zlib-compressed: search their text too
    for (body,) in pg.query("SELECT snapshot_body FROM snapshots"):
        dump += zlib.decompress(bytes(body)).decode(errors="replace")
    dump += "".join(p.read_text(errors="replace") for p in topo.logs.rglob("*") if p.is_file())
    dump += "".join(p.read_text(errors="replace") for p in topo.home.rglob("*") if p.is_file()
                    and p.stat().st_size < 50_000_000)
    dump += " ".join(o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", []))
    assert f"s3://{BUCKET}/{PREFIX}/_lake/data/" in dump  # the catalog's data path was searched
    for secret in SECRETS:
        assert secret not in dump
