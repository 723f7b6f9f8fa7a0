"""Polygon client against a loopback fake speaking Polygon's documented format."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta, timezone

import pytest

from archive_platform.schemas import OPTIONS_SCHEMA, STOCKS_1M_SCHEMA
from archive_platform.sources.base import EmptySession, SnapshotNotReproducible
from archive_platform.vendors.http import CircuitOpenError, PayloadError, VendorError, new_breaker
from archive_platform.vendors.polygon import PolygonSource, build_http
from archive_platform_tests.fakes.polygon import PolygonFake, minute_bar, option_snapshot
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.clock import Clock

KEY = "pgkey_Zx81LmQ02"
DAY = date(2025, 1, 15)  # EST: session 14:30-21:00 UTC
UTC = timezone.utc
EXP = date(2025, 1, 17)
NOW = datetime(2025, 1, 15, 15, 0, 20, tzinfo=UTC)


def at(h: int, m: int) -> datetime:
    return datetime(2025, 1, 15, h, m, tzinfo=UTC)




@pytest.fixture
def env():
    fake = PolygonFake(api_key=KEY)
    with FakeVendorServer() as srv:
        fake.install(srv)
        yield fake, srv


def source(srv, *, key=KEY, sleeps=None, breaker=None, timeout=0.3, **kw):
    http = build_http(
        key, srv.url, breaker=breaker or new_breaker(), timeout=timeout,
        sleep=(sleeps.append if sleeps is not None else lambda s: None), **kw,
    )
    return PolygonSource(key, srv.url, http=http, now=lambda: NOW)


def bars(n: int, start: datetime = at(14, 30)) -> list[dict]:
    return [
        minute_bar(start + timedelta(minutes=i), 100 + i, 101 + i, 99 + i, 100.5 + i, 1000 + i, vw=100.2 + i, n=50)
        for i in range(n)
    ]


def test_normal_day_keeps_regular_session_bars(env):
    fake, srv = env
    fake.bars["SPY"] = [minute_bar(at(14, 29), 1, 1, 1, 1, 5)] + bars(3) + [
        minute_bar(at(21, 0), 1, 1, 1, 1, 5),  # first after-hours bar (the close is exclusive)
        minute_bar(at(20, 59), 2, 3, 1, 2, 1234.6),  # last regular bar, fractional adjusted volume
    ]
    with source(srv) as src:
        t = src.fetch_stocks_1m(DAY, ["spy"])
    assert t.schema.equals(STOCKS_1M_SCHEMA, check_metadata=False)
    rows = t.to_pylist()
    assert [r["timestamp"] for r in rows] == [at(14, 30), at(14, 31), at(14, 32), at(20, 59)]
    first = rows[0]
    assert (first["open"], first["high"], first["low"], first["close"]) == (100, 101, 99, 100.5)
    assert first["volume"] == 1000 and first["vwap"] == 100.2 and first["trade_count"] == 50
    assert rows[-1]["volume"] == 1235 and rows[-1]["vwap"] is None and rows[-1]["trade_count"] is None
    assert {r["symbol"] for r in rows} == {"SPY"} and {r["et_offset"] for r in rows} == {-300}
    (req,) = srv.requests
    assert req.path == "/v2/aggs/ticker/SPY/range/1/minute/2025-01-15/2025-01-15"
    assert req.query == {"adjusted": "true", "sort": "asc", "limit": "50000", "apiKey": KEY}


def test_pagination_followed_to_the_end_with_key_reappended(env):
    fake, srv = env
    fake.bars["SPY"] = bars(8)
    fake.bars_page_size = 3
    with source(srv) as src:
        fake.url = "https://api.massive.com"  # real next_url links point at the new host
        t = src.fetch_stocks_1m(DAY, ["SPY"])
    assert t.num_rows == 8
    assert len(srv.requests) == 3
    for req in srv.requests[1:]:
        assert req.query["apiKey"] == KEY and "cursor" in req.query
        assert req.path.startswith("/v2/aggs/ticker/SPY/range/1/minute/")


def test_options_chain_multi_page_with_missing_greeks(env):
    fake, srv = env
    qns = int(at(14, 59).timestamp() * 1e9)
    fake.chains["SPY"] = [
        option_snapshot("SPY", EXP, "C", 590.0, underlying_price=588.2, bid=1.1, ask=1.2, last=1.15,
                        greeks={"delta": 0.45, "gamma": 0.05, "theta": -0.3, "vega": 0.2}, quote_ns=qns),
        option_snapshot("SPY", EXP, "P", 590.0, underlying_price=588.2, bid=2.9, ask=3.0),
        option_snapshot("SPY", EXP, "C", 700.0, underlying_price=588.2, bid=0.0, ask=0.01,
                        volume=None, open_interest=None, iv=None),
    ]
    fake.chain_page_size = 2
    with source(srv) as src:
        t = src.fetch_options(DAY, ["SPY"], [at(15, 0)])
    assert t.schema.equals(OPTIONS_SCHEMA, check_metadata=False)
    rows = {(r["strike"], r["right"]): r for r in t.to_pylist()}
    assert len(rows) == 3 and len(srv.requests) == 2
    c = rows[(590.0, "C")]
    assert (c["bid"], c["ask"], c["last"], c["delta"], c["gamma"]) == (1.1, 1.2, 1.15, 0.45, 0.05)
    assert c["timestamp"] == at(14, 59) and c["snapshot_time"] == at(15, 0)
    assert c["underlying_price"] == 588.2 and c["expiry"] == EXP and c["iv"] == 0.25
    p = rows[(590.0, "P")]
    assert p["delta"] is None and p["gamma"] is None and p["last"] is None
    assert p["timestamp"] == NOW  # no quote/trade time: the fetch instant
    far = rows[(700.0, "C")]
    assert far["open_interest"] is None and far["volume"] is None and far["iv"] is None
    assert srv.requests[0].query == {"limit": "250", "apiKey": KEY}


def test_past_snapshot_is_not_reproducible(env):
    _, srv = env
    with source(srv) as src, pytest.raises(SnapshotNotReproducible, match="live only"):
        src.fetch_options(DAY, ["SPY"], [at(14, 30)])
    assert srv.requests == []
    assert src.can_backfill("stocks_1m") and not src.can_backfill("options")


def test_429_retry_after_then_success(env):
    fake, srv = env
    fake.bars["SPY"] = bars(2)
    sleeps: list[float] = []
    srv.throttle_next(2, retry_after="12")
    with source(srv, sleeps=sleeps) as src:
        assert src.fetch_stocks_1m(DAY, ["SPY"]).num_rows == 2
    assert sleeps == [12.0, 12.0]


def test_5xx_then_success_and_timeout_then_success(env):
    fake, srv = env
    fake.bars["SPY"] = bars(2)
    srv.fail_next(1, status=504)
    srv.delay_next(1, seconds=1.0)
    with source(srv, timeout=0.2, deadline=2.0) as src:  # a deadline with room for a retry
        assert src.fetch_stocks_1m(DAY, ["SPY"]).num_rows == 2
    assert len(srv.requests) == 3


def test_second_page_failing_fails_the_fetch(env):
    fake, srv = env
    fake.bars["SPY"] = bars(6)
    fake.bars_page_size = 3
    real = fake._aggs
    fake_calls = []

    def broken(req):
        fake_calls.append(req)
        return real(req) if len(fake_calls) == 1 else (500, {}, {"status": "ERROR"})

    srv.route(r"/v2/aggs/ticker/(?P<t>SPY)/range/1/minute/(?P<frm>[^/]+)/(?P<to>[^/]+)", broken, override=True)
    with source(srv, max_attempts=3) as src, pytest.raises(VendorError, match="3 attempt"):
        src.fetch_stocks_1m(DAY, ["SPY"])
    assert len(fake_calls) == 4


def test_breaker_opens_and_half_opens(env):
    fake, srv = env
    fake.bars["SPY"] = bars(1)
    clock = Clock()
    breaker = new_breaker(fail_max=1, reset_timeout=10.0, clock=clock)
    srv.fail_next(2, status=503)
    with source(srv, breaker=breaker, max_attempts=2) as src:
        with pytest.raises(VendorError):
            src.fetch_stocks_1m(DAY, ["SPY"])
        with pytest.raises(CircuitOpenError):
            src.fetch_stocks_1m(DAY, ["SPY"])
        assert len(srv.requests) == 2
        clock.now = 10.0
        assert src.fetch_stocks_1m(DAY, ["SPY"]).num_rows == 1


@pytest.mark.parametrize("status,hint", [(400, "parameters"), (401, "POLYGON_API_KEY"),
                                         (403, "POLYGON_API_KEY"), (404, "symbol/path")])
def test_client_errors_fail_at_once_without_the_key(env, status, hint):
    _, srv = env
    srv.fail_next(1, status=status, body={"status": "NOT_AUTHORIZED", "message": "You are not entitled"})
    with source(srv) as src, pytest.raises(VendorError) as ei:
        src.fetch_stocks_1m(DAY, ["SPY"])
    msg = str(ei.value)
    assert len(srv.requests) == 1 and ei.value.status == status
    assert "polygon" in msg and "/v2/aggs/ticker/SPY/range/1/minute" in msg and hint in msg
    assert "apiKey=REDACTED" in msg and KEY not in msg


def test_wrong_key_gets_401(env):
    fake, srv = env
    fake.bars["SPY"] = bars(1)
    with source(srv, key="pgkey_wrong_111") as src, pytest.raises(VendorError, match="HTTP 401.*Unknown API Key"):
        src.fetch_stocks_1m(DAY, ["SPY"])


def test_missing_and_mistyped_fields_name_field_and_row(env):
    fake, srv = env
    fake.bars["SPY"] = bars(3)
    del fake.bars["SPY"][2]["c"]
    fake.bars["QQQ"] = bars(2)
    fake.bars["QQQ"][1]["o"] = [101]
    with source(srv) as src:
        with pytest.raises(PayloadError, match=r"row 2: missing field 'c'"):
            src.fetch_stocks_1m(DAY, ["SPY"])
        with pytest.raises(PayloadError, match=r"row 1: field 'o' has list \[101\], expected decimal"):
            src.fetch_stocks_1m(DAY, ["QQQ"])


def test_option_row_missing_strike_is_named(env):
    fake, srv = env
    fake.chains["SPY"] = [option_snapshot("SPY", EXP, "C", 590.0, underlying_price=588.0, bid=1, ask=2)]
    del fake.chains["SPY"][0]["details"]["strike_price"]
    with source(srv) as src, pytest.raises(PayloadError, match=r"row 0: missing field 'strike_price'"):
        src.fetch_options(DAY, ["SPY"], [at(15, 0)])


def test_a_contract_without_the_underlying_price_takes_it_from_break_even_or_the_chain(env):
    # the API marks underlying_asset.price optional (required: ticker, change_to_break_even)
    fake, srv = env
    fake.chains["SPY"] = [
        option_snapshot("SPY", EXP, "C", 590.0, underlying_price=588.2, bid=1.1, ask=1.2),
        option_snapshot("SPY", EXP, "P", 590.0, underlying_price=588.2, bid=2.9, ask=3.0),
        option_snapshot("SPY", EXP, "C", 600.0, underlying_price=588.2, bid=0.5, ask=0.6),
    ]
    fake.chains["SPY"][1]["underlying_asset"] = {"ticker": "SPY", "change_to_break_even": -1.25}
    fake.chains["SPY"][1]["break_even_price"] = 586.95
    fake.chains["SPY"][2]["underlying_asset"] = {"ticker": "SPY", "change_to_break_even": 12.35}
    fake.chains["SPY"][2].pop("break_even_price", None)
    with source(srv) as src:
        rows = {(r["strike"], r["right"]): r for r in src.fetch_options(DAY, ["SPY"], [at(15, 0)]).to_pylist()}
    assert rows[(590.0, "P")]["underlying_price"] == 588.2  # 586.95 - (-1.25)
    assert rows[(600.0, "C")]["underlying_price"] == 588.2  # no break-even price: the chain's
    fake.chains["SPY"] = [fake.chains["SPY"][2]]  # no price anywhere: a clear error
    with source(srv) as src, pytest.raises(PayloadError, match=r"row 0: missing field 'underlying_asset.price'"):
        src.fetch_options(DAY, ["SPY"], [at(15, 0)])


def test_an_index_chain_is_also_asked_for_under_its_i_prefixed_ticker(env):
    fake, srv = env
    fake.chains["I:SPX"] = [option_snapshot("SPX", EXP, "C", 6000.0, underlying_price=5990.5, bid=10, ask=11)]
    with source(srv) as src:
        rows = src.fetch_options(DAY, ["SPX"], [at(15, 0)]).to_pylist()
    assert [(r["symbol"], r["strike"], r["underlying_price"]) for r in rows] == [("SPX", 6000.0, 5990.5)]
    assert [r.path for r in srv.requests] == ["/v3/snapshot/options/SPX", "/v3/snapshot/options/I:SPX"]
    with source(srv) as src, pytest.raises(EmptySession):  # a stock with no chain is not retried
        src.fetch_options(DAY, ["AAPL"], [at(15, 0)])
    assert srv.requests[-1].path == "/v3/snapshot/options/AAPL"


def test_error_status_in_a_200_body(env):
    _, srv = env
    srv.route(r"/v2/aggs/.*", lambda r: {"status": "ERROR", "error": "bad things"}, override=True)
    with source(srv) as src, pytest.raises(PayloadError, match="'status' is 'ERROR'"):
        src.fetch_stocks_1m(DAY, ["SPY"])


def test_empty_session_is_distinguished(env):
    fake, srv = env
    fake.bars["SPY"] = [minute_bar(at(13, 0), 1, 1, 1, 1, 1)]  # pre-market only
    with source(srv) as src:
        with pytest.raises(EmptySession, match="no regular-session minute bars for SPY"):
            src.fetch_stocks_1m(DAY, ["SPY"])
        with pytest.raises(EmptySession, match="no minute bars|no regular-session"):
            src.fetch_stocks_1m(DAY, ["NOPE"])
        with pytest.raises(EmptySession, match="no option contracts for SPY"):
            src.fetch_options(DAY, ["SPY"], [at(15, 0)])


def test_key_never_leaks(env, caplog):
    caplog.set_level(logging.DEBUG)
    fake, srv = env
    fake.bars["SPY"] = bars(4)
    fake.bars_page_size = 2
    srv.fail_next(1, status=500, body=f"oops for apiKey={KEY}")
    with source(srv) as src:
        t = src.fetch_stocks_1m(DAY, ["SPY"])
        srv.fail_next(1, status=403, body=f"key {KEY} not entitled")
        with pytest.raises(VendorError) as ei:
            src.fetch_stocks_1m(DAY, ["SPY"])
    assert KEY not in str(ei.value) and KEY not in ei.value.endpoint
    assert all(KEY not in rec.getMessage() for rec in caplog.records)
    assert any("apiKey=REDACTED" in rec.getMessage() for rec in caplog.records)
    assert KEY not in str(t.to_pylist())


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("POLYGON_API_KEY"), reason="POLYGON_API_KEY not set")
def test_live_minute_bars_recent_session():
    from archive_platform.calendar import previous_trading_day

    day = previous_trading_day(datetime.now(UTC).date())
    with PolygonSource(os.environ["POLYGON_API_KEY"]) as src:
        t = src.fetch_stocks_1m(day, ["SPY"])
    assert t.num_rows > 200 and t.schema.equals(STOCKS_1M_SCHEMA, check_metadata=False)
