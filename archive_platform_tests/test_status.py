"""``archive-platform status [--json]`` (issue 9 "Status and health"): per dataset what is stored,
fresh and missing, exit 0 when healthy and 1 otherwise; the same figures the ``coverage``
asset shows as a table (see test_coverage)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from archive_platform.calendar import ET
from archive_platform.cli import main
from archive_platform.datasets import BY_NAME
from archive_platform.defs import automation
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.status import due_day, lookback_days
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import defs_for, run_job, sim_env

UTC = timezone.utc
DAYS = ("2025-11-25", "2025-11-26")


def test_due_day_follows_each_datasets_deadline_and_the_calendar():
    options, iv_rank = BY_NAME["options"], BY_NAME["iv_rank"]  # 21:30 ET and 19:30 ET deadlines
    at = datetime(2025, 11, 26, 20, 0, tzinfo=ET)
    assert due_day(options, at) == date(2025, 11, 25) and due_day(iv_rank, at) == date(2025, 11, 26)
    # Thanksgiving and the weekend after the half day: the last session stays due
    assert due_day(options, datetime(2025, 11, 27, 23, 0, tzinfo=ET)) == date(2025, 11, 26)
    assert due_day(options, datetime(2025, 11, 30, 12, 0, tzinfo=ET)) == date(2025, 11, 28)
    assert lookback_days(options, datetime(2025, 11, 29, 12, tzinfo=UTC), 3, date(2025, 11, 25)) == [
        date(2025, 11, 25), date(2025, 11, 26), date(2025, 11, 28)]


def test_a_utc_day_is_due_by_its_deadline_the_day_after():
    # a UTC day ends at midnight: its 03:00 UTC deadline falls on the next day
    trades = BY_NAME["crypto_trades"]
    assert due_day(trades, datetime(2025, 11, 29, 0, 10, tzinfo=UTC)) == date(2025, 11, 27)
    assert due_day(trades, datetime(2025, 11, 29, 3, 1, tzinfo=UTC)) == date(2025, 11, 28)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status")
    (tmp / "home").mkdir()
    env = sim_env(tmp, ARCHIVE_SYMBOLS="SPY", ARCHIVE_START_DATE="", ARCHIVE_RECOVERY_LOOKBACK="3")
    defs = defs_for(tmp, ARCHIVE_SYMBOLS="SPY", ARCHIVE_START_DATE="", ARCHIVE_RECOVERY_LOOKBACK="3")
    with dg.instance_for_test(temp_dir=str(tmp / "home")) as instance:
        for day in DAYS:
            assert run_job(defs, "archive_all", instance, partition_key=day).success
    return tmp, {**env, "DAGSTER_HOME": str(tmp / "home")}


def _status(archive, monkeypatch, now, *args):
    tmp, env = archive
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(automation, "utcnow", lambda: now)
    res = CliRunner().invoke(main, ["status", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res


@pytest.mark.slow
def test_status_of_a_healthy_archive(archive, monkeypatch):
    tmp, _ = archive
    now = datetime(2025, 11, 26, 22, 0, tzinfo=ET)  # after every deadline of 11-26
    res = _status(archive, monkeypatch, now, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["healthy"] is True and report["first_day"] == "2025-11-25"
    lines = {x["dataset"]: x for x in report["datasets"]}
    assert list(lines) == [t.value for t in ArchiveType if spec_for(t).calendar_name == "nyse"]
    store = ArchiveStore(tmp / "sim", kind="sim")
    for name, x in lines.items():
        files = {d: store.partition_files(name, date.fromisoformat(d)) for d in DAYS}
        rows = {d: sum(pq.read_metadata(p).num_rows for p in fs) for d, fs in files.items()}
        size = {d: sum(p.stat().st_size for p in fs) for d, fs in files.items()}
        assert (x["days_stored"], x["first_day"], x["last_day"]) == (2, *DAYS), name
        assert x["rows"] == sum(rows.values()) and x["last_day_rows"] == rows[DAYS[1]], name
        assert x["bytes"] == sum(size.values()) and x["last_day_bytes"] == size[DAYS[1]], name
        assert (x["due_day"], x["fresh"], x["missing"], x["failed"]) == ("2025-11-26", True, [], []), name
        newest = max(p.stat().st_mtime for fs in files.values() for p in fs)
        assert x["last_write"] == datetime.fromtimestamp(newest, UTC).isoformat(), name
    assert lines["options"]["rows"] > 1000
    text = _status(archive, monkeypatch, now)
    assert text.exit_code == 0 and text.output.strip().endswith("healthy")


@pytest.mark.slow
def test_status_of_an_unhealthy_archive(archive, monkeypatch):
    # Sunday 11-30: the half day 11-28 was due and is missing everywhere
    res = _status(archive, monkeypatch, datetime(2025, 11, 30, 12, 0, tzinfo=ET), "--json")
    assert res.exit_code == 1, res.output
    report = json.loads(res.output)
    assert report["healthy"] is False
    for x in report["datasets"]:
        assert x["fresh"] is False and x["missing"] == ["2025-11-28"], x
        assert any("stale: 2025-11-28" in p for p in x["problems"])
    text = _status(archive, monkeypatch, datetime(2025, 11, 30, 12, 0, tzinfo=ET))
    assert text.exit_code == 1 and "UNHEALTHY" in text.output


@pytest.mark.slow
def test_a_deleted_day_makes_the_archive_unhealthy(archive, monkeypatch):
    tmp, _ = archive
    store = ArchiveStore(tmp / "sim", kind="sim")
    (path,) = store.partition_files(ArchiveType.STOCKS_1M, date(2025, 11, 25))
    data = path.read_bytes()
    path.unlink()
    try:
        res = _status(archive, monkeypatch, datetime(2025, 11, 26, 22, 0, tzinfo=ET), "--json")
    finally:
        path.write_bytes(data)
    assert res.exit_code == 1
    bad = [x for x in json.loads(res.output)["datasets"] if not x["healthy"]]
    assert [(x["dataset"], x["missing"]) for x in bad] == [("stocks_1m", ["2025-11-25"])]
