"""Audit of retention, expiry and compaction: nothing a reader can still need is deleted, and
the plain layout holds each compacted day's live rows exactly once, sorted.

Snapshot ages are set by rewriting ``snapshot_time`` in the SQLite catalog through DuckDB's
sqlite extension (never Python's sqlite3 in this process: it drops DuckDB's locks), and file
ages with ``os.utime``; the assertions are on rows, files and key sets only."""

from __future__ import annotations

import glob
import os
from datetime import datetime, timedelta, timezone

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from archive_platform.lake import DEFAULT_RETENTION, Lake, TableDef, connect, publish
from archive_platform.lake.extensions import new_connection
from archive_platform_tests.lake_helpers import (
    D1, D2, OPTIONS, STOCKS, TS, day_table, key_counts, snapshot, sort, versions)


@pytest.fixture
def lake(tmp_path):
    with Lake(tmp_path / "archive") as lk:
        yield lk


def _age_snapshots(root, ids, when: datetime) -> None:
    """Pretend the snapshots ``ids`` were committed at ``when``."""
    con = new_connection(("sqlite_scanner",))
    try:
        con.execute(f"ATTACH '{root / '_lake' / 'catalog.sqlite'}' AS c (TYPE sqlite)")
        stamp = when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        for i in ids:
            con.execute("UPDATE c.ducklake_snapshot SET snapshot_time = ? WHERE snapshot_id = ?", [stamp, i])
    finally:
        con.close()


def _snapshot_ids(lake: Lake) -> list[int]:
    return [r[0] for r in lake.con.execute("SELECT snapshot_id FROM ducklake_snapshots('lake')").fetchall()]


def _data_files(lake: Lake, td: TableDef) -> set[str]:
    return set(glob.glob(f"{lake.location.data_path}main/{td.name}/date=*/*.parquet"))


def _live(lake: Lake, td: TableDef) -> set[str]:
    return {r[0] for r in lake.con.execute("SELECT data_file FROM ducklake_list_files('lake', ?)",
                                           [td.name]).fetchall()}


def _plain_glob(root, td: TableDef) -> str:
    return str(root / td.directory / "date=*" / "*.parquet")


def _plain_readers(root, td: TableDef) -> dict[str, pa.Table]:
    """The plain layout as pyarrow, polars and DuckDB's read_parquet each read it."""
    pattern = _plain_glob(root, td)
    files = sorted(glob.glob(pattern))
    cols = list(td.schema.names)
    out = {"pyarrow": pa.concat_tables(
        [pq.read_table(f, columns=[c for c in cols if c in pq.read_schema(f).names]) for f in files],
        promote_options="default") if files else td.schema.empty_table()}
    if files:
        unified = pa.unify_schemas([pq.read_schema(f) for f in files])  # days of older schemas
        out["dataset"] = ds.dataset(files, schema=unified, format="parquet").to_table(columns=cols)
        out["polars"] = pl.scan_parquet(pattern, hive_partitioning=True, missing_columns="insert",
                                        extra_columns="ignore").select(cols).collect().to_arrow()
        con = duckdb.connect()
        try:
            out["duckdb"] = con.execute(
                f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM read_parquet(?, "
                "hive_partitioning = true, union_by_name = true)", [pattern]).to_arrow_table()
        finally:
            con.close()
    return out


def _keys(table: pa.Table, td: TableDef) -> list[tuple]:
    return sorted(zip(*(table[k].to_pylist() for k in td.dedup_key)))


def _assert_plain_is_the_lake(lake: Lake, td: TableDef, day) -> None:
    """The day's plain file holds exactly the lake's rows of the day, each once, sorted; every
    plain-glob reader sees each key once."""
    plain = td.plain_path(lake.root, day)
    lake_rows = lake.read_day(td, day)
    got = pq.read_table(plain, columns=list(td.schema.names))
    assert key_counts(got, td.dedup_key) == key_counts(lake_rows, td.dedup_key)
    assert got.num_rows == got.group_by(list(td.dedup_key)).aggregate([]).num_rows  # each key once
    assert got.equals(sort(got, td.sort_key)), "the plain file is not in sort order"
    assert sort(got, td.dedup_key).equals(sort(lake_rows, td.dedup_key).cast(got.schema))
    for name, table in _plain_readers(lake.root, td).items():
        rows, distinct = key_counts(table, td.dedup_key)
        assert rows == distinct, f"{name} reads a key twice"


def _sorted(table: pa.Table) -> pa.Table:
    """write_day takes the day sorted (the store sorts it)."""
    return sort(table, OPTIONS.sort_key)


# -- expiry and time travel ------------------------------------------------------------------

def test_an_as_of_inside_the_retention_still_reads_after_expire(lake):
    now = datetime.now(timezone.utc)
    lake.append(OPTIONS, D1, snapshot(D1, 0, version=0))
    _age_snapshots(lake.root, _snapshot_ids(lake), now - timedelta(days=10))  # quiet since then
    lake.close()
    lake.append(OPTIONS, D1, snapshot(D1, 0, version=1))  # a re-delivery a moment ago
    lake.expire()  # 7 days
    # three days ago is inside the retention: the archive then held version 0
    then = connect(lake.root, as_of=now - timedelta(days=3))
    try:
        assert then.sql("SELECT DISTINCT version FROM options").fetchall() == [(0,)]
        assert then.sql("SELECT count(*) FROM options").fetchone()[0] == 120
    finally:
        then.close()


def test_a_negative_retention_is_refused_in_words_and_expires_nothing(lake):
    # it was DuckDB's "syntax error at or near SECOND" (INTERVAL -86400 SECOND)
    lake.append(OPTIONS, D1, snapshot(D1, 0, version=0))
    lake.append(OPTIONS, D1, snapshot(D1, 0, version=1))
    before = _snapshot_ids(lake)
    with pytest.raises(ValueError, match="retention must be a timedelta of zero or more"):
        lake.expire(timedelta(days=-1))
    assert _snapshot_ids(lake) == before


def test_expire_after_the_retention_drops_only_what_no_reader_needs(lake):
    """Old snapshots go after the period; their files one period after that; the current rows,
    the plain file and a reader opened before expire keep working."""
    now = datetime.now(timezone.utc)
    for v in range(3):
        lake.append(OPTIONS, D1, snapshot(D1, 0, version=v))
    lake.compact_day(OPTIONS, D1)
    lake.write_day(STOCKS, D2, _bars(D2, 5))
    before = _data_files(lake, OPTIONS)
    assert len(before) == 4
    reader = connect(lake.root)
    try:
        _age_snapshots(lake.root, _snapshot_ids(lake)[:-1], now - timedelta(days=30))
        lake.close()
        assert lake.expire() == []  # superseded files are only scheduled now, deleted a period later
        assert _data_files(lake, OPTIONS) == before
        assert lake.expire(timedelta(0)) != []
        assert _data_files(lake, OPTIONS) == _live(lake, OPTIONS)
        assert len(_live(lake, OPTIONS)) == 1
        # every reader path still returns every row
        assert reader.sql("SELECT count(*), min(version), max(version) FROM options").fetchone() == (120, 2, 2)
        assert reader.sql("SELECT count(*) FROM stocks_1m").fetchone()[0] == 5 * 3
        assert versions(lake.read_day(OPTIONS, D1)) == {2}
        _assert_plain_is_the_lake(lake, OPTIONS, D1)
        _assert_plain_is_the_lake(lake, STOCKS, D2)
        assert STOCKS.plain_path(lake.root, D2) == lake.root / "stocks" / "date=2025-11-26" / "stocks_1m_20251126.parquet"
    finally:
        reader.close()


def test_orphans_and_temps_of_a_crash_stay_for_the_period(lake):
    lake.write_day(OPTIONS, D1, _sorted(day_table(D1, 2)))
    folder = lake.location.data_path + "main/options/date=2025-11-25/"
    orphan = f"{folder}part-00000000deadbeef.parquet"
    pq.write_table(snapshot(D1, 7), orphan)  # a killed writer's unregistered file
    temp = lake.location.tmp_dir / "options_20251125-0000000000000000.parquet.999999.tmp"
    temp.write_bytes(b"half a file")
    assert lake.expire() == []
    assert os.path.exists(orphan) and temp.exists()
    old = (datetime.now() - DEFAULT_RETENTION - timedelta(hours=1)).timestamp()
    os.utime(orphan, (old, old))  # DuckLake ages an orphan by its mtime
    assert lake.expire() == [orphan]
    assert temp.exists()  # a temp file's age counts its last change (ctime), which utime renews
    lake.expire(timedelta(0))
    assert not temp.exists()
    assert lake.read_day(OPTIONS, D1).num_rows == 240
    _assert_plain_is_the_lake(lake, OPTIONS, D1)


def test_expire_keeps_a_temp_link_being_published_for_an_old_day_file(lake, monkeypatch):
    """Re-publishing a day compacted long ago (its plain file was lost) links the old data file
    into _lake/tmp first: that link has the data file's old mtime, and must not look stale to an
    expire running meanwhile."""
    lake.write_day(OPTIONS, D1, _sorted(day_table(D1, 2)))
    (versioned,) = _live(lake, OPTIONS)
    old = (datetime.now() - timedelta(days=30)).timestamp()
    os.utime(versioned, (old, old))  # compacted a month ago
    OPTIONS.plain_path(lake.root, D1).unlink()  # lost by hand
    real_replace = os.replace

    def replace(src, dst, *a, **kw):
        if str(src).endswith(".link"):  # another process's daily expire runs right now
            with Lake(lake.root) as other:
                other.expire()
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    lake.compact_day(OPTIONS, D1)
    monkeypatch.setattr(os, "replace", real_replace)
    _assert_plain_is_the_lake(lake, OPTIONS, D1)


def test_expire_tolerates_a_temp_file_renamed_away_while_it_scans(lake, monkeypatch):
    """A writer renames its temp file into _lake/data while expire lists _lake/tmp: expire must
    not fail on the name that just went away."""
    lake.write_day(OPTIONS, D1, _sorted(day_table(D1, 1)))
    temp = lake.location.tmp_dir / "options_20251125-0000000000000001.parquet.4242.tmp"
    temp.write_bytes(b"being written")
    real_scandir = os.scandir

    def scandir(path=".", *a, **kw):
        entries = list(real_scandir(path, *a, **kw))
        if os.path.abspath(path) == str(lake.location.tmp_dir):
            temp.rename(lake.location.tmp_dir.parent / "moved.parquet")  # the writer's os.replace
        return iter(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    assert lake.expire() == []
    monkeypatch.setattr(os, "scandir", real_scandir)
    assert lake.read_day(OPTIONS, D1).num_rows == 120


# -- compaction ------------------------------------------------------------------------------

def _bars(day, minutes: int, symbols=("AAA", "BBB", "CCC"), close: float = 1.0) -> pa.Table:
    base = datetime(day.year, day.month, day.day, 14, 30, tzinfo=timezone.utc)
    rows = [(base + timedelta(minutes=m), s) for s in symbols for m in range(minutes)]
    return pa.table({"timestamp": pa.array([t for t, _ in rows], TS),
                     "symbol": pa.array([s for _, s in rows]),
                     "close": pa.array([close] * len(rows), pa.float64())}, schema=STOCKS.schema)


def test_compacting_twice_and_after_a_late_append_keeps_each_row_once(lake):
    for k in (2, 0, 1):  # out of time order
        lake.append(OPTIONS, D1, snapshot(D1, k))
    first = lake.compact_day(OPTIONS, D1)
    again = lake.compact_day(OPTIONS, D1)
    assert not first.skipped and again.skipped
    assert len(_live(lake, OPTIONS)) == 1
    _assert_plain_is_the_lake(lake, OPTIONS, D1)
    # a late snapshot and a re-delivery of an old one (fewer contracts) after the compaction
    lake.append(OPTIONS, D1, snapshot(D1, 3))
    lake.append(OPTIONS, D1, snapshot(D1, 1, strikes=5, version=9))
    assert pq.read_table(OPTIONS.plain_path(lake.root, D1)).num_rows == 360  # last compacted state
    lake.compact_day(OPTIONS, D1)
    assert lake.read_day(OPTIONS, D1).num_rows == 120 * 3 + 30
    _assert_plain_is_the_lake(lake, OPTIONS, D1)
    lake.expire(timedelta(0))
    assert _data_files(lake, OPTIONS) == _live(lake, OPTIONS)
    _assert_plain_is_the_lake(lake, OPTIONS, D1)
    # the stocks_1m plain layout lives under stocks/
    lake.append(STOCKS, D2, _bars(D2, 3, symbols=("BBB", "AAA")))
    lake.append(STOCKS, D2, _bars(D2, 5, symbols=("AAA",), close=2.0))
    lake.compact_day(STOCKS, D2)
    _assert_plain_is_the_lake(lake, STOCKS, D2)
    assert glob.glob(_plain_glob(lake.root, STOCKS)) == [
        str(lake.root / "stocks" / "date=2025-11-26" / "stocks_1m_20251126.parquet")]


def test_compacting_after_a_column_was_added_gives_nulls_for_older_rows(tmp_path):
    wide = TableDef("options", OPTIONS.schema.append(pa.field("ask", pa.float64())),
                    directory="options", file_stem="options", dedup_key=OPTIONS.dedup_key,
                    sort_key=OPTIONS.sort_key, snapshot=True)
    with Lake(tmp_path / "a") as lake:
        lake.write_day(OPTIONS, D2, _sorted(day_table(D2, 1)))  # a day compacted before the change
        lake.append(OPTIONS, D1, snapshot(D1, 0))
    with Lake(tmp_path / "a") as lake:  # the next version of the dataset gained a column
        later = snapshot(D1, 1).append_column("ask", pa.array([5.0] * 120, pa.float64()))
        lake.append(wide, D1, later)
        lake.compact_day(wide, D1)
        got = pq.read_table(wide.plain_path(lake.root, D1))
        assert got.num_rows == 240 and got["ask"].null_count == 120
        _assert_plain_is_the_lake(lake, wide, D1)
        readers = _plain_readers(lake.root, wide)
        for name in ("polars", "duckdb"):
            assert readers[name].num_rows == 360, name
            assert readers[name]["ask"].null_count == 240, name


def test_compacting_a_day_whose_data_file_was_deleted_by_hand_fails_and_keeps_the_plain_file(lake):
    lake.write_day(OPTIONS, D1, _sorted(day_table(D1, 2)))
    lake.append(OPTIONS, D1, snapshot(D1, 5))
    plain = OPTIONS.plain_path(lake.root, D1)
    published = pq.read_table(plain)
    part = next(f for f in _live(lake, OPTIONS) if "/part-" in f)
    os.unlink(part)
    with pytest.raises((OSError, duckdb.Error)):
        lake.compact_day(OPTIONS, D1)
    assert pq.read_table(plain).equals(published)  # the last published day is untouched
    assert len(_live(lake, OPTIONS)) == 2  # nothing was dropped from the catalog
    lake.expire(timedelta(0))
    assert pq.read_table(plain).equals(published)


def test_an_empty_day_compacts_to_an_empty_plain_file_that_expiry_keeps(lake):
    lake.write_day(OPTIONS, D1, OPTIONS.schema.empty_table())
    assert lake.compact_day(OPTIONS, D1).skipped
    lake.compact_day(OPTIONS, D2)  # never written: nothing published
    lake.expire(timedelta(0))
    assert glob.glob(_plain_glob(lake.root, OPTIONS)) == [str(OPTIONS.plain_path(lake.root, D1))]
    assert pq.read_table(OPTIONS.plain_path(lake.root, D1)).num_rows == 0
