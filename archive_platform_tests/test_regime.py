"""Derived daily datasets (regime.py) against independent pandas/numpy computations and by-hand
values, on simulated history with half days, holidays, DST switches and a young symbol."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from archive_platform import calendar as cal
from archive_platform import regime
from archive_platform_tests.timegrid_helpers import YOUNG_START, derived, history

NY = ZoneInfo("America/New_York")
UTC = timezone.utc


def _pd(t: pa.Table) -> pd.DataFrame:
    return t.to_pandas()


def test_schemas_and_units_cover_every_column():
    d = derived()
    for name in ("daily_bars", "daily_iv", "vix_daily", "market_regime"):
        assert d[name].schema.equals(regime.SCHEMAS[name], check_metadata=True), name
        assert d[name].num_rows > 0, name
    for name, schema in regime.SCHEMAS.items():
        assert list(regime.UNITS[name]) == schema.names, name
        assert all(meaning for _, meaning in regime.UNITS[name].values()), name


def test_daily_bars_match_a_pandas_groupby_on_ny_dates():
    bars = _pd(history()["stocks_1m"])
    bars["date"] = bars["timestamp"].dt.tz_convert(NY).dt.date
    bars = bars.sort_values(["symbol", "timestamp"])
    exp = bars.groupby(["symbol", "date"]).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
        volume=("volume", "sum"), trade_count=("trade_count", "sum"), bars=("open", "size"),
        pv=("vwap", lambda s: float((s * bars.loc[s.index, "volume"]).sum())),
    ).reset_index()
    exp["vwap"] = exp["pv"] / exp["volume"]
    got = _pd(derived()["daily_bars"])
    assert len(got) == len(exp)
    m = got.merge(exp, on=["symbol", "date"], suffixes=("", "_x"))
    assert len(m) == len(exp)
    for c in ("open", "high", "low", "close", "vwap"):
        np.testing.assert_allclose(m[c], m[f"{c}_x"], rtol=1e-12, err_msg=c)
    for c in ("volume", "trade_count", "bars"):
        assert (m[c] == m[f"{c}_x"]).all(), c
    by = got.set_index(["symbol", "date"])
    for half in (date(2025, 7, 3), date(2025, 11, 28)):  # 13:00 closes: 210 bars, close at 12:59
        row = by.loc[("SPY", half)]
        assert row["bars"] == row["session_minutes"] == 210
        assert row["last_bar"].tz_convert(NY).time().isoformat() == "12:59:00"
    # both DST switches: the open is 09:30 ET on either side, 14:30Z in winter, 13:30Z in summer
    assert by.loc[("SPY", date(2025, 3, 7)), "first_bar"].hour == 14
    assert by.loc[("SPY", date(2025, 3, 10)), "first_bar"].hour == 13
    assert by.loc[("SPY", date(2025, 10, 31)), "first_bar"].hour == 13
    assert by.loc[("SPY", date(2025, 11, 3)), "first_bar"].hour == 14
    assert not any(d in set(got["date"]) for d in (date(2025, 11, 27), date(2025, 7, 4)))


def test_daily_bars_leave_out_extended_hours_bars():
    one = history()["stocks_1m"].slice(0, 390)  # SPY 2025-02-24
    pre = one.slice(0, 1).to_pylist()[0]
    pre.update(timestamp=datetime(2025, 2, 24, 13, 0, tzinfo=UTC), high=9999.0, volume=10**9)
    post = dict(pre, timestamp=datetime(2025, 2, 24, 21, 0, tzinfo=UTC), low=1.0)
    t = pa.concat_tables([one, pa.Table.from_pylist([pre, post], schema=one.schema)])
    a, b = regime.daily_bars(one).to_pylist()[0], regime.daily_bars(t).to_pylist()[0]
    assert a == b and a["bars"] == 390 and a["high"] < 9999.0
    no_vwap = one.set_column(one.schema.get_field_index("vwap"), "vwap", pa.nulls(390, pa.float64()))
    assert regime.daily_bars(no_vwap).to_pylist()[0]["vwap"] is None


def test_daily_bars_crypto_by_utc_day_deduplicated():
    ts = lambda h, m: datetime(2026, 3, 8, h, m, tzinfo=UTC)  # noqa: E731
    rows = [  # (trade_id, time, price, size); id 3 is sent twice, day 2 starts after midnight UTC
        (1, ts(23, 58), 100.0, 1.0), (2, ts(23, 59), 102.0, 3.0), (3, ts(23, 59), 101.0, 2.0),
        (3, ts(23, 59), 101.0, 2.0), (4, datetime(2026, 3, 9, 0, 0, 1, tzinfo=UTC), 99.0, 0.5),
    ]
    t = pa.table({
        "exchange": ["sim"] * 5, "symbol": ["BTCUSDT"] * 5, "trade_id": [r[0] for r in rows],
        "event_time": pa.array([r[1] for r in rows], regime.TS), "price": [r[2] for r in rows],
        "size": [r[3] for r in rows], "side": ["buy"] * 5,
        "receive_time": pa.array([r[1] for r in rows], regime.TS), "source": ["sim"] * 5,
    })
    got = regime.daily_bars_crypto(t).to_pylist()
    assert [g["date"] for g in got] == [date(2026, 3, 8), date(2026, 3, 9)]
    d1 = got[0]
    assert (d1["open"], d1["high"], d1["low"], d1["close"]) == (100.0, 102.0, 100.0, 101.0)
    assert d1["volume"] == 6.0 and d1["trade_count"] == 3
    assert d1["vwap"] == pytest.approx((100 * 1 + 102 * 3 + 101 * 2) / 6.0)
    assert got[1]["close"] == 99.0 and got[1]["trade_count"] == 1


def _chain(rows, day=date(2025, 11, 3), offset=-300):
    """Options rows (expiry_days, strike, right, iv) at two snapshots of ``day``, spot 100."""
    out = []
    for k, t in enumerate([datetime(2025, 11, 3, 15, 0, tzinfo=UTC), datetime(2025, 11, 3, 20, 0, tzinfo=UTC)]):
        for tau, strike, right, iv in rows:
            out.append({"snapshot_time": t, "symbol": "X", "expiry": date.fromordinal(day.toordinal() + tau),
                        "strike": strike, "right": right, "iv": iv * (1 + k), "underlying_price": 100.0,
                        "et_offset": offset})
    return pa.Table.from_pylist(out)


def test_daily_iv_by_hand_front_and_30_day_interpolation():
    rows = [(3, 100.0, "C", 0.9), (3, 100.0, "P", 0.9),  # under 7 days: never the front
            (10, 99.0, "C", 0.20), (10, 101.0, "P", 0.22), (10, 105.0, "C", 0.5),  # tie 99/101
            (24, 100.0, "C", 0.24), (24, 100.0, "P", 0.26), (24, 90.0, "P", 0.6),
            (38, 100.0, "C", 0.30), (38, 100.0, "P", 0.30)]
    got = regime.daily_iv(_chain(rows)).to_pylist()[0]
    assert got["front_expiry"] == date(2025, 11, 13)
    assert got["front_open"] == pytest.approx(0.21) and got["front_close"] == pytest.approx(0.42)
    w30 = 0.25**2 * 24 + (0.30**2 * 38 - 0.25**2 * 24) * (30 - 24) / (38 - 24)
    assert got["iv30_open"] == pytest.approx(math.sqrt(w30 / 30))
    assert got["iv30_close"] == pytest.approx(2 * math.sqrt(w30 / 30))
    assert got["iv30_high"] == got["iv30_close"] and got["iv30_low"] == got["iv30_open"]
    assert got["front_mean"] == pytest.approx(0.315)
    assert got["snapshots"] == got["front_snapshots"] == got["iv30_snapshots"] == 2


def test_daily_iv_edges_exact_30_days_and_no_extrapolation():
    exact = regime.daily_iv(_chain([(20, 100.0, "C", 0.2), (30, 100.0, "C", 0.3),
                                    (45, 100.0, "C", 0.4)])).to_pylist()[0]
    assert exact["iv30_open"] == pytest.approx(0.3)
    short = regime.daily_iv(_chain([(10, 100.0, "C", 0.2), (24, 100.0, "C", 0.3)])).to_pylist()[0]
    assert short["iv30_open"] is None and short["iv30_snapshots"] == 0
    assert short["front_open"] == pytest.approx(0.2)


def _independent_snapshot_iv(chain: pd.DataFrame) -> tuple[float | None, float | None]:
    day = chain["snapshot_time"].iloc[0].tz_convert(NY).date()
    per_exp = {}
    for exp, g in chain[chain["iv"].notna()].groupby("expiry"):
        tau = (exp - day).days
        if tau < 1:
            continue
        dist = (g["strike"] - g["underlying_price"]).abs()
        per_exp[tau] = g.loc[dist == dist.min(), "iv"].mean()
    front_taus = [t for t in per_exp if t >= 7]
    front = per_exp[min(front_taus)] if front_taus else None
    lo = [t for t in per_exp if t <= 30]
    hi = [t for t in per_exp if t >= 30]
    if not lo or not hi:
        return front, None
    t1, t2 = max(lo), min(hi)
    if t1 == t2:
        return front, per_exp[t1]
    w1, w2 = per_exp[t1] ** 2 * t1, per_exp[t2] ** 2 * t2
    return front, math.sqrt((w1 + (w2 - w1) * (30 - t1) / (t2 - t1)) / 30)


@pytest.mark.parametrize("day", [date(2025, 3, 7), date(2025, 3, 10), date(2025, 7, 3),
                                 date(2025, 11, 3), date(2025, 11, 28)])
def test_daily_iv_matches_a_per_snapshot_loop(day):
    opts = _pd(history()["options"])
    opts = opts[(opts["symbol"] == "SPY")
                & (opts["snapshot_time"].dt.tz_convert(NY).dt.date == day)]
    per = [_independent_snapshot_iv(g) for _, g in opts.sort_values("snapshot_time").groupby("snapshot_time")]
    fronts = [f for f, _ in per]
    iv30s = [c for _, c in per if c is not None]
    got = _pd(derived()["daily_iv"]).set_index(["symbol", "date"]).loc[("SPY", day)]
    assert got["snapshots"] == len(per) == (3 if day in (date(2025, 7, 3), date(2025, 11, 28)) else 5)
    np.testing.assert_allclose(
        [got["front_open"], got["front_high"], got["front_low"], got["front_close"], got["front_mean"]],
        [fronts[0], max(fronts), min(fronts), fronts[-1], np.mean(fronts)], rtol=1e-12)
    assert len(iv30s) == got["iv30_snapshots"] > 0
    np.testing.assert_allclose(
        [got["iv30_open"], got["iv30_high"], got["iv30_low"], got["iv30_close"]],
        [iv30s[0], max(iv30s), min(iv30s), iv30s[-1]], rtol=1e-12)


def test_vix_daily_matches_pandas():
    v = _pd(history()["vix"]).sort_values("snapshot_time")
    v["date"] = v["snapshot_time"].dt.tz_convert(NY).dt.date
    exp = v.groupby("date")["level"].agg(["first", "max", "min", "last", "size"])
    got = _pd(derived()["vix_daily"]).set_index("date")
    assert list(got.index) == list(exp.index)
    np.testing.assert_array_equal(got[["open", "high", "low", "close"]].to_numpy(),
                                  exp[["first", "max", "min", "last"]].to_numpy())
    assert (got["snapshots"] == exp["size"]).all()


def _expected_regime(symbol: str) -> pd.DataFrame:
    bars = _pd(derived()["daily_bars"]).query("symbol == @symbol").set_index("date")["close"]
    ivs = _pd(derived()["daily_iv"]).query("symbol == @symbol").set_index("date")["iv30_close"]
    days = cal.trading_days(min(bars.index), max(bars.index))
    close = bars.reindex(days).to_numpy()
    iv = ivs.reindex(days).to_numpy()
    rows = []
    for i, d in enumerate(days):
        r = {"date": d, "close": close[i]}
        for n in (20, 50):
            r[f"sma{n}"] = close[i - n + 1 : i + 1].mean() if i >= n - 1 else np.nan
        if i >= 20:
            rets = np.log(close[i - 19 : i + 1] / close[i - 20 : i])
            r["rv20"] = rets.std(ddof=1) * math.sqrt(252)
        else:
            r["rv20"] = np.nan
        window = [x for x in iv[max(0, i - 59) : i + 1] if not np.isnan(x)]
        if len(window) < 30 or max(window) == min(window):
            r["iv_rank"] = r["iv_percentile"] = 50.0
        else:
            r["iv_rank"] = (iv[i] - min(window)) / (max(window) - min(window)) * 100
            r["iv_percentile"] = 100 * sum(x < iv[i] for x in window) / len(window)
        r["iv_sessions"] = len(window)
        if np.isnan(r["sma50"]):
            r["trend"] = None
        elif close[i] > r["sma20"] > r["sma50"]:
            r["trend"] = "uptrend"
        elif close[i] < r["sma20"] < r["sma50"]:
            r["trend"] = "downtrend"
        else:
            r["trend"] = "neutral"
        rows.append(r)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("symbol", ["SPY", "AAPL"])
def test_market_regime_matches_rolling_windows_computed_in_numpy(symbol):
    exp = _expected_regime(symbol)
    got = _pd(derived()["market_regime"]).query("symbol == @symbol").reset_index(drop=True)
    assert list(got["date"]) == list(exp["date"])
    for c in ("close", "sma20", "sma50", "rv20", "iv_rank", "iv_percentile"):
        np.testing.assert_allclose(got[c].astype(float), exp[c].astype(float), rtol=1e-9, err_msg=c)
    assert list(got["iv_sessions"]) == list(exp["iv_sessions"])
    assert [None if pd.isna(x) else x for x in got["trend"]] == [None if pd.isna(x) else x for x in exp["trend"]]
    assert set(got["trend"].dropna()) <= {"uptrend", "downtrend", "neutral"}
    vix = _pd(derived()["vix_daily"]).set_index("date")["close"]
    np.testing.assert_array_equal(got["vix_close"], vix.reindex(got["date"]).to_numpy())
    if symbol == "AAPL":  # fewer than 30 sessions of history: the IB option-snapshot collector's 50 and a note saying why
        assert len(got) < 30 and got["date"].iloc[0] == YOUNG_START
        assert (got["iv_rank"] == 50).all() and (got["iv_percentile"] == 50).all()
        assert got["iv_rank_note"].str.startswith("fewer than 30 sessions").all()
        assert got["sma20"].isna().sum() == 19 and got["sma50"].isna().all()
    else:
        assert pd.isna(got["iv_rank_note"].iloc[-1]) and 0 <= got["iv_rank"].iloc[-1] <= 100


def test_market_regime_traces_its_windows():
    r = _pd(derived()["market_regime"]).set_index(["symbol", "date"]).loc[("SPY", date(2025, 12, 1))]
    assert r["sma20_first"] == cal.add_trading_days(date(2025, 12, 1), -19)
    assert r["sma50_first"] == cal.add_trading_days(date(2025, 12, 1), -49)
    assert r["rv20_first"] == cal.add_trading_days(date(2025, 12, 1), -20)
    assert r["iv_window_start"] == r["iv_first"] == cal.add_trading_days(date(2025, 12, 1), -59)
    assert r["iv_sessions"] == 60 and r["vix_date"] == date(2025, 12, 1)


def test_market_regime_flat_history_and_missing_bar_are_not_guessed():
    d = derived()
    iv = _pd(d["daily_iv"]).query("symbol == 'SPY'").copy()
    iv["iv30_close"] = 0.2
    bars = pa.Table.from_pandas(_pd(d["daily_bars"]).query("date != @date(2025, 10, 15)"),
                                schema=regime.DAILY_BARS_SCHEMA, preserve_index=False)
    got = _pd(regime.market_regime(bars, pa.Table.from_pandas(iv, preserve_index=False),
                                   d["vix_daily"])).query("symbol == 'SPY'").set_index("date")
    assert (got["iv_rank"] == 50).all()
    assert got.loc[date(2025, 12, 5), "iv_rank_note"] == "flat history (max == min): 50"
    # a session without a bar: its own close is null, and every window through it is null
    assert math.isnan(got.loc[date(2025, 10, 15), "close"])
    after = cal.add_trading_days(date(2025, 10, 15), 19)
    assert math.isnan(got.loc[after, "sma20"]) and pd.isna(got.loc[after, "trend"])
    assert not math.isnan(got.loc[cal.add_trading_days(after, 1), "sma20"])


def test_bad_input_names_the_missing_column():
    with pytest.raises(ValueError, match="daily_bars: input lacks column.*vwap"):
        regime.daily_bars(history()["stocks_1m"].drop_columns(["vwap"]))
