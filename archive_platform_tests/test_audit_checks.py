"""Audit of the per-partition asset checks: bad days fed through the store and Dagster.

Each test materializes real partitions (``archive_all`` in process, the simulated market with one
day's rows tampered with before they reach the store) and asserts on the check evaluations the
instance records: passed, severity, blocking effect on what is derived, and the metadata a user
acts on.

* a soft value anomaly (a crossed quote, a bar outside its own range, a derived day short of
  minutes) is a WARN: reported with the rows that break it, and it no longer stops ``gex``,
  ``daily_iv``, ``daily_bars``, ``candles`` and ``market_regime`` for the whole day; a hard rule
  broken is still an ERROR;
* ``complete`` fails when a snapshot is missing from the grid and another is off it, even though
  the count is right (it passed before);
* ``in_session`` names the offending instants with their row counts, and still blocks ``gex``;
* good days (the 13:00 close of 2025-11-28, the first session after the end of DST) pass every
  check, and a range run judges and targets each day on its own.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest

from archive_platform import calendar, quality
from archive_platform.schemas import spec_for
from archive_platform.sim import SimulatedMarket
from archive_platform_tests.dagster_helpers import QUIET, defs_for

DAY = date(2025, 11, 26)


def _tamper(monkeypatch, method: str, change, only: date | None = None) -> None:
    """``SimulatedMarket.<method>`` returns its rows passed through ``change`` (a polars frame
    function), on ``only`` if given, else on every day."""
    orig = getattr(SimulatedMarket, method)

    def tampered(self, day, *args, **kwargs):
        table = orig(self, day, *args, **kwargs)
        if only is not None and day != only:
            return table
        return change(pl.from_arrow(table)).to_arrow().cast(table.schema)

    monkeypatch.setattr(SimulatedMarket, method, tampered)


def _run(tmp_path, instance, *, day: date | None = DAY, assets=None, tags=None):
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY")
    return defs.resolve_job_def("archive_all").execute_in_process(
        partition_key=day.isoformat() if day else None, instance=instance, run_config=QUIET,
        tags=tags or {}, raise_on_error=False,
        asset_selection=[dg.AssetKey(a) for a in assets] if assets else None)


def _evals(result) -> dict[tuple[str, str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name, e.partition): e
            for e in result.get_asset_check_evaluations()}


def _materialized(result) -> set[str]:
    return {e.event_specific_data.materialization.asset_key.to_user_string()
            for e in result.get_asset_materialization_events()}


def _row(i: int) -> pl.Expr:
    return pl.int_range(pl.len()) == i


# -- severity and blocking ----------------------------------------------------------------------


def test_a_crossed_quote_is_a_warning_that_names_its_contract_and_does_not_stop_gex(tmp_path, monkeypatch):
    _tamper(monkeypatch, "fetch_options", lambda df: df.with_columns(
        bid=pl.when(_row(5)).then(pl.col("ask") + 1.0).otherwise("bid")))
    with dg.instance_for_test() as instance:
        r = _run(tmp_path, instance, assets=["options", "gex"])
        ev = _evals(r)[("options", "values", DAY.isoformat())]
        assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN and ev.blocking
        assert ev.metadata["violations"].value == {"bid <= ask": 1}
        assert ev.metadata["hard_violations"].value == []
        text = ev.metadata["examples"].value["bid <= ask"]
        # the whole contract (dedup key) and both sides of the quote
        assert all(f"'{c}'" in text for c in ("snapshot_time", "symbol", "strike", "expiry", "right",
                                              "bid", "ask")), text
        # the anomaly is stored and reported, and gex of the day is derived all the same
        assert r.success and _materialized(r) == {"options", "gex"}
        gex = {k: e for k, e in _evals(r).items() if k[0] == "gex"}
        assert len(gex) == 5 and all(e.passed for e in gex.values())


def test_a_hard_rule_broken_is_an_error():
    # the store refuses such rows, so a hard violation in a stored day means a file written
    # outside it: the check must say ERROR (and so block), unlike a soft anomaly
    spec = spec_for("options")
    table = SimulatedMarket().fetch_options(DAY, ["SPY"], calendar.snapshot_times(DAY)[:1])
    oi = table["open_interest"].to_pylist()
    oi[3] = -1
    bad = table.set_column(table.schema.get_field_index("open_interest"), "open_interest",
                           pa.array(oi, pa.int64()))
    o = quality.check_values(bad, spec)
    assert not o.passed and o.severity == quality.ERROR
    assert o.metadata["hard_violations"] == ["open_interest >= 0"]
    bid = table["bid"].to_pylist()
    bid[3] = table["ask"][3].as_py() + 1.0
    crossed = table.set_column(table.schema.get_field_index("bid"), "bid", pa.array(bid, pa.float64()))
    o = quality.check_values(crossed, spec)
    assert not o.passed and o.severity == quality.WARN and o.metadata["hard_violations"] == []
    # both at once: the hard one decides
    both = crossed.set_column(crossed.schema.get_field_index("open_interest"), "open_interest",
                              pa.array(oi, pa.int64()))
    o = quality.check_values(both, spec)
    assert o.severity == quality.ERROR and set(o.metadata["violations"]) == {"bid <= ask", "open_interest >= 0"}


def test_a_day_short_of_minutes_warns_on_daily_bars_and_market_regime_is_still_derived(tmp_path, monkeypatch):
    s = calendar.session(DAY)
    hole = (s.open_utc + timedelta(minutes=30), s.open_utc + timedelta(minutes=90))
    _tamper(monkeypatch, "fetch_stocks_1m",
            lambda df: df.filter(~pl.col("timestamp").is_between(*hole, closed="left")))
    with dg.instance_for_test() as instance:
        r = _run(tmp_path, instance,
                 assets=["stocks_1m", "daily_bars", "options", "daily_iv", "vix", "market_regime"])
        ev = _evals(r)
        # the missing hour is an error of stocks_1m (not blocking) ...
        full = ev[("stocks_1m", "complete", DAY.isoformat())]
        assert not full.passed and full.severity == dg.AssetCheckSeverity.ERROR and not full.blocking
        assert "without exactly 390 one-minute bars" in full.description
        # ... and daily_bars' soft rule warns with both counts, without stopping market_regime
        bars = ev[("daily_bars", "values", DAY.isoformat())]
        assert not bars.passed and bars.severity == dg.AssetCheckSeverity.WARN
        assert bars.metadata["violations"].value == {"a bar for every session minute": 1}
        assert "'bars': 330, 'session_minutes': 390" in bars.metadata["examples"].value["a bar for every session minute"]
        assert r.success and "market_regime" in _materialized(r)


def test_a_bar_outside_its_own_range_warns_and_candles_are_still_derived(tmp_path, monkeypatch):
    # the second bar of a 5-minute candle (11:11 ET): neither a candle's nor the day's open or
    # close, so the derived rows stay valid (see the report: a first bar would make the candle's
    # own hard OHLC rule refuse the whole day's candles)
    _tamper(monkeypatch, "fetch_stocks_1m", lambda df: df.with_columns(
        open=pl.when(_row(101)).then(pl.col("high") + 0.5).otherwise("open")))
    with dg.instance_for_test() as instance:
        r = _run(tmp_path, instance, assets=["stocks_1m", "daily_bars", "candles"])
        ev = _evals(r)[("stocks_1m", "values", DAY.isoformat())]
        assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN
        assert ev.metadata["violations"].value == {"low <= open,close <= high": 1}
        text = ev.metadata["examples"].value["low <= open,close <= high"]
        assert all(f"'{c}'" in text for c in ("symbol", "timestamp", "open", "high", "low", "close"))
        assert r.success and _materialized(r) == {"stocks_1m", "daily_bars", "candles"}


# -- completeness on the grid ---------------------------------------------------------------------


def test_a_snapshot_off_the_grid_fails_complete_even_with_the_right_count(tmp_path, monkeypatch):
    first = calendar.session(DAY).open_utc
    _tamper(monkeypatch, "fetch_options", lambda df: df.with_columns(snapshot_time=pl.when(
        pl.col("snapshot_time") == first).then(pl.col("snapshot_time") + timedelta(minutes=7))
        .otherwise("snapshot_time")))
    with dg.instance_for_test() as instance:
        r = _run(tmp_path, instance, assets=["options", "gex"])
        ev = _evals(r)
        for asset in ("options", "gex"):  # gex carries the options' instants over
            full = ev[(asset, "complete", DAY.isoformat())]
            assert not full.passed and full.severity == dg.AssetCheckSeverity.ERROR, asset
            meta = {k: v.value for k, v in full.metadata.items()}
            assert meta["snapshots"] == meta["expected_snapshots"] == 27  # the count alone passes
            assert meta["missing_snapshots"] == ["SPY 2025-11-26T14:30:00+00:00"]
            assert meta["unexpected_snapshots"] == ["SPY 2025-11-26T14:37:00+00:00"]
            assert "1 due snapshots missing" in full.description
        assert ev[("options", "in_session", DAY.isoformat())].passed  # 09:37 is inside the session
        assert r.success  # complete does not block gex


def test_a_snapshot_after_the_close_fails_in_session_naming_the_instant_and_blocks_gex(tmp_path, monkeypatch):
    close = calendar.session(DAY).close_utc
    _tamper(monkeypatch, "fetch_options", lambda df: df.with_columns(snapshot_time=pl.when(
        pl.col("snapshot_time") == close).then(pl.col("snapshot_time") + timedelta(minutes=15))
        .otherwise("snapshot_time")))
    with dg.instance_for_test() as instance:
        r = _run(tmp_path, instance, assets=["options", "gex"])
        ev = _evals(r)
        window = ev[("options", "in_session", DAY.isoformat())]
        assert not window.passed and window.severity == dg.AssetCheckSeverity.ERROR and window.blocking
        assert window.metadata["column"].value == "snapshot_time"
        rows = window.metadata["outside_rows"].value
        # one line per offending instant and symbol with its row count, not five copies of a row
        assert window.metadata["examples"].value == str(
            [{"snapshot_time": "2025-11-26T21:15:00+0000", "symbol": "SPY", "rows": rows}])
        full = ev[("options", "complete", DAY.isoformat())]
        assert not full.passed and full.metadata["missing_snapshots"].value == ["SPY 2025-11-26T21:00:00+00:00"]
        assert not r.success and _materialized(r) == {"options"}  # gex is not derived from it


# -- good days and ranges -------------------------------------------------------------------------


@pytest.mark.parametrize("day", [date(2025, 11, 28), date(2025, 11, 3)])  # 13:00 close; after DST ends
def test_good_days_pass_every_check(tmp_path, day):
    with dg.instance_for_test() as instance:
        r = _run(tmp_path, instance, day=day)
        assert r.success
        ev = _evals(r)
        assert len(ev) == 60 and [k for k, e in ev.items() if not e.passed] == []
        assert {k[2] for k in ev} == {day.isoformat()}
        full = ev[("options", "complete", day.isoformat())].metadata
        assert full["snapshots"].value == (15 if day.day == 28 else 27)
        assert "missing_snapshots" not in full and "unexpected_snapshots" not in full


def test_a_range_run_judges_and_targets_each_day_on_its_own(tmp_path, monkeypatch):
    days = ["2025-11-24", "2025-11-25", "2025-11-26"]
    bad = date.fromisoformat(days[1])
    first = calendar.session(bad).open_utc
    _tamper(monkeypatch, "fetch_options", lambda df: df.with_columns(snapshot_time=pl.when(
        pl.col("snapshot_time") == first).then(pl.col("snapshot_time") + timedelta(minutes=5))
        .otherwise("snapshot_time")), only=bad)
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    with dg.instance_for_test() as instance:
        r = _run(tmp_path, instance, day=None, assets=["options", "gex"], tags=tags)
        assert r.success
        ev = _evals(r)
        assert {d: ev[("options", "complete", d)].passed for d in days} == {
            days[0]: True, days[1]: False, days[2]: True}
        assert ev[("options", "complete", days[1])].metadata["unexpected_snapshots"].value == [
            "SPY 2025-11-25T14:35:00+00:00"]
        for (asset, _, d), e in ev.items():
            rec = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset), asset_partitions=[d]), limit=1).records[0]
            assert e.target_materialization_data.storage_id == rec.storage_id
            assert rec.event_log_entry.run_id == r.run_id
