"""The shared vendor HTTP policy, against a loopback fake server (no internet)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_platform.sources.base import SourceError
from archive_platform.vendors.http import (
    new_breaker,
    CircuitOpenError,
    PayloadError,
    RateLimiter,
    VendorError,
    VendorHttpClient,
    breaker_for,
    parse_retry_after,
    path_segment,
    redact,
    redact_url,
    reset_registries,
)
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.clock import Clock as _Clock

KEY = "sk_live_9f8e7d6c5b4a"


def Clock() -> _Clock:  # noqa: N802 (keeps the call sites' spelling)
    return _Clock(1000.0)


@pytest.fixture
def srv():
    with FakeVendorServer() as s:
        s.route(r"/v1/ok", lambda req: {"ok": True, "q": req.query.get("q")})
        # echoes the raw request line back, key included, as a careless vendor might
        s.route(r"/v1/echo", lambda req: (400, {}, {"error": f"bad request {req.raw_path}"}))
        yield s


def make(srv, sleeps=None, **kw) -> VendorHttpClient:
    kw.setdefault("breaker", new_breaker())
    kw.setdefault("timeout", 0.3)
    return VendorHttpClient(
        "acme",
        srv.url,
        secret_params={"apiKey": KEY},
        key_env_var="ACME_API_KEY",
        sleep=(sleeps.append if sleeps is not None else (lambda s: None)),
        **kw,
    )


def test_get_json_sends_key_and_params(srv):
    with make(srv) as c:
        assert c.get_json("/v1/ok", {"q": "x", "skip": None}) == {"ok": True, "q": "x"}
    (req,) = srv.requests
    assert req.query == {"q": "x", "apiKey": KEY}


def test_absolute_url_is_rerooted_on_base_and_key_reappended(srv):
    with make(srv) as c:
        # a pagination link on another host, carrying a stale key: host and key are replaced
        out = c.get_json("https://elsewhere.example.com/v1/ok?q=page2&apiKey=OLD")
    assert out["q"] == "page2"
    assert srv.requests[0].query_lists["apiKey"] == [KEY]


def test_429_retry_after_is_honoured_then_success(srv):
    sleeps: list[float] = []
    srv.throttle_next(1, retry_after="7")
    with make(srv, sleeps) as c:
        assert c.get_json("/v1/ok")["ok"] is True
    assert sleeps == [7.0]
    assert len(srv.requests) == 2


def test_retry_after_is_capped(srv):
    sleeps: list[float] = []
    srv.throttle_next(1, retry_after="3600")
    with make(srv, sleeps, retry_after_max=45.0) as c:
        c.get_json("/v1/ok")
    assert sleeps == [45.0]


def test_parse_retry_after_seconds_and_http_date():
    now = datetime(2026, 3, 2, 15, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after("Mon, 02 Mar 2026 15:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 02 Mar 2026 14:00:00 GMT", now) == 0.0  # in the past
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_5xx_then_success_backs_off_exponentially(srv):
    sleeps: list[float] = []
    srv.fail_next(3, status=503)
    with make(srv, sleeps, backoff_initial=0.5, backoff_max=30.0) as c:
        assert c.get_json("/v1/ok")["ok"] is True
    assert len(srv.requests) == 4 and len(sleeps) == 3
    # initial * 2**n plus jitter in [0, initial]
    for n, s in enumerate(sleeps):
        assert 0.5 * 2**n <= s <= 0.5 * 2**n + 0.5


def test_timeout_then_success(srv):
    srv.delay_next(1, seconds=1.5)
    with make(srv, timeout=0.2, deadline=5.0) as c:  # a deadline with room for a retry
        assert c.get_json("/v1/ok")["ok"] is True
    assert len(srv.requests) == 2


def test_persistent_timeout_fails_after_max_attempts(srv):
    srv.delay_next(3, seconds=1.5)
    with make(srv, timeout=0.2, deadline=5.0, max_attempts=3) as c, pytest.raises(VendorError) as ei:
        c.get_json("/v1/ok")
    assert len(srv.requests) == 3
    msg = str(ei.value)
    assert "acme" in msg and "/v1/ok" in msg and "3 attempt" in msg and "timeout" in msg
    assert ei.value.status is None and KEY not in msg


def test_slow_answer_costs_one_timeout_by_default(srv):
    # issue 11: a slow vendor cost max_attempts x timeout (+ backoff) before failing
    sleeps: list[float] = []
    srv.delay_next(5, seconds=1.5)
    with make(srv, sleeps, timeout=0.2) as c, pytest.raises(VendorError) as ei:
        c.get_json("/v1/ok")
    assert len(srv.requests) == 1 and sleeps == []
    msg = str(ei.value)
    assert "1 attempt" in msg and "timeout" in msg and "deadline of 0.2s is spent" in msg


def test_deadline_does_not_stop_quick_failures(srv):
    # fast 5xx answers spend almost none of the deadline: still retried up to max_attempts
    srv.fail_next(3, status=503)
    with make(srv, timeout=0.3) as c:
        assert c.get_json("/v1/ok")["ok"] is True
    assert len(srv.requests) == 4


def test_deadline_must_cover_one_timeout():
    with pytest.raises(ValueError, match="deadline >= timeout"):
        VendorHttpClient("acme", "http://x.test", timeout=2.0, deadline=1.0, breaker=new_breaker())


@pytest.mark.parametrize("value,segment", [
    ("SPY", "SPY"), ("BRK.B", "BRK.B"), ("..", "%2E%2E"), (".", "%2E"), ("a/b", "a%2Fb"),
    ("x?y#z", "x%3Fy%23z"), ("100%", "100%25"), ("é", "%C3%A9"),
])
def test_path_segment_escapes_everything_but_plain_text(value, segment):
    assert path_segment(value) == segment


def test_escaped_dot_segment_stays_inside_its_path(srv):
    srv.route(r"/v1/items/[^/]+", lambda req: {"raw": req.raw_path})
    with make(srv) as c:
        with pytest.raises(VendorError, match="HTTP 404"):  # nothing routed at /v1/items/%2E%2E/x
            c.get_json(f"/v1/items/{path_segment('..')}/x")
    assert srv.requests[0].path == "/v1/items/%2E%2E/x"


def test_connection_error_is_retried_then_reported():
    sleeps: list[float] = []
    # nothing listens on a port of a server we just closed
    dead = FakeVendorServer()
    url = dead.url
    dead.stop()
    c = VendorHttpClient(
        "acme", url, secret_params={"apiKey": KEY}, max_attempts=2,
        breaker=new_breaker(), sleep=sleeps.append,
    )
    with pytest.raises(VendorError, match="connection error") as ei:
        c.get("/v1/ok")
    assert len(sleeps) == 1 and KEY not in str(ei.value)


@pytest.mark.parametrize(
    "status,hint",
    [
        (400, "check the request parameters"),
        (401, "check ACME_API_KEY is set"),
        (403, "check ACME_API_KEY is set"),
        (404, "check the symbol/path"),
        (422, "check the request parameters"),
    ],
)
def test_client_errors_fail_at_once(srv, status, hint):
    sleeps: list[float] = []
    srv.fail_next(1, status=status, body={"msg": f"nope {KEY}"})
    with make(srv, sleeps) as c, pytest.raises(VendorError) as ei:
        c.get_json("/v1/ok", {"q": "AAPL"})
    assert len(srv.requests) == 1 and sleeps == []
    err = ei.value
    assert isinstance(err, SourceError)
    assert err.vendor == "acme" and err.status == status
    msg = str(err)
    assert f"HTTP {status}" in msg and hint in msg and "/v1/ok?q=AAPL" in msg
    assert "apiKey=REDACTED" in err.endpoint
    assert KEY not in msg and KEY not in err.endpoint


def test_key_echoed_in_error_body_and_logs_is_redacted(srv, caplog):
    caplog.set_level(logging.DEBUG, logger="archive_platform.vendors")
    srv.fail_next(1, status=500, body=f"upstream said apiKey={KEY}")
    with make(srv) as c, pytest.raises(VendorError) as ei:
        c.get_json("/v1/echo")
    assert KEY not in str(ei.value)
    assert "bad request" in str(ei.value)
    assert caplog.records, "requests and retries are logged"
    for rec in caplog.records:
        assert KEY not in rec.getMessage()


def test_bearer_token_in_headers_is_redacted(srv):
    token = "tok_abcdef123456"
    srv.fail_next(1, status=403, body=f"token {token} not entitled")
    c = VendorHttpClient(
        "acme", srv.url, headers={"Authorization": f"Bearer {token}"},
        breaker=new_breaker(), sleep=lambda s: None,
    )
    with pytest.raises(VendorError) as ei:
        c.get("/v1/ok")
    assert token not in str(ei.value) and "REDACTED" in str(ei.value)
    assert srv.requests[0].headers["authorization"] == f"Bearer {token}"


def test_invalid_json_is_a_payload_error(srv):
    srv.route(r"/v1/html", lambda req: "<html>oops</html>")
    with make(srv) as c, pytest.raises(PayloadError, match="invalid JSON"):
        c.get_json("/v1/html")


def test_extra_retry_and_empty_statuses(srv):
    sleeps: list[float] = []
    srv.fail_next(1, status=474, body="DISCONNECTED")
    srv.fail_next(1, status=472, body="NO_DATA")
    with make(srv, sleeps, retry_statuses={474}, empty_statuses={472}) as c:
        assert c.get_json("/v1/ok") is None
    assert len(srv.requests) == 2 and len(sleeps) == 1


def test_breaker_opens_refuses_then_half_opens(srv):
    clock = Clock()
    breaker = new_breaker(fail_max=2, reset_timeout=60.0, clock=clock)
    srv.fail_next(4, status=500)
    c = make(srv, max_attempts=2, breaker=breaker)
    for _ in range(2):
        with pytest.raises(VendorError):
            c.get("/v1/ok")
    assert breaker.current_state == "open" and len(srv.requests) == 4
    with pytest.raises(CircuitOpenError, match="circuit breaker open"):
        c.get("/v1/ok")
    assert len(srv.requests) == 4  # refused without a request

    clock.now += 60.0
    srv.fail_next(1, status=500)
    with pytest.raises(VendorError):  # the half-open trial is a single attempt
        c.get("/v1/ok")
    assert len(srv.requests) == 5 and breaker.current_state == "open"

    clock.now += 60.0
    assert c.get_json("/v1/ok")["ok"] is True
    assert breaker.current_state == "closed" and len(srv.requests) == 6


def test_client_errors_do_not_open_the_breaker(srv):
    breaker = new_breaker(fail_max=1)
    srv.fail_next(3, status=404)
    c = make(srv, breaker=breaker)
    for _ in range(3):
        with pytest.raises(VendorError):
            c.get("/v1/ok")
    assert breaker.current_state == "closed"


def test_breakers_are_shared_per_vendor():
    reset_registries()
    assert breaker_for("acme") is breaker_for("acme")
    assert breaker_for("acme") is not breaker_for("other")
    reset_registries()


def test_rate_limiter_token_bucket():
    clock, sleeps = Clock(), []
    lim = RateLimiter(2.0, burst=2, clock=clock, sleep=sleeps.append)
    assert lim.acquire() == 0 and lim.acquire() == 0
    assert lim.acquire() == pytest.approx(0.5)
    assert lim.acquire() == pytest.approx(1.0)  # queued behind the previous reservation
    clock.now += 10
    assert lim.acquire() == 0
    assert sleeps == [pytest.approx(0.5), pytest.approx(1.0)]


def test_limiter_is_used_per_attempt(srv):
    clock = Clock()
    lim = RateLimiter(1.0, burst=1, clock=clock, sleep=lambda s: None)
    srv.fail_next(1, status=500)
    with make(srv, limiter=lim) as c:
        c.get("/v1/ok")
    assert lim.bucket.count() == 2  # two attempts took two tokens at one instant


def test_redact_url_replaces_secret_params_case_insensitively():
    u = redact_url("https://x.test/a?apikey=abc123&symbol=SPY", ["apiKey"])
    assert u == "https://x.test/a?apikey=REDACTED&symbol=SPY"
    assert redact_url("https://x.test/abc123/b", [], ["abc123"]) == "https://x.test/REDACTED/b"


@settings(max_examples=60, deadline=None)
@given(
    secret=st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=4, max_size=20),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_redact_removes_every_occurrence(secret, before, after):
    text = before + secret + after + secret
    out = redact(text, [secret])
    assert secret not in out
    assert out.count("REDACTED") >= 2


def test_httpx_own_request_log_is_redacted(srv, caplog):
    # httpx logs every request URL (query string included) at INFO on its own logger
    caplog.set_level(logging.INFO, logger="httpx")
    with make(srv) as c:
        c.get("/v1/ok")
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all(KEY not in line for line in lines)
    assert any("apiKey=REDACTED" in line for line in lines)


def test_fake_routes_first_match_wins_unless_override(srv):
    srv.route(r"/v1/.*", lambda req: {"catch": "all"})
    srv.route(r"/v1/ok", lambda req: {"over": "ridden"}, override=True)
    with make(srv) as c:
        assert c.get_json("/v1/other") == {"catch": "all"}
        assert c.get_json("/v1/ok") == {"over": "ridden"}


def test_unexpected_error_in_half_open_trial_does_not_wedge_the_breaker():
    import httpx

    clock = Clock()
    breaker = new_breaker(fail_max=1, reset_timeout=10.0, clock=clock)
    mode = {"now": "500"}

    def handler(request):
        if mode["now"] == "boom":
            raise RuntimeError("bug in a transport")
        return httpx.Response(500 if mode["now"] == "500" else 200, json={"ok": True})

    c = VendorHttpClient("acme", "http://fake.test", breaker=breaker, max_attempts=1,
                         transport=httpx.MockTransport(handler), sleep=lambda s: None)
    with pytest.raises(VendorError):
        c.get("/x")
    clock.now += 10.0
    mode["now"] = "boom"
    with pytest.raises(RuntimeError):
        c.get("/x")
    assert breaker.current_state == "open"
    clock.now += 10.0
    mode["now"] = "ok"
    assert c.get_json("/x") == {"ok": True} and breaker.current_state == "closed"


def _sources(url: str, timeout: float):
    from archive_platform.vendors.barchart import BarchartSource
    from archive_platform.vendors.polygon import PolygonSource
    from archive_platform.vendors.thetadata import ThetaDataSource
    from archive_platform.vendors.uw import UnusualWhalesSource

    snap = datetime(2025, 1, 15, 21, 0, tzinfo=timezone.utc)
    day = snap.date()
    return {
        "unusual_whales": (UnusualWhalesSource("k", url, timeout=timeout), lambda s: s.fetch_iv_rank(day, ["SPY"], [snap])),
        "polygon": (PolygonSource("k", url, timeout=timeout), lambda s: s.fetch_stocks_1m(day, ["SPY"])),
        "barchart": (BarchartSource("k", url, timeout=timeout), lambda s: s.fetch_iv_rank(day, ["SPY"], [snap])),
        "thetadata": (ThetaDataSource(url, timeout=timeout), lambda s: s.fetch_stocks_1m(day, ["SPY"])),
    }


@pytest.mark.parametrize("vendor", ["unusual_whales", "polygon", "barchart", "thetadata"])
def test_each_vendor_takes_its_timeout_and_a_slow_answer_costs_one(vendor):
    reset_registries()  # built without injected policy objects: the process-wide ones are used
    try:
        with FakeVendorServer() as srv:
            srv.delay_next(5, seconds=1.5)
            src, fetch = _sources(srv.url, timeout=0.25)[vendor]
            assert src.http.timeout == 0.25 and src.http.deadline == 0.25
            with src, pytest.raises(VendorError, match=r"1 attempt\(s\): no response within 0.25s"):
                fetch(src)
            assert len(srv.requests) == 1
    finally:
        reset_registries()
