"""The plain-layout views file (compatibility layer): typed even when empty, exactly the
store's compacted days, safe rebuilds, no temp file left by a killed refresh, real errors shown."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.store import ArchiveStore
from archive_platform.views import (
    connect,
    default_duckdb_path,
    quote_ident,
    quote_literal,
    refresh_views,
)
from archive_platform_tests.store_helpers import FULL_DAY, HALF_DAY, make_table, options_snapshot, sorted_rows

# Written out independently of views.duckdb_type: what DuckDB's DESCRIBE must show.
DESCRIBED = {
    "timestamp[us, tz=UTC]": "TIMESTAMP WITH TIME ZONE",
    "string": "VARCHAR",
    "double": "DOUBLE",
    "int64": "BIGINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "list<item: double>": "DOUBLE[]",
    "list<item: int32>": "INTEGER[]",
    "date32[day]": "DATE",
    "bool": "BOOLEAN",
}
NAMES = sorted(t.value for t in ArchiveType)


def _describe(con, view: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {quote_ident(view)}").fetchall()]


def _expected_columns(archive_type) -> list[tuple[str, str]]:
    return [(f.name, DESCRIBED[str(f.type)]) for f in spec_for(archive_type).schema] + [("date", "DATE")]


def test_empty_root_gives_typed_empty_views(tmp_path):
    db = tmp_path / "views.duckdb"
    assert sorted(refresh_views(tmp_path / "nothing", db)) == NAMES
    con = connect(db)
    try:
        tables = con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall()
        # views only, plus the trading-day table behind the helper macros
        assert sorted(tables) == sorted([(n, "VIEW") for n in NAMES] + [("trading_days", "BASE TABLE")])
        assert con.execute("SELECT trading_day_add(DATE '2025-11-26', 1)").fetchone()[0].isoformat() == "2025-11-28"
        for t in ArchiveType:
            assert _describe(con, t.value) == _expected_columns(t)
            assert con.execute(f"SELECT count(*) FROM {t.value}").fetchone() == (0,)
    finally:
        con.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["views.duckdb"]  # no temp left behind


def test_a_root_that_does_not_exist_leaves_existing_views_alone(tmp_path):
    store = ArchiveStore(tmp_path / "archive", kind="sim")
    store.write_day(ArchiveType.UW_FLOW, FULL_DAY, make_table(ArchiveType.UW_FLOW, FULL_DAY, 5))
    db = tmp_path / "views.duckdb"
    refresh_views(tmp_path / "archive", db)
    with pytest.raises(FileNotFoundError, match=r"archive root .*/typo does not exist; the views file"):
        refresh_views(tmp_path / "typo", db)  # e.g. a mistyped ARCHIVE_SIM_ROOT
    empty = tmp_path / "empty.duckdb"  # a root with nothing written yet, refreshed daily
    # (this compared the call's result with itself; now: both refreshes give every typed, empty view)
    assert sorted(refresh_views(tmp_path / "not-yet", empty)) == NAMES
    assert sorted(refresh_views(tmp_path / "not-yet", empty)) == NAMES  # and again, over the file it wrote
    con = connect(empty)
    try:
        for t in ArchiveType:
            assert _describe(con, t.value) == _expected_columns(t)
            assert con.execute(f"SELECT count(*) FROM {t.value}").fetchone() == (0,)
    finally:
        con.close()
    assert not (tmp_path / "not-yet").exists()  # refreshing creates no archive root
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM uw_flow").fetchone() == (5,)
    finally:
        con.close()


def test_views_return_exactly_what_the_store_holds(tmp_path):
    root = tmp_path / "archive"
    store = ArchiveStore(root, kind="sim")
    for t in ArchiveType:
        store.write_day(t, HALF_DAY, make_table(t, HALF_DAY, 7))
    # options on FULL_DAY: a daily file plus parts, one of which replaced keys of the daily file
    daily = pa.concat_tables([options_snapshot(FULL_DAY, 0), options_snapshot(FULL_DAY, 3)])
    store.write_day("options", FULL_DAY, daily)
    for k in (1, 2, 0):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k, shift=float(k + 1)))
    assert len(store.partition_files("options", FULL_DAY)) == 4
    db = tmp_path / "views.duckdb"
    refresh_views(root, db)
    con = connect(db)
    try:  # intraday appends are not in the plain layout: the day's last compacted state is
        assert con.execute("SELECT count(*) FROM options WHERE date = ?", [FULL_DAY]).fetchone() == (24,)
    finally:
        con.close()
    store.compact_day("options", FULL_DAY)
    con = connect(db)
    try:
        con.execute("SET TimeZone = 'UTC'")
        for t in ArchiveType:
            spec = spec_for(t)
            assert _describe(con, t.value) == _expected_columns(t)
            for day in store.days(t):
                got = con.sql(
                    f"SELECT * EXCLUDE (date) FROM {t.value} WHERE date = ?", params=[day]
                ).to_arrow_table()
                want = store.read_day(t, day)
                assert got.num_rows == want.num_rows
                assert sorted_rows(got, spec.dedup_key) == sorted_rows(want, spec.dedup_key)
        dates = con.execute("SELECT date, count(*) FROM options GROUP BY 1 ORDER BY 1").fetchall()
        assert dates == [(FULL_DAY, 48), (HALF_DAY, 7)]
    finally:
        con.close()


def test_root_path_with_a_quote_is_escaped(tmp_path):
    root = tmp_path / "o'brien's archive"
    store = ArchiveStore(root, kind="sim")
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 4))
    db = tmp_path / "v.duckdb"
    refresh_views(root, db)
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM gex").fetchone() == (4,)
    finally:
        con.close()


def test_read_only_reader_survives_a_refresh(tmp_path):
    root = tmp_path / "archive"
    store = ArchiveStore(root, kind="sim")
    store.write_day("iv_rank", FULL_DAY, make_table("iv_rank", FULL_DAY, 3))
    db = tmp_path / "views.duckdb"
    refresh_views(root, db)
    reader = tmp_path / "reader.py"
    reader.write_text(textwrap.dedent(f"""
        import sys, duckdb
        con = duckdb.connect({str(db)!r}, read_only=True)
        print(con.execute("SELECT count(*) FROM iv_rank").fetchone()[0],
              con.execute("SELECT count(*) FROM gex").fetchone()[0], flush=True)
        sys.stdin.readline()  # the test refreshes the views meanwhile
        print(con.execute("SELECT count(*) FROM iv_rank").fetchone()[0],
              con.execute("SELECT count(*) FROM gex").fetchone()[0], flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(reader)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["3", "0"]
        # data for a type that had no files: the old file's gex view is the empty typed one
        store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5))
        store.append_snapshot("iv_rank", FULL_DAY, make_table("iv_rank", FULL_DAY, 2, tag="x"))
        store.compact_day("iv_rank", FULL_DAY)
        refresh_views(root, db)  # must not need the reader to go away
        out, err = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    # the old connection keeps working on its old file; its iv_rank view reads the glob live
    # (the appended batch re-delivered the day's one snapshot: it replaced it whole)
    assert out.split() == ["2", "0"]
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM gex").fetchone() == (5,)
        assert con.execute("SELECT count(*) FROM iv_rank").fetchone() == (2,)
    finally:
        con.close()


def test_connect_is_read_only_by_default(tmp_path):
    db = tmp_path / "v.duckdb"
    refresh_views(tmp_path / "root", db)
    con = connect(db)
    try:
        with pytest.raises(duckdb.InvalidInputException,
                           match='statement of type "CREATE" on database "v" which is attached in read-only mode'):
            con.execute("CREATE TABLE x AS SELECT 1")
    finally:
        con.close()


def test_quoting():
    assert quote_literal("a'b") == "'a''b'"
    assert quote_ident('we"ird') == '"we""ird"'
    with pytest.raises(ValueError, match="NUL"):
        quote_literal("a\x00b")


def test_default_duckdb_path(monkeypatch):
    monkeypatch.delenv("ARCHIVE_DUCKDB", raising=False)
    assert default_duckdb_path("live") == Path("data/archive.duckdb")
    assert default_duckdb_path("sim") == Path("data/sim/archive.duckdb")
    monkeypatch.setenv("ARCHIVE_DUCKDB", "/x/y.duckdb")
    assert default_duckdb_path("live") == Path("/x/y.duckdb")
    # each kind has its own variable: the live one never moves the simulated views
    monkeypatch.delenv("ARCHIVE_SIM_DUCKDB", raising=False)
    assert default_duckdb_path("sim") == Path("data/sim/archive.duckdb")
    assert default_duckdb_path("sim", {"ARCHIVE_SIM_DUCKDB": "/s.duckdb"}) == Path("/s.duckdb")
    with pytest.raises(ValueError, match="kind must be"):
        default_duckdb_path("paper")  # type: ignore[arg-type]


@pytest.mark.parametrize("name, sibling", [("arch*", "archive"), ("a[1]", "a1"), ("a?b", "axb")])
def test_a_root_with_glob_characters_reads_only_itself(tmp_path, name, sibling):
    """Issue 11 item 8: a root at `.../arch*` counted another folder's files into the views."""
    from datetime import date

    from archive_platform.sim.market import SimulatedMarket
    from archive_platform.store import ArchiveStore

    day = date(2025, 11, 26)
    market = SimulatedMarket()
    for folder, symbols in ((name, ["SPY"]), (sibling, ["SPY", "QQQ"])):
        ArchiveStore(tmp_path / folder, kind="sim").write_day("stocks_1m", day, market.fetch_stocks_1m(day, symbols))
    db = tmp_path / "views.duckdb"
    refresh_views(tmp_path / name, db)
    con = connect(db)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT symbol) FROM stocks_1m").fetchone() == (390, 1)
    finally:
        con.close()


def test_a_killed_refresh_leaves_no_temp_behind_for_long(tmp_path):
    db = tmp_path / "v.duckdb"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    left = [tmp_path / f".v.duckdb.{dead}.0a0b0c0d.tmp", tmp_path / f".v.duckdb.{dead}.0a0b0c0d.tmp.wal"]
    for p in left:
        p.write_bytes(b"half a database")
    live = tmp_path / f".v.duckdb.{os.getpid()}.00000000.tmp"  # a refresh still running
    live.write_bytes(b"")
    refresh_views(tmp_path / "root", db)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "v.duckdb"])


def test_a_failed_refresh_names_the_file_and_its_cleanup_never_hides_the_error(tmp_path, monkeypatch):
    db = tmp_path / "v.duckdb"

    def boom(self, *a, **k):
        raise PermissionError(30, "Read-only file system")  # what unlink raises there

    real_connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda path, **k: (_ for _ in ()).throw(
        duckdb.IOException(f'Cannot open file "{path}": No space left on device')))
    monkeypatch.setattr(Path, "unlink", boom)
    with pytest.raises(OSError, match=r"refreshing the views file .*v\.duckdb .*No space left on device"):
        refresh_views(tmp_path / "root", db)
    monkeypatch.undo()
    assert real_connect is duckdb.connect
