"""Store behaviour on disk: layout, round trips, parts and compaction, append cost, sim/live roots."""

from __future__ import annotations

import json
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.store import ArchiveKindError, ArchiveStore
from archive_platform.store import files as F
from archive_platform_tests.store_helpers import (
    FULL_DAY,
    HALF_DAY,
    make_table,
    options_snapshot,
    sorted_rows,
)

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
    return ArchiveStore(tmp_path / "archive", kind="sim")


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
    assert store.partition_files(archive_type, day) == [res.path]
    assert store.daily_path(archive_type, day) == res.path
    back = store.read_day(archive_type, day)
    assert back.schema.equals(spec.schema)
    assert sorted_rows(back, spec.dedup_key) == sorted_rows(table, spec.dedup_key)
    # on disk: zstd, sorted by the sort key, canonical schema
    pf = pq.ParquetFile(res.path)
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    on_disk = pf.read()
    keys = [on_disk[k].to_pylist() for k in spec.sort_key]
    assert list(zip(*keys)) == sorted(zip(*keys))
    assert store.days(archive_type) == [day]


def test_read_day_columns_and_empty(store):
    assert store.read_day("gex", FULL_DAY).schema.equals(spec_for("gex").schema)
    assert store.read_day("gex", FULL_DAY).num_rows == 0
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5))
    cols = store.read_day("gex", FULL_DAY, columns=["net_gex", "symbol"])
    assert cols.column_names == ["net_gex", "symbol"] and cols.num_rows == 5
    assert store.days("gex") == [FULL_DAY] and store.days("options") == []


def test_write_day_replaces_parts_and_daily(store):
    for k in range(3):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k))
    assert len(store.partition_files("options", FULL_DAY)) == 3
    fresh = options_snapshot(FULL_DAY, 9, shift=5.0)
    res = store.write_day("options", FULL_DAY, fresh)
    assert store.partition_files("options", FULL_DAY) == [res.path]
    assert sorted_rows(store.read_day("options", FULL_DAY), ["symbol", "strike"]) == sorted_rows(fresh, ["symbol", "strike"])


def test_parts_sort_after_daily_in_write_order(store):
    store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    paths = [store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k)).path for k in range(1, 12)]
    names = [p.name for p in store.partition_files("options", FULL_DAY)]
    assert names == sorted(names)  # glob order == write order
    assert names[0] == "options_20251126.parquet"
    assert names[1:] == [p.name for p in paths]
    assert all(n.endswith(".parquet") for n in names)
    assert not [p for p in (store.root / "options").rglob("*.tmp")]


def test_identical_batch_is_skipped(store):
    a = store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
    b = store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
    assert not a.skipped and b.skipped and b.path == a.path and b.bytes_written == 0
    assert store.partition_files("options", FULL_DAY) == [a.path]


def test_overlapping_append_rewrites_only_the_file_holding_the_keys(store):
    for k in range(5):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k))
    before = {p.name: p.stat().st_ino for p in store.partition_files("options", FULL_DAY)}
    newer = options_snapshot(FULL_DAY, 2, shift=7.0)
    res = store.append_snapshot("options", FULL_DAY, newer)
    after = store.partition_files("options", FULL_DAY)
    # snapshot 2's old part is gone (all its keys were replaced), the others are untouched
    gone = [n for n in before if ".part-000003-" in n]
    assert len(gone) == 1 and not (store.partition_dir("options", FULL_DAY) / gone[0]).exists()
    for p in after:
        if p.name in before:
            assert p.stat().st_ino == before[p.name]
    assert res.rows_in_partition == 5 * 12
    day = store.read_day("options", FULL_DAY)
    assert day.num_rows == 60
    snap2 = [r for r in day.to_pylist() if r["snapshot_time"] == newer["snapshot_time"][0].as_py()]
    assert sorted(r["bid"] for r in snap2) == sorted(newer["bid"].to_pylist())


def test_partial_overlap_keeps_the_rest_of_an_older_part(store):
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 0, symbols=3))
    one_symbol = options_snapshot(FULL_DAY, 0, symbols=1, shift=3.0)
    store.append_snapshot("options", FULL_DAY, one_symbol)
    files = store.partition_files("options", FULL_DAY)
    assert [F.part_seq(p.name) for p in files] == [1, 2]
    # every key lives in exactly one file, so a plain glob (the views) sees no duplicates
    assert sum(F.num_rows(p) for p in files) == 12
    assert F.num_rows(files[0]) == 8
    rows = {(r["symbol"], r["strike"]): r["bid"] for r in store.read_day("options", FULL_DAY).to_pylist()}
    assert rows[("SYM0", 100.0)] == one_symbol["bid"][0].as_py()


def test_compaction_folds_parts_and_keeps_content(store):
    store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    for k in (1, 2, 3, 1):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k, shift=float(k)))
    before = store.read_day("options", FULL_DAY)
    res = store.compact_day("options", FULL_DAY)
    assert store.partition_files("options", FULL_DAY) == [store.daily_path("options", FULL_DAY)] == [res.path]
    assert store.read_day("options", FULL_DAY).equals(before)
    assert res.rows_written == before.num_rows == 48
    again = store.compact_day("options", FULL_DAY)
    assert again.skipped and again.bytes_written == 0 and again.rows_in_partition == 48
    assert store.compact_day("gex", FULL_DAY).skipped


def test_append_after_compaction_replaces_keys_in_the_daily_file(store):
    for k in range(3):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k))
    store.compact_day("options", FULL_DAY)
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 1, shift=2.0))
    daily, part = store.partition_files("options", FULL_DAY)
    assert F.num_rows(daily) == 24 and F.num_rows(part) == 12
    assert store.read_day("options", FULL_DAY).num_rows == 36


def test_append_cost_does_not_touch_earlier_parts(store, monkeypatch):
    for k in range(26):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k))
    earlier = store.partition_files("options", FULL_DAY)
    assert len(earlier) == 26
    stats = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in earlier}
    reads: list = []
    real = F.read_parquet
    monkeypatch.setattr(F, "read_parquet", lambda path, columns=None: reads.append(path) or real(path, columns))
    res = store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 26))
    assert reads == []  # footers only: no column of an earlier part was read
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in earlier} == stats
    assert res.bytes_written == res.path.stat().st_size
    assert len(store.partition_files("options", FULL_DAY)) == 27
    assert res.rows_in_partition == 27 * 12


def test_parts_left_by_a_crash_after_compaction_are_ignored_then_removed(store):
    for k in range(2):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k))
    leftover = store.partition_files("options", FULL_DAY)[0]
    saved = leftover.read_bytes()
    store.compact_day("options", FULL_DAY)
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 0, shift=9.0))  # newer values
    leftover.write_bytes(saved)  # as if the unlink never happened
    day = store.read_day("options", FULL_DAY)
    assert day.num_rows == 24
    assert leftover not in store.partition_files("options", FULL_DAY)
    newest = options_snapshot(FULL_DAY, 0, shift=9.0)
    snap0 = day.filter(pc.equal(day["snapshot_time"], newest["snapshot_time"][0]))
    assert sorted(snap0["bid"].to_pylist()) == sorted(newest["bid"].to_pylist())
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 5))
    assert not leftover.exists()


def test_stale_temp_files_are_invisible_and_cleaned(store):
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))
    folder = store.partition_dir("gex", FULL_DAY)
    stale = F.temp_path(store.daily_path("gex", FULL_DAY))
    stale.write_bytes(b"half a parquet file")
    assert store.read_day("gex", FULL_DAY).num_rows == 3
    assert not stale.name.endswith(".parquet")
    store.append_snapshot("gex", FULL_DAY, make_table("gex", FULL_DAY, 2, tag="x"))
    assert not stale.exists()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".lock"]


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


def test_crash_between_new_part_and_trim_then_replay(store):
    """A crash after B's part was written but before A's part was trimmed leaves a key in two
    files; read_day must still say B, and replaying A must not be skipped as identical."""
    a, b = options_snapshot(FULL_DAY, 0), options_snapshot(FULL_DAY, 0, shift=4.0)
    part_a = store.append_snapshot("options", FULL_DAY, a).path
    saved = part_a.read_bytes()
    store.append_snapshot("options", FULL_DAY, b)
    assert not part_a.exists()
    part_a.write_bytes(saved)  # the trim of A "never happened"
    bids = lambda: sorted(store.read_day("options", FULL_DAY)["bid"].to_pylist())  # noqa: E731
    assert bids() == sorted(b["bid"].to_pylist())
    res = store.append_snapshot("options", FULL_DAY, a)
    assert not res.skipped
    assert bids() == sorted(a["bid"].to_pylist())
    assert [F.num_rows(p) for p in store.partition_files("options", FULL_DAY)] == [12]


def test_a_full_disk_names_the_file_and_partition_and_installs_nothing(tmp_path, monkeypatch):
    """Issue 11: ENOSPC errors named neither file nor partition."""
    import errno
    from datetime import date

    import pyarrow.parquet as pq_mod

    from archive_platform.store.files import ArchiveWriteError

    store = ArchiveStore(tmp_path, kind="sim")
    day = date(2025, 11, 26)
    store.write_day("stocks_1m", day, make_table("stocks_1m", day, 3))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq_mod, "write_table", full)
    with pytest.raises(ArchiveWriteError, match=r"stocks/date=2025-11-26/stocks_1m_20251126\.parquet.*No space") as info:
        store.write_day("stocks_1m", day, make_table("stocks_1m", day, 5))
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert store.read_day("stocks_1m", day).num_rows == 3
    assert not [p for p in (tmp_path / "stocks" / "date=2025-11-26").iterdir() if p.name.endswith(".tmp")]
