"""Audit of the derived datasets (iv_rank, daily_iv, market_regime): small stored inputs, values
compared with a hand computation of the documented formula."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import polars as pl
import pyarrow as pa
import pytest

from archive_platform import calendar
from archive_platform.derived import derive_iv_rank
from archive_platform.regime_checks import reconcile_market_regime
from archive_platform.regime_derive import (
    derive_daily_bars, derive_daily_iv, derive_market_regime, regime_inputs,
)
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import et

DAY = date(2025, 11, 26)


def _options(day: date, snap: datetime, quotes: list[tuple[date, float, str, float]],
             symbol: str = "XYZ", spot: float = 100.0) -> pa.Table:
    """Options rows of one snapshot from (expiry, strike, right, iv) quotes."""
    spec = spec_for(ArchiveType.OPTIONS)
    rows = [dict(timestamp=snap, snapshot_time=snap, symbol=symbol, expiry=exp, strike=k, right=r,
                 bid=1.0, ask=1.1, last=1.05, volume=1, open_interest=10, iv=iv,
                 delta=0.5 if r == "C" else -0.5, gamma=0.01, theta=-0.1, vega=0.1,
                 underlying_price=spot, et_offset=calendar.et_offset_minutes(snap), source="derived")
            for exp, k, r, iv in quotes]
    return pa.Table.from_pylist(rows, schema=spec.schema)


def _stocks_1m(day: date, symbol: str, price: float) -> pa.Table:
    spec = spec_for(ArchiveType.STOCKS_1M)
    s = calendar.session(day)
    rows = [dict(timestamp=s.open_utc + timedelta(minutes=i), symbol=symbol, open=price,
                 high=price + 1, low=price - 1, close=price, volume=10, vwap=price, trade_count=2,
                 et_offset=calendar.et_offset_minutes(s.open_utc), source="derived")
            for i in range(s.minutes)]
    return pa.Table.from_pylist(rows, schema=spec.schema)


def test_iv_rank_leaves_a_zero_iv_quote_out_of_the_atm_mean(tmp_path):
    # the ATM put quotes iv = 0 (a quote without an IV: the options rules flag it); the ATM IV
    # is the mean of the quotes that have one, 0.30, as daily_iv computes it; not (0.30 + 0) / 2
    store = ArchiveStore(tmp_path)
    snap = calendar.session(DAY).close_utc
    exp = DAY + timedelta(days=30)
    store.write_day(ArchiveType.OPTIONS, DAY, _options(DAY, snap, [
        (exp, 100.0, "C", 0.30), (exp, 100.0, "P", 0.0),
        (exp, 110.0, "C", 0.25), (exp, 110.0, "P", 0.27)]))
    at = et(DAY, 19, 0).astimezone(timezone.utc)
    rows = derive_iv_rank(store, DAY, ["XYZ"], [at]).to_pylist()
    assert [r["iv"] for r in rows] == [pytest.approx(0.30)]
    daily = derive_daily_iv(store, DAY).to_pylist()
    assert daily[0]["front_close"] == pytest.approx(rows[0]["iv"])


def test_iv_rank_takes_an_instant_in_any_time_zone(tmp_path):
    # derive's instants are aware datetimes; one in America/New_York is the same instant as its
    # UTC twin and must give the same rows (it used to fail comparing with the UTC column)
    store = ArchiveStore(tmp_path)
    snaps = calendar.snapshot_times(DAY)
    exp = DAY + timedelta(days=30)
    store.write_day(ArchiveType.OPTIONS, DAY, pa.concat_tables([
        _options(DAY, t, [(exp, 100.0, "C", 0.20 + 0.01 * i), (exp, 100.0, "P", 0.20 + 0.01 * i)])
        for i, t in enumerate(snaps)]))
    at_et = et(DAY, 12, 0)  # 17:00 UTC: snapshot 10 (09:30 + 150 min)
    got = derive_iv_rank(store, DAY, ["XYZ"], [at_et]).to_pylist()
    want = derive_iv_rank(store, DAY, ["XYZ"], [at_et.astimezone(timezone.utc)]).to_pylist()
    assert got == want
    assert got[0]["iv"] == pytest.approx(0.30) and got[0]["et_offset"] == -300


def test_market_regime_one_row_per_symbol_when_the_vix_dataset_holds_another_symbol(tmp_path):
    # the vix dataset's "symbol is VIX" rule is soft, so a second index can be stored beside it;
    # market_regime must still have one row per (symbol, session) with the VIX close
    store = ArchiveStore(tmp_path)
    s = calendar.session(DAY)
    snap = s.close_utc
    store.write_day(ArchiveType.STOCKS_1M, DAY, _stocks_1m(DAY, "XYZ", 100.0))
    exp = DAY + timedelta(days=30)
    store.write_day(ArchiveType.OPTIONS, DAY, _options(DAY, snap, [
        (exp, 100.0, "C", 0.2), (exp, 100.0, "P", 0.2)]))
    store.write_day("daily_bars", DAY, derive_daily_bars(store, DAY))
    store.write_day("daily_iv", DAY, derive_daily_iv(store, DAY))
    vix_spec = spec_for(ArchiveType.VIX)
    vix = pa.Table.from_pylist([
        dict(timestamp=t, snapshot_time=t, symbol=sym, level=lvl, et_offset=-300, source="derived")
        for t in (s.open_utc, snap) for sym, lvl in (("VIX", 17.0 if t == snap else 16.0),
                                                    ("VIX9D", 21.0))], schema=vix_spec.schema)
    store.write_day(ArchiveType.VIX, DAY, vix)
    out = derive_market_regime(store, DAY)
    rows = out.to_pylist()
    assert [(r["symbol"], r["vix_close"]) for r in rows] == [("XYZ", 17.0)]
    # the asset check agrees with what was derived
    inp = regime_inputs(store, DAY)
    problems, meta = reconcile_market_regime(out, inp["daily_bars"], inp["daily_iv"],
                                             store.read_day(ArchiveType.VIX, DAY), DAY)
    assert problems == [], meta
    # the hand values of a one-session history: close, iv = iv30_close, rank 50 (short history)
    assert rows[0]["close"] == 100.0 and rows[0]["iv"] == pytest.approx(0.2)
    assert rows[0]["iv_rank"] == 50.0 and rows[0]["iv_percentile"] == 50.0
    assert pl.from_arrow(out).select(pl.struct("symbol", "timestamp").is_unique().all()).item()


def test_daily_iv_check_agrees_when_the_last_snapshot_has_no_front_expiry(tmp_path):
    # the close is the last snapshot's value among the snapshots that have one (daily_iv skips a
    # snapshot without a front IV); the asset check used to want null here and failed the day
    from archive_platform.regime_checks import reconcile_daily_iv

    store = ArchiveStore(tmp_path)
    snaps = calendar.snapshot_times(DAY)
    e30, e3 = DAY + timedelta(days=30), DAY + timedelta(days=3)
    opts = pa.concat_tables([
        _options(DAY, snaps[0], [(e30, 100.0, "C", 0.20), (e30, 100.0, "P", 0.22), (e3, 100.0, "C", 0.5)]),
        _options(DAY, snaps[1], [(e30, 100.0, "C", 0.24), (e30, 100.0, "P", 0.26), (e3, 100.0, "C", 0.5)]),
        _options(DAY, snaps[2], [(e3, 100.0, "C", 0.5)]),  # only a 3-day expiry: no front IV
    ])
    store.write_day(ArchiveType.OPTIONS, DAY, opts)
    out = derive_daily_iv(store, DAY)
    row = out.to_pylist()[0]
    assert row["front_close"] == pytest.approx(0.25)  # (0.24 + 0.26) / 2, snapshot 1
    assert row["front_open"] == pytest.approx(0.21)
    assert row["front_expiry"] == e30
    assert (row["front_snapshots"], row["snapshots"]) == (2, 3)
    problems, meta = reconcile_daily_iv(out, store.read_day(ArchiveType.OPTIONS, DAY), DAY)
    assert problems == [], meta


def test_iv_rank_over_a_stored_history_equals_the_documented_formula(tmp_path):
    # 32 sessions, one closing snapshot each, ATM IV known by construction; the day's rank and
    # percentile over the previous sessions' closes and today's value, by hand
    store = ArchiveStore(tmp_path)
    days = calendar.last_trading_days(32, as_of=DAY)
    ivs = [0.40 - 0.01 * i if i % 2 else 0.10 + 0.005 * i for i in range(len(days))]
    for d, iv in zip(days, ivs):
        snap = calendar.session(d).close_utc
        exp = d + timedelta(days=30)
        store.write_day(ArchiveType.OPTIONS, d, _options(d, snap, [
            (exp, 100.0, "C", iv), (exp, 100.0, "P", iv), (exp, 105.0, "C", 0.9)]))
    at = [et(DAY, 7, 0).astimezone(timezone.utc), et(DAY, 19, 0).astimezone(timezone.utc)]
    rows = derive_iv_rank(store, DAY, ["XYZ"], at).to_pylist()
    hist = ivs[:-1]
    for row, iv in zip(rows, (hist[-1], ivs[-1])):  # 07:00: the previous close is what is known
        window = hist + [iv]
        lo, hi = min(window), max(window)
        assert row["iv"] == pytest.approx(iv)
        assert row["iv_rank"] == pytest.approx((iv - lo) / (hi - lo) * 100)
        assert row["iv_percentile"] == pytest.approx(100 * sum(x < iv for x in window) / len(window))


def test_daily_bars_store_the_day_when_one_minute_has_a_zero_low(tmp_path):
    # stocks_1m stores a zero low with a warning (its "low > 0" rule is soft); daily_bars used
    # to refuse it as a hard error, and with it every other symbol's bar of the day
    store = ArchiveStore(tmp_path)
    a = pl.from_arrow(_stocks_1m(DAY, "AAA", 100.0))
    b = pl.from_arrow(_stocks_1m(DAY, "BBB", 50.0)).with_columns(
        low=pl.when(pl.int_range(pl.len()) == 5).then(0.0).otherwise(pl.col("low")))
    store.write_day(ArchiveType.STOCKS_1M, DAY, pl.concat([a, b]).to_arrow().cast(
        spec_for(ArchiveType.STOCKS_1M).schema))
    store.write_day("daily_bars", DAY, derive_daily_bars(store, DAY))
    got = {r["symbol"]: r for r in store.read_day("daily_bars", DAY).to_pylist()}
    assert (got["AAA"]["low"], got["AAA"]["high"], got["AAA"]["bars"]) == (99.0, 101.0, 390)
    assert (got["BBB"]["low"], got["BBB"]["close"], got["BBB"]["volume"]) == (0.0, 50.0, 3900)


def test_market_regime_rv20_is_null_not_infinite_over_a_zero_close():
    # a zero close (storable in daily_bars, with a warning) has no log return: the rv20 windows
    # through it are null; before it, rv20 is the documented stdev(ddof 1) * sqrt(252)
    import math

    from archive_platform import regime

    days = calendar.last_trading_days(45, as_of=DAY)
    closes = [100.0 * (1.01 if i % 3 else 0.985) ** i for i in range(len(days))]
    zero = 30
    closes[zero] = 0.0
    bars = pl.DataFrame({"symbol": "XYZ", "date": days, "close": closes})
    ivs = pl.DataFrame(schema={"symbol": pl.String, "date": pl.Date, "iv30_close": pl.Float64})
    vix = pl.DataFrame(schema={"symbol": pl.String, "date": pl.Date, "close": pl.Float64})
    out = pl.from_arrow(regime.market_regime(bars, ivs, vix)).sort("date")
    rv = out["rv20"].to_list()
    assert all(v is None or math.isfinite(v) for v in rv)
    # windows of 20 returns through the zero close (returns zero and zero + 1) are null
    assert all(rv[i] is None for i in range(zero, min(zero + 21, len(days))))
    rets = [math.log(closes[i] / closes[i - 1]) for i in range(zero - 20, zero)]
    mean = sum(rets) / 20
    want = math.sqrt(sum((r - mean) ** 2 for r in rets) / 19) * math.sqrt(252)
    assert rv[zero - 1] == pytest.approx(want)


def test_daily_bars_check_agrees_when_the_vendor_gives_no_trade_counts(tmp_path):
    # minute bars without a trade count (IB's barCount -1, Polygon without n): the day's
    # trade_count is null, not 0, and the asset check must want the same
    from archive_platform.regime_checks import reconcile_daily_bars

    store = ArchiveStore(tmp_path)
    bars = pl.from_arrow(_stocks_1m(DAY, "XYZ", 100.0)).with_columns(
        trade_count=pl.lit(None, pl.Int64))
    store.write_day(ArchiveType.STOCKS_1M, DAY, bars.to_arrow().cast(spec_for(ArchiveType.STOCKS_1M).schema))
    out = derive_daily_bars(store, DAY)
    assert out.to_pylist()[0]["trade_count"] is None
    problems, meta = reconcile_daily_bars(out, store.read_day(ArchiveType.STOCKS_1M, DAY), DAY)
    assert problems == [], meta
