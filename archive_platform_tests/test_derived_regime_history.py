"""market_regime derived through the store: 60 sessions of history read with ``read_range``.

The simulated history of ``timegrid_helpers`` (SPY since 2025-02-24, AAPL since 2025-11-03) is
stored as ``daily_bars``/``daily_iv`` partitions; deriving the regime of 2025-12-05 from the store
must give exactly the rows the pure function computes over the whole history.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from archive_platform import calendar
from archive_platform.datasets import BY_NAME
from archive_platform.regime_checks import reconcile_market_regime
from archive_platform.regime_derive import (
    HISTORY_SESSIONS, derive_market_regime, history_start, to_dataset, with_date,
)
from archive_platform.sources.base import SourceError
from archive_platform.store import ArchiveStore
from archive_platform_tests.timegrid_helpers import derived, history

pytestmark = pytest.mark.slow  # builds ~200 simulated sessions (shared with test_regime)

DAY = date(2025, 12, 5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = ArchiveStore(tmp_path_factory.mktemp("regime") / "sim", kind="sim")
    d = derived()
    for name in ("daily_bars", "daily_iv"):
        full = pl.from_arrow(d[name])
        for day in calendar.trading_days(history_start(DAY), DAY):
            part = full.filter(pl.col("date") == day).to_arrow()
            st.write_day(name, day, to_dataset(part, BY_NAME[name].schema, "sim"))
    vix = pl.from_arrow(history()["vix"])
    st.write_day("vix", DAY, vix.filter(pl.col("snapshot_time").dt.convert_time_zone(
        "America/New_York").dt.date() == DAY).to_arrow())
    return st


def test_the_store_derivation_equals_the_pure_function_over_the_whole_history(store):
    assert HISTORY_SESSIONS == 60 and history_start(DAY) == date(2025, 9, 12)
    assert len(calendar.trading_days(date(2025, 9, 12), DAY)) == 60
    got = pl.from_arrow(derive_market_regime(store, DAY))
    want = pl.from_arrow(derived()["market_regime"]).filter(pl.col("date") == DAY)
    assert got["symbol"].to_list() == ["AAPL", "SPY"]
    mine = got.drop("timestamp", "et_offset", "source")
    # rolling means summed from another window start differ in the last bits only
    assert_frame_equal(mine, want.drop("date").select(mine.columns), rel_tol=1e-12, abs_tol=0)
    spy = got.filter(pl.col("symbol") == "SPY").row(0, named=True)
    assert spy["iv_sessions"] == 60 and spy["iv_rank_note"] is None and 0 < spy["iv_rank"] < 100
    assert spy["sma50"] is not None and spy["iv_window_start"] == history_start(DAY)
    aapl = got.filter(pl.col("symbol") == "AAPL").row(0, named=True)
    assert aapl["iv_sessions"] == 24 and aapl["iv_rank"] == aapl["iv_percentile"] == 50.0
    assert got["timestamp"].to_list() == [calendar.session(DAY).close_utc] * 2


def test_the_input_check_recomputes_rank_and_fails_on_a_wrong_one(store):
    rows = derive_market_regime(store, DAY)
    bars = with_date(store.read_range("daily_bars", history_start(DAY), DAY))
    ivs = with_date(store.read_range("daily_iv", history_start(DAY), DAY))
    vix = store.read_day("vix", DAY)
    problems, meta = reconcile_market_regime(rows, bars, ivs, vix, DAY)
    assert problems == [] and meta["symbols_compared"] == 2
    assert meta["window"] == f"{history_start(DAY)}..{DAY} (60 sessions)"
    wrong = pl.from_arrow(rows).with_columns(
        pl.when(pl.col("symbol") == "SPY").then(pl.col("iv_rank") + 1).otherwise(pl.col("iv_rank"))
        .alias("iv_rank")).to_arrow()
    problems, meta = reconcile_market_regime(wrong, bars, ivs, vix, DAY)
    assert problems == ["1 values differ from the input"]
    assert meta["differences"][0].startswith("SPY iv_rank: stored")


def test_a_day_without_inputs_is_refused_with_the_reason(store):
    with pytest.raises(ValueError, match="no daily_bars or daily_iv stored for 2025-08-01"):
        derive_market_regime(store, date(2025, 8, 1))
    from archive_platform.regime_derive import derive_daily_bars

    with pytest.raises(SourceError, match="no stocks_1m stored for 2025-12-05"):
        derive_daily_bars(store, DAY)
