"""Simulated flow alerts, IV rank and account trades."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

import pytest

from archive_platform import calendar as cal
from archive_platform.calendar import ET
from archive_platform.sim import SimConfig, SimulatedMarket, default_symbols

DAY = date(2025, 11, 26)
OCC = re.compile(r"^(?P<sym>[A-Z]+)(?P<exp>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")


@lru_cache(maxsize=None)
def alerts(day: date = DAY) -> list[dict]:
    return SimulatedMarket().fetch_uw_flow(day, default_symbols()).to_pylist()


def test_alerts_exist_and_sit_inside_the_session():
    rows = alerts()
    s = cal.session(DAY)
    assert len(rows) > 100
    assert len({r["alert_id"] for r in rows}) == len(rows)
    assert all(s.open_utc < r["timestamp"] <= s.close_utc for r in rows)


def test_alert_fields_are_consistent():
    for r in alerts():
        m = OCC.match(r["option_chain"])
        assert m, r["option_chain"]
        assert m["sym"] == r["symbol"]
        assert datetime.strptime(m["exp"], "%y%m%d").date() == r["expiration"]
        assert int(m["strike"]) / 1000 == r["strike"]
        assert {"C": "CALL", "P": "PUT"}[m["right"]] == r["option_type"]
        assert r["premium"] == pytest.approx(r["price"] * r["size"] * 100, abs=0.01)
        assert r["ask_side_premium"] + r["bid_side_premium"] == pytest.approx(r["premium"], abs=0.02)
        assert r["volume"] >= r["size"] > 0
        if r["open_interest"]:
            assert r["volume_oi_ratio"] == pytest.approx(r["volume"] / r["open_interest"])
        if r["has_floor"]:
            assert not r["has_sweep"]


def test_option_chain_symbols_parse_with_the_shared_occ_parser():
    from archive_platform.vendors import occ  # a broken import fails here, it is not skipped
    for r in alerts()[:200]:
        c = occ.parse_occ(r["option_chain"])
        assert (c.root, c.expiry, c.strike) == (r["symbol"], r["expiration"], r["strike"])
        assert occ.format_occ(c.root, c.expiry, c.right, c.strike) == r["option_chain"]


def test_sentiment_follows_side_and_right():
    seen = set()
    for r in alerts():
        ask_side = r["ask_side_premium"] == r["premium"]
        bid_side = r["bid_side_premium"] == r["premium"]
        call = r["option_type"] == "CALL"
        if ask_side:
            expected = "BULLISH" if call else "BEARISH"
        elif bid_side:
            expected = "BEARISH" if call else "BULLISH"
        else:
            expected = "NEUTRAL"
        assert r["sentiment"] == expected, r
        seen.add(expected)
    assert seen == {"BULLISH", "BEARISH", "NEUTRAL"}


def test_alerts_refer_to_listed_contracts_priced_at_their_quotes():
    m = SimulatedMarket()
    sample = [r for r in alerts() if r["symbol"] in ("SPY", "TSLA", "AAPL")][:40]
    assert sample
    for r in sample:
        at = r["timestamp"]
        # the contract is listed in the grid snapshot at or before the alert
        snap = cal.snapshot_at_or_before(at)
        chain = m.fetch_options(DAY, [r["symbol"]], [snap]).to_pylist()
        listed = {(c["expiry"], c["strike"], c["right"]) for c in chain}
        assert (r["expiration"], r["strike"], r["option_type"][0]) in listed
        # and the price lies within that contract's quote at the alert's own instant
        [q] = [
            c for c in m.fetch_options(DAY, [r["symbol"]], [at]).to_pylist()
            if (c["expiry"], c["strike"], c["right"]) == (r["expiration"], r["strike"], r["option_type"][0])
        ]
        assert q["bid"] - 1e-9 <= r["price"] <= q["ask"] + 1e-9
        assert r["underlying_price"] == q["underlying_price"]
        assert r["iv"] == pytest.approx(q["iv"]) and r["delta"] == pytest.approx(q["delta"])
        assert r["open_interest"] == q["open_interest"]


def test_minute_polls_return_each_alert_exactly_once():
    m = SimulatedMarket()
    s = cal.session(DAY)
    syms = ["SPY", "QQQ", "NVDA"]
    full = m.fetch_uw_flow(DAY, syms).column("alert_id").to_pylist()
    polled: list[str] = []
    t = s.open_utc
    while t < s.close_utc:
        nxt = t + timedelta(minutes=1)
        polled += m.fetch_uw_flow(DAY, syms, since=t, until=nxt).column("alert_id").to_pylist()
        t = nxt
    assert sorted(polled) == sorted(full) and len(set(polled)) == len(polled)


def test_since_is_exclusive_and_until_inclusive():
    m = SimulatedMarket()
    rows = m.fetch_uw_flow(DAY, ["SPY"]).to_pylist()
    at = rows[len(rows) // 2]["timestamp"]
    upto = m.fetch_uw_flow(DAY, ["SPY"], until=at).to_pylist()
    after = m.fetch_uw_flow(DAY, ["SPY"], since=at).to_pylist()
    assert upto[-1]["timestamp"] == at
    assert all(r["timestamp"] > at for r in after)
    assert len(upto) + len(after) == len(rows)


def test_iv_rank_is_in_range_and_follows_its_definition():
    m = SimulatedMarket()
    instants = [datetime.combine(DAY, time(7, 0), tzinfo=ET), datetime.combine(DAY, time(19, 0), tzinfo=ET)]
    rows = m.fetch_iv_rank(DAY, default_symbols(), instants).to_pylist()
    assert len(rows) == 112
    for r in rows:
        assert 0 <= r["iv_rank"] <= 100 and 0 <= r["iv_percentile"] <= 100
        assert 0.03 < r["iv"] < 3
    # the 07:00 value is the previous session's closing IV: the 19:00 value of the day before
    prev = cal.previous_trading_day(DAY)
    prev_evening = m.fetch_iv_rank(prev, ["SPY"], [datetime.combine(prev, time(19, 0), tzinfo=ET)])
    morning = [r for r in rows if r["symbol"] == "SPY" and r["timestamp"].astimezone(ET).hour == 7]
    assert morning[0]["iv"] == pytest.approx(prev_evening.column("iv")[0].as_py())


def test_iv_rank_recomputed_from_the_daily_history():
    """rank and percentile from 252 closing IVs read off the source itself (19:00 each day)."""
    m = SimulatedMarket(config=SimConfig(iv_rank_window=20))
    days = cal.last_trading_days(21, as_of=DAY)
    hist = [
        m.fetch_iv_rank(d, ["KO"], [datetime.combine(d, time(19, 0), tzinfo=ET)]).column("iv")[0].as_py()
        for d in days[:-1]
    ]
    now = m.fetch_iv_rank(DAY, ["KO"], [datetime.combine(DAY, time(19, 0), tzinfo=ET)]).to_pylist()[0]
    lo, hi = min(hist + [now["iv"]]), max(hist + [now["iv"]])
    assert now["iv_rank"] == pytest.approx((now["iv"] - lo) / (hi - lo) * 100)
    assert now["iv_percentile"] == pytest.approx(100 * sum(h < now["iv"] for h in hist) / len(hist))


def test_iv_rank_refuses_instants_of_another_day():
    with pytest.raises(ValueError, match="not on the ET date 2025-11-26"):
        SimulatedMarket().fetch_iv_rank(DAY, ["SPY"], [datetime(2025, 11, 27, 12, tzinfo=timezone.utc)])


def test_trades_follow_the_documented_rule():
    m = SimulatedMarket()
    cfg = m.config
    days = cal.trading_days(date(2025, 10, 1), date(2025, 11, 26))
    seen_buy = seen_sell = False
    for d in days:
        trades = m.fetch_trades(d, []).to_pylist()
        decision = cal.session(d).close_utc - timedelta(minutes=cfg.trade_minutes_before_close)
        for sym in cfg.trade_symbols:
            mine = [t for t in trades if t["symbol"] == sym]
            bars = m.fetch_stocks_1m(d, [sym]).to_pylist()
            prev_close = m.fetch_stocks_1m(cal.previous_trading_day(d), [sym]).column("close")[-1].as_py()
            # the decision instant is a minute boundary: the price there is that bar's open
            price = next(b["open"] for b in bars if b["timestamp"] == decision)
            move = price / prev_close - 1
            if abs(move) <= cfg.trade_move_threshold:
                assert not mine, (d, sym, move)
                continue
            assert mine, (d, sym, move)
            assert len({t["order_id"] for t in mine}) == 1
            for t in mine:
                assert t["side"] == ("BUY" if move < 0 else "SELL")
                assert t["right"] == ("P" if move < 0 else "C")
                assert decision < t["timestamp"] <= decision + timedelta(seconds=5)
                chain = m.fetch_options(d, [sym], [t["timestamp"]]).to_pylist()
                [q] = [c for c in chain if (c["expiry"], c["strike"], c["right"]) == (t["expiry"], t["strike"], t["right"])]
                assert t["price"] == (q["ask"] if t["side"] == "BUY" else q["bid"])
                assert 0.15 < abs(q["delta"]) < 0.45
                assert t["commission"] == pytest.approx(max(1.0, 0.65 * t["quantity"]))
            seen_buy |= move < 0
            seen_sell |= move > 0
    assert seen_buy and seen_sell


def test_trades_symbol_filter_and_unknown_symbols():
    m = SimulatedMarket()
    all_trades = m.fetch_trades(DAY, [])
    spy = m.fetch_trades(DAY, ["SPY", "KO"])
    assert set(spy.column("symbol").to_pylist()) <= {"SPY"}
    assert spy.num_rows == sum(1 for s in all_trades.column("symbol").to_pylist() if s == "SPY")
    with pytest.raises(ValueError, match="NOPE"):
        m.fetch_trades(DAY, ["NOPE"])
