"""DuckDB views: typed even when empty, exactly the store's rows (parts included), safe rebuilds."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
        assert sorted(tables) == [(n, "VIEW") for n in NAMES]  # the file holds views only
        for t in ArchiveType:
            assert _describe(con, t.value) == _expected_columns(t)
            assert con.execute(f"SELECT count(*) FROM {t.value}").fetchone() == (0,)
    finally:
        con.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["views.duckdb"]  # no temp left behind


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
        refresh_views(root, db)  # must not need the reader to go away
        out, err = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    # the old connection keeps working on its old file; its iv_rank view reads the glob live
    assert out.split() == ["5", "0"]
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM gex").fetchone() == (5,)
        assert con.execute("SELECT count(*) FROM iv_rank").fetchone() == (5,)
    finally:
        con.close()


def test_connect_is_read_only_by_default(tmp_path):
    db = tmp_path / "v.duckdb"
    refresh_views(tmp_path / "root", db)
    con = connect(db)
    try:
        with pytest.raises(Exception, match="read-only"):
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


def test_refresh_removes_temps_of_dead_refreshes_and_keeps_live_ones(tmp_path):
    """Issue 11: a killed refresh left `.tmp` and `.tmp.wal` files forever."""
    import os

    db = tmp_path / "views.duckdb"
    dead = [tmp_path / ".views.duckdb.999999999.abcd1234.tmp", tmp_path / ".views.duckdb.999999999.abcd1234.tmp.wal"]
    live = tmp_path / f".views.duckdb.{os.getpid()}.ffff0000.tmp"
    for p in [*dead, live]:
        p.write_bytes(b"x")
    refresh_views(tmp_path / "nothing", db)
    assert not any(p.exists() for p in dead) and live.exists() and db.exists()


def test_a_failed_refresh_reports_its_own_error_not_the_cleanups(tmp_path, monkeypatch):
    """On a read-only file system the temp-file cleanup failed too and hid the real error."""
    import pathlib

    import duckdb

    import archive_platform.views as views

    def broken_connect(*a, **k):
        raise duckdb.IOException("IO Error: the real problem")

    def refusing_unlink(self, missing_ok=False):
        raise PermissionError(13, "Read-only file system", str(self))

    monkeypatch.setattr(views.duckdb, "connect", broken_connect)
    monkeypatch.setattr(pathlib.Path, "unlink", refusing_unlink)
    with pytest.raises(duckdb.IOException, match="the real problem"):
        refresh_views(tmp_path / "nothing", tmp_path / "views.duckdb")
