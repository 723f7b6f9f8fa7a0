"""Simulated option chains: listing rules, quotes, parity, greeks vs an independent BS, path."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_platform import calendar as cal
from archive_platform.sim import SimConfig, SimulatedMarket

DAY = date(2025, 11, 26)
SYMS = ("SPY", "AAPL", "NVDA", "INTC", "TSLA")
RATE = SimConfig().rate


@lru_cache(maxsize=None)
def chain_rows(day: date = DAY, syms: tuple[str, ...] = SYMS) -> list[dict]:
    return SimulatedMarket().fetch_options(day, list(syms), cal.snapshot_times(day)).to_pylist()


def years_to_expiry(expiry: date, at: datetime) -> float:
    # documented convention: calendar years of 365 days to the expiry session's close
    return (cal.session(expiry).close_utc - at).total_seconds() / (365 * 86400)


def ncdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def bs(s: float, k: float, t: float, sigma: float, r: float, call: bool) -> dict[str, float]:
    d1 = (math.log(s / k) + (r + sigma * sigma / 2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    pdf = math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi)
    if call:
        price = s * ncdf(d1) - k * math.exp(-r * t) * ncdf(d2)
        delta = ncdf(d1)
        theta = -s * pdf * sigma / (2 * math.sqrt(t)) - r * k * math.exp(-r * t) * ncdf(d2)
    else:
        price = k * math.exp(-r * t) * ncdf(-d2) - s * ncdf(-d1)
        delta = ncdf(d1) - 1
        theta = -s * pdf * sigma / (2 * math.sqrt(t)) + r * k * math.exp(-r * t) * ncdf(-d2)
    return {
        "price": price,
        "delta": delta,
        "gamma": pdf / (s * sigma * math.sqrt(t)),
        "theta": theta / 365,
        "vega": s * pdf * math.sqrt(t) / 100,
    }


def test_expiries_are_fridays_or_the_session_before_a_friday_holiday():
    expiries = {r["expiry"] for r in chain_rows()}
    assert len(expiries) == 9  # 6 weeklies + 3 monthlies by default
    for e in expiries:
        assert cal.is_trading_day(e) and e > DAY
        friday = e + timedelta(days=(4 - e.weekday()) % 7)
        assert e == friday or not cal.is_trading_day(friday), e
    # Good Friday 2026-04-03 is a holiday: the weekly moves to Thursday 2026-04-02
    rows = SimulatedMarket(config=SimConfig(weekly_expiries=3, monthly_expiries=0)).fetch_options(
        date(2026, 3, 24), ["SPY"], [cal.session(date(2026, 3, 24)).open_utc]
    )
    assert set(rows.column("expiry").to_pylist()) == {date(2026, 3, 27), date(2026, 4, 2), date(2026, 4, 10)}


def test_monthlies_are_third_fridays():
    expiries = sorted({r["expiry"] for r in chain_rows()})
    monthly = expiries[-3:]
    for e in monthly:
        assert e.weekday() == 4 and 15 <= e.day <= 21, e


def listing_step(symbol: str, price: float) -> float:
    if symbol in ("SPY", "QQQ", "IWM", "DIA"):
        return 1.0
    return 0.5 if price < 25 else 1.0 if price < 100 else 2.5 if price < 250 else 5.0


def test_strikes_follow_listing_steps():
    rows = chain_rows()
    checked = 0
    for sym in SYMS:
        spot = next(r["underlying_price"] for r in rows if r["symbol"] == sym)
        if any(abs(spot / edge - 1) < 0.05 for edge in (25, 100, 250)):
            continue  # strikes are set on the previous close, which may sit across the edge
        step = listing_step(sym, spot)
        strikes = {r["strike"] for r in rows if r["symbol"] == sym}
        assert all(abs(k / step - round(k / step)) < 1e-9 for k in strikes), sym
        assert all(0.7 * spot < k < 1.35 * spot for k in strikes), sym
        checked += 1
    assert checked >= 3


def test_default_chain_has_a_few_hundred_contracts_per_symbol():
    first = cal.snapshot_times(DAY)[0]
    for sym in SYMS:
        n = sum(1 for r in chain_rows() if r["symbol"] == sym and r["snapshot_time"] == first)
        assert 150 <= n <= 400, (sym, n)


def test_quotes_are_sane():
    for r in chain_rows():
        assert 0 <= r["bid"] <= r["ask"], r
        assert r["ask"] > 0
        for side in ("bid", "ask"):
            cents = r[side] * 100
            assert abs(cents - round(cents)) < 1e-6
        if r["last"] is not None:
            assert r["bid"] - 1e-9 <= r["last"] <= r["ask"] + 1e-9
        assert r["volume"] >= 0 and r["open_interest"] >= 0
        assert 0.03 < r["iv"] < 3


def test_put_call_parity_holds_within_the_spread():
    by_key = {}
    for r in chain_rows():
        by_key.setdefault((r["symbol"], r["snapshot_time"], r["expiry"], r["strike"]), {})[r["right"]] = r
    assert len(by_key) > 1000
    for (sym, at, expiry, k), pair in by_key.items():
        c, p = pair["C"], pair["P"]
        s = c["underlying_price"]
        forward_value = s - k * math.exp(-RATE * years_to_expiry(expiry, at))
        assert c["bid"] - p["ask"] - 1e-9 <= forward_value <= c["ask"] - p["bid"] + 1e-9, (sym, at, k)


def test_greeks_match_an_independent_black_scholes():
    rows = chain_rows()
    for r in rows[::7]:
        t = years_to_expiry(r["expiry"], r["snapshot_time"])
        ref = bs(r["underlying_price"], r["strike"], t, r["iv"], RATE, r["right"] == "C")
        for g in ("delta", "gamma", "theta", "vega"):
            assert r[g] == pytest.approx(ref[g], rel=1e-7, abs=1e-9), (g, r)
        assert r["bid"] - 1e-9 <= ref["price"] <= r["ask"] + 1e-9
        if r["right"] == "C":
            assert 0 <= r["delta"] <= 1
        else:
            assert -1 <= r["delta"] <= 0
        assert r["gamma"] >= 0 and r["vega"] >= 0


def test_skew_puts_below_spot_carry_more_iv_than_calls_above():
    rows = [r for r in chain_rows() if r["symbol"] == "SPY" and r["snapshot_time"] == cal.snapshot_times(DAY)[0]]
    expiry = sorted({r["expiry"] for r in rows})[2]
    spot = rows[0]["underlying_price"]
    low = [r["iv"] for r in rows if r["expiry"] == expiry and r["strike"] < spot * 0.97]
    high = [r["iv"] for r in rows if r["expiry"] == expiry and r["strike"] > spot * 1.03]
    assert low and high and min(low) > max(high)


def test_underlying_price_is_the_bar_path_at_the_instant():
    m = SimulatedMarket()
    bars = m.fetch_stocks_1m(DAY, list(SYMS)).to_pylist()
    open_by = {(b["symbol"], b["timestamp"]): b["open"] for b in bars}
    close_by = {(b["symbol"], b["timestamp"] + timedelta(minutes=1)): b["close"] for b in bars}
    seen = 0
    for r in chain_rows():
        key = (r["symbol"], r["snapshot_time"])
        # both are the same cent-rounded path point, so they agree to the cent
        if key in open_by:
            assert r["underlying_price"] == pytest.approx(open_by[key], abs=1e-9)
            seen += 1
        if key in close_by:
            assert r["underlying_price"] == pytest.approx(close_by[key], abs=1e-9)
    assert seen > 0


def test_open_interest_constant_and_volume_growing_through_the_day():
    series: dict[tuple, list[tuple]] = {}
    for r in chain_rows():
        series.setdefault((r["symbol"], r["expiry"], r["strike"], r["right"]), []).append(
            (r["snapshot_time"], r["open_interest"], r["volume"])
        )
    for key, points in series.items():
        points.sort()
        assert len({oi for _, oi, _ in points}) == 1, key
        vols = [v for _, _, v in points]
        assert vols == sorted(vols), key
    assert any(p[-1][2] > 0 for p in series.values())


def test_arbitrary_instant_inside_the_session():
    at = datetime(2025, 11, 26, 17, 3, 27, 250000, tzinfo=timezone.utc)
    t = SimulatedMarket().fetch_options(DAY, ["SPY"], [at])
    assert set(t.column("timestamp").to_pylist()) == {at}
    assert set(t.column("snapshot_time").to_pylist()) == {at}


@settings(max_examples=10, deadline=None)
@given(day=st.dates(date(2001, 1, 2), date(2035, 12, 31)).filter(cal.is_trading_day),
       sym=st.sampled_from(["SPY", "IWM", "KO", "MSTR", "SMCI"]))
def test_parity_and_bounds_on_any_day(day, sym):
    snaps = cal.snapshot_times(day)[::8]
    rows = SimulatedMarket(seed=5).fetch_options(day, [sym], snaps).to_pylist()
    pairs = {}
    for r in rows:
        assert 0 <= r["bid"] <= r["ask"]
        pairs.setdefault((r["snapshot_time"], r["expiry"], r["strike"]), {})[r["right"]] = r
    for (at, expiry, k), pr in pairs.items():
        c, p = pr["C"], pr["P"]
        fv = c["underlying_price"] - k * math.exp(-RATE * years_to_expiry(expiry, at))
        assert c["bid"] - p["ask"] - 1e-9 <= fv <= c["ask"] - p["bid"] + 1e-9


def test_larger_chains_are_configurable():
    big = SimulatedMarket(config=SimConfig(max_strikes_per_expiry=110))
    t = big.fetch_options(DAY, ["SPY"], [cal.session(DAY).open_utc])
    assert 1000 <= t.num_rows <= 2000
