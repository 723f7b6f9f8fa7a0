"""Audit of the derived analytics (gex, gamma flip, market_regime, the statistics macros) against
hand-computed values and numpy/pandas references on small hand-made data."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from archive_platform import calendar as cal
from archive_platform import macros, regime
from archive_platform.gex import compute_gex, gamma_flip
from archive_platform.schemas import GEX_SCHEMA, OPTIONS_SCHEMA

T0 = datetime(2025, 11, 26, 15, 0, tzinfo=timezone.utc)  # 10:00 ET on 2025-11-26
DAY = date(2025, 11, 26)


def option_rows(rows: list[dict]) -> pa.Table:
    base = {f.name: None for f in OPTIONS_SCHEMA}
    base.update(timestamp=T0, snapshot_time=T0, symbol="SPY", expiry=date(2025, 12, 5),
                et_offset=-300, source="test", underlying_price=100.0, bid=1.0, ask=1.1)
    return pa.Table.from_pylist([{**base, **r} for r in rows], schema=OPTIONS_SCHEMA)


def gex_rows(strike_net: list[tuple[float, float]], spot: float) -> pa.Table:
    return pa.Table.from_pylist([
        {"timestamp": T0, "snapshot_time": T0, "symbol": "SPY", "strike": float(k),
         "underlying_price": spot, "call_gex": max(n, 0.0), "put_gex": min(n, 0.0),
         "net_gex": float(n), "call_open_interest": 0, "put_open_interest": 0,
         "et_offset": -300, "source": "test"}
        for k, n in strike_net
    ], schema=GEX_SCHEMA)


# -- gex ---------------------------------------------------------------------------------------

def test_gex_units_are_dollar_delta_change_per_one_percent_move():
    # one call, gamma 0.02 per $1, OI 300, S 450: a 1 % move is $4.50, delta changes by
    # 0.02 * 4.5 = 0.09 per share, 9 shares per contract, 2700 shares = 2700 * 450 USD
    out = compute_gex(option_rows([
        {"strike": 450.0, "right": "C", "gamma": 0.02, "open_interest": 300, "underlying_price": 450.0},
        {"strike": 450.0, "right": "P", "gamma": 0.01, "open_interest": 100, "underlying_price": 450.0},
    ])).to_pylist()
    assert len(out) == 1
    assert out[0]["call_gex"] == pytest.approx(2700 * 450.0)  # 1,215,000
    assert out[0]["put_gex"] == pytest.approx(-0.01 * 4.5 * 100 * 100 * 450.0)  # -202,500
    assert out[0]["net_gex"] == pytest.approx(1_215_000.0 - 202_500.0)


def test_gex_leaves_out_expired_contracts_and_keeps_0dte():
    out = compute_gex(option_rows([
        # expired the Friday before the snapshot: no gamma, stale OI
        {"strike": 100.0, "right": "C", "gamma": 0.05, "open_interest": 1000, "expiry": date(2025, 11, 21)},
        {"strike": 95.0, "right": "P", "gamma": 0.05, "open_interest": 400, "expiry": date(2025, 11, 25)},
        # 0DTE: expires at today's close, live at 10:00 ET
        {"strike": 100.0, "right": "C", "gamma": 0.08, "open_interest": 200, "expiry": DAY},
        {"strike": 100.0, "right": "P", "gamma": 0.04, "open_interest": 50},
    ])).to_pylist()
    assert [r["strike"] for r in out] == [100.0]
    assert out[0]["call_gex"] == pytest.approx(0.08 * 200 * 100 * 100**2 * 0.01)  # 160,000
    assert out[0]["put_gex"] == pytest.approx(-0.04 * 50 * 100 * 100**2 * 0.01)  # -20,000
    assert (out[0]["call_open_interest"], out[0]["put_open_interest"]) == (200, 50)
    only_expired = option_rows([{"strike": 100.0, "right": "C", "gamma": 0.05,
                                 "open_interest": 1000, "expiry": date(2025, 11, 21)}])
    assert compute_gex(only_expired).num_rows == 0


def test_gex_sums_expiries_against_a_pandas_reference():
    rng = np.random.default_rng(3)
    rows = []
    for exp in (DAY, date(2025, 12, 5), date(2025, 12, 19)):
        for k in (95.0, 100.0, 105.0):
            for right in ("C", "P"):
                rows.append({"strike": k, "right": right, "expiry": exp,
                             "gamma": float(rng.uniform(0, 0.1)),
                             "open_interest": int(rng.integers(0, 5000))})
    rows[0]["gamma"] = None
    rows[3]["open_interest"] = None
    rows[4]["open_interest"] = 0
    out = pd.DataFrame(compute_gex(option_rows(rows)).to_pylist()).set_index("strike")
    ref = pd.DataFrame(rows).fillna({"gamma": 0.0, "open_interest": 0})
    ref["g"] = ref["gamma"] * ref["open_interest"] * 100 * 100.0**2 * 0.01
    ref["g"] = np.where(ref["right"] == "C", ref["g"], -ref["g"])
    want = ref.groupby("strike")["g"].sum()
    np.testing.assert_allclose(out["net_gex"].to_numpy(), want.loc[out.index].to_numpy(), rtol=1e-12)
    assert (out["call_gex"] >= 0).all() and (out["put_gex"] <= 0).all()


# -- gamma flip --------------------------------------------------------------------------------

def test_gamma_flip_leading_zero_strikes_are_not_a_flip():
    # strikes without open interest below the chain: running sum 0, 0, then positive only
    assert gamma_flip(gex_rows([(85, 0.0), (90, 0.0), (95, 10.0), (100, 10.0)], spot=99)) is None
    # the real crossing (cum 0, -5, +10 between 95 and 100: 95 + 5 * 5/15) wins, not strike 90
    # where the running sum merely starts at zero (which is nearer spot 91)
    assert gamma_flip(gex_rows([(90, 0.0), (95, -5.0), (100, 15.0)], spot=91)) == pytest.approx(
        95 + 5 * 5 / 15)


def test_gamma_flip_touching_zero_is_no_flip_but_crossing_through_zero_is():
    # cum 5, 0, 0: never negative
    assert gamma_flip(gex_rows([(90, 5.0), (95, -5.0), (100, 0.0)], spot=99)) is None
    # cum 5, 0, 5: touches zero and turns back
    assert gamma_flip(gex_rows([(90, 5.0), (95, -5.0), (100, 5.0)], spot=95)) is None
    # cum -5, 0, +10: crosses exactly at 95
    assert gamma_flip(gex_rows([(90, -5.0), (95, 5.0), (100, 10.0)], spot=99)) == 95.0
    # cum -5, 0, 0, +10: zero on 95 and 100, the one nearest spot
    assert gamma_flip(gex_rows([(90, -5.0), (95, 5.0), (100, 0.0), (105, 10.0)], spot=99)) == 100.0


# -- market_regime -----------------------------------------------------------------------------

def _regime_inputs(days, closes, ivs):
    n = len(days)
    bars = pl.DataFrame({"symbol": ["SPY"] * n, "date": days, "close": closes},
                        schema_overrides={"date": pl.Date})
    iv = pl.DataFrame({"symbol": ["SPY"] * n, "date": days, "iv30_close": ivs},
                      schema_overrides={"date": pl.Date})
    vix = pl.DataFrame({"symbol": ["VIX"] * n, "date": days, "close": [20.0] * n},
                       schema_overrides={"date": pl.Date})
    return bars, iv, vix


def test_regime_rv20_sma_and_iv_rank_against_numpy_without_look_ahead():
    # 2025-06-02 .. 2025-09-30 spans Juneteenth, 2025-07-04 (a holiday) and 2025-07-03 (a half day)
    days = cal.trading_days(date(2025, 6, 2), date(2025, 9, 30))
    rng = np.random.default_rng(11)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    ivs = 0.2 + 0.05 * rng.random(len(days))
    bars, iv, vix = _regime_inputs(days, closes.tolist(), ivs.tolist())
    out = pl.from_arrow(regime.market_regime(bars.to_arrow(), iv.to_arrow(), vix.to_arrow()))
    assert out["date"].to_list() == days
    r = np.diff(np.log(closes))
    for i in (20, 35, len(days) - 1):
        assert out["rv20"][i] == pytest.approx(np.std(r[i - 20:i], ddof=1) * math.sqrt(252), rel=1e-12)
        assert out["rv20_first"][i] == days[i - 20]
    # first sessions without the history: null, not garbage
    assert out["rv20"][:20].null_count() == 20 and out["sma20"][:19].null_count() == 19
    assert out["sma50"][:49].null_count() == 49
    assert out["sma50"][49] == pytest.approx(closes[:50].mean())
    i = 75
    w = ivs[i - 59:i + 1]
    assert out["iv_rank"][i] == pytest.approx((ivs[i] - w.min()) / (w.max() - w.min()) * 100)
    assert out["iv_percentile"][i] == pytest.approx(100 * (w < ivs[i]).mean())
    assert out["iv_window_start"][i] == days[i - 59] and out["iv_sessions"][i] == 60
    # look-ahead: the regime of a day computed with later data equals the one without it
    d = 60
    cut = pl.from_arrow(regime.market_regime(bars[:d + 1].to_arrow(), iv[:d + 1].to_arrow(),
                                             vix.to_arrow()))
    assert cut.row(d) == out.row(d)


# -- statistics macros -------------------------------------------------------------------------

BARS_DAYS = cal.trading_days(date(2025, 1, 2), date(2025, 3, 31))
CLOSES = [0.0 if d in (date(2025, 1, 10), date(2025, 2, 3)) else 100.0 + i  # two zero prints
          for i, d in enumerate(BARS_DAYS)]
BARS = pd.Series(CLOSES, index=pd.Index(BARS_DAYS))


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    macros.install(c, start=date(2024, 12, 2), end=date(2025, 6, 30), create_missing=True)
    c.executemany("INSERT INTO daily_bars (symbol, date, close) VALUES ('SPY', ?, ?)",
                  list(zip(BARS_DAYS, CLOSES)))
    yield c
    c.close()


def test_change_after_weekday_pct_change_matches_pandas_and_is_null_from_a_zero_close(con):
    got = con.execute("SELECT day, start_close, end_close, change, pct_change, skipped "
                      "FROM change_after_weekday('SPY', 5, 3)").fetch_df()
    got["day"] = got["day"].dt.date
    s = BARS
    pos = {d: i for i, d in enumerate(BARS_DAYS)}
    for row in got.itertuples():
        i = pos[row.day]
        if i + 3 >= len(BARS_DAYS):
            assert row.skipped
            continue
        s0, s1 = s.iloc[i], s.iloc[i + 3]
        assert row.change == pytest.approx(s1 - s0)
        if s0 > 0:
            assert row.pct_change == pytest.approx(s1 / s0 - 1)
        else:
            assert pd.isna(row.pct_change), row  # was inf
    assert got.loc[got["day"] == date(2025, 1, 10), "start_close"].item() == 0.0


def test_finish_probability_empirical_side_matches_pandas_and_skips_zero_closes(con):
    got = con.execute("SELECT side, sample_size, hits, probability "
                      "FROM finish_probability('SPY', 5, 1.03)").fetch_df().set_index("side")
    s = BARS[BARS > 0]
    idx = {d: i for i, d in enumerate(BARS_DAYS)}
    pairs = [(s[d], s[e]) for d in s.index for e in s.index if idx[e] == idx[d] + 5]
    above = sum(c1 > 1.03 * c0 for c0, c1 in pairs)
    below = sum(c1 < 1.03 * c0 for c0, c1 in pairs)
    assert got.loc["above", "sample_size"] == len(pairs) == len(BARS_DAYS) - 5 - 2 * 2
    assert got.loc["above", "hits"] == above and got.loc["below", "hits"] == below
    assert got.loc["above", "probability"] == pytest.approx(above / len(pairs))


@pytest.mark.parametrize("m, message", [
    ("'nan'::DOUBLE", "moneyness must be a finite number, got nan"),
    ("'inf'::DOUBLE", "moneyness must be a finite number, got inf"),
    ("0", "moneyness must be > 0, got 0"),
])
def test_finish_probability_refuses_a_non_finite_moneyness(con, m, message):
    with pytest.raises(duckdb.Error, match=message):
        con.execute(f"SELECT * FROM finish_probability('SPY', 5, {m})").fetchall()
