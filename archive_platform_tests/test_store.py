"""The store over the lake: layout, round trips, appends and compaction, refusals, sim/live roots,
awkward roots and storage errors that name what failed."""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import replace

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

import archive_platform
from archive_platform.lake import publish
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.store import ArchiveKindError, ArchiveStore, ArchiveWriteError, EmptyReplacementRefused
from archive_platform_tests.store_helpers import FULL_DAY, HALF_DAY, make_table, options_snapshot, sorted_rows

EXPECTED_NAMES = {
    ArchiveType.UW_FLOW: "uw_flow/date={d}/uw_flow_{c}.parquet",
    ArchiveType.OPTIONS: "options/date={d}/options_{c}.parquet",
    ArchiveType.GEX: "gex/date={d}/gex_{c}.parquet",
    ArchiveType.STOCKS_1M: "stocks/date={d}/stocks_1m_{c}.parquet",
    ArchiveType.IV_RANK: "iv_rank/date={d}/iv_rank_{c}.parquet",
    ArchiveType.TRADES: "trades/date={d}/trades_{c}.parquet",
    ArchiveType.VIX: "vix/date={d}/vix_{c}.parquet",
    ArchiveType.DAILY_BARS: "daily_bars/date={d}/daily_bars_{c}.parquet",
    ArchiveType.DAILY_IV: "daily_iv/date={d}/daily_iv_{c}.parquet",
    ArchiveType.MARKET_REGIME: "market_regime/date={d}/market_regime_{c}.parquet",
    ArchiveType.CANDLES: "candles/date={d}/candles_{c}.parquet",
    ArchiveType.CAPTURE_GAPS: "capture_gaps/date={d}/capture_gaps_{c}.parquet",
    ArchiveType.CRYPTO_TRADES: "crypto_trades/date={d}/crypto_trades_{c}.parquet",
    ArchiveType.ORDERBOOK_L2: "orderbook_l2/date={d}/orderbook_l2_{c}.parquet",
    ArchiveType.CRYPTO_DAILY_BARS: "crypto_daily_bars/date={d}/crypto_daily_bars_{c}.parquet",
    ArchiveType.CRYPTO_CANDLES: "crypto_candles/date={d}/crypto_candles_{c}.parquet",
    ArchiveType.ORDERBOOK_FEATURES: "orderbook_features/date={d}/orderbook_features_{c}.parquet",
}


@pytest.fixture
def store(tmp_path):
    s = ArchiveStore(tmp_path / "archive", kind="sim")
    yield s
    s.close()


@pytest.mark.parametrize("day", [HALF_DAY, FULL_DAY])
@pytest.mark.parametrize("archive_type", list(ArchiveType))
def test_round_trip_layout_and_file_format(store, archive_type, day):
    spec = spec_for(archive_type)
    table = make_table(archive_type, day, 25)
    res = store.write_day(archive_type, day, table)
    rel = EXPECTED_NAMES[archive_type].format(d=day.isoformat(), c=day.strftime("%Y%m%d"))
    assert res.path == store.root / rel and res.path.is_file()
    assert (res.rows_written, res.rows_in_partition, res.skipped) == (25, 25, False)
    assert res.bytes_written == res.path.stat().st_size == store.partition_bytes(archive_type, day)
    # the plain-layout file is a hard link to the one file the catalog reads
    [lake_file] = store.partition_files(archive_type, day)
    assert lake_file.samefile(res.path)
    assert store.daily_path(archive_type, day) == res.path
    back = store.read_day(archive_type, day)
    assert back.schema.equals(spec.schema)
    assert sorted_rows(back, spec.dedup_key) == sorted_rows(table, spec.dedup_key)
    pf = pq.ParquetFile(res.path)  # zstd, sorted by the sort key
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    on_disk = pf.read()
    keys = [on_disk[k].to_pylist() for k in spec.sort_key]
    assert list(zip(*keys)) == sorted(zip(*keys))
    assert store.days(archive_type) == [day]


def test_read_day_columns_and_empty(store):
    assert store.read_day("gex", FULL_DAY).schema.equals(spec_for("gex").schema)
    assert store.read_day("gex", FULL_DAY).num_rows == 0
    assert not (store.root / "_lake").exists()  # reading never creates anything
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5))
    cols = store.read_day("gex", FULL_DAY, columns=["net_gex", "symbol"])
    assert cols.column_names == ["net_gex", "symbol"] and cols.num_rows == 5
    assert store.days("gex") == [FULL_DAY] and store.days("options") == []


def test_write_day_replaces_appended_snapshots(store):
    for k in range(3):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k))
    assert len(store.partition_files("options", FULL_DAY)) == 3
    fresh = options_snapshot(FULL_DAY, 9, shift=5.0)
    res = store.write_day("options", FULL_DAY, fresh)
    assert [p.samefile(res.path) for p in store.partition_files("options", FULL_DAY)] == [True]
    assert sorted_rows(store.read_day("options", FULL_DAY), ["symbol", "strike"]) == sorted_rows(fresh, ["symbol", "strike"])


def test_same_batch_twice_leaves_the_same_content(store):
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
    once = store.read_day("options", FULL_DAY)
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
    assert store.read_day("options", FULL_DAY).equals(once) and once.num_rows == 12


def test_redelivered_snapshot_replaces_itself_and_keeps_the_others(store):
    for k in range(5):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k))
    newer = options_snapshot(FULL_DAY, 2, symbols=1, shift=7.0)  # fewer contracts this time
    store.append_snapshot("options", FULL_DAY, newer)
    day = store.read_day("options", FULL_DAY)
    assert day.num_rows == 4 * 12 + newer.num_rows
    snap2 = [r for r in day.to_pylist() if r["snapshot_time"] == newer["snapshot_time"][0].as_py()]
    assert sorted(r["bid"] for r in snap2) == sorted(newer["bid"].to_pylist())


def test_keyed_append_replaces_by_dedup_key(store):
    store.append_snapshot("stocks_1m", FULL_DAY, make_table("stocks_1m", FULL_DAY, 6))
    store.append_snapshot("stocks_1m", FULL_DAY, make_table("stocks_1m", FULL_DAY, 2, value_shift=3.0))
    day = store.read_day("stocks_1m", FULL_DAY)
    assert day.num_rows == 6
    want = make_table("stocks_1m", FULL_DAY, 2, value_shift=3.0)
    got = {(r["symbol"], r["timestamp"]): r["close"] for r in day.to_pylist()}
    assert all(got[(r["symbol"], r["timestamp"])] == r["close"] for r in want.to_pylist())


def test_compaction_folds_parts_and_keeps_content(store):
    store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    for k in (1, 2, 3, 1):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k, shift=float(k)))
    before = store.read_day("options", FULL_DAY)
    res = store.compact_day("options", FULL_DAY)
    [only] = store.partition_files("options", FULL_DAY)
    assert only.samefile(res.path) and res.path == store.daily_path("options", FULL_DAY)
    assert store.read_day("options", FULL_DAY).equals(before)
    assert res.rows_written == before.num_rows == 48 == pq.ParquetFile(res.path).metadata.num_rows
    again = store.compact_day("options", FULL_DAY)
    assert again.skipped and again.bytes_written == 0 and again.rows_in_partition == 48
    assert store.compact_day("gex", FULL_DAY).skipped


def test_an_empty_result_never_replaces_stored_rows_silently(store):
    """Issue 11, item 1: refused with a clear error, nothing changed; only a dataset that
    declares the empty day valid, asked explicitly, may replace."""
    rows = make_table("uw_flow", FULL_DAY, 300)
    store.write_day("uw_flow", FULL_DAY, rows)
    empty = spec_for("uw_flow").schema.empty_table()
    with pytest.raises(EmptyReplacementRefused, match=r"uw_flow 2025-11-26: refusing to replace 300 "
                       r"stored rows with an empty result \(uw_flow does not declare"):
        store.write_day("uw_flow", FULL_DAY, empty)
    with pytest.raises(EmptyReplacementRefused):  # asking is not enough without the declaration
        store.write_day("uw_flow", FULL_DAY, empty, replace_empty=True)
    assert store.read_day("uw_flow", FULL_DAY).num_rows == 300
    assert store.daily_path("uw_flow", FULL_DAY).is_file()
    quiet = replace(spec_for("uw_flow"), empty_valid=lambda day: day == FULL_DAY)
    with pytest.raises(EmptyReplacementRefused, match="did not pass replace_empty=True"):
        store.write_day(quiet, FULL_DAY, empty)
    res = store.write_day(quiet, FULL_DAY, empty, replace_empty=True)
    assert (res.rows_written, res.rows_replaced) == (0, 300)
    assert store.read_day("uw_flow", FULL_DAY).num_rows == 0
    # the day stays "archived, empty" (not "never archived"): an empty plain-layout file
    assert pq.read_metadata(store.daily_path("uw_flow", FULL_DAY)).num_rows == 0
    assert FULL_DAY in store.days("uw_flow") and store.partition_files("uw_flow", FULL_DAY)


@pytest.mark.parametrize("name", ["arch*", "a[1]", "a?b"])
def test_a_root_with_glob_characters_is_only_itself(tmp_path, name):
    """Issue 11, item 8: a sibling the root's name would match as a glob is never read."""
    sibling = {"arch*": "archive", "a[1]": "a1", "a?b": "axb"}[name]
    for root, n in ((tmp_path / sibling, 7), (tmp_path / name, 3)):
        s = ArchiveStore(root, kind="sim")
        s.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, n))
        s.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 0, symbols=1))
        s.close()
    store = ArchiveStore(tmp_path / name, kind="sim")
    assert store.read_day("gex", FULL_DAY).num_rows == 3
    con = archive_platform.connect(root=tmp_path / name)
    try:
        assert con.execute("SELECT count(*) FROM gex").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM options").fetchone() == (4,)
    finally:
        con.close()
    from archive_platform.views import connect as views_connect, refresh_views

    db = tmp_path / f"{sibling}.duckdb"
    refresh_views(tmp_path / name, db)
    vcon = views_connect(db)
    try:  # the plain-layout views glob the root escaped
        assert vcon.execute("SELECT count(*) FROM gex").fetchone() == (3,)
    finally:
        vcon.close()


def test_storage_errors_name_the_dataset_partition_and_file(store, monkeypatch):
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as the writer raises it: no file name

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)  # the Parquet writer of this dataset
    with pytest.raises(ArchiveWriteError) as info:
        store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5, tag="x"))
    msg = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert "gex 2025-11-26: write_day failed at " in msg and "No space left on device" in msg
    assert str(store.root / "_lake" / "data" / "main" / "gex" / "date=2025-11-26") in msg
    assert store.read_day("gex", FULL_DAY).num_rows == 3  # no effect
    monkeypatch.undo()
    assert store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5, tag="x")).rows_written == 5


def test_marker_is_written_and_mismatched_kind_is_refused(tmp_path):
    root = tmp_path / "a"
    ArchiveStore(root, kind="sim").write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 1))
    assert json.loads((root / "_archive.json").read_text()) == {"kind": "sim"}
    with pytest.raises(ArchiveKindError, match=rf"{root} is a sim archive; refusing to open it as live"):
        ArchiveStore(root, kind="live")
    live_root = tmp_path / "b"
    ArchiveStore(live_root).write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 1, source="polygon"))
    with pytest.raises(ArchiveKindError, match="is a live archive; refusing to open it as sim"):
        ArchiveStore(live_root, kind="sim")


def test_marker_written_by_another_process_after_open_is_honoured(tmp_path):
    root = tmp_path / "a"
    live = ArchiveStore(root, kind="live")
    ArchiveStore(root, kind="sim").write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 1))
    with pytest.raises(ArchiveKindError, match="is a sim archive; refusing to write live data"):
        live.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 1, source="polygon"))


def test_default_roots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCHIVE_ROOT", raising=False)
    assert ArchiveStore().root == tmp_path / "data" / "archive"
    assert ArchiveStore(kind="sim").root == tmp_path / "data" / "sim" / "archive"
    assert ArchiveStore(kind="sim").kind == "sim"
    monkeypatch.setenv("ARCHIVE_ROOT", str(tmp_path / "elsewhere"))
    assert ArchiveStore().root == tmp_path / "elsewhere"
    # the live root's variable never moves the simulated archive (sim and live stay apart)
    monkeypatch.delenv("ARCHIVE_SIM_ROOT", raising=False)
    assert ArchiveStore(kind="sim").root == tmp_path / "data" / "sim" / "archive"
    monkeypatch.setenv("ARCHIVE_SIM_ROOT", str(tmp_path / "simroot"))
    assert ArchiveStore(kind="sim").root == tmp_path / "simroot"
    with pytest.raises(ValueError, match="kind must be 'live' or 'sim'"):
        ArchiveStore(kind="paper")  # type: ignore[arg-type]


def test_partition_files_missing_day(store):
    assert store.partition_files("trades", FULL_DAY) == []
    assert store.partition_bytes("trades", FULL_DAY) == 0
    shutil.rmtree(store.root, ignore_errors=True)
    assert store.days("trades") == []


def test_connect_sees_every_dataset_typed_with_the_macros(store):
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 4))
    con = archive_platform.connect(kind="sim", root=store.root)
    try:
        for ds in ArchiveType:  # written or not, every dataset is queryable by name
            cols = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {ds.value})").fetchall())
            assert cols["date"] == "DATE" and set(spec_for(ds).schema.names) < set(cols)
        assert con.execute("SELECT count(*), min(date) FROM gex").fetchone() == (4, FULL_DAY)
        assert con.execute("SELECT count(*) FROM trading_days").fetchone()[0] > 5000
        with pytest.raises(duckdb.InvalidInputException,
                           match='statement of type "INSERT" on database "lake" which is attached in read-only mode'):
            con.execute("INSERT INTO lake.gex SELECT * FROM lake.gex")  # read-only
    finally:
        con.close()


def test_a_datasets_parquet_options_reach_its_files(tmp_path):
    """Issue 13: the order books' measured writer options (zstd 9, delta-encoded times and ids,
    no dictionary on the level lists) were declared but never applied by the store."""
    store = ArchiveStore(tmp_path, kind="sim")
    day = FULL_DAY
    store.write_day("orderbook_l2", day, make_table("orderbook_l2", day, 50))
    (path,) = store.partition_files("orderbook_l2", day)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    cols = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert "DELTA_BINARY_PACKED" in cols["event_time"].encodings
    assert "DELTA_BINARY_PACKED" in cols["update_id"].encodings
    assert not cols["bid_px.list.element"].has_dictionary_page
    assert cols["symbol"].has_dictionary_page and cols["symbol"].compression == "ZSTD"
    # a dataset without options keeps the store's defaults (dictionary pages, zstd)
    store.write_day("crypto_trades", day, make_table("crypto_trades", day, 50))
    (path,) = store.partition_files("crypto_trades", day)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    assert all(meta.column(i).compression == "ZSTD" for i in range(meta.num_columns))
    assert store.read_day("orderbook_l2", day).num_rows == 50
