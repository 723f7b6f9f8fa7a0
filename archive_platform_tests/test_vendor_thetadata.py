"""ThetaDataSource (``api="v2"``) against a loopback fake Theta Terminal speaking the v2 JSON format
(v3 is the default API: ``test_vendor_thetadata_v3.py``)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive_platform.schemas import OPTIONS_SCHEMA, STOCKS_1M_SCHEMA
from archive_platform.sources.base import EmptySession
from archive_platform.vendors.errors import CircuitOpenError, PayloadError, VendorError
from archive_platform.vendors.http import VendorHttpClient
from archive_platform.vendors.resilience import new_breaker
from archive_platform.vendors.thetadata import (
    NO_DATA,
    RETRY_STATUSES,
    ThetaDataSource,
    et_ms_to_utc,
    iter_bulk_rows,
)
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.thetadata import (
    ALL_GREEKS_FMT,
    GREEKS_FMT,
    OHLC_FMT,
    OI_FMT,
    QUOTE_FMT,
    SECOND_FMT,
    FakeThetaTerminal,
    contract,
    et_ms,
    row,
)

UTC = timezone.utc
DAY = date(2025, 11, 21)  # EST: 10:00 ET = 15:00 UTC
D = 20251121
SNAP = datetime(2025, 11, 21, 15, 0, tzinfo=UTC)
C600 = contract("SPY", 20251121, 600500, "C")  # $600.50
P600 = contract("SPY", 20251121, 600500, "P")
C610 = contract("SPY", 20251128, 610000, "C")


@pytest.fixture
def server():
    with FakeVendorServer() as srv:
        yield srv


def make_source(srv, *, now=SNAP + timedelta(minutes=1), attempts=3, timeout=2.0, deadline=None, breaker=None, **kw):
    http = VendorHttpClient(
        "thetadata", srv.url, timeout=timeout, deadline=deadline, max_attempts=attempts, retry_statuses=RETRY_STATUSES,
        empty_statuses={NO_DATA}, breaker=breaker or new_breaker(fail_max=50), sleep=lambda s: None,
    )
    return ThetaDataSource(srv.url, api="v2", http=http, clock=lambda: now, **kw)


def load_snapshots(fake: FakeThetaTerminal) -> None:
    t = et_ms(9, 59, 58)
    fake.set_bulk("/v2/bulk_snapshot/option/quote", QUOTE_FMT, [
        (C600, [row(QUOTE_FMT, ms_of_day=t, bid=5.1, ask=5.3, date=D)]),
        (P600, [row(QUOTE_FMT, ms_of_day=t, bid=4.8, ask=4.95, date=D)]),
        (C610, [row(QUOTE_FMT, ms_of_day=t, bid=1.0, ask=1.1, date=D)]),
    ], root="SPY", exp=0)
    fake.set_bulk("/v2/bulk_snapshot/option/greeks", GREEKS_FMT, [
        (C600, [row(GREEKS_FMT, ms_of_day=t, delta=0.51, theta=-0.42, vega=31.0, implied_vol=0.18,
                    underlying_price=601.25, date=D)]),
        (P600, [row(GREEKS_FMT, ms_of_day=t, delta=-0.49, theta=-0.40, vega=30.0, implied_vol=0.19,
                    underlying_price=601.25, date=D)]),
    ], root="SPY", exp=0)
    fake.set_bulk("/v2/bulk_snapshot/option/greeks_second_order", SECOND_FMT, [
        (C600, [row(SECOND_FMT, ms_of_day=t, gamma=0.044, underlying_price=601.25, date=D)]),
    ], root="SPY", exp=0)
    fake.set_bulk("/v2/bulk_snapshot/option/open_interest", OI_FMT, [
        (C600, [row(OI_FMT, ms_of_day=et_ms(6, 30), open_interest=5000, date=D)]),
        (C610, [row(OI_FMT, ms_of_day=et_ms(6, 30), open_interest=70, date=D)]),
    ], root="SPY", exp=0)


# -- options, live -----------------------------------------------------------------------------


def test_live_snapshot_joins_the_four_endpoints(server):
    fake = FakeThetaTerminal(server)
    load_snapshots(fake)
    table = make_source(server).fetch_options(DAY, ["SPY"], [SNAP])
    assert table.schema == OPTIONS_SCHEMA
    rows = {(r["expiry"], r["strike"], r["right"]): r for r in table.to_pylist()}
    assert set(rows) == {(date(2025, 11, 21), 600.5, "C"), (date(2025, 11, 21), 600.5, "P"),
                         (date(2025, 11, 28), 610.0, "C")}
    c = rows[(date(2025, 11, 21), 600.5, "C")]
    assert (c["bid"], c["ask"], c["open_interest"]) == (5.1, 5.3, 5000)
    assert (c["delta"], c["theta"], c["iv"], c["gamma"]) == (0.51, -0.42, 0.18, 0.044)
    assert c["vega"] == pytest.approx(0.31)  # 31.0 per 1.00 of vol -> 0.31 per vol point
    assert c["underlying_price"] == 601.25
    # 09:59:58 ET on a November day is 14:59:58 UTC
    assert c["timestamp"] == datetime(2025, 11, 21, 14, 59, 58, tzinfo=UTC)
    assert (c["snapshot_time"], c["et_offset"], c["source"]) == (SNAP, -300, "thetadata")
    p = rows[(date(2025, 11, 21), 600.5, "P")]
    assert p["gamma"] is None and p["open_interest"] is None  # no second-order / OI row for it
    far = rows[(date(2025, 11, 28), 610.0, "C")]
    assert far["delta"] is None and far["underlying_price"] == 601.25  # price from its siblings
    assert {r.query["exp"] for r in server.requests} == {"0"}
    assert {r.headers["host"].split(":")[0] for r in server.requests} == {"127.0.0.1"}


def test_next_page_chain_is_followed_to_the_end(server):
    fake = FakeThetaTerminal(server, page_size=1)
    load_snapshots(fake)
    table = make_source(server).fetch_options(DAY, ["SPY"], [SNAP])
    assert table.num_rows == 3
    assert table.filter(pa_eq(table, "strike", 610.0))["bid"].to_pylist() == [1.0]
    # quote: 3 contracts -> 2 extra pages; greeks: 1 extra; second order: none; OI: 1 extra
    assert len(server.requests_to(r"/v2/page/\d+")) == 4


def pa_eq(table, column, value):
    import pyarrow.compute as pc

    return pc.equal(table[column], value)


def test_large_request_is_narrowed_per_expiration_not_retried(server):
    # issue 11: 570 "request too large; narrow it" was retried 5 times with the same request
    fake = FakeThetaTerminal(server)
    load_snapshots(fake)
    fake.too_large("/v2/bulk_snapshot/option/quote", root="SPY", exp=0)
    t = et_ms(9, 59, 58)
    fake.set("/v2/list/expirations", ["date"], [20251114, 20251121, 20251128], root="SPY")
    fake.set_bulk("/v2/bulk_snapshot/option/quote", QUOTE_FMT, [
        (C600, [row(QUOTE_FMT, ms_of_day=t, bid=5.1, ask=5.3, date=D)]),
        (P600, [row(QUOTE_FMT, ms_of_day=t, bid=4.8, ask=4.95, date=D)]),
    ], root="SPY", exp=20251121)
    fake.set_bulk("/v2/bulk_snapshot/option/quote", QUOTE_FMT, [
        (C610, [row(QUOTE_FMT, ms_of_day=t, bid=1.0, ask=1.1, date=D)]),
    ], root="SPY", exp=20251128)
    table = make_source(server, attempts=5).fetch_options(DAY, ["SPY"], [SNAP])
    got = sorted((r["expiry"], r["strike"], r["right"], r["bid"], r["ask"]) for r in table.to_pylist())
    assert got == [(date(2025, 11, 21), 600.5, "C", 5.1, 5.3), (date(2025, 11, 21), 600.5, "P", 4.8, 4.95),
                   (date(2025, 11, 28), 610.0, "C", 1.0, 1.1)]
    quotes = server.requests_to("/v2/bulk_snapshot/option/quote")
    assert [r.query["exp"] for r in quotes] == ["0", "20251121", "20251128"]  # 570 asked once
    # the other endpoints answered exp=0 and were not narrowed
    assert [r.query["exp"] for r in server.requests_to("/v2/bulk_snapshot/option/greeks")] == ["0"]


def test_large_request_for_one_expiration_fails_with_what_to_do(server):
    fake = FakeThetaTerminal(server)
    load_snapshots(fake)
    fake.too_large("/v2/bulk_snapshot/option/quote", root="SPY")
    fake.set("/v2/list/expirations", ["date"], [20251121], root="SPY")
    with pytest.raises(VendorError, match=r"570 LARGE_REQUEST.*20251121.*narrowest request"):
        make_source(server, attempts=5).fetch_options(DAY, ["SPY"], [SNAP])
    assert len(server.requests_to("/v2/bulk_snapshot/option/quote")) == 2


@pytest.mark.parametrize("status", [429, 503, 571, 474])
def test_transient_status_then_success(server, status):
    fake = FakeThetaTerminal(server)
    fake.set("/v2/hist/stock/ohlc", OHLC_FMT, bars(3), root="SPY", start_date=D, end_date=D, ivl=60000)
    if status == 429:
        server.throttle_next(1, retry_after="0")
    else:
        server.fail_next(1, status=status)
    table = make_source(server).fetch_stocks_1m(DAY, ["SPY"])
    assert table.num_rows == 3
    assert len(server.requests) == 2


def test_timeout_is_retried_then_reported(server):
    FakeThetaTerminal(server).set("/v2/hist/stock/ohlc", OHLC_FMT, bars(3), root="SPY")
    server.delay_next(2, seconds=1.5)
    with pytest.raises(VendorError, match="timeout"):
        make_source(server, attempts=2, timeout=0.2, deadline=2.0).fetch_stocks_1m(DAY, ["SPY"])
    assert len(server.requests) == 2


def test_persistent_failure_opens_the_breaker(server):
    FakeThetaTerminal(server).set("/v2/hist/stock/ohlc", OHLC_FMT, bars(3), root="SPY")
    server.fail_next(20, status=503)
    src = make_source(server, attempts=2, breaker=new_breaker(fail_max=2, reset_timeout=600))
    for _ in range(2):
        with pytest.raises(VendorError, match="503"):
            src.fetch_stocks_1m(DAY, ["SPY"])
    with pytest.raises(CircuitOpenError):
        src.fetch_stocks_1m(DAY, ["SPY"])
    assert len(server.requests) == 4  # the open breaker sent nothing


@pytest.mark.parametrize(
    ("status", "needle"),
    [(476, "keep one host string"), (471, "subscription"), (473, "INVALID_PARAMS")],
)
def test_fatal_status_names_endpoint_and_meaning(server, status, needle):
    server.fail_next(1, status=status, body="error")
    with pytest.raises(VendorError, match=needle) as info:
        make_source(server).fetch_stocks_1m(DAY, ["SPY"])
    assert "/v2/hist/stock/ohlc" in str(info.value) and info.value.status == status
    assert len(server.requests) == 1  # not retried


def test_no_data_is_an_empty_session(server):
    FakeThetaTerminal(server)  # nothing registered: every request answers 472
    src = make_source(server)
    with pytest.raises(EmptySession, match="no one-minute bars for SPY"):
        src.fetch_stocks_1m(DAY, ["SPY"])
    server.route(r"/v2/bulk_snapshot/option/.*", lambda req: (472, {}, "No data"))
    with pytest.raises(EmptySession, match="no option data for SPY"):
        src.fetch_options(DAY, ["SPY"], [SNAP])


def test_expired_next_page_names_the_status(server):
    first = {"header": {"next_page": f"{server.url}/v2/page/999", "format": QUOTE_FMT},
             "response": [{"ticks": [row(QUOTE_FMT, ms_of_day=et_ms(10), bid=1.0, ask=1.1, date=D)], "contract": C600}]}
    server.route(r"/v2/bulk_snapshot/option/quote", lambda req: first)
    FakeThetaTerminal(server)  # its page route answers 477 for a page it never issued
    with pytest.raises(VendorError, match="477 NO_PAGE_FOUND") as info:
        make_source(server).fetch_options(DAY, ["SPY"], [SNAP])
    assert "next_page" in str(info.value) or "/v2/page/999" in str(info.value)


# -- malformed payloads ------------------------------------------------------------------------


def test_tick_of_the_wrong_width_is_named(server):
    fake = FakeThetaTerminal(server)
    load_snapshots(fake)
    fake._answers["/v2/bulk_snapshot/option/quote"][0][2][0]["ticks"].append([1, 2, 3])
    with pytest.raises(PayloadError, match=r"/v2/bulk_snapshot/option/quote: response\[0\]\.ticks\[1\]"):
        make_source(server).fetch_options(DAY, ["SPY"], [SNAP])


def test_contract_without_strike_is_named():
    item = {"ticks": [], "contract": {"root": "SPY", "expiration": 20251121, "right": "C"}}
    with pytest.raises(PayloadError, match=r"response\[0\]\.contract lacks field 'strike'"):
        list(iter_bulk_rows(QUOTE_FMT, [item], "/v2/x"))


def test_bar_without_close_column_is_named(server):
    fmt = [c for c in OHLC_FMT if c != "close"]
    FakeThetaTerminal(server).set("/v2/hist/stock/ohlc", fmt, [[et_ms(9, 30), 1, 1, 1, 5, 1, D]])
    with pytest.raises(PayloadError, match="lacks column 'close'"):
        make_source(server).fetch_stocks_1m(DAY, ["SPY"])


def test_missing_header_is_a_payload_error(server):
    server.route(r"/v2/hist/stock/ohlc", lambda req: {"response": []})
    with pytest.raises(PayloadError, match="no 'header'"):
        make_source(server).fetch_stocks_1m(DAY, ["SPY"])


# -- encodings ---------------------------------------------------------------------------------


def test_ms_of_day_examples_worked_by_hand():
    assert et_ms_to_utc(20251121, 34_200_000, "t") == datetime(2025, 11, 21, 14, 30, tzinfo=UTC)  # EST
    assert et_ms_to_utc(20250715, 34_200_000, "t") == datetime(2025, 7, 15, 13, 30, tzinfo=UTC)  # EDT
    assert et_ms_to_utc(20250310, 57_600_000, "t") == datetime(2025, 3, 10, 20, 0, tzinfo=UTC)  # after DST start


@given(day=st.dates(date(2015, 1, 1), date(2030, 12, 31)), ms=st.integers(4 * 3_600_000, 20 * 3_600_000))
def test_ms_of_day_matches_pandas_localisation(day, ms):
    d = int(f"{day:%Y%m%d}")
    expected = (pd.Timestamp(day) + pd.Timedelta(milliseconds=ms)).tz_localize("America/New_York").tz_convert("UTC")
    assert et_ms_to_utc(d, ms, "t") == expected.to_pydatetime()


@given(dollars=st.integers(1, 10_000), tenth_cents=st.sampled_from([0, 500, 250, 125]))
def test_strike_is_thousandths_of_a_dollar(dollars, tenth_cents):
    raw = dollars * 1000 + tenth_cents
    item = {"ticks": [[0]], "contract": {"root": "X", "expiration": 20300118, "strike": raw, "right": "P"}}
    ((key, _),) = list(iter_bulk_rows(["ms_of_day"], [item], "/v2/x"))
    assert key == (date(2030, 1, 18), dollars + tenth_cents / 1000, "P")


# -- options, backfill -------------------------------------------------------------------------


def test_backfill_picks_the_rows_at_the_requested_instants(server):
    fake = FakeThetaTerminal(server)
    fake.set("/v2/list/expirations", ["date"], [20251114, 20251121, 20251128], root="SPY")
    grid = [et_ms(9, 30) + i * 900_000 for i in range(5)]  # 09:30 .. 10:30 ET
    for exp, c in ((20251121, C600), (20251128, C610)):
        q = [row(QUOTE_FMT, ms_of_day=m, bid=float(i), ask=i + 0.5, date=D) for i, m in enumerate(grid)]
        g = [row(ALL_GREEKS_FMT, ms_of_day=m, delta=i / 10, gamma=0.01 * i, vega=20.0, implied_vol=0.2,
                 underlying_price=600.0 + i, date=D) for i, m in enumerate(grid)]
        params = dict(root="SPY", exp=exp, start_date=D, end_date=D, ivl=900000)
        fake.set_bulk("/v2/bulk_hist/option/quote", QUOTE_FMT, [(c, q)], **params)
        fake.set_bulk("/v2/bulk_hist/option/all_greeks", ALL_GREEKS_FMT, [(c, g)], **params)
    fake.set_bulk("/v2/bulk_hist/option/open_interest", OI_FMT,
                  [(C600, [row(OI_FMT, ms_of_day=et_ms(6, 30), open_interest=4321, date=D)])],
                  root="SPY", exp=20251121, start_date=D, end_date=D)
    t1000, t1015 = datetime(2025, 11, 21, 15, 0, tzinfo=UTC), datetime(2025, 11, 21, 15, 15, tzinfo=UTC)
    src = make_source(server, now=datetime(2025, 12, 1, 12, tzinfo=UTC))
    table = src.fetch_options(DAY, ["SPY"], [t1000, t1015])
    rows = {(r["snapshot_time"], r["strike"]): r for r in table.to_pylist()}
    assert len(rows) == 4
    # 10:00 ET is the third grid row (index 2), 10:15 ET the fourth (index 3)
    a, b = rows[(t1000, 600.5)], rows[(t1015, 600.5)]
    assert (a["bid"], a["delta"], a["gamma"], a["underlying_price"]) == (2.0, 0.2, 0.02, 602.0)
    assert (b["bid"], b["delta"], b["underlying_price"]) == (3.0, 0.3, 603.0)
    assert a["timestamp"] == t1000 and a["vega"] == pytest.approx(0.2)
    assert a["open_interest"] == 4321 and rows[(t1000, 610.0)]["open_interest"] is None
    hist = server.requests_to(r"/v2/bulk_hist/option/quote")
    assert sorted(r.query["exp"] for r in hist) == ["20251121", "20251128"]  # 20251114 expired
    assert {(r.query["ivl"], r.query["start_date"], r.query["end_date"]) for r in hist} == {("900000", "20251121", "20251121")}
    assert not server.requests_to(r"/v2/bulk_snapshot/.*")


# -- stocks_1m ---------------------------------------------------------------------------------


def bars(n: int, start_ms: int = et_ms(9, 30)) -> list[list]:
    return [row(OHLC_FMT, ms_of_day=start_ms + i * 60_000, open=100.0 + i, high=101.0 + i, low=99.0 + i,
                close=100.5 + i, volume=1000 + i, count=10 + i, date=D) for i in range(n)]


def test_stock_bars_are_canonical(server):
    empty_minute = row(OHLC_FMT, ms_of_day=et_ms(9, 33), date=D)  # no trades: all zeros
    pre_open = row(OHLC_FMT, ms_of_day=et_ms(9, 29), open=1, high=1, low=1, close=1, volume=1, count=1, date=D)
    FakeThetaTerminal(server).set("/v2/hist/stock/ohlc", OHLC_FMT, [pre_open, *bars(3), empty_minute],
                                  root="SPY", start_date=D, end_date=D, ivl=60000)
    table = make_source(server).fetch_stocks_1m(DAY, ["SPY"])
    assert table.schema == STOCKS_1M_SCHEMA
    rows = table.to_pylist()
    assert [r["timestamp"] for r in rows] == [datetime(2025, 11, 21, 14, 30 + i, tzinfo=UTC) for i in range(3)]
    assert (rows[1]["open"], rows[1]["close"], rows[1]["volume"], rows[1]["trade_count"]) == (101.0, 101.5, 1001, 11)
    assert {r["vwap"] for r in rows} == {None}
    assert {(r["source"], r["et_offset"], r["symbol"]) for r in rows} == {("thetadata", -300, "SPY")}


@pytest.mark.live
def test_live_terminal_round_trip():  # pragma: no cover - needs a logged-in Theta Terminal
    """Opt in with -m live; reads yesterday's SPY bars from a local v2 terminal."""
    from archive_platform.calendar import previous_trading_day

    day = previous_trading_day(datetime.now(UTC).date())
    with ThetaDataSource(api="v2") as src:
        table = src.fetch_stocks_1m(day, ["SPY"])
    assert table.schema == STOCKS_1M_SCHEMA and table.num_rows > 300
