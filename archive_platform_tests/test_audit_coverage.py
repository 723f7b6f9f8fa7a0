"""Audit of the coverage ledger and ``archive-platform status`` (docs/coverage.md): status must not
call an archive healthy that has lost a day, must name the days it complains about, must not
raise a false alarm before anything is due, and must say "cannot tell" (exit 2, one line) rather
than print a traceback when the archive cannot be read."""

from __future__ import annotations

import json
from datetime import date, datetime

import pyarrow.parquet as pq
from click.testing import CliRunner

from archive_platform.calendar import ET
from archive_platform.coverage import Entry
from archive_platform.datasets import BY_NAME
from archive_platform.datasets.coverage import ledger_path, read_ledger, write_ledger
from archive_platform.status import archive_status, dataset_status, render_text

STOCKS = BY_NAME["stocks_1m"]


def _entries(days, *, missing=(), failed=(), degraded=(), name="stocks_1m"):
    out = []
    for d in days:
        if d in missing:
            out.append(Entry(name, d, "missing", "never materialized", False))
        elif d in failed:
            out.append(Entry(name, d, "failed", "the latest run failed and nothing is stored", False))
        elif d in degraded:
            out.append(Entry(name, d, "degraded", "minutes: 1 symbols without exactly 390 one-minute bars",
                             True, rows=200, bytes=10, files=1))
        else:
            out.append(Entry(name, d, "complete", None, False, rows=390, bytes=10, files=1))
    return out


def _sessions(lo, hi):
    return STOCKS.calendar.sessions(lo, hi)


def test_a_day_lost_before_the_lookback_makes_status_unhealthy_and_names_it():
    # 11-25 was never stored; ten sessions later it is out of the 5-session lookback, which the
    # recovery sensor retries: only a backfill can bring it back, so status must not say healthy
    days = _sessions(date(2025, 11, 21), date(2025, 12, 10))
    now = datetime(2025, 12, 10, 22, 0, tzinfo=ET)
    x = dataset_status(STOCKS, _entries(days, missing={date(2025, 11, 25)}), now,
                       lookback=5, first=date(2025, 11, 21))
    assert x["healthy"] is False
    assert x["missing"] == [] and x["fresh"] is True
    assert x["missing_older"] == ["2025-11-25"]
    assert any("2025-11-25" in p and "backfill" in p for p in x["problems"]), x["problems"]
    # a failed day before the lookback is just as lost
    y = dataset_status(STOCKS, _entries(days, failed={date(2025, 11, 24)}), now,
                       lookback=5, first=date(2025, 11, 21))
    assert y["healthy"] is False and y["missing_older"] == ["2025-11-24"]
    # the whole report (what the exit code follows) too
    assert archive_status([STOCKS], _entries(days, missing={date(2025, 11, 25)}), now, lookback=5,
                          first=date(2025, 11, 21))["healthy"] is False


def test_missing_and_failed_days_are_named_in_the_problems():
    days = _sessions(date(2025, 11, 21), date(2025, 11, 26))
    now = datetime(2025, 11, 26, 22, 0, tzinfo=ET)
    x = dataset_status(STOCKS, _entries(days, missing={date(2025, 11, 24)}, failed={date(2025, 11, 25)}),
                       now, lookback=5, first=date(2025, 11, 21))
    assert x["missing"] == ["2025-11-24"] and x["failed"] == ["2025-11-25"]
    assert "1 missing in the last 5 days: 2025-11-24" in x["problems"]
    assert "1 failed in the last 5 days: 2025-11-25" in x["problems"]


def test_fresh_means_the_due_day_itself_is_stored_not_a_later_partial_day():
    # Thursday 12-11 at noon: 12-10 was due (21:30 ET) and is not stored; today's partial day is
    days = _sessions(date(2025, 12, 8), date(2025, 12, 11))
    now = datetime(2025, 12, 11, 12, 0, tzinfo=ET)
    x = dataset_status(STOCKS, _entries(days, missing={date(2025, 12, 10)}), now,
                       lookback=5, first=date(2025, 12, 8))
    assert x["due_day"] == "2025-12-10" and x["last_day"] == "2025-12-11"
    assert x["fresh"] is False
    assert "stale: 2025-12-10 was due by its deadline and is not stored" in x["problems"]


def test_nothing_due_yet_is_not_an_alarm_but_an_empty_archive_is():
    # ARCHIVE_START_DATE is today and the session is open: nothing was due, nothing is stored
    now = datetime(2025, 12, 11, 12, 0, tzinfo=ET)
    x = dataset_status(STOCKS, [], now, lookback=5, first=date(2025, 12, 11))
    assert x["healthy"] is True and x["problems"] == [] and x["fresh"] is True
    # after its deadline the first day is due: now it is an alarm
    late = dataset_status(STOCKS, [], datetime(2025, 12, 11, 22, 0, tzinfo=ET), lookback=5,
                          first=date(2025, 12, 11))
    assert late["healthy"] is False and late["problems"] == ["nothing stored"]
    # no start date and nothing stored: the archive is empty, which is not healthy
    empty = dataset_status(STOCKS, [], now, lookback=5, first=None)
    assert empty["healthy"] is False and empty["problems"] == ["nothing stored"]


def test_the_text_shows_degraded_days_which_do_not_count_against_health():
    days = _sessions(date(2025, 11, 21), date(2025, 11, 26))
    now = datetime(2025, 11, 26, 22, 0, tzinfo=ET)
    report = archive_status([STOCKS], _entries(days, degraded={date(2025, 11, 25)}), now,
                            lookback=5, first=date(2025, 11, 21))
    assert report["healthy"] is True and report["datasets"][0]["degraded"] == ["2025-11-25"]
    line = next(t for t in render_text(report).splitlines() if t.startswith("stocks_1m"))
    assert "degraded" in line and "2025-11-25" in line


def test_a_corrupt_ledger_file_is_ignored_and_rewritten(tmp_path):
    d1, d2 = date(2025, 11, 25), date(2025, 11, 26)
    entries = _entries([d1, d2])
    assert len(write_ledger(tmp_path, entries)) == 2
    ledger_path(tmp_path, d1).write_bytes(b"not parquet")  # a crash mid-copy, a bad disk
    assert set(read_ledger(tmp_path)) == {("stocks_1m", d2)}
    assert set(read_ledger(tmp_path, [d1, d2])) == {("stocks_1m", d2)}
    assert write_ledger(tmp_path, entries) == [ledger_path(tmp_path, d1)]
    assert pq.read_table(ledger_path(tmp_path, d1)).num_rows == 1


def _cli(monkeypatch, tmp_path, now, *args, **env):
    from archive_platform.cli import main
    from archive_platform.defs import automation
    from archive_platform_tests.dagster_helpers import sim_env

    (tmp_path / "home").mkdir(exist_ok=True)
    for k, v in sim_env(tmp_path, ARCHIVE_SYMBOLS="SPY", DAGSTER_HOME=str(tmp_path / "home"), **env).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(automation, "utcnow", lambda: now)
    return CliRunner().invoke(main, ["status", *args])


def _stocks(tmp_path, days):
    from archive_platform.schemas import ArchiveType
    from archive_platform.sim import SimulatedMarket
    from archive_platform.store import ArchiveStore

    store = ArchiveStore(tmp_path / "sim", kind="sim")
    market = SimulatedMarket()
    for d in days:
        store.write_day(ArchiveType.STOCKS_1M, d, market.fetch_stocks_1m(d, ["SPY"]))
    return store


def test_status_reports_a_day_lost_before_the_lookback(tmp_path, monkeypatch):
    # stored 11-21, 11-25, 11-26; 11-24 never; lookback 1 (11-25): 11-24 is out of it
    _stocks(tmp_path, [date(2025, 11, 21), date(2025, 11, 25), date(2025, 11, 26)])
    res = _cli(monkeypatch, tmp_path, datetime(2025, 11, 26, 22, 0, tzinfo=ET), "--json",
               ARCHIVE_START_DATE="", ARCHIVE_RECOVERY_LOOKBACK="1")
    assert res.exit_code == 1, res.output
    line = next(x for x in json.loads(res.output)["datasets"] if x["dataset"] == "stocks_1m")
    assert line["missing"] == [] and line["fresh"] is True
    assert line["healthy"] is False and line["missing_older"] == ["2025-11-24"]


def test_status_on_a_corrupt_catalog_says_so_in_one_line_and_exits_2(tmp_path, monkeypatch):
    _stocks(tmp_path, [date(2025, 11, 26)])
    catalog = tmp_path / "sim" / "_lake" / "catalog.sqlite"
    assert catalog.exists()
    catalog.write_bytes(b"\x00garbage" * 20)
    res = _cli(monkeypatch, tmp_path, datetime(2025, 11, 26, 22, 0, tzinfo=ET),
               ARCHIVE_START_DATE="")
    assert isinstance(res.exception, SystemExit), res.exception  # no traceback
    assert res.exit_code == 2, res.output
    assert "cannot read the archive" in res.output and str(tmp_path / "sim") in res.output
    assert "Traceback" not in res.output


def test_the_text_columns_stay_aligned_for_long_dataset_names():
    """`market_regime` (13) and `orderbook_features` (18) are longer than the 12 characters
    the name column had: their rows were pushed out of line with the header."""
    report = {"healthy": True, "datasets": [
        {"dataset": name, "healthy": True, "days_stored": 3, "first_day": "2025-11-24",
         "last_day": "2025-11-26", "rows": 10, "bytes": 2048, "last_write": None, "problems": []}
        for name in ("gex", "market_regime", "orderbook_features")]}
    lines = render_text(report).splitlines()
    starts = {line.index(" 3 ") for line in lines[1:4]}  # the `days` column of each row
    assert len(starts) == 1 and lines[0].index("days") + 3 == starts.pop() + 1
    assert all(line.split()[0] in ("gex", "market_regime", "orderbook_features") for line in lines[1:4])
