"""Audit of the US vendor clients against the vendors' documented behaviour.

Each test pins one documented fact that a client (or its fake) got wrong before, against the
loopback fake speaking the vendor's format or a payload written from the documented format.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from ib_async.objects import BarData

from archive_platform.vendors.http import new_breaker
from archive_platform.vendors.ib_history import IDENTICAL_REQUEST_GAP
from archive_platform.vendors.ib_seam import HistoricalPacer
from archive_platform.vendors.ib import IBSource
from archive_platform.vendors.polygon import PolygonSource, build_http as polygon_http
from archive_platform_tests.fakes.ib import FakeIBGateway
from archive_platform_tests.fakes.polygon import PolygonFake, minute_bar
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.uw import UnusualWhalesFake, flow_alert

UTC = timezone.utc


# -- Polygon ------------------------------------------------------------------------------------
# Polygon's own Python client retries 413 and 499 besides 429/5xx (urllib3 Retry
# status_forcelist=[413, 429, 499, 500, 502, 503, 504], polygon-io/client-python rest/base.py).

PG_KEY = "pgkey_audit_7Hq2"
PG_DAY = date(2025, 1, 15)  # EST: session 14:30-21:00 UTC


@pytest.mark.parametrize("status", [499, 413])
def test_polygon_retries_the_statuses_its_own_client_retries(status):
    fake = PolygonFake(api_key=PG_KEY)
    start = datetime(2025, 1, 15, 14, 30, tzinfo=UTC)
    fake.bars["SPY"] = [minute_bar(start + timedelta(minutes=i), 100, 101, 99, 100.5, 1000) for i in range(3)]
    with FakeVendorServer() as srv:
        fake.install(srv)
        srv.fail_next(1, status=status, body={"status": "ERROR", "request_id": "r", "error": "try again"})
        sleeps: list[float] = []
        http = polygon_http(PG_KEY, srv.url, breaker=new_breaker(), timeout=2.0, sleep=sleeps.append)
        with PolygonSource(PG_KEY, srv.url, http=http) as src:
            assert src.fetch_stocks_1m(PG_DAY, ["SPY"]).num_rows == 3
        assert len(srv.requests) == 2 and len(sleeps) == 1


# -- Interactive Brokers --------------------------------------------------------------------------

IB_DAY = date(2025, 11, 21)  # EST: 09:30 ET = 14:30 UTC


def _session_bars() -> list[BarData]:
    start = datetime(2025, 11, 21, 14, 30, tzinfo=UTC)
    return [BarData(start + timedelta(minutes=i), 600, 601, 599, 600.5, 1000.0, 600.1, 10) for i in range(390)]


def _ib(script) -> tuple[IBSource, FakeIBGateway, list[float]]:
    gw = FakeIBGateway(underlyings={"SPY": ("STK", 756733)}, underlying_prices={"SPY": 600.0}, bar_script=script)
    slept: list[float] = []
    src = IBSource(gateway=gw, clock=lambda: datetime(2025, 11, 22, tzinfo=UTC), sleep=slept.append,
                   breaker=new_breaker(fail_max=5),
                   pacer=HistoricalPacer(min_interval=0, clock=lambda: 0.0, sleep=lambda s: None))
    return src, gw, slept


def test_ib_empty_answer_is_reasked_no_sooner_than_15_s():
    # IB historical limitations: identical historical requests within 15 seconds are a pacing
    # violation, so the re-ask after ib_async's empty (timed-out) answer must wait for it
    src, gw, slept = _ib([([], []), (_session_bars(), [])])
    assert src.fetch_stocks_1m(IB_DAY, ["SPY"]).num_rows == 390
    assert slept == [IDENTICAL_REQUEST_GAP] and IDENTICAL_REQUEST_GAP >= 15.0
    calls = [args for name, args in gw.calls if name == "historical_bars"]
    assert len(calls) == 2 and calls[0] == calls[1]  # the same request, asked twice


def test_ib_connectivity_restored_notice_is_not_a_failure():
    # 1102 "Connectivity between IB and TWS has been restored - data maintained" is a notice (IB's
    # message codes; ib_async special-cases it), not the request's error
    restored = (1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")
    src, _, _ = _ib([([], [restored]), (_session_bars(), [])])
    assert src.fetch_stocks_1m(IB_DAY, ["SPY"]).num_rows == 390


# -- Unusual Whales fake --------------------------------------------------------------------------
# UW's API reference: older_than is "the unix time in milliseconds or seconds ... Also accepts an
# ISO date or RFC 3339 datetime"; an RFC 3339 datetime with an offset is that instant.


def test_uw_fake_reads_an_rfc3339_older_than_with_its_offset():
    import httpx

    t0 = datetime(2025, 1, 15, 15, 0, tzinfo=UTC)  # 10:00 ET
    fake = UnusualWhalesFake(api_key="uw_k")
    fake.alerts = [
        flow_alert("SPY", t0 + timedelta(minutes=m), alert_id=f"a{m}", expiry=date(2025, 1, 17), right="C",
                   strike=600, total_premium=1e5, ask_prem=6e4, bid_prem=4e4)
        for m in (-30, 30)  # 09:30 ET and 10:30 ET
    ]
    with FakeVendorServer() as srv:
        fake.install(srv)
        r = httpx.get(f"{srv.url}/api/option-trades/flow-alerts",
                      params={"older_than": "2025-01-15T10:00:00-05:00"},
                      headers={"Authorization": "Bearer uw_k"})
    assert [a["id"] for a in r.json()["data"]] == ["a-30"]


# -- Unusual Whales client ------------------------------------------------------------------------
# unusualwhales.com/information/how-to-check-your-api-usage: the x-uw-* usage headers (among them
# x-uw-req-per-minute-reset, ms until the minute window resets) are in the header of
# *successful* responses; a 429 need not carry them (nor Retry-After).


def test_uw_429_without_headers_waits_for_the_reset_the_last_success_announced():
    from archive_platform.vendors.uw import UnusualWhalesSource, build_http as uw_http
    from archive_platform_tests.fakes.uw import USAGE_HEADERS

    day = date(2025, 1, 15)
    fake = UnusualWhalesFake(api_key="uw_k")
    fake.alerts = [flow_alert("SPY", datetime(2025, 1, 15, 15, 0, tzinfo=UTC), alert_id="a1",
                              expiry=date(2025, 1, 17), right="C", strike=600, total_premium=1e5,
                              ask_prem=6e4, bid_prem=4e4)]
    reset_s = int(USAGE_HEADERS["x-uw-req-per-minute-reset"]) / 1000
    with FakeVendorServer() as srv:
        fake.install(srv)
        sleeps: list[float] = []
        http = uw_http("uw_k", srv.url, breaker=new_breaker(), limiter=None, timeout=2.0, sleep=sleeps.append)
        with UnusualWhalesSource("uw_k", srv.url, http=http) as src:
            assert src.fetch_uw_flow(day, ["SPY"]).num_rows == 1  # a success: headers seen
            srv.fail_next(1, 429, {"msg": "Too many requests"})  # no Retry-After, no x-uw-* headers
            assert src.fetch_uw_flow(day, ["SPY"]).num_rows == 1
    assert len(sleeps) == 1 and reset_s - 5 < sleeps[0] <= reset_s
