"""Audit of the ThetaData / Barchart / VIX clients against the vendors' documented behaviour.

Each test pins one documented fact the client once got wrong (the doc URL is in the test's
docstring) and runs against the loopback fakes, which speak the documented format.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from archive_platform.sources.base import EmptySession
from archive_platform.vendors.errors import VendorError
from archive_platform.vendors.http import VendorHttpClient
from archive_platform.vendors.resilience import new_breaker
from archive_platform.vendors.thetadata import NO_DATA, RETRY_STATUSES, ThetaDataSource
from archive_platform_tests.fakes import thetadata as v2fake
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.thetadata import FakeThetaTerminal
from archive_platform_tests.fakes.thetadata_v3 import FakeThetaTerminalV3, contract, ts

UTC = timezone.utc
DAY = date(2025, 11, 21)  # EST: 09:30 ET = 14:30 UTC
NOW = datetime(2025, 12, 1, 12, tzinfo=UTC)


@pytest.fixture
def server():
    with FakeVendorServer() as srv:
        yield srv


def theta(srv, *, api: str = "v3", attempts: int = 3, now: datetime = NOW) -> ThetaDataSource:
    http = VendorHttpClient(
        "thetadata", srv.url, timeout=2.0, max_attempts=attempts, retry_statuses=RETRY_STATUSES,
        empty_statuses={NO_DATA}, breaker=new_breaker(fail_max=50), sleep=lambda s: None,
    )
    return ThetaDataSource(srv.url, api=api, http=http, clock=lambda: now)


def v3_bars(n: int, volume: int) -> list[dict]:
    return [{"timestamp": ts(DAY, 9, 30 + i), "open": 100.0 + i, "high": 101.0 + i, "low": 99.0 + i,
             "close": 100.5 + i, "volume": volume + i, "count": 10 + i, "vwap": 100.2} for i in range(n)]


# -- ThetaData v3 stock bars: the consolidated tape, not Nasdaq Basic ---------------------------


def test_v3_stock_bars_ask_for_the_consolidated_venue_not_the_nasdaq_basic_default(server):
    """``/v3/stock/history/ohlc`` takes ``venue``: ``nqb`` (Nasdaq Basic, the DEFAULT) or
    ``utp_cta`` (merged UTP & CTA). Without it the bars carry one venue's volume, unlike v2's SIP
    bars (https://docs.thetadata.us/operations/stock_history_ohlc.html)."""
    fake = FakeThetaTerminalV3(server)
    fake.set("/v3/stock/history/ohlc", v3_bars(3, volume=200), symbol="SPY", venue="nqb")  # one venue
    fake.set("/v3/stock/history/ohlc", v3_bars(3, volume=5000), symbol="SPY", venue="utp_cta")  # SIP
    rows = theta(server).fetch_stocks_1m(DAY, ["SPY"]).to_pylist()
    assert [r["volume"] for r in rows] == [5000, 5001, 5002]
    assert [r["timestamp"] for r in rows] == [datetime(2025, 11, 21, 14, 30 + i, tzinfo=UTC) for i in range(3)]
    (req,) = server.requests_to(r"/v3/stock/history/ohlc")
    assert (req.query["venue"], req.query["date"], req.query["interval"]) == ("utp_cta", "20251121", "1m")


# -- ThetaData: 472 NO_DATA for one symbol of several is not a complete day -----------------------


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_one_symbol_without_bars_fails_the_day_instead_of_storing_it_without_that_symbol(server, api):
    """472 NO_DATA "There was no data found for the specified request"
    (https://docs.thetadata.us/Articles/Errors-Exchanges-Conditions/Error-Codes.html): for one
    symbol of several it is that symbol's empty day, which must not be stored as complete."""
    if api == "v3":
        FakeThetaTerminalV3(server).set("/v3/stock/history/ohlc", v3_bars(3, volume=5000), symbol="SPY")
    else:
        FakeThetaTerminal(server).set("/v2/hist/stock/ohlc", v2fake.OHLC_FMT, [
            v2fake.row(v2fake.OHLC_FMT, ms_of_day=v2fake.et_ms(9, 30 + i), open=1.0, high=1.0, low=1.0,
                       close=1.0, volume=10, count=1, date=20251121) for i in range(3)], root="SPY")
    src = theta(server, api=api)
    assert len(src.fetch_stocks_1m(DAY, ["SPY"])) == 3  # the symbol with data alone is fine
    with pytest.raises(EmptySession, match="no one-minute bars for QQQ on 2025-11-21"):
        src.fetch_stocks_1m(DAY, ["SPY", "QQQ"])
    sym = "symbol" if api == "v3" else "root"
    assert [r.query[sym] for r in server.requests] == ["SPY", "SPY", "QQQ"]


def test_one_underlying_without_options_fails_the_snapshot(server):
    """As above for the option chains: SPY answers, QQQ answers 472 NO_DATA on every endpoint."""
    fake = FakeThetaTerminalV3(server)
    snap = datetime(2025, 11, 21, 15, tzinfo=UTC)  # 10:00 ET
    c = contract(DAY, 600.5, "C")
    fake.set("/v3/option/snapshot/quote", [{**c, "timestamp": ts(DAY, 9, 59, 58), "bid": 5.1, "ask": 5.3}],
             symbol="SPY")
    fake.set("/v3/option/snapshot/greeks/all", [{**c, "timestamp": ts(DAY, 9, 59, 58), "delta": 0.5,
                                                "implied_vol": 0.18, "underlying_price": 601.0}], symbol="SPY")
    src = theta(server, now=snap)
    (row,) = src.fetch_options(DAY, ["SPY"], [snap]).to_pylist()
    assert (row["strike"], row["bid"], row["underlying_price"]) == (600.5, 5.1, 601.0)
    with pytest.raises(EmptySession, match="no option data for QQQ on 2025-11-21"):
        src.fetch_options(DAY, ["SPY", "QQQ"], [snap])


# -- ThetaData: max_dte bounds a live snapshot whether or not the terminal answered 570 ---------


@pytest.mark.parametrize("too_large", [False, True])
def test_max_dte_bounds_the_live_chain_whether_or_not_the_terminal_narrowed_it(server, too_large):
    """``expiration=*`` answers every expiration; on 570 LARGE_REQUEST the client narrows to the
    listed expirations within ``max_dte``
    (https://docs.thetadata.us/Articles/Errors-Exchanges-Conditions/Error-Codes.html).
    The stored chain must be the same either way: the near expiry only."""
    fake = FakeThetaTerminalV3(server)
    snap = datetime(2025, 11, 21, 15, tzinfo=UTC)
    near, far = date(2025, 11, 21), date(2025, 12, 19)
    fake.set("/v3/option/list/expirations", [{"expiration": near.isoformat()}, {"expiration": far.isoformat()}],
             symbol="SPY")
    for path, extra in (("/v3/option/snapshot/quote", {"bid": 1.0, "ask": 1.2}),
                        ("/v3/option/snapshot/greeks/all", {"delta": 0.5, "underlying_price": 600.0})):
        rows = {e: [{**contract(e, 600.0, "C"), "timestamp": ts(DAY, 9, 59), **extra}] for e in (near, far)}
        fake.set(path, rows[near] + rows[far], symbol="SPY", expiration="*")
        for e in (near, far):
            fake.set(path, rows[e], symbol="SPY", expiration=f"{e:%Y%m%d}")
        if too_large:
            fake.too_large(path, symbol="SPY", expiration="*")
    http = VendorHttpClient("thetadata", server.url, timeout=2.0, max_attempts=2, retry_statuses=RETRY_STATUSES,
                            empty_statuses={NO_DATA}, breaker=new_breaker(fail_max=50), sleep=lambda s: None)
    src = ThetaDataSource(server.url, http=http, clock=lambda: snap, max_dte=7)
    rows = src.fetch_options(DAY, ["SPY"], [snap]).to_pylist()
    assert [(r["expiry"], r["strike"], r["bid"], r["delta"]) for r in rows] == [(near, 600.0, 1.0, 0.5)]
    narrowed = {r.query["expiration"] for r in server.requests_to(r"/v3/option/snapshot/.*")} - {"*"}
    assert narrowed == ({"20251121"} if too_large else set())  # the far expiry is never asked for


# -- ThetaData v2: a next_page that does not exist yet is asked again --------------------------


def test_a_next_page_not_produced_yet_is_retried_and_the_chain_completed(server):
    """v2 pagination: "You will get 477 errors if you try to call a page that was discarded or
    that does not exist yet" (https://http-docs.thetadata.us/Articles/Performance-And-Tuning/Pagination.html):
    a 477 on a next_page the terminal is still producing is retried, not the end of the fetch."""
    fake = FakeThetaTerminal(server, page_size=1)
    bars = [v2fake.row(v2fake.OHLC_FMT, ms_of_day=v2fake.et_ms(9, 30 + i), open=1.0 + i, high=2.0 + i, low=0.5,
                       close=1.5 + i, volume=10 + i, count=1, date=20251121) for i in range(3)]
    fake.set("/v2/hist/stock/ohlc", v2fake.OHLC_FMT, bars, root="SPY")
    fake.pages_not_ready(1)  # the first next_page is asked for before the terminal has it
    rows = theta(server, api="v2", attempts=3).fetch_stocks_1m(DAY, ["SPY"]).to_pylist()
    assert [(r["open"], r["volume"]) for r in rows] == [(1.0, 10), (2.0, 11), (3.0, 12)]
    pages = [r.path for r in server.requests_to(r"/v2/page/\d+")]
    assert len(pages) == 3 and pages[0] == pages[1]  # the same page asked twice, then the last one


def test_an_expired_next_page_restarts_the_request_once_without_doubling_rows(server):
    """Pages are discarded once older than HTTP_PAGE_EXPIRE and then answer 477 for good
    (https://http-docs.thetadata.us/Articles/Performance-And-Tuning/Pagination.html): after the
    retries the whole request is asked again from its first page; the rows of the abandoned
    first attempt are not kept (no duplicate minutes)."""
    fake = FakeThetaTerminal(server, page_size=2)
    bars = [v2fake.row(v2fake.OHLC_FMT, ms_of_day=v2fake.et_ms(9, 30 + i), open=1.0 + i, high=2.0 + i, low=0.5,
                       close=1.5 + i, volume=10 + i, count=1, date=20251121) for i in range(5)]
    fake.set("/v2/hist/stock/ohlc", v2fake.OHLC_FMT, bars, root="SPY")
    fake.pages_not_ready(3)  # = the client's attempts: the first next_page never comes
    rows = theta(server, api="v2", attempts=3).fetch_stocks_1m(DAY, ["SPY"]).to_pylist()
    assert [r["volume"] for r in rows] == [10, 11, 12, 13, 14]
    assert len(server.requests_to(r"/v2/hist/stock/ohlc")) == 2  # the first request, then once again
    assert len(server.requests_to(r"/v2/page/\d+")) == 3 + 2  # 3 refused tries, then both pages


def test_a_next_page_that_never_comes_fails_after_one_restart(server):
    """As above, but the pages of the second attempt are gone too: an error naming 477, not a
    day stored from the first page only."""
    fake = FakeThetaTerminal(server, page_size=2)
    bars = [v2fake.row(v2fake.OHLC_FMT, ms_of_day=v2fake.et_ms(9, 30 + i), open=1.0, high=1.0, low=1.0,
                       close=1.0, volume=10, count=1, date=20251121) for i in range(3)]
    fake.set("/v2/hist/stock/ohlc", v2fake.OHLC_FMT, bars, root="SPY")
    fake.pages_not_ready(100)
    with pytest.raises(VendorError, match="477 NO_PAGE_FOUND"):
        theta(server, api="v2", attempts=2).fetch_stocks_1m(DAY, ["SPY"])
    assert len(server.requests_to(r"/v2/hist/stock/ohlc")) == 2
    assert len(server.requests_to(r"/v2/page/\d+")) == 4
