"""Audit of the analysis layer: edge cases a hostile analyst hits (holidays, extended-hours bars,
degenerate option quotes, null or non-finite inputs). Each test failed before its fix."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import math

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from archive_platform import calendar as cal
from archive_platform.analysis.candles import candles_from_bars
from archive_platform.analysis.equity_candles import _seed
from archive_platform.analysis.features import orderbook_features
from archive_platform.analysis.metrics import metrics
from archive_platform.regime import DAILY_BARS_SCHEMA
from archive_platform.schemas import OPTIONS_SCHEMA
from archive_platform.timegrid import TimeGrid

UTC = timezone.utc
FULL_DAY = date(2025, 11, 26)
THANKSGIVING = date(2025, 11, 27)
HALF_DAY = date(2025, 11, 28)


def _bars(day: date, px: float = 100.0, minutes: list[datetime] | None = None) -> pl.DataFrame:
    ts = minutes if minutes is not None else cal.session_minutes(day)
    return pl.DataFrame({
        "timestamp": ts, "symbol": ["SPY"] * len(ts), "open": [px] * len(ts), "high": [px + 1] * len(ts),
        "low": [px - 1] * len(ts), "close": [px] * len(ts), "volume": [10.0] * len(ts),
        "vwap": [px] * len(ts), "trade_count": [1] * len(ts),
    }).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))


# -- candles_from_bars: a bar on a day without a session is outside every session ------------------
def test_candles_from_bars_drops_bars_on_holidays_and_weekends():
    stray = [datetime(2025, 11, 27, 15, 0, tzinfo=UTC),   # Thanksgiving 10:00 ET
             datetime(2025, 11, 29, 15, 0, tzinfo=UTC)]   # a Saturday
    bars = pl.concat([_bars(FULL_DAY), _bars(THANKSGIVING, px=1.0, minutes=stray), _bars(HALF_DAY)])
    out = candles_from_bars(bars, "1h")
    # before: NotATradingDay('2025-11-27 is not an NYSE trading day') from cal.session
    assert out.height == 7 + 4
    assert out["close"].min() == 100.0  # the stray bars (price 1) are in no candle
    assert out["volume"].sum() == 10.0 * (390 + 210)
    days = out["timestamp"].dt.convert_time_zone("America/New_York").dt.date().unique().sort().to_list()
    assert days == [FULL_DAY, HALF_DAY]


# -- the candles dataset's seed is the previous SESSION's last close --------------------------------
class _OneDayStore:
    def __init__(self, day: date, table: pa.Table):
        self.day, self.table = day, table

    def read_day(self, dataset, day, columns=None):
        assert dataset == "stocks_1m"
        t = self.table if day == self.day else self.table.schema.empty_table()
        return t.select(columns) if columns else t


def test_candles_seed_ignores_extended_hours_bars_of_the_previous_day():
    s = cal.session(FULL_DAY)
    session = _bars(FULL_DAY, px=100.0)
    after_hours = _bars(FULL_DAY, px=555.0, minutes=[s.close_utc + timedelta(minutes=k) for k in range(3)])
    store = _OneDayStore(FULL_DAY, pl.concat([session, after_hours]).to_arrow())
    seed = _seed(store, HALF_DAY)
    # before: the 16:02 ET post-market bar's 555.0 seeded the half day's empty opening candles
    assert seed.select("exchange", "symbol", "close").rows() == [("nyse", "SPY", 100.0)]


# -- orderbook_features: a trade without a side is refused, not counted as a sell ------------------
def test_orderbook_features_refuses_a_null_trade_side():
    t0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    books = pl.DataFrame({
        "exchange": ["sim"] * 3, "symbol": ["BTC"] * 3,
        "event_time": [t0 + timedelta(seconds=k) for k in range(3)],
        "bid_px": [[99.0]] * 3, "bid_sz": [[1.0]] * 3, "ask_px": [[101.0]] * 3, "ask_sz": [[1.0]] * 3,
    }).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))
    trades = pl.DataFrame({
        "exchange": ["sim", "sim"], "symbol": ["BTC", "BTC"],
        "event_time": [t0 + timedelta(seconds=1), t0 + timedelta(seconds=2)],
        "price": [100.0, 100.0], "size": [1.0, 2.0], "side": ["buy", None],
    }).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))
    # before: no error, and signed_volume at t0+2 s was -2 (the unknown side counted as a sell)
    with pytest.raises(ValueError, match="side must be 'buy' or 'sell'"):
        orderbook_features(books, trades)


# -- finish_probability: degenerate quotes give NULL and a note, never inf / NaN / > 1 -------------
def _finish_inputs(quotes: dict[float, tuple[float, float]]):
    days = cal.trading_days(date(2025, 11, 3), FULL_DAY)
    db = pa.Table.from_pylist([
        dict(symbol="SPY", date=d, open=100.0, high=101.0, low=99.0, close=100.0 + i, volume=1, vwap=100.0,
             trade_count=1, bars=390, session_minutes=390, first_bar=None, last_bar=None)
        for i, d in enumerate(days)], schema=DAILY_BARS_SCHEMA)
    snap = datetime(2025, 11, 26, 16, 0, tzinfo=UTC)
    rows = []
    for strike, (call, put) in quotes.items():
        for right, mid in (("C", call), ("P", put)):
            rows.append(dict(timestamp=snap, snapshot_time=snap, symbol="SPY", expiry=date(2025, 12, 5),
                             strike=strike, right=right, bid=mid, ask=mid, underlying_price=100.0,
                             et_offset=-300, source="sim"))
    return db, pa.Table.from_pylist(rows, schema=OPTIONS_SCHEMA), snap


@pytest.mark.parametrize("quotes", [
    {95.0: (6.0, 1.0), 105.0: (1.0, -4.0)},  # (C1 - P1) - (C2 - P2) = 0: was inf
    {95.0: (6.0, 1.0), 105.0: (6.0, 1.0)},   # 0 / 0: was NaN
    {95.0: (6.0, 3.0), 105.0: (1.0, 1.0)},   # (C1 - C2) > (C1 - P1) - (C2 - P2): was 5 / 3
])
def test_finish_probability_rn_side_is_null_on_quotes_that_imply_no_probability(quotes):
    db, options, snap = _finish_inputs(quotes)
    with TimeGrid(db, None, options) as tg:
        out = tg.finish_probability("SPY", 3, 1.0, at=snap).to_pylist()
    assert [r["side"] for r in out] == ["above", "below"]
    for r in out:
        assert r["rn_probability"] is None
        assert (r["rn_strike_lo"], r["rn_strike_hi"]) == (95.0, 105.0)
        assert "imply no probability" in r["rn_note"]
        assert r["probability"] is not None  # the empirical side is unaffected


def test_finish_probability_rn_side_unchanged_on_sound_quotes():
    db, options, snap = _finish_inputs({95.0: (6.0, 1.5), 105.0: (1.5, 6.0)})
    with TimeGrid(db, None, options) as tg:
        out = {r["side"]: r for r in tg.finish_probability("SPY", 3, 1.0, at=snap).to_pylist()}
    assert out["above"]["rn_probability"] == pytest.approx(4.5 / 9.0)
    assert out["below"]["rn_probability"] == pytest.approx(0.5)
    assert out["above"]["rn_note"] is None


# -- metrics: non-finite returns and a bad annualisation are named, not turned into inf / 0 --------
def test_metrics_refuses_infinite_returns():
    # before: total_return inf, annual_return inf, max_drawdown NaN, no error
    with pytest.raises(ValueError, match="returns.*not finite"):
        metrics(np.array([0.01, np.inf, 0.02]), periods_per_year=252)


@pytest.mark.parametrize("ppy", [0, -252, math.nan])
def test_metrics_refuses_non_positive_periods_per_year(ppy):
    # before: periods_per_year=0 gave annual_return 0.0 and sharpe 0.0 without a word
    with pytest.raises(ValueError, match="periods_per_year"):
        metrics(np.array([0.01, -0.02, 0.03]), periods_per_year=ppy)


# -- the time-grid helpers: a fractional count is named, not truncated or misreported -----------------
@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT trading_day_add(DATE '2025-11-26', 1.5)", "trading_day_add: n must be a whole number"),
    ("SELECT * FROM bars_forward('SPY', DATE '2025-11-26', 2.5)", "bars_forward: n must be a whole number"),
    ("SELECT * FROM change_after_weekday('SPY', 5.5, 2)", "change_after_weekday: weekday must be an ISO"),
    ("SELECT * FROM change_after_weekday('SPY', 5, 2.5)", "change_after_weekday: n must be a whole number"),
    ("SELECT * FROM finish_probability('SPY', 2.5, 1.0)", "finish_probability: horizon must be a whole number"),
])
def test_time_grid_macros_refuse_fractional_counts(sql, message):
    # before: bars_forward returned 2 bars for n = 2.5, change_after_weekday(5.5) no rows,
    # finish_probability(2.5) an empty sample, trading_day_add "1.5 sessions ... outside the calendar"
    db, _, _ = _finish_inputs({})
    with TimeGrid(db) as tg:
        with pytest.raises(duckdb.InvalidInputException, match=message):  # the macro's own error()
            tg._con.sql(sql).fetchall()


def test_trading_day_add_names_a_fractional_n():
    from archive_platform.timegrid import TimeGridError, trading_day_add

    assert trading_day_add(FULL_DAY, np.int64(1)) == HALF_DAY
    # before: "trading_day_add: tuple indices must be integers or slices, not float"
    with pytest.raises(TimeGridError, match="n must be a whole number of sessions, got 1.5"):
        trading_day_add(FULL_DAY, 1.5)


# -- candles: an end before the start is named, not an empty result ---------------------------------
def test_candles_refuse_an_end_before_the_start():
    from archive_platform.analysis.candles import candles

    t0 = datetime(2026, 11, 27, tzinfo=UTC)
    trades = pl.DataFrame({"exchange": ["sim"], "symbol": ["BTC"], "event_time": [t0 + timedelta(minutes=3)],
                           "price": [1.0], "size": [1.0]}).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))
    # before: both returned 0 rows without a word
    with pytest.raises(ValueError, match="is before start"):
        candles(trades, "5m", start=t0 + timedelta(hours=1), end=t0)
    s = cal.session(FULL_DAY)
    with pytest.raises(ValueError, match="is before start"):
        candles_from_bars(_bars(FULL_DAY), "5m", start=s.close_utc, end=s.open_utc)
    assert candles(trades, "5m", start=t0, end=t0 + timedelta(minutes=5))["close"].to_list() == [1.0]


def test_candles_from_bars_names_a_missing_vwap_column():
    # before: polars' ColumnNotFoundError from deep inside the aggregation
    with pytest.raises(ValueError, match=r"stocks_1m: missing column\(s\) \['vwap'\]"):
        candles_from_bars(_bars(FULL_DAY).drop("vwap"), "1h")


# -- order-book feature parameters: a window or count below 1 is named ------------------------------
def test_feature_parameters_below_one_are_named():
    from archive_platform.analysis.features import kyle_lambda, vpin

    # before: numpy "operands could not be broadcast together" for window 0 ...
    with pytest.raises(ValueError, match="kyle_lambda: window must be >= 1"):
        kyle_lambda(np.ones(5), np.arange(5.0), 0)
    # ... and for n_buckets = -1 a VPIN of -0.0 without an error
    with pytest.raises(ValueError, match="vpin: n_buckets must be >= 1"):
        vpin(np.arange(5), np.ones(5), np.zeros(5), 0.5, -1)
    t0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    books = pl.DataFrame({"exchange": ["sim"], "symbol": ["BTC"], "event_time": [t0], "bid_px": [[99.0]],
                          "bid_sz": [[1.0]], "ask_px": [[101.0]], "ask_sz": [[1.0]]}).with_columns(
        pl.col("event_time").cast(pl.Datetime("us", "UTC")))
    with pytest.raises(ValueError, match="orderbook_features: levels must be >= 1, got 0"):
        orderbook_features(books, levels=0)
    assert orderbook_features(books)["mid"].to_list() == [100.0]


# -- TimeGrid: an instant given as a date or a string is named, not an AttributeError ---------------
@pytest.mark.parametrize("at", [date(2025, 10, 1), "2025-10-01T12:00Z"])
def test_time_grid_instants_must_be_datetimes(at):
    from archive_platform.timegrid import TimeGridError

    with TimeGrid() as tg:
        # before: AttributeError: 'datetime.date' object has no attribute 'tzinfo'
        with pytest.raises(TimeGridError, match="latest_chain: at must be a timezone-aware datetime"):
            tg.latest_chain("SPY", at)
        with pytest.raises(TimeGridError, match="finish_probability: at must be a timezone-aware datetime"):
            tg.finish_probability("SPY", 2, 1.0, at=at)
        with pytest.raises(TimeGridError, match="latest_chain: naive datetime"):
            tg.latest_chain("SPY", datetime(2025, 10, 1, 12))
