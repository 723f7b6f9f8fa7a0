"""Unusual Whales client against a loopback fake speaking UW's documented format."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_platform.schemas import UW_FLOW_SCHEMA, IV_RANK_SCHEMA
from archive_platform.sources.base import EmptySession
from archive_platform.vendors.http import CircuitOpenError, PayloadError, VendorError, new_breaker
from archive_platform.vendors.occ import format_occ, parse_occ
from archive_platform.vendors.uw import UnusualWhalesSource, build_http
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.uw import UnusualWhalesFake, flow_alert
from archive_platform_tests.fakes.clock import Clock

KEY = "uwkey_3c9b1f2e7a"
DAY = date(2025, 1, 15)  # a Wednesday in EST: session 14:30-21:00 UTC
UTC = timezone.utc
EXP = date(2025, 1, 17)


def at(h: int, m: int, s: int = 0) -> datetime:
    return datetime(2025, 1, 15, h, m, s, tzinfo=UTC)




@pytest.fixture
def env():
    fake = UnusualWhalesFake(api_key=KEY)
    with FakeVendorServer() as srv:
        fake.install(srv)
        yield fake, srv


def source(srv, *, key=KEY, page_limit=200, sleeps=None, breaker=None, timeout=0.3, **kw):
    http = build_http(
        key,
        srv.url,
        breaker=breaker or new_breaker(),
        limiter=None,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        timeout=timeout,
        **kw,
    )
    return UnusualWhalesSource(key, srv.url, http=http, page_limit=page_limit)


def alert(ticker, ts, i, **kw):
    kw.setdefault("right", "C")
    kw.setdefault("strike", 100.0)
    kw.setdefault("total_premium", 50000.0)
    kw.setdefault("ask_prem", 40000.0)
    kw.setdefault("bid_prem", 10000.0)
    return flow_alert(ticker, ts, alert_id=kw.pop("alert_id", f"id-{i}"), expiry=EXP, **kw)


def test_normal_day_maps_alerts_to_canonical_rows(env):
    fake, srv = env
    fake.alerts += [
        alert("SPY", at(15, 0), 1, right="C", ask_prem=40000, bid_prem=10000),
        alert("SPY", at(16, 0), 2, right="P", strike=95.5, ask_prem=30000, bid_prem=5000, ts_style="z"),
        alert("QQQ", at(17, 0), 3, right="P", ask_prem=1000, bid_prem=9000, alert_id=None, iv_end=None),
        alert("QQQ", at(18, 0), 4, ask_prem=5000, bid_prem=5000),
        alert("SPY", at(4, 0), 5),  # 23:00 ET on the 14th: another market date
        alert("IWM", at(15, 0), 6),  # not requested
    ]
    with source(srv) as src:
        t = src.fetch_uw_flow(DAY, ["spy", "QQQ"])
    assert t.schema.equals(UW_FLOW_SCHEMA, check_metadata=False)
    rows = t.to_pylist()
    assert [(r["symbol"], r["timestamp"]) for r in rows] == [
        ("QQQ", at(17, 0)), ("QQQ", at(18, 0)), ("SPY", at(15, 0)), ("SPY", at(16, 0)),
    ]
    q_noid, q_eq, s_call, s_put = rows
    assert s_call["alert_id"] == "id-1" and s_call["option_type"] == "CALL"
    assert s_call["sentiment"] == "BULLISH"  # calls bought at the ask
    assert s_put["sentiment"] == "BEARISH" and s_put["strike"] == 95.5  # puts bought at the ask
    assert q_noid["sentiment"] == "BULLISH"  # puts sold at the bid
    assert q_eq["sentiment"] == "NEUTRAL"
    assert q_noid["alert_id"] == "QQQ250117P00100000@2025-01-15T17:00:00+00:00"
    assert q_noid["iv"] is None and s_call["iv"] == pytest.approx(0.31)
    assert s_call["premium"] == 50000.0 and s_call["ask_side_premium"] == 40000.0
    assert s_call["volume"] == 500 and s_call["size"] == 300 and s_call["open_interest"] == 100
    assert s_call["volume_oi_ratio"] == 5.0 and s_call["trade_count"] == 7
    assert s_call["expiration"] == EXP and s_call["has_sweep"] is True and s_call["is_unusual"]
    assert {r["et_offset"] for r in rows} == {-300} and {r["source"] for r in rows} == {"unusual_whales"}
    (req,) = srv.requests
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.query["ticker_symbol"] == "QQQ,SPY" and req.query["limit"] == "200"


def test_since_until_bounds(env):
    fake, srv = env
    fake.alerts += [alert("SPY", at(15, m), m) for m in range(0, 50, 10)]
    with source(srv) as src:
        t = src.fetch_uw_flow(DAY, ["SPY"], since=at(15, 10), until=at(15, 30))
    assert t.column("timestamp").to_pylist() == [at(15, 20), at(15, 30)]  # since exclusive


def test_multi_page_walk_back_to_window_start(env):
    fake, srv = env
    fake.alerts += [alert("SPY", at(14, 30) + timedelta(minutes=25 * i), i) for i in range(16)]
    # 23:00 ET on the 14th and later: the previous market date
    fake.alerts += [alert("SPY", at(4, 0) + timedelta(minutes=i), 100 + i) for i in range(40)]
    with source(srv, page_limit=3) as src:
        t = src.fetch_uw_flow(DAY, ["SPY"])
    assert t.column("alert_id").to_pylist() == [f"id-{i}" for i in range(16)]
    cursors = [int(r.query["older_than"]) for r in srv.requests]
    assert cursors == sorted(cursors, reverse=True)
    # stops once a page reaches before the market date instead of walking the 40 older alerts
    assert len(srv.requests) <= 16 // 2 + 2


def test_alerts_sharing_an_instant_across_a_page_boundary_are_kept(env):
    # The fake's older_than is strict: paging from the oldest instant alone would lose id-2.
    fake, srv = env
    fake.alerts += [alert("SPY", at(15, 5), 0), alert("SPY", at(15, 0), 1), alert("SPY", at(15, 0), 2)]
    fake.alerts += [alert("SPY", at(4, 0), 9)]  # 23:00 ET on the 14th
    with source(srv, page_limit=2) as src:
        t = src.fetch_uw_flow(DAY, ["SPY"])
    assert sorted(t.column("alert_id").to_pylist()) == ["id-0", "id-1", "id-2"]


def test_429_with_retry_after_then_success(env):
    fake, srv = env
    fake.alerts.append(alert("SPY", at(15, 0), 1))
    sleeps: list[float] = []
    srv.throttle_next(1, retry_after="3")
    with source(srv, sleeps=sleeps) as src:
        assert src.fetch_uw_flow(DAY, ["SPY"]).num_rows == 1
    assert sleeps == [3.0] and len(srv.requests) == 2


def test_429_without_retry_after_waits_for_uws_minute_window_reset(env):
    fake, srv = env
    fake.alerts.append(alert("SPY", at(15, 0), 1))
    sleeps: list[float] = []
    srv.fail_next(1, 429, {"message": "rate limited"}, {"x-uw-req-per-minute-reset": "45000"})
    with source(srv, sleeps=sleeps) as src:
        assert src.fetch_uw_flow(DAY, ["SPY"]).num_rows == 1
    assert sleeps == [45.0] and len(srv.requests) == 2


def test_5xx_then_success(env):
    fake, srv = env
    fake.alerts.append(alert("SPY", at(15, 0), 1))
    srv.fail_next(2, status=500, body="Something went wrong")
    with source(srv) as src:
        assert src.fetch_uw_flow(DAY, ["SPY"]).num_rows == 1
    assert len(srv.requests) == 3


def test_timeout_then_success_and_persistent_timeout(env):
    fake, srv = env
    fake.alerts.append(alert("SPY", at(15, 0), 1))
    srv.delay_next(1, seconds=1.0)
    with source(srv, timeout=0.2, deadline=2.0) as src:  # a deadline with room for a retry
        assert src.fetch_uw_flow(DAY, ["SPY"]).num_rows == 1
    srv.delay_next(2, seconds=1.0)
    with source(srv, timeout=0.2, deadline=2.0, max_attempts=2) as src, pytest.raises(VendorError, match="timeout"):
        src.fetch_uw_flow(DAY, ["SPY"])


def test_a_page_failing_after_retries_fails_the_whole_fetch(env):
    fake, srv = env
    fake.alerts += [alert("SPY", at(15, i), i) for i in range(6)]
    with source(srv, page_limit=2, max_attempts=2) as src:
        first = src.http.get  # let the first page through, then fail every later one
        calls = []

        def flaky(path, params=None):
            calls.append(path)
            if len(calls) == 2:
                srv.fail_next(10, status=503)
            return first(path, params)

        src.http.get = flaky
        with pytest.raises(VendorError, match="503"):
            src.fetch_uw_flow(DAY, ["SPY"])


def test_persistent_failure_opens_breaker_then_half_opens(env):
    fake, srv = env
    fake.alerts.append(alert("SPY", at(15, 0), 1))
    clock = Clock()
    breaker = new_breaker(fail_max=2, reset_timeout=30.0, clock=clock)
    srv.fail_next(4, status=502)
    with source(srv, breaker=breaker, max_attempts=2) as src:
        for _ in range(2):
            with pytest.raises(VendorError):
                src.fetch_uw_flow(DAY, ["SPY"])
        n = len(srv.requests)
        with pytest.raises(CircuitOpenError, match="unusual_whales"):
            src.fetch_uw_flow(DAY, ["SPY"])
        assert len(srv.requests) == n
        clock.now += 30.0
        assert src.fetch_uw_flow(DAY, ["SPY"]).num_rows == 1
        assert breaker.current_state == "closed"


def test_wrong_key_fails_at_once_naming_vendor_endpoint_and_env_var(env):
    _, srv = env
    sleeps: list[float] = []
    with source(srv, key="uwkey_wrong_0000", sleeps=sleeps) as src, pytest.raises(VendorError) as ei:
        src.fetch_uw_flow(DAY, ["SPY"])
    msg = str(ei.value)
    assert ei.value.status == 401 and sleeps == [] and len(srv.requests) == 1
    assert "unusual_whales" in msg and "/api/option-trades/flow-alerts" in msg
    assert "UW_API_KEY" in msg and "uwkey_wrong_0000" not in msg


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_are_not_retried(env, status):
    _, srv = env
    srv.fail_next(1, status=status, body={"msg": "Invalid path input"})
    with source(srv) as src, pytest.raises(VendorError) as ei:
        src.fetch_iv_rank(DAY, ["SPY"], [at(21, 0)])
    assert ei.value.status == status and len(srv.requests) == 1
    assert "/api/stock/SPY/iv-rank" in str(ei.value) and KEY not in str(ei.value)


def test_page_limit_is_capped_at_200():
    with pytest.raises(ValueError, match="1..200"):
        UnusualWhalesSource(KEY, page_limit=500)


def test_missing_field_names_field_and_row(env):
    fake, srv = env
    fake.alerts += [alert("SPY", at(15, 1), 1), alert("SPY", at(15, 0), 2)]
    del fake.alerts[1]["total_premium"]
    with source(srv) as src, pytest.raises(PayloadError) as ei:
        src.fetch_uw_flow(DAY, ["SPY"])
    msg = str(ei.value)
    assert "'total_premium'" in msg and "row 1" in msg and "id-2" in msg


def test_wrong_type_names_field_and_row(env):
    fake, srv = env
    fake.alerts.append(alert("SPY", at(15, 0), 1))
    fake.alerts[0]["volume"] = "5.5"  # a count that is not a whole number
    with source(srv) as src, pytest.raises(PayloadError, match=r"row 0: field 'volume' has str '5.5', expected count"):
        src.fetch_uw_flow(DAY, ["SPY"])


def test_counts_sent_as_digit_strings_or_whole_floats_are_read(env):
    # JSON ints in UW's examples, but the spec leaves the counts' type open
    fake, srv = env
    fake.alerts += [alert("SPY", at(15, 0), 1), alert("SPY", at(15, 1), 2)]
    fake.alerts[0].update(volume="2442", total_size=461.0, open_interest="7")
    with source(srv) as src:
        rows = sorted(src.fetch_uw_flow(DAY, ["SPY"]).to_pylist(), key=lambda r: r["alert_id"])
    assert (rows[0]["volume"], rows[0]["size"], rows[0]["open_interest"]) == (2442, 461, 7)


def test_missing_data_envelope(env):
    _, srv = env
    srv.route(r"/api/stock/SPY/iv-rank", lambda r: {"rows": []}, override=True)
    with source(srv) as src, pytest.raises(PayloadError, match="missing top-level field 'data'"):
        src.fetch_iv_rank(DAY, ["SPY"], [at(21, 0)])


def test_no_alerts_is_an_empty_table_not_an_error(env):
    _, srv = env
    with source(srv) as src:
        t = src.fetch_uw_flow(DAY, ["SPY"])
    assert t.num_rows == 0 and t.schema.equals(UW_FLOW_SCHEMA, check_metadata=False)


def test_iv_rank_uses_the_value_known_at_each_snapshot(env):
    fake, srv = env
    fake.iv_rank["SPY"] = [
        # iv_rank_1y is a fraction, as in UW's own API reference; stored as percent
        {"date": "2025-01-14", "close": "580.1", "volatility": "0.1478", "iv_rank_1y": "0.116152"},
        {"date": "2025-01-15", "close": "585.2", "volatility": "0.1756", "iv_rank_1y": "0.202449",
         "updated_at": "2025-01-15T18:00:00Z"},
        {"date": "2025-01-16", "close": "590.0", "volatility": "0.2", "iv_rank_1y": "0.30"},
    ]
    fake.iv_rank["QQQ"] = [
        {"date": "2025-01-14", "close": "500", "volatility": "0.2", "iv_rank_1y": "0.40"},
        {"date": "2025-01-15", "close": "0", "volatility": "0", "iv_rank_1y": "0"},  # placeholder
    ]
    snaps = [at(14, 30), at(21, 0)]
    with source(srv) as src:
        t = src.fetch_iv_rank(DAY, ["SPY", "QQQ"], snaps)
    assert t.schema.equals(IV_RANK_SCHEMA, check_metadata=False)
    got = [(r["symbol"], r["snapshot_time"], r["iv"], r["iv_rank"], r["timestamp"]) for r in t.to_pylist()]
    prev_close = datetime(2025, 1, 14, 21, 0, tzinfo=UTC)
    assert got == [
        ("QQQ", at(14, 30), 0.2, 40.0, prev_close),
        ("QQQ", at(21, 0), 0.2, 40.0, prev_close),
        ("SPY", at(14, 30), 0.1478, 11.6152, prev_close),
        ("SPY", at(21, 0), 0.1756, 20.2449, at(18, 0)),
    ]
    assert t.column("iv_percentile").null_count == 2 * 2


#: the example of UW's API reference for GET /api/stock/{ticker}/iv-rank (schema "IV Rank")
UW_IV_RANK_EXAMPLE = {"data": [
    {"close": "180.50", "date": "2024-01-22", "iv_rank_1y": "0.65",
     "updated_at": "2024-01-22T16:35:52.168490Z", "volatility": "0.25"},
    {"close": "181.25", "date": "2024-01-23", "iv_rank_1y": "0.72",
     "updated_at": "2024-01-23T16:35:52.168490Z", "volatility": "0.28"},
]}


def test_iv_rank_of_the_documented_example_is_stored_on_the_0_100_scale(env):
    # issue 11: UW documents iv_rank_1y as a fraction ("0.65"); the archive documents 0-100
    fake, srv = env
    fake.iv_rank["AAPL"] = UW_IV_RANK_EXAMPLE["data"]
    day = date(2024, 1, 23)
    before, after = datetime(2024, 1, 23, 15, 0, tzinfo=UTC), datetime(2024, 1, 23, 21, 0, tzinfo=UTC)
    with source(srv) as src:
        t = src.fetch_iv_rank(day, ["AAPL"], [before, after])
    got = [(r["snapshot_time"], r["iv"], r["iv_rank"]) for r in t.to_pylist()]
    assert got == [(before, 0.25, 65.0), (after, 0.28, 72.0)]


def test_iv_rank_out_of_range_after_normalisation_names_field_and_row(env):
    fake, srv = env
    fake.iv_rank["AAPL"] = [dict(UW_IV_RANK_EXAMPLE["data"][0]),
                            dict(UW_IV_RANK_EXAMPLE["data"][1], iv_rank_1y="72")]  # percent, not fraction
    with source(srv) as src, pytest.raises(PayloadError) as ei:
        src.fetch_iv_rank(date(2024, 1, 23), ["AAPL"], [datetime(2024, 1, 23, 21, 0, tzinfo=UTC)])
    msg = str(ei.value)
    assert "row 1" in msg and "'iv_rank_1y' is 7200" in msg and "outside 0..100" in msg and "2024-01-23" in msg
    # a plan whose answers are in percent can say so
    with UnusualWhalesSource(KEY, srv.url, http=source(srv).http, iv_rank_unit="percent") as src:
        t = src.fetch_iv_rank(date(2024, 1, 23), ["AAPL"], [datetime(2024, 1, 23, 21, 0, tzinfo=UTC)])
    assert t.column("iv_rank").to_pylist() == [72.0]


def test_iv_rank_rows_with_nulls_are_skipped_not_fatal(env):
    # one uncomputed day (null volatility or rank) in the month must not refuse the symbol
    fake, srv = env
    fake.iv_rank["AAPL"] = [dict(UW_IV_RANK_EXAMPLE["data"][0], volatility=None),
                            dict(UW_IV_RANK_EXAMPLE["data"][0], date="2024-01-19", iv_rank_1y=None),
                            UW_IV_RANK_EXAMPLE["data"][1]]
    with source(srv) as src:
        t = src.fetch_iv_rank(date(2024, 1, 23), ["AAPL"], [datetime(2024, 1, 23, 21, 0, tzinfo=UTC)])
    assert [(r["iv"], r["iv_rank"]) for r in t.to_pylist()] == [(0.28, 72.0)]


def test_iv_rank_without_rows_is_an_empty_session(env):
    fake, srv = env
    fake.iv_rank["SPY"] = []
    with source(srv) as src, pytest.raises(EmptySession, match="SPY"):
        src.fetch_iv_rank(DAY, ["SPY"], [at(21, 0)])


def test_key_never_leaks_into_logs_errors_or_tables(env, caplog):
    caplog.set_level(logging.DEBUG)
    fake, srv = env
    fake.alerts.append(alert("SPY", at(15, 0), 1))
    srv.fail_next(1, status=500, body=f"debug: token {KEY}")
    with source(srv) as src:
        t = src.fetch_uw_flow(DAY, ["SPY"])
        srv.fail_next(1, status=403, body=f"token {KEY} lacks scope")
        with pytest.raises(VendorError) as ei:
            src.fetch_uw_flow(DAY, ["SPY"])
    assert KEY not in str(ei.value) and KEY not in repr(ei.value.args)
    assert all(KEY not in rec.getMessage() for rec in caplog.records)
    assert KEY not in str(t.to_pylist())


@settings(max_examples=80, deadline=None)
@given(
    root=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6),
    expiry=st.dates(date(2000, 1, 1), date(2099, 12, 31)),
    right=st.sampled_from("CP"),
    milli=st.integers(0, 10**8 - 1),
    padded=st.booleans(),
)
def test_occ_round_trip(root, expiry, right, milli, padded):
    sym = format_occ(root, expiry, right, milli / 1000, padded=padded)
    c = parse_occ(("O:" if not padded else "") + sym)
    assert (c.root, c.expiry, c.right, round(c.strike * 1000)) == (root, expiry, right, milli)


def test_occ_rejects_garbage():
    with pytest.raises(ValueError, match="not an OCC option symbol: 'SPY'"):
        parse_occ("SPY")


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("UW_API_KEY"), reason="UW_API_KEY not set")
def test_live_flow_alerts_recent_session():
    from archive_platform.calendar import previous_trading_day

    day = previous_trading_day(datetime.now(UTC).date())
    with UnusualWhalesSource(os.environ["UW_API_KEY"]) as src:
        t = src.fetch_uw_flow(day, ["SPY"])
    assert t.schema.equals(UW_FLOW_SCHEMA, check_metadata=False)


@settings(max_examples=25, deadline=None)
@given(
    offsets=st.lists(st.integers(-700, 1000), min_size=0, max_size=25),  # minutes from 14:30 UTC
    page_limit=st.integers(1, 6),
)
def test_walk_back_returns_exactly_the_window(offsets, page_limit):
    # Invariant: whatever the page size, paging collects every alert of the market date once
    # (distinct instants; the ET day is 05:00 UTC to 05:00 UTC the next day = minutes -570..870).
    fake = UnusualWhalesFake(api_key=KEY)
    base = at(14, 30)
    fake.alerts = [alert("SPY", base + timedelta(minutes=m, seconds=i), i) for i, m in enumerate(offsets)]
    with FakeVendorServer() as srv:
        fake.install(srv)
        with source(srv, page_limit=page_limit) as src:
            t = src.fetch_uw_flow(DAY, ["SPY"])
    expected = sorted(f"id-{i}" for i, m in enumerate(offsets) if -570 * 60 <= m * 60 + i < 870 * 60)
    assert sorted(t.column("alert_id").to_pylist()) == expected
