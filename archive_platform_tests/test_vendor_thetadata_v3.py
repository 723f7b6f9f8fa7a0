"""ThetaDataSource with its default API, v3, against a loopback fake Theta Terminal v3 (CSV).

The v2 behaviour is ``test_vendor_thetadata.py``; here also: v3 and v2 give the same tables for
the same market data, and the ``THETADATA_API`` setting."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive_platform.config import ConfigError
from archive_platform.defs.vendor_resources.thetadata import ThetaDataResource
from archive_platform.schemas import OPTIONS_SCHEMA, STOCKS_1M_SCHEMA
from archive_platform.settings import Settings
from archive_platform.sources.base import EmptySession
from archive_platform.vendors.errors import PayloadError, VendorError
from archive_platform.vendors.http import VendorHttpClient
from archive_platform.vendors.resilience import new_breaker
from archive_platform.vendors.thetadata import NO_DATA, RETRY_STATUSES, ThetaDataSource
from archive_platform.vendors.thetadata_v3 import contract_rows, parse_timestamp
from archive_platform_tests.fakes import thetadata as v2fake
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.thetadata_v3 import (
    GREEKS_ALL,
    OHLC,
    QUOTE_SNAPSHOT,
    FakeThetaTerminalV3,
    contract,
    ts,
)

UTC = timezone.utc
WINTER = date(2025, 11, 21)  # EST: 10:00 ET = 15:00 UTC
SPRING = date(2025, 3, 10)  # the first session after the switch to EDT: 10:00 ET = 14:00 UTC


def snap(day: date) -> datetime:
    """10:00 ET of ``day`` in UTC."""
    return datetime(day.year, day.month, day.day, 15 if day == WINTER else 14, tzinfo=UTC)


#: one chain: (expiry offset days, strike, right, bid, ask, delta, theta, vega, gamma, iv, OI)
CHAIN = [
    (0, 600.5, "C", 5.1, 5.3, 0.51, -0.42, 31.0, 0.044, 0.18, 5000),
    (0, 600.5, "P", 4.8, 4.95, -0.49, -0.40, 30.0, 0.043, 0.19, None),
    (7, 610.0, "C", 1.0, 1.1, None, None, None, None, None, 70),  # no greeks row
    (7, 270.0, "P", 0.01, 0.02, -0.001, -0.001, 0.1, 0.0001, 0.9, 12),
]
UNDERLYING = 601.25


@pytest.fixture
def server():
    with FakeVendorServer() as srv:
        yield srv


def make_source(srv, *, now, attempts=3, **kw) -> ThetaDataSource:
    http = VendorHttpClient(
        "thetadata", srv.url, timeout=2.0, max_attempts=attempts, retry_statuses=RETRY_STATUSES,
        empty_statuses={NO_DATA}, breaker=new_breaker(fail_max=50), sleep=lambda s: None,
    )
    return ThetaDataSource(srv.url, http=http, clock=lambda: now, **kw)


def load_v3_snapshots(fake: FakeThetaTerminalV3, day: date, chain=CHAIN, **greeks_kw) -> None:
    t = ts(day, 9, 59, 58)
    quotes, greeks, oi = [], [], []
    for off, strike, right, bid, ask, delta, theta, vega, gamma, iv, interest in chain:
        c = contract(day + timedelta(days=off), strike, right)
        quotes.append({**c, "timestamp": t, "bid": bid, "ask": ask, "bid_size": 10, "ask_size": 12})
        if delta is not None:
            greeks.append({**c, "timestamp": t, "bid": bid, "ask": ask, "delta": delta, "theta": theta,
                           "vega": vega, "gamma": gamma, "implied_vol": iv, "underlying_price": UNDERLYING})
        if interest is not None:
            oi.append({**c, "timestamp": ts(day, 6, 30), "open_interest": interest})
    fake.set("/v3/option/snapshot/quote", quotes, symbol="SPY", expiration="*")
    fake.set("/v3/option/snapshot/greeks/all", greeks, symbol="SPY", expiration="*", **greeks_kw)
    fake.set("/v3/option/snapshot/open_interest", oi, symbol="SPY", expiration="*")


def load_v2_snapshots(fake: v2fake.FakeThetaTerminal, day: date) -> None:
    """The same market as ``load_v3_snapshots`` in the v2 encoding (for the parity test)."""
    d, t = int(f"{day:%Y%m%d}"), v2fake.et_ms(9, 59, 58)
    quotes, greeks, second, oi = [], [], [], []
    for off, strike, right, bid, ask, delta, theta, vega, gamma, iv, interest in CHAIN:
        c = v2fake.contract("SPY", int(f"{day + timedelta(days=off):%Y%m%d}"), round(strike * 1000), right)
        quotes.append((c, [v2fake.row(v2fake.QUOTE_FMT, ms_of_day=t, bid=bid, ask=ask, date=d)]))
        if delta is not None:
            greeks.append((c, [v2fake.row(v2fake.GREEKS_FMT, ms_of_day=t, bid=bid, ask=ask, delta=delta, theta=theta,
                                          vega=vega, implied_vol=iv, underlying_price=UNDERLYING, date=d)]))
            second.append((c, [v2fake.row(v2fake.SECOND_FMT, ms_of_day=t, gamma=gamma, date=d)]))
        if interest is not None:
            oi.append((c, [v2fake.row(v2fake.OI_FMT, ms_of_day=v2fake.et_ms(6, 30), open_interest=interest, date=d)]))
    for path, fmt, items in (("quote", v2fake.QUOTE_FMT, quotes), ("greeks", v2fake.GREEKS_FMT, greeks),
                             ("greeks_second_order", v2fake.SECOND_FMT, second),
                             ("open_interest", v2fake.OI_FMT, oi)):
        fake.set_bulk(f"/v2/bulk_snapshot/option/{path}", fmt, items, root="SPY", exp=0)


# -- options, live -----------------------------------------------------------------------------


@pytest.mark.parametrize("day", [WINTER, SPRING])
def test_live_snapshot_joins_quote_greeks_all_and_open_interest(server, day):
    fake = FakeThetaTerminalV3(server)
    load_v3_snapshots(fake, day)
    t = snap(day)
    table = make_source(server, now=t + timedelta(minutes=1)).fetch_options(day, ["spy"], [t])
    assert table.schema == OPTIONS_SCHEMA
    rows = {(r["expiry"], r["strike"], r["right"]): r for r in table.to_pylist()}
    week = day + timedelta(days=7)
    assert set(rows) == {(day, 600.5, "C"), (day, 600.5, "P"), (week, 610.0, "C"), (week, 270.0, "P")}
    c = rows[(day, 600.5, "C")]
    assert (c["bid"], c["ask"], c["open_interest"]) == (5.1, 5.3, 5000)
    assert (c["delta"], c["theta"], c["iv"], c["gamma"]) == (0.51, -0.42, 0.18, 0.044)  # gamma from greeks/all
    assert c["vega"] == pytest.approx(0.31)  # 31.0 per 1.00 of vol -> 0.31 per vol point, as v2
    assert c["underlying_price"] == UNDERLYING
    # 09:59:58 ET is 14:59:58 UTC in November (EST) and 13:59:58 UTC after the DST switch (EDT)
    assert c["timestamp"] == t - timedelta(seconds=2)
    assert (c["snapshot_time"], c["et_offset"], c["source"]) == (t, -300 if day == WINTER else -240, "thetadata")
    far = rows[(week, 270.0, "P")]
    assert (far["strike"], far["bid"], far["open_interest"]) == (270.0, 0.01, 12)  # dollars, never /1000
    assert rows[(day, 600.5, "P")]["open_interest"] is None
    assert rows[(week, 610.0, "C")]["delta"] is None and rows[(week, 610.0, "C")]["underlying_price"] == UNDERLYING
    assert sorted(r.path for r in server.requests) == [
        "/v3/option/snapshot/greeks/all", "/v3/option/snapshot/open_interest", "/v3/option/snapshot/quote"]
    assert {tuple(sorted(r.query.items())) for r in server.requests} == {
        (("expiration", "*"), ("format", "csv"), ("symbol", "SPY"))}
    assert {r.headers["host"].split(":")[0] for r in server.requests} == {"127.0.0.1"}
    assert all("authorization" not in r.headers for r in server.requests)


def test_v3_and_v2_give_the_same_tables_for_the_same_market(server):
    """The acceptance of the v3 path: same schema, same rows, same values as v2."""
    t = snap(WINTER)
    fake3 = FakeThetaTerminalV3(server)
    load_v3_snapshots(fake3, WINTER)
    fake3.set("/v3/stock/history/ohlc", bars_v3(WINTER, 5), symbol="SPY")
    with FakeVendorServer() as srv2:
        fake2 = v2fake.FakeThetaTerminal(srv2)
        load_v2_snapshots(fake2, WINTER)
        d = int(f"{WINTER:%Y%m%d}")
        fake2.set("/v2/hist/stock/ohlc", v2fake.OHLC_FMT, [
            v2fake.row(v2fake.OHLC_FMT, ms_of_day=v2fake.et_ms(9, 30 + i), open=100.0 + i, high=101.0 + i,
                       low=99.0 + i, close=100.5 + i, volume=1000 + i, count=10 + i, date=d) for i in range(5)])
        v2src = make_source(srv2, now=t + timedelta(minutes=1), api="v2")
        v2_opts, v2_bars = v2src.fetch_options(WINTER, ["SPY"], [t]), v2src.fetch_stocks_1m(WINTER, ["SPY"])
    v3src = make_source(server, now=t + timedelta(minutes=1))
    v3_opts, v3_bars = v3src.fetch_options(WINTER, ["SPY"], [t]), v3src.fetch_stocks_1m(WINTER, ["SPY"])
    assert v3_opts.num_rows == 4 and v3_bars.num_rows == 5
    assert v3_opts.equals(v2_opts) and v3_bars.equals(v2_bars)


def test_extra_and_reordered_columns_are_ignored(server):
    fake = FakeThetaTerminalV3(server)
    day, t = WINTER, snap(WINTER)
    c = contract(day, 600.5, "C")
    cols = ["right", "strike", "expiration", "symbol", "ask", "bid", "timestamp", "venue_flags", "ask_mid"]
    fake.set("/v3/option/snapshot/quote", [{**c, "timestamp": ts(day, 9, 59, 58, sep=" "), "bid": 5.1, "ask": 5.3,
                                            "venue_flags": "x;y", "ask_mid": ""}],
             columns=cols, symbol="SPY")
    fake.set("/v3/option/snapshot/greeks/all", [{**c, "timestamp": ts(day, 9, 59, 58), "delta": 0.5, "gamma": 0.04,
                                                 "implied_vol": 0.2, "underlying_price": 601.0, "weird_new_greek": 7}],
             columns=[*GREEKS_ALL, "weird_new_greek"], symbol="SPY")
    (r,) = make_source(server, now=t).fetch_options(day, ["SPY"], [t]).to_pylist()
    assert (r["strike"], r["right"], r["bid"], r["ask"], r["delta"], r["gamma"]) == (600.5, "C", 5.1, 5.3, 0.5, 0.04)
    assert r["timestamp"] == datetime(2025, 11, 21, 14, 59, 58, tzinfo=UTC)  # "YYYY-MM-DD HH:MM:SS.fff" too


@pytest.mark.parametrize(("path", "drop", "fetch"), [
    ("/v3/option/snapshot/greeks/all", "underlying_price", "options"),
    ("/v3/option/snapshot/quote", "bid", "options"),
    ("/v3/option/snapshot/quote", "strike", "options"),
    ("/v3/stock/history/ohlc", "close", "stocks"),
])
def test_a_missing_required_column_is_named(server, path, drop, fetch):
    fake = FakeThetaTerminalV3(server)
    load_v3_snapshots(fake, WINTER)
    fake.set("/v3/stock/history/ohlc", bars_v3(WINTER, 3), symbol="SPY")
    documented = {"/v3/option/snapshot/quote": QUOTE_SNAPSHOT, "/v3/option/snapshot/greeks/all": GREEKS_ALL,
                  "/v3/stock/history/ohlc": OHLC}[path]
    cols = [c for c in documented if c != drop]
    rows = [{k: v for k, v in r.items() if k != drop} for r in fake._answers[path][0][2]]
    fake._answers[path].insert(0, ({}, cols, rows))
    src = make_source(server, now=snap(WINTER))
    with pytest.raises(PayloadError, match=rf"lacks the column\(s\) \['{drop}'\]") as info:
        if fetch == "options":
            src.fetch_options(WINTER, ["SPY"], [snap(WINTER)])
        else:
            src.fetch_stocks_1m(WINTER, ["SPY"])
    assert path in str(info.value) and str(info.value).startswith("thetadata: GET ")


@pytest.mark.parametrize(("cell", "value", "problem"), [
    ("strike", "six hundred", r"strike 'six hundred' is not a positive number of dollars"),
    ("right", "CALLS", r"right 'CALLS' is neither CALL nor PUT"),
    ("expiration", "11/21/2025", r"expiration '11/21/2025' is not a YYYY-MM-DD date"),
    ("timestamp", "yesterday", r"timestamp 'yesterday' is not YYYY-MM-DDTHH:mm:ss.SSS"),
])
def test_a_malformed_cell_is_named(server, cell, value, problem):
    fake = FakeThetaTerminalV3(server)
    row = {**contract(WINTER, 600.5, "C"), "timestamp": ts(WINTER, 10), "bid": 1, "ask": 2, cell: value}
    fake.set("/v3/option/snapshot/quote", [row], symbol="SPY")
    with pytest.raises(PayloadError, match=problem):
        make_source(server, now=snap(WINTER)).fetch_options(WINTER, ["SPY"], [snap(WINTER)])


def test_no_data_472_is_an_empty_session(server):
    FakeThetaTerminalV3(server)  # nothing registered: every implemented path answers 472
    src = make_source(server, now=snap(WINTER))
    with pytest.raises(EmptySession, match="no one-minute bars for SPY"):
        src.fetch_stocks_1m(WINTER, ["SPY"])
    with pytest.raises(EmptySession, match="no option data for SPY"):
        src.fetch_options(WINTER, ["SPY"], [snap(WINTER)])
    assert {r.path for r in server.requests} >= {"/v3/stock/history/ohlc", "/v3/option/snapshot/quote"}


def test_a_full_queue_429_is_retried(server):
    fake = FakeThetaTerminalV3(server)
    fake.set("/v3/stock/history/ohlc", bars_v3(WINTER, 3), symbol="SPY", date="20251121", interval="1m")
    fake.queue_full(1)
    assert make_source(server, now=snap(WINTER)).fetch_stocks_1m(WINTER, ["SPY"]).num_rows == 3
    assert [r.path for r in server.requests] == ["/v3/stock/history/ohlc"] * 2


def test_a_v2_terminal_answers_404_and_the_error_names_the_setting(server):
    v2fake.FakeThetaTerminal(server)  # routes /v2 only: /v3 paths are 404, as on a v2 terminal
    with pytest.raises(VendorError, match="404") as info:
        make_source(server, now=snap(WINTER)).fetch_stocks_1m(WINTER, ["SPY"])
    msg = str(info.value)
    assert "/v3/stock/history/ohlc" in msg and "THETADATA_API=v2" in msg and "NO_IMPL" in msg
    assert info.value.status == 404 and len(server.requests) == 1  # not retried


def test_nothing_listening_says_which_terminal_and_port_was_expected():
    # a v2 user upgrading: THETADATA_API unset now means v3 on port 25503, where nothing listens
    import socket

    with socket.socket() as sock:  # a free port that refuses connections once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = VendorHttpClient("thetadata", f"http://127.0.0.1:{port}", timeout=2.0, max_attempts=1,
                            empty_statuses={NO_DATA}, breaker=new_breaker(fail_max=50), sleep=lambda s: None)
    with pytest.raises(VendorError) as info:
        ThetaDataSource(http=http, clock=lambda: snap(WINTER)).fetch_stocks_1m(WINTER, ["SPY"])
    msg = str(info.value)
    assert "connection error" in msg and "The v3 terminal listens on port 25503" in msg
    assert "For a v2 terminal set THETADATA_API=v2" in msg


def test_a_fatal_status_keeps_the_terminals_text(server):
    FakeThetaTerminalV3(server)
    server.fail_next(1, status=471, body="Your subscription (VALUE) does not include greeks/all.")
    with pytest.raises(VendorError) as info:
        make_source(server, now=snap(WINTER)).fetch_options(WINTER, ["SPY"], [snap(WINTER)])
    msg = str(info.value)
    assert "Your subscription (VALUE) does not include greeks/all." in msg
    assert "PERMISSION: your ThetaData subscription does not include this data" in msg
    assert info.value.status == 471 and len(server.requests) == 1


def test_an_unknown_parameter_spelling_is_refused_by_the_fake(server):
    # the fake is strict like the terminal: a v2-style request gets 473, so the tests above
    # prove the client sends v3 names
    FakeThetaTerminalV3(server)
    src = make_source(server, now=snap(WINTER))
    with pytest.raises(VendorError, match=r"473.*unknown parameter\(s\) \['root'\]"):
        src._csv("/v3/stock/history/ohlc", {"root": "SPY", "date": "20251121", "interval": "1m"})


def test_large_request_is_narrowed_per_expiration(server):
    fake = FakeThetaTerminalV3(server)
    load_v3_snapshots(fake, WINTER)
    fake.too_large("/v3/option/snapshot/quote", expiration="*")
    fake.set("/v3/option/list/expirations", [{"expiration": e} for e in ("2025-11-14", "2025-11-21", "2025-11-28")],
             symbol="SPY")
    t = ts(WINTER, 9, 59, 58)
    fake.set("/v3/option/snapshot/quote", [{**contract(WINTER, 600.5, "C"), "timestamp": t, "bid": 5.1, "ask": 5.3}],
             expiration="20251121")
    fake.set("/v3/option/snapshot/quote", [{**contract(date(2025, 11, 28), 270.0, "P"), "timestamp": t,
                                            "bid": 0.01, "ask": 0.02}], expiration="20251128")
    table = make_source(server, now=snap(WINTER), attempts=5).fetch_options(WINTER, ["SPY"], [snap(WINTER)])
    # the 600.5 put has no narrowed quote: its row keeps the bid of its greeks/all row (as v2)
    assert sorted((r["expiry"], r["strike"], r["right"], r["bid"]) for r in table.to_pylist()) == [
        (date(2025, 11, 21), 600.5, "C", 5.1), (date(2025, 11, 21), 600.5, "P", 4.8),
        (date(2025, 11, 28), 270.0, "P", 0.01)]
    quotes = server.requests_to("/v3/option/snapshot/quote")
    assert [r.query["expiration"] for r in quotes] == ["*", "20251121", "20251128"]  # 570 asked once


# -- options, backfill -------------------------------------------------------------------------


def test_backfill_picks_the_rows_at_the_requested_instants(server):
    fake = FakeThetaTerminalV3(server)
    fake.set("/v3/option/list/expirations", [{"expiration": e} for e in ("2025-03-07", "2025-03-10", "2025-03-14")],
             symbol="SPY")
    grid = [(9, 30), (9, 45), (10, 0), (10, 15), (10, 30)]
    for exp, strike in ((date(2025, 3, 10), 570.0), (date(2025, 3, 14), 270.0)):
        c = contract(exp, strike, "C")
        q = [{**c, "timestamp": ts(SPRING, h, m), "bid": float(i), "ask": i + 0.5} for i, (h, m) in enumerate(grid)]
        g = [{**c, "timestamp": ts(SPRING, h, m), "delta": i / 10, "gamma": 0.01 * i, "vega": 20.0, "implied_vol": 0.2,
              "underlying_price": 575.0 + i} for i, (h, m) in enumerate(grid)]
        params = dict(symbol="SPY", expiration=f"{exp:%Y%m%d}", date="20250310", interval="15m")
        fake.set("/v3/option/history/quote", q, **params)
        fake.set("/v3/option/history/greeks/all", g, **params)
    fake.set("/v3/option/history/open_interest", [{**contract(date(2025, 3, 10), 570.0, "C"),
                                                   "timestamp": ts(SPRING, 6, 30), "open_interest": 4321}],
             symbol="SPY", expiration="20250310", date="20250310")
    t1000, t1015 = datetime(2025, 3, 10, 14, 0, tzinfo=UTC), datetime(2025, 3, 10, 14, 15, tzinfo=UTC)  # EDT
    table = make_source(server, now=datetime(2025, 3, 20, tzinfo=UTC)).fetch_options(SPRING, ["SPY"], [t1000, t1015])
    rows = {(r["snapshot_time"], r["strike"]): r for r in table.to_pylist()}
    assert len(rows) == 4
    a, b = rows[(t1000, 570.0)], rows[(t1015, 570.0)]  # 10:00 ET is grid row 2, 10:15 row 3
    assert (a["bid"], a["delta"], a["gamma"], a["underlying_price"]) == (2.0, 0.2, 0.02, 577.0)
    assert a["open_interest"] == 4321
    assert (b["bid"], b["delta"], b["underlying_price"]) == (3.0, 0.3, 578.0)
    assert a["timestamp"] == t1000 and a["vega"] == pytest.approx(0.2) and a["et_offset"] == -240
    assert rows[(t1000, 270.0)]["strike"] == 270.0 and rows[(t1000, 270.0)]["open_interest"] is None
    hist = server.requests_to("/v3/option/history/greeks/all")
    assert sorted(r.query["expiration"] for r in hist) == ["20250310", "20250314"]  # 2025-03-07 had expired
    assert {(r.query["interval"], r.query["date"]) for r in hist} == {("15m", "20250310")}
    assert not server.requests_to(r"/v3/option/snapshot/.*")


# -- stocks_1m ---------------------------------------------------------------------------------


def bars_v3(day: date, n: int, sep: str = "T") -> list[dict]:
    return [{"timestamp": ts(day, 9, 30 + i, sep=sep), "open": 100.0 + i, "high": 101.0 + i, "low": 99.0 + i,
             "close": 100.5 + i, "volume": 1000 + i, "count": 10 + i, "vwap": 150.0} for i in range(n)]


@pytest.mark.parametrize(("day", "open_utc"), [(WINTER, datetime(2025, 11, 21, 14, 30, tzinfo=UTC)),
                                               (SPRING, datetime(2025, 3, 10, 13, 30, tzinfo=UTC))])
def test_stock_bars_are_canonical(server, day, open_utc):
    pre_open = {"timestamp": ts(day, 9, 29), "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1, "count": 1}
    no_trades = {"timestamp": ts(day, 9, 33), "open": None, "high": None, "low": None, "close": None,
                 "volume": 0, "count": 0}
    FakeThetaTerminalV3(server).set("/v3/stock/history/ohlc", [pre_open, *bars_v3(day, 3, sep=" "), no_trades],
                                    symbol="SPY", date=f"{day:%Y%m%d}", interval="1m")
    table = make_source(server, now=snap(day)).fetch_stocks_1m(day, ["SPY"])
    assert table.schema == STOCKS_1M_SCHEMA
    rows = table.to_pylist()
    assert [r["timestamp"] for r in rows] == [open_utc + timedelta(minutes=i) for i in range(3)]
    assert (rows[1]["open"], rows[1]["close"], rows[1]["volume"], rows[1]["trade_count"]) == (101.0, 101.5, 1001, 11)
    assert {r["vwap"] for r in rows} == {None}  # v3's vwap is of the session so far, not of the bar
    offset = -300 if day == WINTER else -240
    assert {(r["source"], r["et_offset"], r["symbol"]) for r in rows} == {("thetadata", offset, "SPY")}


# -- encodings ---------------------------------------------------------------------------------


def test_timestamps_worked_by_hand():
    assert parse_timestamp("2025-03-07T09:30:00.000", "t") == datetime(2025, 3, 7, 14, 30, tzinfo=UTC)  # EST
    assert parse_timestamp("2025-03-10 09:30:00.000", "t") == datetime(2025, 3, 10, 13, 30, tzinfo=UTC)  # EDT
    assert parse_timestamp("2025-10-31T15:59:59.446", "t") == datetime(2025, 10, 31, 19, 59, 59, 446000, tzinfo=UTC)
    assert parse_timestamp("2025-11-03T09:30:00", "t") == datetime(2025, 11, 3, 14, 30, tzinfo=UTC)  # EST again


@given(day=st.dates(date(2015, 1, 1), date(2030, 12, 31)), ms=st.integers(4 * 3_600_000, 20 * 3_600_000),
       sep=st.sampled_from(["T", " "]))
def test_timestamp_matches_pandas_localisation(day, ms, sep):
    wall = pd.Timestamp(day) + pd.Timedelta(milliseconds=ms)
    text = wall.strftime(f"%Y-%m-%d{sep}%H:%M:%S.") + f"{wall.microsecond // 1000:03d}"
    expected = wall.tz_localize("America/New_York").tz_convert("UTC")
    assert parse_timestamp(text, "t") == expected.to_pydatetime()


@given(dollars=st.integers(1, 10_000), cents=st.sampled_from([0, 50, 25, 5]), right=st.sampled_from(["CALL", "PUT"]))
def test_strike_is_dollars_never_divided(dollars, cents, right):
    strike = f"{dollars}.{cents:02d}0"
    ((key, _),) = contract_rows([{"expiration": "2030-01-18", "strike": strike, "right": right}], "/v3/x")
    assert key == (date(2030, 1, 18), dollars + cents / 100, right[0])


# -- the setting -------------------------------------------------------------------------------


def test_the_setting_picks_the_api_and_the_default_port(tmp_path):
    env = {"ARCHIVE_ROOT": str(tmp_path / "live"), "ARCHIVE_SIM_ROOT": str(tmp_path / "sim")}
    default = ThetaDataResource.from_settings(Settings.from_env(env)).client()
    assert (default.api, str(default.http.base_url)) == ("v3", "http://127.0.0.1:25503")
    v2 = ThetaDataResource.from_settings(Settings.from_env({**env, "THETADATA_API": " V2 "})).client()
    assert (v2.api, str(v2.http.base_url)) == ("v2", "http://127.0.0.1:25510")
    both = Settings.from_env({**env, "THETADATA_API": "v3", "THETADATA_BASE_URL": "http://127.0.0.1:4000"})
    chosen = ThetaDataResource.from_settings(both).client()
    assert (chosen.api, str(chosen.http.base_url)) == ("v3", "http://127.0.0.1:4000")
    with pytest.raises(ConfigError, match=r"THETADATA_API='v4' is not supported; choose one of: v3, v2"):
        Settings.from_env({**env, "THETADATA_API": "v4"})
    with pytest.raises(ValueError, match=r"THETADATA_API='3' is not supported"):
        ThetaDataSource(api="3")


@pytest.mark.live
def test_live_v3_terminal_round_trip():  # pragma: no cover - needs a logged-in Theta Terminal v3
    """Opt in with -m live; reads yesterday's SPY bars from a local v3 terminal (port 25503)."""
    from archive_platform.calendar import previous_trading_day

    day = previous_trading_day(datetime.now(UTC).date())
    with ThetaDataSource() as src:
        table = src.fetch_stocks_1m(day, ["SPY"])
    assert table.schema == STOCKS_1M_SCHEMA and table.num_rows > 300
