"""Audit of the reader entry point and time travel as a hostile analyst uses them:
``connect(as_of=...)`` row by row around a re-delivery, the instants it must refuse, writes
through a read-only connection, and ``archive-platform sql --as-of`` / ``write_init_file``."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

import archive_platform
from archive_platform.lake import Lake, connect
from archive_platform.lake.shell import cli_command, init_sql, write_init_file
from archive_platform_tests.lake_helpers import D1, D2, FLOW, OPTIONS, flow, snapshot, sort

CLI = str(Path(sys.executable).parent / "archive-platform")
COLS = "snapshot_time, symbol, strike, \"right\", bid, version"


@pytest.fixture
def redelivered(tmp_path):
    """options D1 delivered (v1), re-delivered (v2); then uw_flow first written. Returns the
    root and the snapshot times: [schema, options created, v1, v2, uw_flow created, flow rows]."""
    root = tmp_path / "archive"
    with Lake(root) as lake:
        lake.append(OPTIONS, D1, snapshot(D1, 0, version=1))
        lake.append(OPTIONS, D1, snapshot(D1, 0, version=2))
        lake.append(FLOW, D2, flow(D2, [1, 2, 3]))
        times = [r[0] for r in lake.con.execute(
            "SELECT snapshot_time FROM ducklake_snapshots('lake') ORDER BY snapshot_id").fetchall()]
    assert len(times) == 6
    return root, times


def _rows(con, table="options"):
    return con.sql(f"SELECT {COLS} FROM {table} ORDER BY symbol, strike, \"right\"").fetchall()


def _expected(version):
    t = sort(snapshot(D1, 0, version=version), ("symbol", "strike", "right"))
    return [tuple(r.values()) for r in t.to_pylist()]


def test_as_of_between_a_redelivery_and_its_predecessor_is_the_earlier_content_row_by_row(redelivered):
    root, t = redelivered
    v1, v2 = _expected(1), _expected(2)
    between = t[2] + (t[3] - t[2]) / 2
    cases = {
        "at v1's snapshot": (t[2], v1),
        "1us before v2's snapshot": (t[3] - timedelta(microseconds=1), v1),
        "at v2's snapshot": (t[3], v2),
        "between, in New York time": (between.astimezone(ZoneInfo("America/New_York")), v1),
        "between, at +05:00": (between.astimezone(timezone(timedelta(hours=5))), v1),
        "in the future": (datetime.now(timezone.utc) + timedelta(days=1), v2),
        "after the table, before its rows": (t[1], []),
    }
    for label, (as_of, want) in cases.items():
        con = connect(root, as_of=as_of)
        try:
            assert _rows(con) == want, label
        finally:
            con.close()


def test_as_of_refuses_what_is_not_an_instant_and_one_before_the_first_write(redelivered):
    root, t = redelivered

    class NoOffset(tzinfo):  # aware-looking, but utcoffset() is None: Python calls it naive
        def utcoffset(self, dt):
            return None

        def dst(self, dt):
            return None

    bads = (t[2].replace(tzinfo=None), date(2025, 11, 25), t[2].isoformat(),
            t[2].replace(tzinfo=None).replace(tzinfo=NoOffset()))
    for bad in bads:
        with pytest.raises(ValueError, match="as_of must be a timezone-aware datetime"):
            connect(root, as_of=bad)
    for bad in bads:  # the CLI init script read a naive instant as UTC (a look-ahead)
        with pytest.raises(ValueError, match="timezone-aware"):
            init_sql(root, ["options"], as_of=bad)
    with pytest.raises(ValueError, match="no snapshot at or before .*before its first write"):
        connect(root, as_of=t[0] - timedelta(microseconds=1))
    # year 9999 in New York is year 10000 in UTC: a ValueError saying so, not an OverflowError
    with pytest.raises(ValueError, match="out of range in UTC"):
        connect(root, as_of=datetime(9999, 12, 31, 23, 59, tzinfo=ZoneInfo("America/New_York")))


def test_every_dataset_and_macro_answers_at_an_instant_before_its_table_existed(redelivered):
    root, t = redelivered
    con = archive_platform.connect(root=root, as_of=t[3])
    try:
        assert con.sql("SELECT count(*) FROM uw_flow").fetchone() == (0,)  # created after as_of
        assert con.sql("SELECT DISTINCT version FROM options").fetchall() == [(2,)]
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'memory' UNION ALL "
            "SELECT view_name FROM duckdb_views() WHERE database_name = 'memory' "
            "AND NOT internal").fetchall()]
        assert "uw_flow" in names and "options" in names
        for name in names:
            con.sql(f'SELECT count(*) FROM "{name}"').fetchone()
    finally:
        con.close()


@pytest.mark.parametrize("as_of", [None, "v1"])
def test_a_read_only_connection_refuses_writes_and_nothing_stored_changes(redelivered, as_of):
    root, t = redelivered
    con = archive_platform.connect(root=root, as_of=t[2] if as_of else None)
    try:
        for stmt in ("INSERT INTO lake.options SELECT * FROM lake.options LIMIT 1",
                     "DELETE FROM lake.options", "UPDATE lake.options SET bid = 0",
                     "CREATE TABLE lake.evil (a INT)", "DROP TABLE lake.options",
                     "ALTER TABLE lake.options ADD COLUMN z INT",
                     "CALL ducklake_expire_snapshots('lake', older_than => now())"):
            with pytest.raises(duckdb.Error, match="read-only mode"):
                con.execute(stmt)
        for stmt in ("INSERT INTO options SELECT * FROM options LIMIT 1", "DELETE FROM options"):
            with pytest.raises(duckdb.Error):  # a view: "not a table" / "only delete from base table"
                con.execute(stmt)
    finally:
        con.close()
    now = connect(root)
    try:
        assert _rows(now) == _expected(2)
        assert now.sql("SELECT count(*) FROM ducklake_snapshots('lake')").fetchone() == (6,)
        assert now.sql("SELECT count(*) FROM uw_flow").fetchone() == (3,)
    finally:
        now.close()


def _sql(*args, timeout=120):
    return subprocess.run([CLI, "sql", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_sql_refuses_an_empty_as_of_instead_of_reading_the_archive_as_of_now(redelivered):
    """`--as-of "$T"` with T unset was silently dropped: the query read today's archive
    (the re-delivery a backtest must not see) with exit 0."""
    root, t = redelivered
    out = _sql("--root", str(root), "--as-of", "", "-c", "SELECT DISTINCT version FROM options")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "--as-of" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""
    for bad, msg in (("garbage", "is not an ISO instant"), ("2025-11-26T10:05", "give a UTC offset"),
                     ("2025-11-26", "give a UTC offset"), ("2001-01-01T00:00Z", "no snapshot at or before"),
                     ("9999-12-31T23:59:59-05:00", "out of range in UTC")):
        out = _sql("--root", str(root), "--as-of", bad, "-c", "SELECT 1")
        assert out.returncode == 2 and msg in out.stderr and "Traceback" not in out.stderr, (bad, out.stderr)
        assert out.stdout == ""
    mid = (t[2] + (t[3] - t[2]) / 2).astimezone(ZoneInfo("America/New_York")).isoformat()
    ok = _sql("--root", str(root), "--as-of", mid, "-c",
              "SELECT (SELECT string_agg(DISTINCT version::VARCHAR) FROM options) || '/' || "
              "(SELECT count(*) FROM uw_flow) AS r")
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"│ 1/0\s+│", ok.stdout), ok.stdout


@pytest.mark.slow
def test_sql_on_a_root_that_does_not_exist_creates_nothing(tmp_path):
    root = tmp_path / "nowhere" / "archive"
    out = _sql("--root", str(root), "-c", "SELECT count(*) FROM options")
    assert out.returncode == 2 and f"no lake catalog at {root}" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_write_init_file_as_of_lists_the_tables_of_that_instant(redelivered, tmp_path):
    """write_init_file listed today's tables for an as_of before uw_flow existed: the CLI's
    init script failed on CREATE VIEW uw_flow ("Table with name uw_flow does not exist")."""
    root, t = redelivered
    init = write_init_file(root, tmp_path / "init.sql", as_of=t[3])
    argv = cli_command(init, "SELECT DISTINCT version FROM options")
    out = subprocess.run([argv[0], "-csv", *argv[1:]],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["version", "2"]
    with pytest.raises(ValueError, match="no snapshot at or before"):
        write_init_file(root, tmp_path / "init2.sql", as_of=t[0] - timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        write_init_file(root, tmp_path / "init3.sql", as_of=t[3].replace(tzinfo=None))


@pytest.mark.slow
def test_a_dataset_not_written_yet_refuses_writes_like_a_written_one(redelivered):
    # before: the placeholder of an unwritten dataset was an in-memory table, so an INSERT on a
    # "read-only" connection succeeded and the user believed something was stored
    root, _ = redelivered
    con = archive_platform.connect(root=root)
    try:
        assert con.sql("SELECT count(*) FROM stocks_1m").fetchone() == (0,)
        assert "timestamp" in [c[0] for c in con.sql("DESCRIBE stocks_1m").fetchall()]
        for stmt in ("INSERT INTO stocks_1m (symbol) VALUES ('SPY')", "DELETE FROM stocks_1m",
                     "INSERT INTO options SELECT * FROM options"):
            with pytest.raises(duckdb.Error):
                con.execute(stmt)
        assert con.sql("SELECT count(*) FROM stocks_1m").fetchone() == (0,)
    finally:
        con.close()
    out = _sql("--root", str(root), "-c", "INSERT INTO stocks_1m (symbol) VALUES ('SPY')")
    assert out.returncode != 0 and "stocks_1m" in out.stderr, (out.returncode, out.stdout, out.stderr)
    out = _sql("--root", str(root), "-c", "SELECT count(*) AS n FROM stocks_1m")
    assert out.returncode == 0 and "0" in out.stdout, out.stderr
