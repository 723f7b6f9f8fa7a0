"""Bad input is refused before anything is written, with a message naming the problem."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.calendar import NotATradingDay
from archive_platform.schemas import ArchiveType, UnknownArchiveType, spec_for
from archive_platform.store import ArchiveStore, ArchiveValidationError, NotATradingDayError
from archive_platform.store.validate import conform_schema, dedup_last_wins, validate_batch
from archive_platform_tests.store_helpers import FULL_DAY, HALF_DAY, et, make_table

OPTIONS = spec_for(ArchiveType.OPTIONS)


def _set(table: pa.Table, name: str, values, typ=None) -> pa.Table:
    arr = pa.array(values, typ) if typ is not None else pa.array(values)
    return table.set_column(table.schema.get_field_index(name), name, arr)


@pytest.fixture
def store(tmp_path):
    return ArchiveStore(tmp_path / "root", kind="sim")


def _assert_nothing_written(store: ArchiveStore) -> None:
    assert not store.root.exists() or not any(store.root.rglob("*.parquet"))


def test_unknown_archive_type_names_the_known_ones(store):
    with pytest.raises(UnknownArchiveType, match=r"unknown archive type 'bonds'.*uw_flow"):
        store.write_day("bonds", FULL_DAY, make_table("options", FULL_DAY, 2))
    _assert_nothing_written(store)


@pytest.mark.parametrize("day", [date(2025, 11, 27), date(2025, 11, 29)])  # Thanksgiving, Saturday
def test_not_a_trading_day(store, day):
    with pytest.raises(NotATradingDayError, match=f"{day.isoformat()} is not an NYSE trading day") as ei:
        store.append_snapshot("options", day, make_table("options", FULL_DAY, 2))
    assert isinstance(ei.value, NotATradingDay)
    _assert_nothing_written(store)


def test_missing_and_extra_columns_are_named(store):
    t = make_table("options", FULL_DAY, 3).drop_columns(["gamma", "vega"]).append_column("foo", pa.array([1, 2, 3]))
    with pytest.raises(ArchiveValidationError, match=r"missing columns \['gamma', 'vega'\]; unexpected columns \['foo'\]"):
        store.write_day("options", FULL_DAY, t)
    _assert_nothing_written(store)


def test_wrong_type_names_column_expected_and_got(store):
    t = _set(make_table("options", FULL_DAY, 3), "volume", ["1", "2", "3"])
    with pytest.raises(ArchiveValidationError, match=r"column 'volume' has type string, expected int64"):
        store.write_day("options", FULL_DAY, t)
    _assert_nothing_written(store)


def test_int_overflow_is_a_lossy_cast(store):
    t = _set(make_table("options", FULL_DAY, 3), "et_offset", [-300, -300, 70000], pa.int64())
    with pytest.raises(ArchiveValidationError, match=r"column 'et_offset': cannot convert int64 to int16 without loss"):
        store.write_day("options", FULL_DAY, t)


def test_naive_timestamps_are_refused(store):
    t = make_table("options", FULL_DAY, 3)
    t = _set(t, "timestamp", t["timestamp"].cast(pa.timestamp("us")))
    with pytest.raises(ArchiveValidationError, match=r"column 'timestamp': naive timestamp"):
        store.write_day("options", FULL_DAY, t)


def test_nanosecond_precision_would_be_lost():
    t = make_table("options", FULL_DAY, 2)
    ns = t["timestamp"].cast(pa.timestamp("ns", tz="UTC")).to_pylist()
    raw = pa.array([v.value + 1 for v in ns], pa.timestamp("ns", tz="UTC"))
    with pytest.raises(ArchiveValidationError, match=r"column 'timestamp': cannot convert timestamp\[ns, tz=UTC\]"):
        conform_schema(OPTIONS, _set(t, "timestamp", raw))


def test_safe_casts_are_accepted_and_canonicalised():
    t = make_table("options", FULL_DAY, 3)
    ny = t["snapshot_time"].cast(pa.timestamp("ns", tz="America/New_York"))
    t = _set(t, "snapshot_time", ny)
    t = _set(t, "symbol", t["symbol"].cast(pa.large_string()))
    t = _set(t, "volume", t["volume"].cast(pa.int32()))
    t = _set(t, "timestamp", t["timestamp"].cast(pa.timestamp("ms", tz="UTC")))
    t = _set(t, "right", t["right"].dictionary_encode())
    out = conform_schema(OPTIONS, t.select(list(reversed(t.column_names))))
    assert out.schema.names == OPTIONS.schema.names
    assert [f.type for f in out.schema] == [f.type for f in OPTIONS.schema]
    # the instant is unchanged by the timezone relabel
    assert out["snapshot_time"].to_pylist() == make_table("options", FULL_DAY, 3)["snapshot_time"].to_pylist()


def test_polars_input_is_accepted(store):
    t = make_table("iv_rank", FULL_DAY, 4)
    store.write_day("iv_rank", FULL_DAY, pl.from_arrow(t))
    assert store.read_day("iv_rank", FULL_DAY).to_pylist() == t.sort_by([("symbol", "ascending")]).to_pylist()


def test_null_in_non_nullable_column_names_column_and_row(store):
    t = make_table("options", FULL_DAY, 4)
    t = _set(t, "symbol", ["A", "B", None, None])
    with pytest.raises(ArchiveValidationError, match=r"column 'symbol' is not nullable but row 2 is null \(2 null"):
        store.write_day("options", FULL_DAY, t)
    _assert_nothing_written(store)


def test_nulls_in_nullable_columns_are_fine(store):
    t = _set(make_table("options", FULL_DAY, 2), "bid", [None, 1.0], pa.float64())
    store.write_day("options", FULL_DAY, t)
    assert sorted(store.read_day("options", FULL_DAY)["bid"].to_pylist(), key=str) == [1.0, None]


def test_row_of_another_market_date_is_named(store):
    t = make_table("stocks_1m", FULL_DAY, 3)
    # 00:30 ET on the 27th is still the 26th in UTC terms but the 27th in market terms
    late = et(date(2025, 11, 27), 0, 30).astimezone(timezone.utc)
    ts = t["timestamp"].to_pylist()
    ts[1] = late
    t = _set(t, "timestamp", ts, pa.timestamp("us", tz="UTC"))
    with pytest.raises(
        ArchiveValidationError,
        match=r"row 1 has timestamp 2025-11-27T05:30:00\+00:00 whose market date is 2025-11-27, "
        r"not the partition's day 2025-11-26",
    ):
        store.write_day("stocks_1m", FULL_DAY, t)
    _assert_nothing_written(store)


def test_snapshot_rows_belong_to_their_snapshot_day(store):
    """A snapshot type is partitioned by snapshot_time: a snapshot of another day is refused ..."""
    t = make_table("options", FULL_DAY, 3)
    late = et(date(2025, 11, 27), 0, 30).astimezone(timezone.utc)
    snaps = t["snapshot_time"].to_pylist()
    snaps[2] = late
    bad = _set(t, "snapshot_time", snaps, pa.timestamp("us", tz="UTC"))
    with pytest.raises(ArchiveValidationError, match=r"row 2 has snapshot_time 2025-11-27T05:30:00"):
        store.write_day("options", FULL_DAY, bad)
    _assert_nothing_written(store)


def test_stale_vendor_quote_inside_todays_snapshot_is_kept(store):
    """... but a quote last updated on the previous session (illiquid contract) is stored, with
    the ET offset of its own instant. Regression: the whole snapshot used to be refused."""
    t = make_table("options", date(2025, 3, 10), 2)  # Monday after the spring DST switch
    friday = et(date(2025, 3, 7), 15, 59).astimezone(timezone.utc)
    t = _set(t, "timestamp", [friday, t["timestamp"][1].as_py()], pa.timestamp("us", tz="UTC"))
    t = _set(t, "et_offset", [-300, -240], pa.int16())
    store.write_day("options", date(2025, 3, 10), t)
    back = store.read_day("options", date(2025, 3, 10))
    assert sorted(back["et_offset"].to_pylist()) == [-300, -240]
    assert friday in back["timestamp"].to_pylist()


def test_evening_utc_of_previous_et_day_is_refused():
    # 23:30 ET on the 25th is already the 26th in UTC: the UTC date must not be used
    t = make_table("options", FULL_DAY, 1)
    t = _set(t, "snapshot_time", [et(date(2025, 11, 25), 23, 30)], pa.timestamp("us", tz="UTC"))
    with pytest.raises(ArchiveValidationError, match=r"market date is 2025-11-25"):
        validate_batch(OPTIONS, FULL_DAY, t, "sim")


def test_wrong_et_offset_is_named(store):
    t = _set(make_table("options", FULL_DAY, 2), "et_offset", [-300, -240], pa.int16())
    with pytest.raises(ArchiveValidationError, match=r"'et_offset' is -240 at row 1; expected -300 for timestamp"):
        store.write_day("options", FULL_DAY, t)


def test_live_store_refuses_sim_rows(tmp_path):
    live = ArchiveStore(tmp_path / "live", kind="live")
    t = _set(make_table("options", FULL_DAY, 2, source="thetadata"), "source", ["thetadata", "sim"])
    with pytest.raises(ArchiveValidationError, match=r"column 'source' has value 'sim' at row 1; a live archive refuses"):
        live.write_day("options", FULL_DAY, t)
    assert not (tmp_path / "live").exists()


def test_sim_store_refuses_vendor_rows(store):
    t = make_table("options", FULL_DAY, 2, source="polygon")
    with pytest.raises(ArchiveValidationError, match=r"column 'source' has value 'polygon' at row 0; a sim archive"):
        store.append_snapshot("options", FULL_DAY, t)
    _assert_nothing_written(store)


def test_duplicate_keys_within_a_batch_last_row_wins(store):
    t = make_table("iv_rank", HALF_DAY, 3)
    dup = pa.concat_tables([t, _set(t.slice(1, 1), "iv", [99.0]).cast(t.schema)])
    store.write_day("iv_rank", HALF_DAY, dup)
    back = store.read_day("iv_rank", HALF_DAY)
    assert back.num_rows == 3
    by_symbol = {r["symbol"]: r["iv"] for r in back.to_pylist()}
    assert by_symbol[t["symbol"][1].as_py()] == 99.0
    assert by_symbol[t["symbol"][0].as_py()] == t["iv"][0].as_py()


def test_dedup_last_wins_keeps_order_of_survivors():
    t = pa.table({"k": [1, 2, 1, 3, 2], "v": ["a", "b", "c", "d", "e"]})
    assert dedup_last_wins(t, ["k"]).to_pylist() == [
        {"k": 1, "v": "c"}, {"k": 3, "v": "d"}, {"k": 2, "v": "e"}
    ]


def test_datetime_is_not_a_day(store):
    with pytest.raises(ArchiveValidationError, match="must be a datetime.date"):
        store.write_day("options", datetime(2025, 11, 26, tzinfo=timezone.utc), make_table("options", FULL_DAY, 1))


def test_read_day_unknown_column(store):
    with pytest.raises(ArchiveValidationError, match=r"unknown columns \['nope'\]"):
        store.read_day("options", FULL_DAY, columns=["symbol", "nope"])


def test_empty_batch_is_valid(store):
    empty = spec_for("trades").schema.empty_table()
    res = store.write_day("trades", FULL_DAY, empty)
    # nothing was stored before, so an empty day is accepted: no rows, and an empty file that
    # records the day as archived (a session without executions is not a missing day)
    assert res.rows_written == 0 and res.rows_replaced == 0
    assert pq.read_metadata(res.path).num_rows == 0
    assert store.days("trades") == [FULL_DAY]
    back = store.read_day("trades", FULL_DAY)
    assert back.num_rows == 0 and back.schema.equals(spec_for("trades").schema)
    res = store.append_snapshot("gex", FULL_DAY - timedelta(days=1), spec_for("gex").schema.empty_table())
    assert res.skipped and res.rows_written == 0
