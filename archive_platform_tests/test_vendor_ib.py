"""IBSource against a scripted gateway made of ib_async's own objects (no TWS needed)."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ib_async.contract import Contract, Option, Stock
from ib_async.objects import BarData, CommissionReport, Execution, Fill, OptionChain, OptionComputation

from archive_platform.schemas import OPTIONS_SCHEMA, STOCKS_1M_SCHEMA, TRADES_SCHEMA
from archive_platform.sources.base import EmptySession, SnapshotNotReproducible
from archive_platform.vendors.errors import CircuitOpenError, VendorError
from archive_platform.vendors.ib import IBSource, normalise_fill, pick_chain, select_strikes
from archive_platform.vendors.ib_seam import HistoricalPacer
from archive_platform.vendors.resilience import new_breaker
from archive_platform_tests.fakes.clock import Clock
from archive_platform_tests.fakes.ib import FakeIBGateway, FakeQuote

UTC = timezone.utc
DAY = date(2025, 11, 21)  # a Friday in EST: 09:30 ET = 14:30 UTC
SNAP = datetime(2025, 11, 21, 15, 0, tzinfo=UTC)  # 10:00 ET
NOW = SNAP + timedelta(minutes=2)
SPY_CON_ID = 756733
EXPIRIES = ["20251114", "20251121", "20251124", "20251219"]  # 20251114 is already past
STRIKES = [500.0, 588.0, 590.0, 595.0, 600.0, 605.0, 610.0, 613.0, 650.0]
GREEKS = OptionComputation(0, 0.18, 0.52, 5.2, 0.0, 0.04, 0.31, -0.55, 600.5)


def make_gateway(**kw) -> FakeIBGateway:
    known = {
        ("SPY", e, s, r)
        for e in EXPIRIES
        for s in STRIKES
        for r in "CP"
        if (e, s, r) != ("20251124", 610.0, "C")  # IB has no such contract: qualifies to None
    }
    gw = FakeIBGateway(
        underlyings={"SPY": ("STK", SPY_CON_ID), "SPX": ("IND", 416904)},
        underlying_prices={"SPY": 600.0},
        chains={
            "SPY": [
                OptionChain("CBOE", SPY_CON_ID, "SPY", "100", ["20251121"], [600.0]),
                OptionChain("SMART", SPY_CON_ID, "2SPY", "100", ["20251121"], [600.0]),
                OptionChain("SMART", SPY_CON_ID, "SPY", "100", EXPIRIES, STRIKES),
            ]
        },
        known_options=known,
        quotes={
            ("SPY", "20251121", 600.0, "C"): FakeQuote(5.1, 5.3, 5.2, 1234.0, 5000.0, 4100.0, GREEKS),
            ("SPY", "20251121", 600.0, "P"): FakeQuote(
                4.9, 5.0, -1.0, 800.0, 5000.0, 4100.0, OptionComputation(0, 0.2, -0.47, 4.95, 0.0, 0.041, 0.3, -0.5, None)
            ),
        },
        ticker_time=SNAP + timedelta(seconds=20),
        **kw,
    )
    return gw


def make_source(gw: FakeIBGateway, **kw) -> tuple[IBSource, list[float]]:
    slept: list[float] = []
    kw.setdefault("breaker", new_breaker(fail_max=5))
    kw.setdefault("pacer", HistoricalPacer(min_interval=0, clock=lambda: 0.0, sleep=lambda s: None))
    src = IBSource(
        gateway=gw, clock=lambda: NOW, sleep=slept.append, max_expirations=2, strike_band=0.02, max_strikes=5, **kw
    )
    return src, slept


# -- options -----------------------------------------------------------------------------------


def test_option_snapshot_is_canonical_and_drops_unqualified_contracts(caplog):
    gw = make_gateway()
    src, _ = make_source(gw)
    table = src.fetch_options(DAY, ["SPY"], [SNAP])

    assert table.schema == OPTIONS_SCHEMA
    # 600 +/- 2 % admits 588..610 (613 is out); the 5 nearest drop 588 (12 away, the farthest).
    # 2 upcoming expiries x 5 strikes x C/P, minus the contract IB does not know
    assert table.num_rows == 2 * 5 * 2 - 1
    rows = table.to_pylist()
    keys = {(r["expiry"], r["strike"], r["right"]) for r in rows}
    assert (date(2025, 11, 24), 610.0, "C") not in keys
    assert {r["expiry"] for r in rows} == {date(2025, 11, 21), date(2025, 11, 24)}
    assert {r["strike"] for r in rows} == {590.0, 595.0, 600.0, 605.0, 610.0}
    assert {r["source"] for r in rows} == {"ib"}
    assert {r["snapshot_time"] for r in rows} == {SNAP}
    assert {r["et_offset"] for r in rows} == {-300}  # November: EST
    # the option market data asked for the generic ticks carrying OI and volume
    assert ("market_data", (19, "100,101,104,105,106")) in gw.calls
    assert gw.market_data_type == 1
    assert "1 of 20 SPY option contracts have no security definition; skipped (200)" in caplog.text


def test_model_greeks_and_quotes_are_mapped():
    src, _ = make_source(make_gateway())
    rows = {(r["strike"], r["right"], r["expiry"]): r for r in src.fetch_options(DAY, ["SPY"], [SNAP]).to_pylist()}
    call = rows[(600.0, "C", date(2025, 11, 21))]
    assert (call["bid"], call["ask"], call["last"], call["volume"]) == (5.1, 5.3, 5.2, 1234)
    assert call["open_interest"] == 5000  # callOpenInterest for a call
    assert (call["iv"], call["delta"], call["gamma"], call["vega"], call["theta"]) == (0.18, 0.52, 0.04, 0.31, -0.55)
    assert call["underlying_price"] == 600.5  # modelGreeks.undPrice wins over the stock ticker
    assert call["timestamp"] == SNAP + timedelta(seconds=20)
    put = rows[(600.0, "P", date(2025, 11, 21))]
    assert put["open_interest"] == 4100  # putOpenInterest for a put
    assert put["last"] is None  # IB's -1 "no price" is not a price
    assert put["underlying_price"] == 600.0  # undPrice None -> the underlying's last


def test_nan_fields_become_nulls():
    src, _ = make_source(make_gateway())
    rows = {(r["strike"], r["right"], r["expiry"]): r for r in src.fetch_options(DAY, ["SPY"], [SNAP]).to_pylist()}
    empty = rows[(595.0, "P", date(2025, 11, 24))]  # no quote scripted: every Ticker field NaN
    for col in ("bid", "ask", "last", "volume", "open_interest", "iv", "delta", "gamma", "theta", "vega"):
        assert empty[col] is None, col
    assert empty["underlying_price"] == 600.0
    assert empty["timestamp"] == SNAP + timedelta(seconds=20)


def test_past_snapshot_is_not_reproducible():
    src, _ = make_source(make_gateway())
    with pytest.raises(SnapshotNotReproducible, match="live option snapshots only"):
        src.fetch_options(DAY, ["SPY"], [SNAP - timedelta(hours=1)])


def test_pick_chain_prefers_smart_with_symbol_trading_class():
    chains = make_gateway().chains["SPY"]
    assert pick_chain(chains, "SPY").expirations == EXPIRIES
    with pytest.raises(VendorError, match=r"no SMART option chain with trading class 'SPXW' for SPY"):
        pick_chain(chains, "SPY", "SPXW")


@given(
    strikes=st.lists(st.integers(1, 2000).map(float), min_size=1, max_size=60, unique=True),
    price=st.floats(10, 1500),
    band=st.floats(0.0, 0.5),
    count=st.integers(1, 30),
)
def test_select_strikes_stays_in_band_and_takes_the_nearest(strikes, price, band, count):
    chosen = select_strikes(strikes, price, band, count)
    inside = [s for s in strikes if price * (1 - band) <= s <= price * (1 + band)]
    assert chosen == sorted(chosen) and len(chosen) == min(count, len(inside))
    assert set(chosen) <= set(inside)
    left_out = set(inside) - set(chosen)
    if chosen and left_out:
        assert max(abs(s - price) for s in chosen) <= min(abs(s - price) for s in left_out)


def test_error_354_suggests_delayed_data():
    gw = make_gateway(market_data_errors=[(354, "Requested market data is not subscribed.")])
    src, _ = make_source(gw, market_data_type=3)
    with pytest.raises(VendorError, match=r"not subscribed.*market_data_type=3"):
        src.fetch_options(DAY, ["SPY"], [SNAP])
    assert gw.market_data_type == 3


def test_error_10197_names_the_competing_session_instead_of_a_missing_price():
    """IB delivers no market data while the username is logged in elsewhere: the fetch said
    "no price for underlying SPY (bid/ask/last/close all missing)", which sends a user hunting
    for a data problem."""
    gw = make_gateway(market_data_errors=[(10197, "No market data during competing live session")])
    src, _ = make_source(gw)
    with pytest.raises(VendorError, match=r"another session of this IB username is live \(error 10197"):
        src.fetch_options(DAY, ["SPY"], [SNAP])


def test_error_200_on_the_underlying_is_an_error():
    src, _ = make_source(make_gateway())
    with pytest.raises(VendorError, match=r"cannot qualify underlying QQQQ \(error 200: No security definition"):
        src.fetch_options(DAY, ["QQQQ"], [SNAP])


# -- stocks_1m ---------------------------------------------------------------------------------


def session_bars(n: int = 390, start: datetime = datetime(2025, 11, 21, 14, 30, tzinfo=UTC)) -> list[BarData]:
    return [
        BarData(start + timedelta(minutes=i), 600 + i * 0.01, 600.5 + i * 0.01, 599.5, 600.2, 1000.0 + i, 600.1, 10 + i)
        for i in range(n)
    ]


def test_stocks_1m_maps_average_and_bar_count():
    pre_open = BarData(datetime(2025, 11, 21, 14, 29, tzinfo=UTC), 1, 1, 1, 1, 1.0, 1.0, 1)
    gw = make_gateway(bar_script=[([pre_open, *session_bars()], [])])
    src, _ = make_source(gw)
    table = src.fetch_stocks_1m(DAY, ["SPY"])
    assert table.schema == STOCKS_1M_SCHEMA
    assert table.num_rows == 390  # the pre-open bar is outside the session and dropped
    first = table.to_pylist()[0]
    assert first["timestamp"] == datetime(2025, 11, 21, 14, 30, tzinfo=UTC)
    assert (first["vwap"], first["trade_count"], first["volume"], first["source"]) == (600.1, 10, 1000, "ib")
    _, args = [c for c in gw.calls if c[0] == "historical_bars"][0]
    # day by day, 1-min TRADES, RTH only, UTC datetimes; ends at the close (21:00 UTC)
    assert args == ("SPY", datetime(2025, 11, 21, 21, 0, tzinfo=UTC), "1 D", "1 min", "TRADES", True, 2)


def test_pacing_violation_backs_off_and_retries():
    pacing = (162, "Historical Market Data Service error message:Historical data request pacing violation")
    gw = make_gateway(bar_script=[([], [pacing]), ([], [pacing]), (session_bars(), [])])
    src, slept = make_source(gw, pacing_backoff=10.0)
    assert src.fetch_stocks_1m(DAY, ["SPY"]).num_rows == 390
    assert slept == [10.0, 20.0]


def test_persistent_pacing_violation_fails_bounded():
    pacing = (162, "Historical data request pacing violation")
    gw = make_gateway(bar_script=[([], [pacing])] * 10)
    src, slept = make_source(gw, pacing_retries=2, breaker=new_breaker(fail_max=50))
    with pytest.raises(VendorError, match="pacing violation"):
        src.fetch_stocks_1m(DAY, ["SPY"])
    assert len(slept) == 2 and len(gw.bar_script) == 7


def test_empty_list_on_timeout_is_retried_once_then_an_error():
    gw = make_gateway(bar_script=[([], []), (session_bars(), [])])
    src, _ = make_source(gw)
    assert src.fetch_stocks_1m(DAY, ["SPY"]).num_rows == 390

    gw = make_gateway(bar_script=[([], []), ([], []), (session_bars(), [])])
    src, _ = make_source(gw)
    with pytest.raises(VendorError, match=r"reqHistoricalData SPY 2025-11-21 returned no bars twice.*times out"):
        src.fetch_stocks_1m(DAY, ["SPY"])


def test_hmds_no_data_for_every_symbol_is_an_empty_session():
    gw = make_gateway(bar_script=[([], [(162, "HMDS query returned no data: SPY@SMART Trades")])])
    src, _ = make_source(gw)
    with pytest.raises(EmptySession, match="no one-minute bars for SPY"):
        src.fetch_stocks_1m(DAY, ["SPY"])


def test_pacer_sleeps_once_per_wait():
    # issue 11: the pacer slept twice per wait, so a 1 s interval cost 2 s
    clock, sleeps = Clock(0.0), []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    pacer = HistoricalPacer(min_interval=1.0, clock=clock, sleep=sleep)
    assert pacer.wait() == 0.0
    clock.now += 0.25  # the caller worked a quarter of a second
    slept = pacer.wait()
    assert slept == pytest.approx(0.75, abs=0.002) and sleeps == [slept]
    assert clock.now == pytest.approx(1.0, abs=0.002)


def test_pacer_enforces_the_ten_minute_window_after_sixty_requests():
    clock, sleeps = Clock(0.0), []
    pacer = HistoricalPacer(clock=clock, sleep=lambda s: (sleeps.append(s), setattr(clock, "now", clock.now + s)))
    for _ in range(60):
        pacer.wait()
    assert clock.now == pytest.approx(59.059, abs=0.01)  # 1 s (+1 ms) apart
    pacer.wait()  # the 61st waits until the first request leaves the 600 s window
    assert clock.now == pytest.approx(600.0, abs=0.01)


def test_pacer_never_exceeds_the_limits():
    clock = [0.0]
    pacer = HistoricalPacer(clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    sent = []
    for _ in range(150):
        pacer.wait()
        sent.append(clock[0])
    assert all(b - a >= 1.0 for a, b in zip(sent, sent[1:]))
    assert max(sum(1 for u in sent if t <= u < t + 600.0) for t in sent) == 60


@settings(max_examples=50)
@given(
    gaps=st.lists(st.floats(0, 30), min_size=1, max_size=80),
    limit=st.integers(1, 10),
    window=st.floats(1, 100),
    interval=st.floats(0, 5),
)
def test_pacer_property(gaps, limit, window, interval):
    clock = [0.0]
    pacer = HistoricalPacer(
        min_interval=interval, max_requests=limit, window=window,
        clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )
    sent = []
    for gap in gaps:  # the caller also does work between requests
        clock[0] += gap
        pacer.wait()
        sent.append(clock[0])
    assert all(b - a >= interval - 1e-9 for a, b in zip(sent, sent[1:]))
    assert all(sum(1 for u in sent if t <= u < t + window - 1e-9) <= limit for t in sent)


def test_breaker_opens_on_persistent_gateway_failure():
    gw = make_gateway()

    def broken(*a, **k):
        raise ConnectionError("Socket disconnect")

    gw.qualify = gw.historical_bars = broken  # the socket is gone: every call fails
    src, _ = make_source(gw, breaker=new_breaker(fail_max=2, reset_timeout=60, clock=lambda: 0.0))
    for _ in range(2):
        with pytest.raises(VendorError, match="Socket disconnect"):
            src.fetch_stocks_1m(DAY, ["SPY"])
    with pytest.raises(CircuitOpenError):
        src.fetch_stocks_1m(DAY, ["SPY"])


# -- trades ------------------------------------------------------------------------------------


def fill(contract: Contract, exec_id: str, when: datetime, side: str, shares: float, price: float, commission=None):
    ex = Execution(execId=exec_id, time=when, side=side, shares=shares, price=price, orderId=42, permId=9001)
    report = CommissionReport(execId=exec_id, commission=commission) if commission is not None else CommissionReport()
    return Fill(contract, ex, report, when)


def test_executions_are_mapped_to_trades():
    t1 = datetime(2025, 11, 21, 15, 1, 2, tzinfo=UTC)
    opt = Option("SPY", "20251219", 590.0, "P", "SMART")
    opt.secType = "OPT"
    fills = [
        fill(Stock("SPY", "SMART", "USD"), "0001.01", t1, "BOT", 100, 600.25, 1.0),
        fill(opt, "0002.01", t1 + timedelta(minutes=5), "SLD", 3, 4.5),  # commission report pending
        fill(Contract(secType="FUT", symbol="ES"), "0003.01", t1, "BOT", 1, 6000.0, 2.0),
        fill(Stock("QQQ", "SMART", "USD"), "0004.01", t1, "SLD", 10, 500.0, 1.0),
        fill(Stock("SPY", "SMART", "USD"), "0005.01", datetime(2025, 11, 20, 20, 0, tzinfo=UTC), "BOT", 1, 1.0, 1.0),
    ]
    src, _ = make_source(make_gateway(fills_list=fills))
    table = src.fetch_trades(DAY, ["SPY"])
    assert table.schema == TRADES_SCHEMA
    rows = {r["exec_id"]: r for r in table.to_pylist()}
    assert set(rows) == {"0001.01", "0002.01"}  # FUT skipped, QQQ filtered, yesterday's dropped
    stk, o = rows["0001.01"], rows["0002.01"]
    assert (stk["side"], stk["quantity"], stk["price"], stk["commission"], stk["sec_type"]) == ("BUY", 100.0, 600.25, 1.0, "STK")
    assert (stk["contract"], stk["expiry"], stk["strike"], stk["right"], stk["order_id"]) == ("SPY", None, None, None, "42")
    assert (o["side"], o["sec_type"], o["expiry"], o["strike"], o["right"]) == ("SELL", "OPT", date(2025, 12, 19), 590.0, "P")
    assert o["contract"] == "SPY251219P00590000"
    assert o["commission"] is None
    assert (o["timestamp"], o["et_offset"], o["source"]) == (t1 + timedelta(minutes=5), -300, "ib")
    assert src.fetch_trades(DAY, []).num_rows == 3  # empty filter = every underlying


def test_indices_are_qualified_on_their_listing_exchange():
    # NDX is listed on NASDAQ and RUT on RUSSELL in IB's contract database, not on CBOE
    gw = make_gateway()
    gw.underlyings.update({"NDX": ("IND", 416843), "RUT": ("IND", 416888)})
    src, _ = make_source(gw)
    got = {s: src._underlying(s) for s in ("SPX", "NDX", "RUT")}
    assert {s: (c.exchange, c.conId) for s, c in got.items()} == {
        "SPX": ("CBOE", 416904), "NDX": ("NASDAQ", 416843), "RUT": ("RUSSELL", 416888)}


def test_spx_monthly_and_spxw_weekly_fills_keep_their_own_occ_roots():
    # both have symbol SPX; IB's localSymbol (padded OCC) and tradingClass tell them apart
    t = datetime(2025, 1, 17, 15, tzinfo=UTC)
    monthly = Option("SPX", "20250117", 6000.0, "C", "SMART", tradingClass="SPX")
    monthly.localSymbol = "SPX   250117C06000000"
    weekly = Option("SPX", "20250117", 6000.0, "C", "SMART", tradingClass="SPXW")
    weekly.localSymbol = "SPXW  250117C06000000"
    only_class = Option("SPX", "20250117", 6000.0, "C", "SMART", tradingClass="SPXW")  # no localSymbol
    bare = Option("SPY", "20250117", 600.0, "C", "SMART")  # neither: the symbol
    got = [normalise_fill(fill(c, f"{i}.01", t, "BOT", 1, 1.0))["contract"]
           for i, c in enumerate((monthly, weekly, only_class, bare))]
    assert got == ["SPX250117C06000000", "SPXW250117C06000000", "SPXW250117C06000000", "SPY250117C00600000"]


def test_unknown_side_names_the_execution():
    bad = fill(Stock("SPY", "SMART", "USD"), "0009.01", datetime(2025, 11, 21, 15, tzinfo=UTC), "XX", 1, 1.0)
    with pytest.raises(VendorError, match=r"execution 0009.01 has side 'XX'"):
        normalise_fill(bad)


def test_importing_the_source_does_not_import_ib_async():
    code = "import sys, archive_platform.vendors.ib; print('ib_async' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.live
def test_live_gateway_round_trip():  # pragma: no cover - needs a running paper TWS/Gateway
    """Opt in with -m live against a paper TWS on 127.0.0.1:7497 (read-only)."""
    with IBSource(port=7497, client_id=917, market_data_type=3) as src:
        table = src.fetch_trades(datetime.now(UTC).date(), [])
        assert table.schema == TRADES_SCHEMA
        assert math.isfinite(float(len(table)))
