"""Simulated market: determinism, independence, session bounds, bars, schemas, errors."""

from __future__ import annotations

import subprocess
import sys
import time as wallclock
from pathlib import Path
from datetime import date, datetime, time, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_platform import calendar as cal
from archive_platform.calendar import ET
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.sim import DEFAULT_UNIVERSE, SimulatedMarket, SymbolSpec, default_symbols
from archive_platform.sources.base import MarketSource

DAY = date(2025, 11, 26)  # full session, EST
HALF = date(2025, 11, 28)  # day after Thanksgiving: 13:00 close
SUMMER = date(2025, 7, 15)  # EDT


def iv_instants(day: date) -> list[datetime]:
    return [datetime.combine(day, time(7, 0), tzinfo=ET), datetime.combine(day, time(19, 0), tzinfo=ET)]


def fetch_all(m: SimulatedMarket, day: date, symbols: list[str]) -> dict[str, pa.Table]:
    snaps = cal.snapshot_times(day)
    return {
        "stocks_1m": m.fetch_stocks_1m(day, symbols),
        "options": m.fetch_options(day, symbols, snaps),
        "gex": m.fetch_gex(day, symbols, snaps),
        "uw_flow": m.fetch_uw_flow(day, symbols),
        "iv_rank": m.fetch_iv_rank(day, symbols, iv_instants(day)),
        "trades": m.fetch_trades(day, symbols),
    }


def test_universe_has_56_plausible_symbols():
    syms = default_symbols()
    assert len(syms) == 56 == len(set(syms))
    for must in ("SPY", "QQQ", "IWM", "DIA", "AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOGL", "TSLA", "AMD"):
        assert must in syms
    for s in DEFAULT_UNIVERSE:
        assert 5 < s.price < 2000 and 0.1 <= s.vol <= 1.0, s


def test_is_a_market_source_supporting_and_backfilling_everything():
    m = SimulatedMarket()
    assert isinstance(m, MarketSource) and m.name == "sim"
    for t in ArchiveType:
        assert m.supports(t) and m.can_backfill(t)


@pytest.mark.parametrize("day", [DAY, SUMMER])
def test_every_type_matches_the_canonical_schema(day):
    tables = fetch_all(SimulatedMarket(), day, ["SPY", "NVDA", "AAPL"])
    expected_offset = -300 if day == DAY else -240
    for name, table in tables.items():
        assert table.schema.equals(spec_for(name).schema, check_metadata=True), name
        assert table.num_rows > 0, name
        keys = [(k, "ascending") for k in spec_for(name).sort_key]
        assert table.equals(table.sort_by(keys)), f"{name} not in sort-key order"
        assert set(table.column("source").to_pylist()) == {"sim"}, name
        assert set(table.column("et_offset").to_pylist()) == {expected_offset}, name


def test_unknown_symbols_are_named_in_the_error():
    with pytest.raises(ValueError, match="FOO, ZZZZ"):
        SimulatedMarket().fetch_stocks_1m(DAY, ["SPY", "ZZZZ", "FOO"])


def test_custom_universe_replaces_the_default():
    m = SimulatedMarket(universe=[SymbolSpec("XYZ", 42.0, 0.3)])
    bars = m.fetch_stocks_1m(DAY, ["XYZ"])
    assert bars.num_rows == 390
    with pytest.raises(ValueError, match="SPY"):
        m.fetch_stocks_1m(DAY, ["SPY"])


@pytest.mark.parametrize("fetch", ["stocks_1m", "options", "uw_flow", "iv_rank", "trades"])
def test_holiday_raises_not_a_trading_day(fetch):
    m = SimulatedMarket()
    thanksgiving = date(2025, 11, 27)
    calls = {
        "stocks_1m": lambda: m.fetch_stocks_1m(thanksgiving, ["SPY"]),
        "options": lambda: m.fetch_options(thanksgiving, ["SPY"], []),
        "uw_flow": lambda: m.fetch_uw_flow(thanksgiving, ["SPY"]),
        "iv_rank": lambda: m.fetch_iv_rank(thanksgiving, ["SPY"], []),
        "trades": lambda: m.fetch_trades(thanksgiving, []),
    }
    with pytest.raises(cal.NotATradingDay, match="2025-11-27"):
        calls[fetch]()


def test_full_day_has_390_bars_per_symbol_inside_the_session():
    bars = SimulatedMarket().fetch_stocks_1m(DAY, ["SPY", "QQQ"])
    s = cal.session(DAY)
    for sym in ("SPY", "QQQ"):
        ts = [r["timestamp"] for r in bars.to_pylist() if r["symbol"] == sym]
        assert ts == cal.session_minutes(DAY)
        assert ts[0] == s.open_utc and ts[-1] == s.close_utc - timedelta(minutes=1)


def test_half_day_has_210_bars_and_snapshots_end_at_1300_et():
    m = SimulatedMarket()
    bars = m.fetch_stocks_1m(HALF, ["SPY"])
    assert bars.num_rows == 210
    last_bar = bars.column("timestamp")[-1].as_py()
    assert last_bar.astimezone(ET).time() == time(12, 59)
    tables = fetch_all(m, HALF, ["SPY", "QQQ", "IWM"])
    close = cal.session(HALF).close_utc
    snaps = tables["options"].column("snapshot_time").to_pylist()
    assert max(snaps) == close and max(snaps).astimezone(ET).time() == time(13, 0)
    for name in ("options", "gex", "uw_flow", "trades"):
        ts = tables[name].column("timestamp").to_pylist()
        assert all(cal.session(HALF).open_utc <= t <= close for t in ts), name


def test_options_outside_the_session_are_refused():
    pre = datetime.combine(DAY, time(9, 0), tzinfo=ET)
    with pytest.raises(ValueError, match="outside the 2025-11-26 session"):
        SimulatedMarket().fetch_options(DAY, ["SPY"], [pre])


def test_bars_are_consistent_ohlc_with_vwap_in_range():
    bars = SimulatedMarket().fetch_stocks_1m(DAY, default_symbols()).to_pydict()
    for o, h, lo, c, v, vw, n in zip(
        bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"], bars["vwap"], bars["trade_count"]
    ):
        assert lo <= min(o, c) and max(o, c) <= h
        assert lo <= vw <= h
        assert v > 0 and 0 < n <= v


def test_intraday_volume_is_u_shaped():
    bars = SimulatedMarket().fetch_stocks_1m(DAY, ["SPY"]).column("volume").to_pylist()
    first, middle, last = sum(bars[:30]), sum(bars[180:210]), sum(bars[-30:])
    assert first > 1.5 * middle and last > 1.5 * middle


@settings(max_examples=15, deadline=None)
@given(
    day=st.dates(date(2000, 1, 3), date(2035, 12, 31)).filter(cal.is_trading_day),
    sym=st.sampled_from(default_symbols()),
)
def test_bars_invariants_hold_on_any_day(day, sym):
    bars = SimulatedMarket(seed=3).fetch_stocks_1m(day, [sym]).to_pydict()
    assert len(bars["open"]) == cal.session(day).minutes
    assert all(lo <= min(o, c) <= max(o, c) <= h and lo <= vw <= h for o, h, lo, c, vw in
               zip(bars["open"], bars["high"], bars["low"], bars["close"], bars["vwap"]))
    assert min(bars["low"]) > 0


def test_continuity_next_open_near_previous_close():
    m = SimulatedMarket()
    days = cal.trading_days(date(2025, 10, 1), date(2025, 10, 31))
    for sym in ("SPY", "TSLA", "KO"):
        closes, opens = [], []
        for d in days:
            bars = m.fetch_stocks_1m(d, [sym])
            opens.append(bars.column("open")[0].as_py())
            closes.append(bars.column("close")[-1].as_py())
        gaps = [abs(o / c - 1) for o, c in zip(opens[1:], closes[:-1])]
        vol = next(s.vol for s in DEFAULT_UNIVERSE if s.symbol == sym)
        # overnight gap sd is about half a day's sd; 6 day-sds is far beyond any draw here
        assert max(gaps) < 6 * vol / 252**0.5, (sym, max(gaps))
        assert any(g > 0 for g in gaps)  # there is a gap, the path is not just glued


def test_seed_changes_the_market():
    a = SimulatedMarket(seed=0).fetch_stocks_1m(DAY, ["SPY"])
    b = SimulatedMarket(seed=1).fetch_stocks_1m(DAY, ["SPY"])
    assert a.num_rows == b.num_rows == 390
    assert a.column("timestamp").equals(b.column("timestamp"))  # the same session grid...
    differ = sum(x != y for x, y in zip(a.column("close").to_pylist(), b.column("close").to_pylist()))
    assert differ >= 380, differ  # ...with another path through it, not one changed bar
    assert SimulatedMarket(seed=0).fetch_stocks_1m(DAY, ["SPY"]).equals(a)  # and a seed reproduces its own


def _rows_of(table: pa.Table, sym: str) -> pa.Table:
    mask = pc.equal(table.column("symbol"), sym)
    return table.filter(mask)


def test_independent_of_symbol_list_and_call_order():
    prev = cal.previous_trading_day(DAY)
    lone = fetch_all(SimulatedMarket(), DAY, ["SPY"])
    other = SimulatedMarket()
    fetch_all(other, prev, ["QQQ", "SPY"])  # warm caches with another day first
    crowd = fetch_all(other, DAY, ["QQQ", "TSLA", "SPY", "AAPL", "IWM"])
    for name in lone:
        assert _rows_of(crowd[name], "SPY").equals(lone[name]), name


_CHILD = """
import sys, pyarrow.ipc as ipc
from datetime import date, datetime, time
from archive_platform import calendar as cal
from archive_platform.sim import SimulatedMarket
m = SimulatedMarket(seed=7)
d = date(2025, 11, 26)
syms = ["SPY", "NVDA", "IWM"]
snaps = cal.snapshot_times(d)
ivt = [datetime.combine(d, time(7, 0), tzinfo=cal.ET), datetime.combine(d, time(19, 0), tzinfo=cal.ET)]
tables = [m.fetch_stocks_1m(d, syms), m.fetch_options(d, syms, snaps), m.fetch_gex(d, syms, snaps),
          m.fetch_uw_flow(d, syms), m.fetch_iv_rank(d, syms, ivt), m.fetch_trades(d, syms)]
for i, t in enumerate(tables):
    with ipc.new_file(f"{sys.argv[1]}/{i}.arrow", t.schema) as w:
        w.write_table(t)
"""


def test_deterministic_across_processes(tmp_path):
    # a different hash seed in the child would expose any use of Python's salted hash()
    env = {"PYTHONHASHSEED": "12345", "PATH": ""}
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)], check=True, env=env, cwd=repo, timeout=120
    )
    m = SimulatedMarket(seed=7)
    syms = ["SPY", "NVDA", "IWM"]
    mine = list(fetch_all(m, DAY, syms).values())  # same order as the child's list
    for i, table in enumerate(mine):
        theirs = ipc.open_file(str(tmp_path / f"{i}.arrow")).read_all()
        assert theirs.num_rows == table.num_rows > 0
        assert theirs.equals(table), i


def test_print_full_day_timing_for_the_default_universe(capsys):
    """Not asserted (wall clock): prints how long a full day of all six types takes."""
    m = SimulatedMarket(seed=11)
    start = wallclock.perf_counter()
    tables = fetch_all(m, date(2025, 11, 24), default_symbols())
    elapsed = wallclock.perf_counter() - start
    rows = {k: v.num_rows for k, v in tables.items()}
    with capsys.disabled():
        print(f"\nsim full day, 56 symbols, all six types: {elapsed:.2f} s, rows {rows}")
    assert rows["stocks_1m"] == 56 * 390
    assert rows["iv_rank"] == 56 * 2
    assert {r["symbol"] for r in tables["options"].select(["symbol"]).to_pylist()} == set(default_symbols())
