"""Hostile audit of the simulated market: determinism, calendar edges, internal consistency
and the datasets' own hard rules on sim output (equities and the crypto venue)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from archive_platform import calendar as cal
from archive_platform import datasets
from archive_platform.calendar import ET
from archive_platform.crypto import sim_venue
from archive_platform.gex import compute_gex
from archive_platform.settings import Settings
from archive_platform.sim import SimConfig, SimulatedMarket, SymbolSpec
from archive_platform.sim.chain import expiries_for, strikes_for
from archive_platform.store.validate import validate_batch

FULL = date(2025, 11, 26)
HALF = date(2025, 11, 28)  # 13:00 ET close
BEFORE_DST = date(2025, 3, 7)  # Friday, EST
AFTER_DST = date(2025, 3, 10)  # Monday, EDT
SYMS = ["SPY", "AAPL", "INTC"]


def df(t: pa.Table) -> pl.DataFrame:
    return pl.from_arrow(t)


def utc(day: date, hh: int, mm: int) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=ET).astimezone(timezone.utc)


# ---------------------------------------------------------------- determinism


def test_same_rows_alone_in_a_range_in_another_order_and_with_other_symbols():
    days = [date(2025, 11, 24), FULL, HALF]
    alone = SimulatedMarket(3)
    a_bars = df(alone.fetch_stocks_1m(FULL, ["AAPL"]))
    a_opts = df(alone.fetch_options(FULL, ["AAPL"], [utc(FULL, 11, 0)]))
    a_flow = df(alone.fetch_uw_flow(FULL, ["AAPL"]))
    other = SimulatedMarket(3)  # a range in reverse order, with a larger symbol set
    got = {}
    for d in reversed(days):
        got[d] = (
            df(other.fetch_stocks_1m(d, ["TSLA", "AAPL", "SPY"])),
            df(other.fetch_options(d, ["SPY", "AAPL"], [utc(d, 11, 0)])),
            df(other.fetch_uw_flow(d, ["TSLA", "AAPL"])),
        )
    bars, opts, flow = got[FULL]
    assert a_bars.height == 390
    assert bars.filter(pl.col("symbol") == "AAPL").equals(a_bars)
    assert a_opts.height > 100
    assert opts.filter(pl.col("symbol") == "AAPL").equals(a_opts)
    assert a_flow.height > 0
    assert flow.filter(pl.col("symbol") == "AAPL").equals(a_flow)


def test_intraday_snapshot_equals_the_same_instant_in_a_later_backfill():
    m = SimulatedMarket(0)
    instant = utc(FULL, 10, 45)
    live = df(m.fetch_options(FULL, ["SPY", "INTC"], [instant]))
    backfill = df(SimulatedMarket(0).fetch_options(FULL, ["INTC", "SPY"], cal.snapshot_times(FULL)))
    assert live.height > 0
    assert backfill.filter(pl.col("snapshot_time") == instant).equals(live)
    # flow polled up to the instant, then the whole day: the shared alerts are identical
    s = cal.session(FULL)
    polled = df(m.fetch_uw_flow(FULL, ["SPY"], since=s.open_utc, until=instant))
    day = df(m.fetch_uw_flow(FULL, ["SPY"]))
    assert polled.height > 0
    assert day.filter(pl.col("timestamp") <= instant).equals(polled)
    # gex derived from the live chain equals the backfill's gex at that instant
    g_live = df(m.fetch_gex(FULL, ["SPY"], [instant]))
    g_back = df(m.fetch_gex(FULL, ["SPY"], cal.snapshot_times(FULL)))
    assert g_back.filter(pl.col("timestamp") == instant).equals(g_live)


_CHILD = """
import sys
from datetime import date
import pyarrow.ipc as ipc
from archive_platform import calendar as cal
from archive_platform.crypto import sim_venue
from archive_platform.sim import SimulatedMarket
d = date(2025, 3, 10)
m = SimulatedMarket(seed=11)
# another order and symbol set than the parent's
m.fetch_uw_flow(date(2025, 3, 7), ["QQQ"])
tables = [m.fetch_uw_flow(d, ["QQQ", "TSLA"]), m.fetch_trades(d, ["TSLA", "QQQ"]),
          m.fetch_options(d, ["TSLA"], cal.snapshot_times(d)[-2:]),
          sim_venue.day_tables(date(2025, 3, 9), ["SOL"], seed=11, book_ms=60000)[0],
          sim_venue.day_tables(date(2025, 3, 9), ["SOL"], seed=11, book_ms=60000)[1]]
for i, t in enumerate(tables):
    with ipc.new_file(f"{sys.argv[1]}/{i}.arrow", t.schema) as w:
        w.write_table(t)
"""


def test_flow_trades_options_and_crypto_identical_in_another_process(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], check=True,
                   env={"PYTHONHASHSEED": "999", "PATH": ""}, cwd=repo, timeout=120)
    m = SimulatedMarket(seed=11)
    d = AFTER_DST
    mine = [m.fetch_uw_flow(d, ["TSLA", "QQQ"]), m.fetch_trades(d, ["QQQ", "TSLA"]),
            m.fetch_options(d, ["TSLA"], cal.snapshot_times(d)[-2:]),
            *sim_venue.day_tables(date(2025, 3, 9), ["SOL"], seed=11, book_ms=60000)]
    for i, table in enumerate(mine):
        theirs = ipc.open_file(str(tmp_path / f"{i}.arrow")).read_all()
        assert theirs.num_rows == table.num_rows, i
        assert theirs.equals(table), i
    assert mine[0].num_rows > 0 and mine[2].num_rows > 0 and mine[3].num_rows > 0


def test_archive_sim_seed_reaches_the_market_and_changes_the_data():
    seed = Settings.from_env({"ARCHIVE_SIM_SEED": "7"}).sim_seed
    assert seed == 7
    a = df(SimulatedMarket(seed).fetch_stocks_1m(FULL, ["SPY"]))
    b = df(SimulatedMarket(0).fetch_stocks_1m(FULL, ["SPY"]))
    assert a["timestamp"].equals(b["timestamp"])
    assert (a["close"] != b["close"]).sum() > 300
    ta, _ = sim_venue.day_tables(date(2025, 3, 9), ["ETH"], seed=seed, book_ms=60000)
    tb, _ = sim_venue.day_tables(date(2025, 3, 9), ["ETH"], seed=0, book_ms=60000)
    assert ta["price"].to_pylist()[:50] != tb["price"].to_pylist()[:50]


# ---------------------------------------------------------------- calendar


def test_half_day_has_nothing_after_1300_et():
    m = SimulatedMarket(0)
    close = utc(HALF, 13, 0)
    bars = df(m.fetch_stocks_1m(HALF, SYMS))
    assert bars.height == 3 * 210
    assert bars["timestamp"].max() == close - timedelta(minutes=1)
    flow = df(m.fetch_uw_flow(HALF, SYMS))
    assert flow.height > 0 and flow["timestamp"].max() <= close
    snaps = cal.snapshot_times(HALF)
    assert snaps[-1] == close
    opts = df(m.fetch_options(HALF, ["SPY"], snaps))
    assert opts["snapshot_time"].max() == close
    with pytest.raises(ValueError, match="outside"):
        m.fetch_options(HALF, ["SPY"], [close + timedelta(seconds=1)])
    trades = df(m.fetch_trades(HALF, []))
    assert trades.height == 0 or trades["timestamp"].max() < close


@pytest.mark.parametrize("fetch", ["bars", "options", "flow", "trades", "iv"])
def test_holidays_have_no_data(fetch):
    m = SimulatedMarket(0)
    xmas = date(2025, 12, 25)
    calls = {
        "bars": lambda: m.fetch_stocks_1m(xmas, ["SPY"]),
        "options": lambda: m.fetch_options(xmas, ["SPY"], [utc(xmas, 11, 0)]),
        "flow": lambda: m.fetch_uw_flow(xmas, ["SPY"]),
        "trades": lambda: m.fetch_trades(xmas, []),
        "iv": lambda: m.fetch_iv_rank(xmas, ["SPY"], [utc(xmas, 11, 0)]),
    }
    with pytest.raises(cal.NotATradingDay):
        calls[fetch]()


def test_dst_switch_moves_the_utc_session_and_et_offset():
    m = SimulatedMarket(0)
    before = df(m.fetch_stocks_1m(BEFORE_DST, ["SPY"]))
    after = df(m.fetch_stocks_1m(AFTER_DST, ["SPY"]))
    assert before["timestamp"].min() == datetime(2025, 3, 7, 14, 30, tzinfo=timezone.utc)
    assert before["timestamp"].max() == datetime(2025, 3, 7, 20, 59, tzinfo=timezone.utc)
    assert after["timestamp"].min() == datetime(2025, 3, 10, 13, 30, tzinfo=timezone.utc)
    assert set(before["et_offset"]) == {-300} and set(after["et_offset"]) == {-240}
    # iv rank quoted late in the ET evening lands on the next UTC date but the same ET day
    late = datetime(2025, 3, 10, 23, 30, tzinfo=ET)
    iv = df(m.fetch_iv_rank(AFTER_DST, ["SPY"], [late]))
    assert iv["timestamp"][0] == datetime(2025, 3, 11, 3, 30, tzinfo=timezone.utc)
    assert iv["et_offset"][0] == -240
    flow = df(m.fetch_uw_flow(AFTER_DST, ["SPY"]))
    assert flow["timestamp"].min() > datetime(2025, 3, 10, 13, 30, tzinfo=timezone.utc)
    assert flow["timestamp"].max() <= datetime(2025, 3, 10, 20, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- consistency


@pytest.mark.parametrize("day", [HALF, AFTER_DST])
def test_options_quotes_greeks_parity_and_underlying(day):
    m = SimulatedMarket(0)
    snaps = cal.snapshot_times(day)[::4]
    o = df(m.fetch_options(day, SYMS, snaps))
    assert o.height > 0
    assert (o["bid"] <= o["ask"]).all() and (o["bid"] >= 0).all()
    assert (o["iv"] > 0).all() and (o["gamma"] >= 0).all() and (o["vega"] >= 0).all()
    calls, puts = o.filter(pl.col("right") == "C"), o.filter(pl.col("right") == "P")
    assert calls["delta"].is_between(0, 1).all() and puts["delta"].is_between(-1, 0).all()
    assert (o["volume"] >= 0).all() and (o["open_interest"] >= 0).all()
    # parity C - P = S - K e^{-rT} inside the quoted spreads (T to the expiry session's close)
    key = ["symbol", "snapshot_time", "expiry", "strike"]
    p = calls.join(puts, on=key, suffix="_p")
    assert p.height == calls.height == puts.height
    close_us = {e: int(cal.session(e).close_utc.timestamp()) * 1_000_000 for e in p["expiry"].unique()}
    t_us = np.array([close_us[e] for e in p["expiry"]]) - p["snapshot_time"].dt.epoch("us").to_numpy()
    fwd = p["underlying_price"].to_numpy() - p["strike"].to_numpy() * np.exp(
        -SimConfig().rate * t_us / 1e6 / (365 * 86400))
    lo = p["bid"].to_numpy() - p["ask_p"].to_numpy() - 1e-9
    hi = p["ask"].to_numpy() - p["bid_p"].to_numpy() + 1e-9
    assert ((lo <= fwd) & (fwd <= hi)).all()
    # underlying_price is the bar open at the instant (or the last bar's close at the close)
    bars = df(m.fetch_stocks_1m(day, SYMS))
    u = o.select("symbol", "snapshot_time", "underlying_price").unique()
    opens = bars.select("symbol", pl.col("timestamp").alias("snapshot_time"), "open")
    closes = bars.select("symbol", (pl.col("timestamp") + pl.duration(minutes=1)).alias("snapshot_time"), "close")
    j = u.join(opens, on=["symbol", "snapshot_time"], how="left").join(
        closes, on=["symbol", "snapshot_time"], how="left")
    ref = j["open"].fill_null(j["close"])
    assert ref.null_count() == 0
    assert (j["underlying_price"] == ref).all()


def test_gex_recomputed_from_the_chain():
    m = SimulatedMarket(0)
    instant = utc(FULL, 14, 0)
    o = df(m.fetch_options(FULL, ["AAPL"], [instant]))
    g = df(m.fetch_gex(FULL, ["AAPL"], [instant]))
    s = o["underlying_price"][0]
    exp = (o.with_columns((pl.col("gamma") * pl.col("open_interest") * 100 * s * s * 0.01).alias("x"))
           .group_by("strike", "right").agg(pl.col("x").sum()))
    k = g["strike"][len(g) // 2]
    call = exp.filter((pl.col("strike") == k) & (pl.col("right") == "C"))["x"][0]
    put = exp.filter((pl.col("strike") == k) & (pl.col("right") == "P"))["x"][0]
    row = g.filter(pl.col("strike") == k)
    assert row["call_gex"][0] == pytest.approx(call, rel=1e-9)
    assert row["put_gex"][0] == pytest.approx(-put, rel=1e-9)
    assert g.equals(df(compute_gex(m.fetch_options(FULL, ["AAPL"], [instant]))))


def test_flow_alerts_reference_listed_contracts_at_their_quotes():
    m = SimulatedMarket(0)
    flow = df(m.fetch_uw_flow(FULL, ["SPY", "INTC"]))
    assert flow.height > 5
    assert ((flow["premium"] - (flow["price"] * flow["size"] * 100).round(2)).abs() < 0.011).all()
    assert ((flow["ask_side_premium"] + flow["bid_side_premium"] - flow["premium"]).abs() < 0.02).all()
    for r in flow.head(8).iter_rows(named=True):
        q = df(m.fetch_options(FULL, [r["symbol"]], [r["timestamp"]])).filter(
            (pl.col("expiry") == r["expiration"]) & (pl.col("strike") == r["strike"])
            & (pl.col("right") == r["option_type"][0]))
        assert q.height == 1, r["option_chain"]
        assert q["bid"][0] <= r["price"] <= q["ask"][0]
        assert q["underlying_price"][0] == r["underlying_price"]
        assert q["open_interest"][0] == r["open_interest"]
        assert r["option_chain"].startswith(r["symbol"])


def test_account_executions_pay_the_quote_and_commission():
    m = SimulatedMarket(0)
    rows = []
    for d in [date(2025, 11, 20), date(2025, 11, 21), FULL, HALF]:
        rows.extend(df(m.fetch_trades(d, [])).iter_rows(named=True))
    assert len(rows) >= 4
    for r in rows:
        q = df(m.fetch_options(cal.market_date(r["timestamp"]), [r["symbol"]], [r["timestamp"]])).filter(
            (pl.col("expiry") == r["expiry"]) & (pl.col("strike") == r["strike"])
            & (pl.col("right") == r["right"]))
        assert q.height == 1
        assert r["price"] == (q["ask"][0] if r["side"] == "BUY" else q["bid"][0]) > 0
        assert (r["right"], r["side"]) in {("P", "BUY"), ("C", "SELL")}
        assert r["commission"] == round(max(1.0, 0.65 * r["quantity"]), 2)
        assert r["expiry"] > cal.market_date(r["timestamp"])


# ---------------------------------------------------------------- the datasets' own rules


@pytest.mark.parametrize("day", [BEFORE_DST, AFTER_DST, HALF, date(2024, 7, 3), date(2026, 4, 2)])
def test_every_equity_dataset_passes_its_hard_and_soft_rules(day):
    m = SimulatedMarket(0)
    snaps = cal.snapshot_times(day)[::3]
    s = cal.session(day)
    tables = {
        "stocks_1m": m.fetch_stocks_1m(day, SYMS),
        "options": m.fetch_options(day, SYMS, snaps),
        "gex": m.fetch_gex(day, SYMS, snaps),
        "uw_flow": m.fetch_uw_flow(day, SYMS),
        "iv_rank": m.fetch_iv_rank(day, SYMS, [s.open_utc - timedelta(hours=2), s.close_utc + timedelta(hours=2)]),
        "trades": m.fetch_trades(day, []),
    }
    for name, table in tables.items():
        spec = datasets.get(name)
        out = validate_batch(spec, day, table, "sim")
        assert out.num_rows == table.num_rows, name  # no duplicate keys
        frame = df(out)
        for rule in spec.all_rules():
            if frame.height:
                broken = frame.select((~rule.expr.fill_null(False)).sum()).item()
                assert broken == 0, (name, rule.name)
    assert tables["stocks_1m"].num_rows == 3 * s.minutes


def test_crypto_day_passes_its_rules_and_books_are_sane():
    day = date(2025, 3, 9)  # a Sunday: crypto trades every day
    trades, books = sim_venue.day_tables(day, ["BTC"], seed=0, book_ms=10_000)
    for name, table in (("crypto_trades", trades), ("orderbook_l2", books)):
        spec = datasets.get(name)
        out = validate_batch(spec, day, table, "sim")
        assert out.num_rows == table.num_rows > 0, name
        frame = df(out)
        for rule in spec.all_rules():
            assert frame.select((~rule.expr.fill_null(False)).sum()).item() == 0, (name, rule.name)
    b = df(books)
    assert b.height == 8640
    bid, ask = np.array(b["bid_px"].to_list()), np.array(b["ask_px"].to_list())
    assert (bid[:, 0] < ask[:, 0]).all()
    assert (np.diff(bid, axis=1) < 0).all() and (np.diff(ask, axis=1) > 0).all()
    assert (np.array(b["bid_sz"].to_list()) > 0).all()
    # every trade prints at the touch of the book it falls in
    t = df(trades)
    book_us = b["event_time"].dt.epoch("us").to_numpy()
    at = np.searchsorted(book_us, t["event_time"].dt.epoch("us").to_numpy(), "right") - 1
    px = t["price"].to_numpy()
    buy = (t["side"] == "buy").to_numpy()
    assert np.array_equal(px, np.where(buy, ask[at, 0], bid[at, 0]))
    assert t["trade_id"].is_unique().all() and t["trade_id"].is_sorted()
    # a subset of symbols gives the same rows for the shared symbol
    t2, b2 = sim_venue.day_tables(day, ["ETH", "BTC"], seed=0, book_ms=10_000)
    assert df(t2).filter(pl.col("symbol") == "BTC").equals(t)
    assert df(b2).filter(pl.col("symbol") == "BTC").equals(b)


# ---------------------------------------------------------------- bugs found by this audit


@pytest.mark.parametrize("price,etf", [(10.24, False), (5.3, False), (1.2, False), (20.45, True)])
def test_a_narrow_band_still_lists_the_nearest_strike(price, etf):
    # before the fix a band narrower than the strike step listed no strike at all
    ks = strikes_for(SymbolSpec("LOW", price, 0.2, index_etf=etf), price, 0.02, 15)
    assert len(ks) == 1 and ks[0] > 0 and abs(ks[0] - price) <= 0.5


def test_low_priced_custom_symbol_has_contracts_on_every_expiry():
    spec = SymbolSpec("LOWP", 5.3, 0.15, adv=5_000_000)
    m = SimulatedMarket(0, universe=[spec])
    day = date(2025, 1, 2)  # the anchor day: the previous close is near 5.3
    o = df(m.fetch_options(day, ["LOWP"], [utc(day, 10, 0)]))
    cfg = SimConfig()
    want = expiries_for(day, cfg.weekly_expiries, cfg.monthly_expiries)
    assert sorted(o["expiry"].unique().to_list()) == want
    assert (o["bid"] <= o["ask"]).all() and (o["strike"] > 0).all()


def _window(day: date, hours: float, book_ms: int = 1000, symbol: str = "BTC", seed: int = 0):
    start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1_000_000
    return sim_venue.simulate(symbol, start, start + int(hours * 3600) * 1_000_000, seed=seed, book_ms=book_ms)


def test_crypto_books_never_anticipate_trades():
    # before the fix book i already carried the impact of the trades of [t_i, t_i+1), so mid
    # changes "predicted" the flow that followed them (corr ~0.26) and not the flow before them
    w = _window(date(2025, 3, 9), 1.0)
    n = len(w.book_time)
    mid = (w.bid_ticks[:, 0] + w.ask_ticks[:, 0]) / 2.0
    at = np.searchsorted(w.book_time, w.trade_time, side="right") - 1
    flow = np.bincount(at, weights=np.where(w.trade_buy, 1.0, -1.0) * np.sqrt(w.trade_lots), minlength=n)
    dm = np.diff(mid)  # dm[i - 1] = mid_i - mid_(i-1)
    after = np.corrcoef(dm, flow[1:])[0, 1]  # trades after book i
    before = np.corrcoef(dm, flow[:-1])[0, 1]  # trades between book i-1 and book i
    assert abs(after) < 0.07
    assert before > 0.15


def test_crypto_days_join_up_and_daily_returns_are_not_pinned_to_one_level():
    # before the fix every UTC day (every window) restarted at the instrument's fixed mid0
    days = [date(2025, 3, 9) + timedelta(days=k) for k in range(6)]
    firsts, lasts = [], []
    for d in days:
        _, books = sim_venue.day_tables(d, ["ETH"], seed=0, book_ms=60_000)
        b = df(books)
        mid = (b["bid_px"].list.first() + b["ask_px"].list.first()) / 2
        firsts.append(mid[0])
        lasts.append(mid[-1])
        ids = b["update_id"].to_numpy()
        assert (b["prev_update_id"].to_numpy()[1:] == ids[:-1]).all()
        if d != days[0]:  # the id chain continues across midnight too
            assert b["prev_update_id"][0] == prev_last_id
        prev_last_id = ids[-1]
    gaps = np.abs(np.array(firsts[1:]) / np.array(lasts[:-1]) - 1.0)
    assert gaps.max() < 0.01  # one minute of movement, not a reset
    opens = np.array(firsts)
    assert len(set(np.round(opens, 2))) == len(opens)
    assert np.abs(np.diff(np.log(opens))).max() > 0.005  # days move like a 3 %-vol market


def test_crypto_window_start_is_the_same_price_whatever_was_simulated_before():
    # the level at an instant depends only on (seed, symbol, instant): a window starting at
    # noon opens where the whole day's window is at noon (up to the day's intraday noise)
    d = date(2025, 3, 9)
    day = _window(d, 24.0, book_ms=60_000, symbol="SOL")
    noon = sim_venue.simulate("SOL", int(day.book_time[720]), int(day.book_time[720]) + 3_600_000_000,
                              seed=0, book_ms=60_000)
    m_day = (day.bid_ticks[720, 0] + day.ask_ticks[720, 0]) / 2
    m_noon = (noon.bid_ticks[0, 0] + noon.ask_ticks[0, 0]) / 2
    assert abs(m_noon / m_day - 1.0) < 0.05
    again = sim_venue.simulate("SOL", int(day.book_time[720]), int(day.book_time[720]) + 3_600_000_000,
                               seed=0, book_ms=60_000)
    assert np.array_equal(again.bid_ticks, noon.bid_ticks) and np.array_equal(again.trade_ticks, noon.trade_ticks)
