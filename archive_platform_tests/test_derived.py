"""IV rank derived from the options archive (the IB option-snapshot collector's rules)."""

from __future__ import annotations

from datetime import date, time

import polars as pl
import pytest

from archive_platform import calendar
from archive_platform.archiving import iv_rank_instants
from archive_platform.derived import MIN_HISTORY, atm_iv, derive_iv_rank, rank_and_percentile
from archive_platform.schemas import IV_RANK_SCHEMA, ArchiveType
from archive_platform.sim import SimulatedMarket
from archive_platform.store import ArchiveStore


def test_rank_is_fifty_without_enough_history_or_on_a_flat_one():
    assert rank_and_percentile(0.3, [0.2] * (MIN_HISTORY - 1)) == (50.0, None)
    assert rank_and_percentile(0.2, [0.2] * 60)[0] == 50.0


def test_rank_and_percentile_over_a_known_history():
    hist = [0.10 + 0.01 * i for i in range(40)]  # 0.10 .. 0.49
    rank, pct = rank_and_percentile(0.30, hist)
    assert rank == pytest.approx((0.30 - 0.10) / (0.49 - 0.10) * 100)
    assert pct == pytest.approx(100 * 20 / 40)  # 0.10..0.29 are below 0.30


def test_atm_iv_picks_the_strike_nearest_the_underlying_on_the_30_day_expiry():
    snap = calendar.snapshot_times(date(2025, 11, 26))[0]
    rows = []
    for exp, base in [(date(2025, 11, 28), 0.5), (date(2025, 12, 26), 0.2), (date(2026, 3, 20), 0.9)]:
        for k, bump in [(95.0, 0.1), (100.0, 0.0), (105.0, 0.1)]:
            for right, d in [("C", 0.0), ("P", 0.02)]:
                rows.append({"snapshot_time": snap, "symbol": "XYZ", "expiry": exp, "strike": k,
                             "right": right, "iv": base + bump + d, "underlying_price": 100.4})
    got = atm_iv(pl.DataFrame(rows))
    assert got.to_dicts() == [{"symbol": "XYZ", "atm_iv": pytest.approx(0.21)}]


def test_derive_from_a_stored_archive(tmp_path):
    store = ArchiveStore(tmp_path, kind="sim")
    sim = SimulatedMarket()
    days = calendar.trading_days(date(2025, 11, 20), date(2025, 11, 26))
    for d in days:
        store.write_day(ArchiveType.OPTIONS, d, sim.fetch_options(d, ["SPY"], calendar.snapshot_times(d)))
    day = days[-1]
    instants = iv_rank_instants(day, [time(7), time(19)])
    table = derive_iv_rank(store, day, ["SPY"], instants)
    assert table.schema == IV_RANK_SCHEMA
    assert table.num_rows == 2
    rows = table.to_pylist()
    assert {r["source"] for r in rows} == {"sim"}
    assert all(r["iv_rank"] == 50.0 and r["iv_percentile"] is None for r in rows)  # < 30 days
    close_of = lambda d: atm_iv(pl.from_arrow(store.read_day(ArchiveType.OPTIONS, d)))["atm_iv"][0]  # noqa: E731
    # 07:00 ET is before the day's first snapshot: the previous session's close is what was known
    assert rows[0]["snapshot_time"] == instants[0] and rows[0]["iv"] == pytest.approx(close_of(days[-2]))
    # 19:00 ET sees the day's last snapshot
    assert rows[1]["iv"] == pytest.approx(close_of(day))
    assert rows[0]["iv"] != rows[1]["iv"]


def test_derived_iv_rank_through_dagster(tmp_path):
    import dagster as dg

    from archive_platform_tests.dagster_helpers import checks, defs_for, materializations, run_job

    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY,QQQ", ARCHIVE_SOURCE_IV_RANK="derived")
    # derived IV rank reads the options archive, so the graph says so
    assert defs.resolve_asset_graph().get(dg.AssetKey("iv_rank")).parent_keys == {dg.AssetKey("options")}
    with dg.instance_for_test() as instance:
        run_job(defs, "options_snapshot", instance, partition_key="2025-11-25")
        run_job(defs, "options_snapshot", instance, partition_key="2025-11-26")
        result = run_job(defs, "iv_rank_snapshot", instance, partition_key="2025-11-26")
    meta = materializations(result)["iv_rank"]
    assert meta["dagster/row_count"] == 4 and meta["snapshots"] == 2
    assert all(e.passed for e in checks(result).values())
    stored = ArchiveStore(tmp_path / "sim", kind="sim").read_day(ArchiveType.IV_RANK, date(2025, 11, 26))
    assert set(stored["symbol"].to_pylist()) == {"SPY", "QQQ"}
