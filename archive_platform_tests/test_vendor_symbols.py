"""The US ticker grammar (``archive_platform.symbols``) and its use by every vendor client."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive_platform.symbols import SymbolError, normalise_us_ticker, normalise_us_tickers, us_ticker
from archive_platform.vendors.barchart import BarchartSource
from archive_platform.vendors.barchart import build_http as barchart_http
from archive_platform.vendors.http import VendorHttpClient, new_breaker
from archive_platform.vendors.polygon import PolygonSource, build_http
from archive_platform.vendors.thetadata import NO_DATA, ThetaDataSource
from archive_platform.vendors.uw import UnusualWhalesSource
from archive_platform.vendors.uw import build_http as uw_http
from archive_platform_tests.fakes.polygon import PolygonFake, minute_bar
from archive_platform_tests.fakes.server import FakeVendorServer

UTC = timezone.utc
DAY = date(2025, 1, 15)
KEY = "pgkey_Zx81LmQ02"


@pytest.mark.parametrize("symbol", ["SPY", "A", "GOOGL", "BRK.B", "BF.B", "HEI.A", "SPX", "VIX", "ABCDEF.AB"])
def test_valid_tickers(symbol):
    assert us_ticker(symbol) == symbol


@pytest.mark.parametrize(
    "symbol,why",
    [
        ("", "empty"),
        (".", "only dots"),
        ("..", "only dots"),
        ("-", "'-' is not allowed"),
        ("BRK-B", "'-' is not allowed"),
        ("A/B", "path separator '/'"),
        ("..\\x", "path separator"),
        ("SPY\x00", "control character"),
        ("'SPY'", "quote character"),
        ('SP"Y', "quote character"),
        ("SP Y", "whitespace"),
        ("ＳＰＹ", "non-ASCII character 'Ｓ' (U+FF33 FULLWIDTH LATIN CAPITAL LETTER S)"),
        ("SPY１", "non-ASCII digit"),  # full-width digit one
        ("SPY\u0661", "non-ASCII digit '١' (U+0661 ARABIC-INDIC DIGIT ONE)"),
        ("SP1", "digit '1'"),
        ("spy", "lowercase"),
        ("BRK.B.C", "more than one '.'"),
        (".B", "must sit between"),
        ("BRK.", "must sit between"),
        ("ABCDEFG", "longer than 6 letters"),
        ("BRK.ABC", "class suffix 'ABC' is longer than 2"),
    ],
)
def test_invalid_tickers_name_the_symbol_and_why(symbol, why):
    with pytest.raises(SymbolError) as ei:
        us_ticker(symbol)
    assert isinstance(ei.value, ValueError)
    assert repr(symbol) in str(ei.value) and why in str(ei.value)


def test_normalise_uppercases_ascii_only():
    assert normalise_us_ticker(" brk.b ") == "BRK.B"
    assert normalise_us_tickers(["spy", "SPY", "qqq"]) == ["SPY", "QQQ"]
    with pytest.raises(SymbolError, match="non-ASCII"):
        normalise_us_ticker("ﬀ")  # "ﬀ".upper() == "FF": must not sneak in as a ticker
    with pytest.raises(SymbolError, match="expected a string"):
        normalise_us_ticker(None)


@given(st.text(max_size=8))
def test_anything_accepted_is_plain_ascii_letters_and_one_dot(text):
    try:
        out = us_ticker(text)
    except SymbolError as exc:
        assert exc.reason
        return
    assert out.isascii() and out.replace(".", "").isalpha() and out.count(".") <= 1
    assert out.upper() == out and ".." not in out and not out.startswith(".")


# -- vendor clients refuse before any request --------------------------------------------------


@pytest.fixture
def polygon():
    fake = PolygonFake(api_key=KEY)
    with FakeVendorServer() as srv:
        fake.install(srv)
        yield fake, srv


def polygon_source(srv) -> PolygonSource:
    http = build_http(KEY, srv.url, breaker=new_breaker(), timeout=0.3, sleep=lambda s: None)
    return PolygonSource(KEY, srv.url, http=http, now=lambda: datetime(2025, 1, 15, 15, 0, tzinfo=UTC))


@pytest.mark.parametrize("bad", ["..", ".", "../../v2/aggs", "SPY/../..", "%2E%2E"])
def test_polygon_never_leaves_the_ticker_path(polygon, bad):
    # issue 11: ".." made the client send a keyed request to /v2/aggs/range/1/minute/...
    fake, srv = polygon
    fake.bars["SPY"] = [minute_bar(datetime(2025, 1, 15, 14, 30, tzinfo=UTC), 1, 2, 1, 2, 10)]
    with polygon_source(srv) as src, pytest.raises(SymbolError) as ei:
        src.fetch_stocks_1m(DAY, ["SPY", bad])
    assert repr(bad) in str(ei.value)
    assert srv.requests == []  # every symbol is checked before the first request
    with polygon_source(srv) as src:
        assert src.fetch_stocks_1m(DAY, ["spy"]).num_rows == 1
    assert [r.path.startswith("/v2/aggs/ticker/SPY/range/") for r in srv.requests] == [True]


def test_every_vendor_refuses_a_bad_symbol_without_a_request(tmp_path):
    snap = datetime(2025, 1, 15, 15, 0, tzinfo=UTC)
    with FakeVendorServer() as srv:
        uw = UnusualWhalesSource("k", srv.url, http=uw_http("k", srv.url, breaker=new_breaker(), limiter=None))
        bc = BarchartSource("k", srv.url, http=barchart_http("k", srv.url, breaker=new_breaker()))
        td = ThetaDataSource(srv.url, http=VendorHttpClient("thetadata", srv.url, empty_statuses={NO_DATA},
                                                            breaker=new_breaker()), clock=lambda: snap)
        calls = [
            lambda: uw.fetch_iv_rank(DAY, ["../x"], [snap]),
            lambda: uw.fetch_uw_flow(DAY, ["SPY,QQQ"]),
            lambda: bc.fetch_iv_rank(DAY, ["A&B"], [snap]),
            lambda: td.fetch_stocks_1m(DAY, ["SPY&root=QQQ"]),
            lambda: td.fetch_options(DAY, ["ＳＰＹ"], [snap]),
        ]
        for call in calls:
            with pytest.raises(SymbolError):
                call()
        assert srv.requests == []
