"""Barchart IV rank: OnDemand against a loopback fake, and CSV drops written by the tests."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_platform.schemas import IV_RANK_SCHEMA
from archive_platform.sources.base import EmptySession, SourceError
from archive_platform.vendors.barchart import (
    BarchartFileMissing,
    BarchartSource,
    build_http,
    parse_percent,
)
from archive_platform.vendors.http import CircuitOpenError, PayloadError, VendorError, new_breaker
from archive_platform_tests.fakes.barchart import BarchartOnDemandFake, iv_rank_csv
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.clock import Clock

KEY = "bckey_77aa11bb22"
DAY = date(2025, 1, 15)  # EST; session close 21:00 UTC
UTC = timezone.utc
MORNING, CLOSE = datetime(2025, 1, 15, 15, 0, tzinfo=UTC), datetime(2025, 1, 15, 21, 0, tzinfo=UTC)
FILE = "stocks-options-iv-rank-and-iv-percentile-01-15-2025.csv"




@pytest.fixture
def env():
    fake = BarchartOnDemandFake(api_key=KEY)
    fake.history["SPY"] = [
        {"date": "2025-01-13", "weightedImpliedVolatility": 14.0, "impliedVolatilityRank1y": 18.0,
         "impliedVolatilityPercentile1y": 30.0},
        {"date": "2025-01-14", "weightedImpliedVolatility": 15.5, "impliedVolatilityRank1y": 21.25,
         "impliedVolatilityPercentile1y": 40.0, "totalVolume": 123456},
        {"date": "2025-01-15", "weightedImpliedVolatility": 16.0, "impliedVolatilityRank1y": 25.0},
    ]
    with FakeVendorServer() as srv:
        fake.install(srv)
        yield fake, srv


def source(srv, *, key=KEY, sleeps=None, breaker=None, timeout=0.3, **kw):
    http = build_http(key, srv.url, breaker=breaker or new_breaker(), timeout=timeout,
                      sleep=(sleeps.append if sleeps is not None else lambda s: None), **kw)
    return BarchartSource(key, srv.url, http=http)


# -- OnDemand ---------------------------------------------------------------------------------
def test_ondemand_morning_gets_previous_session_close_gets_the_day(env):
    _, srv = env
    with source(srv) as src:
        t = src.fetch_iv_rank(DAY, ["spy"], [MORNING, CLOSE])
    assert t.schema.equals(IV_RANK_SCHEMA, check_metadata=False)
    got = [(r["snapshot_time"], r["timestamp"], r["iv"], r["iv_rank"], r["iv_percentile"]) for r in t.to_pylist()]
    prev_close = datetime(2025, 1, 14, 21, 0, tzinfo=UTC)
    assert got == [(MORNING, prev_close, 0.155, 21.25, 40.0), (CLOSE, CLOSE, 0.16, 25.0, None)]
    (req,) = srv.requests
    assert req.query["symbol"] == "SPY" and req.query["endDate"] == "2025-01-15"
    assert req.query["apikey"] == KEY and "impliedVolatilityRank1y" in req.query["fields"]


def test_ondemand_retries_429_and_5xx(env):
    _, srv = env
    sleeps: list[float] = []
    srv.throttle_next(1, retry_after="4")
    srv.fail_next(1, status=502)
    with source(srv, sleeps=sleeps) as src:
        assert src.fetch_iv_rank(DAY, ["SPY"], [CLOSE]).num_rows == 1
    assert sleeps[0] == 4.0 and len(sleeps) == 2 and len(srv.requests) == 3


def test_ondemand_timeout_then_success(env):
    _, srv = env
    srv.delay_next(1, seconds=1.0)
    with source(srv, timeout=0.2, deadline=2.0) as src:  # a deadline with room for a retry
        assert src.fetch_iv_rank(DAY, ["SPY"], [CLOSE]).num_rows == 1


def test_ondemand_breaker(env):
    _, srv = env
    clock = Clock()
    breaker = new_breaker(fail_max=1, reset_timeout=5.0, clock=clock)
    srv.fail_next(2, status=500)
    with source(srv, breaker=breaker, max_attempts=2) as src:
        with pytest.raises(VendorError, match="2 attempt"):
            src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
        with pytest.raises(CircuitOpenError, match="barchart"):
            src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
        assert len(srv.requests) == 2
        clock.now = 5.0
        assert src.fetch_iv_rank(DAY, ["SPY"], [CLOSE]).num_rows == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_ondemand_client_errors(env, status):
    _, srv = env
    srv.fail_next(1, status=status, body={"status": {"code": status, "message": f"no {KEY}"}})
    with source(srv) as src, pytest.raises(VendorError) as ei:
        src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
    msg = str(ei.value)
    assert len(srv.requests) == 1 and "barchart" in msg and HISTORY in msg and KEY not in msg
    if status in (401, 403):
        assert "BARCHART_API_KEY" in msg


HISTORY = "/getEquityOptionsOverviewHistory.json"


def test_ondemand_malformed_and_empty(env):
    fake, srv = env
    fake.history["QQQ"] = [{"date": "2025-01-15", "weightedImpliedVolatility": "high", "impliedVolatilityRank1y": 5}]
    fake.history["IWM"] = [{"date": "2025-01-15", "weightedImpliedVolatility": 20.0}]
    with source(srv) as src:
        with pytest.raises(PayloadError, match=r"row 0: field 'weightedImpliedVolatility' has str 'high'"):
            src.fetch_iv_rank(DAY, ["QQQ"], [CLOSE])
        with pytest.raises(PayloadError, match=r"row 0: missing field 'impliedVolatilityRank1y'"):
            src.fetch_iv_rank(DAY, ["IWM"], [CLOSE])
        with pytest.raises(EmptySession, match="no rows for DIA"):
            src.fetch_iv_rank(DAY, ["DIA"], [CLOSE])
    # a refusal in the envelope (a 429/5xx there is retried: test_vendor_audit_wiring.py)
    bad_status = {"status": {"code": 403, "message": "x"}, "results": []}
    srv.route(r"/getEquityOptionsOverviewHistory\.json", lambda r: bad_status, override=True)
    with source(srv) as src, pytest.raises(PayloadError, match=r"status.code' is 403 \('x'\) \(not retried\)"):
        src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])


def test_ondemand_key_redacted_everywhere(env, caplog):
    caplog.set_level(logging.DEBUG)
    _, srv = env
    srv.fail_next(1, status=503, body=f"apikey={KEY} overloaded")
    with source(srv) as src:
        t = src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
        srv.fail_next(1, status=403, body=f"{KEY} not entitled")
        with pytest.raises(VendorError) as ei:
            src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
    assert KEY not in str(ei.value) and KEY not in str(t.to_pylist())
    assert all(KEY not in rec.getMessage() for rec in caplog.records)


# -- CSV drops --------------------------------------------------------------------------------
ROWS = [
    {"Symbol": "SPY", "Imp Vol": "14.50%", "IV Chg": "+0.39%", "IV Rank": "20.10%", "IV Pctl": "35%",
     "Options Vol": "5,123,456"},
    {"Symbol": "QQQ", "Imp Vol": "19.05%", "IV Chg": "-1.20%", "IV Rank": "45.00%", "IV Pctl": "N/A",
     "Options Vol": "2,000,001"},
    {"Symbol": "BRK.B", "Imp Vol": "1,012.00%", "IV Rank": "99.00%", "IV Pctl": "100%"},
]


def test_csv_drop_parses_percent_strings_and_footer(tmp_path):
    (tmp_path / FILE).write_text(iv_rank_csv(ROWS, datetime(2025, 1, 15, 15, 45)))
    (tmp_path / FILE.replace("01-15", "01-14")).write_text("garbage from another day")
    src = BarchartSource(csv_dir=tmp_path)
    t = src.fetch_iv_rank(DAY, ["QQQ", "SPY", "BRK.B"], [CLOSE])
    assert t.schema.equals(IV_RANK_SCHEMA, check_metadata=False)
    rows = {r["symbol"]: r for r in t.to_pylist()}
    downloaded = datetime(2025, 1, 15, 21, 45, tzinfo=UTC)  # 15:45 CST
    assert (rows["SPY"]["iv"], rows["SPY"]["iv_rank"], rows["SPY"]["iv_percentile"]) == (0.145, 20.1, 35.0)
    assert rows["QQQ"]["iv_percentile"] is None and rows["BRK.B"]["iv"] == pytest.approx(10.12)
    assert rows["SPY"]["timestamp"] == downloaded and rows["SPY"]["et_offset"] == -300
    assert "Downloaded" not in rows and len(rows) == 3


def test_csv_snapshot_takes_the_newest_download_before_it(tmp_path):
    early = [dict(ROWS[0], **{"IV Rank": "10.00%"})]
    (tmp_path / ("am-" + FILE)).write_text(iv_rank_csv(early, datetime(2025, 1, 15, 9, 0)))
    (tmp_path / ("pm-" + FILE)).write_text(iv_rank_csv(ROWS, datetime(2025, 1, 15, 15, 45)))
    t = BarchartSource(csv_dir=tmp_path).fetch_iv_rank(DAY, ["SPY"], [MORNING, CLOSE])
    assert t.column("iv_rank").to_pylist() == [10.0, 10.0]  # 15:45 CT is after the 21:00 UTC close
    t2 = BarchartSource(csv_dir=tmp_path).fetch_iv_rank(DAY, ["SPY"], [datetime(2025, 1, 15, 22, 0, tzinfo=UTC)])
    assert t2.column("iv_rank").to_pylist() == [20.1]


def test_csv_missing_file_names_folder_and_pattern(tmp_path):
    with pytest.raises(BarchartFileMissing) as ei:
        BarchartSource(csv_dir=tmp_path).fetch_iv_rank(DAY, ["SPY"], [CLOSE])
    msg = str(ei.value)
    assert str(tmp_path) in msg and "iv-rank-and-iv-percentile" in msg and "01-15-2025" in msg


def test_csv_symbol_absent_is_an_empty_session(tmp_path):
    (tmp_path / FILE).write_text(iv_rank_csv(ROWS, datetime(2025, 1, 15, 15, 45)))
    with pytest.raises(EmptySession, match="TSLA is not in"):
        BarchartSource(csv_dir=tmp_path).fetch_iv_rank(DAY, ["TSLA"], [CLOSE])


def test_csv_row_with_na_iv_leaves_out_that_symbol_only(tmp_path):
    # one N/A row (a symbol the site has no IV for) must not refuse the whole download
    rows = ROWS + [{"Symbol": "QQQQ", "Imp Vol": "N/A", "IV Rank": "N/A", "IV Pctl": "N/A"},
                   {"Symbol": "NEWCO", "Imp Vol": "55.00%", "IV Rank": "", "IV Pctl": ""}]
    (tmp_path / FILE).write_text(iv_rank_csv(rows, datetime(2025, 1, 15, 15, 45)))
    src = BarchartSource(csv_dir=tmp_path)
    assert src.fetch_iv_rank(DAY, ["SPY"], [CLOSE]).column("iv_rank").to_pylist() == [20.1]
    for sym in ("QQQQ", "NEWCO"):
        with pytest.raises(EmptySession, match="N/A"):
            src.fetch_iv_rank(DAY, [sym], [CLOSE])


def test_csv_bad_cell_names_column_and_row(tmp_path):
    bad = ROWS[:1] + [dict(ROWS[1], **{"IV Rank": "lots"})]
    (tmp_path / FILE).write_text(iv_rank_csv(bad, None))
    with pytest.raises(SourceError, match=r"data row 2 \('QQQ'\): column 'IV Rank' has 'lots'"):
        BarchartSource(csv_dir=tmp_path).fetch_iv_rank(DAY, ["SPY"], [CLOSE])
    (tmp_path / FILE).write_text("Symbol,Name\nSPY,SPDR\n")
    with pytest.raises(SourceError, match=r"missing column\(s\) \['Imp Vol', 'IV Rank'\]"):
        BarchartSource(csv_dir=tmp_path).fetch_iv_rank(DAY, ["SPY"], [CLOSE])


def test_needs_a_key_or_a_folder():
    with pytest.raises(ValueError, match="BARCHART_API_KEY"):
        BarchartSource()


@settings(max_examples=80, deadline=None)
@given(st.decimals(min_value=-100000, max_value=100000, places=2), st.booleans(), st.booleans())
def test_parse_percent_round_trip(value, signed, grouped):
    text = f"{value:+,.2f}" if signed else f"{value:,.2f}"
    if not grouped:
        text = text.replace(",", "")
    assert parse_percent(text + "%") == pytest.approx(float(value))


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("BARCHART_API_KEY"), reason="BARCHART_API_KEY not set")
def test_live_ondemand_iv_rank():
    from archive_platform.calendar import previous_trading_day, session

    day = previous_trading_day(datetime.now(UTC).date())
    with BarchartSource(os.environ["BARCHART_API_KEY"]) as src:
        t = src.fetch_iv_rank(day, ["SPY"], [session(day).close_utc])
    assert t.num_rows == 1


def test_csv_iv_rank_outside_0_100_names_column_and_row(tmp_path):
    # percent strings are already 0-100; a value outside is refused, not stored
    bad = ROWS[:1] + [dict(ROWS[1], **{"IV Rank": "120.00%"})]
    (tmp_path / FILE).write_text(iv_rank_csv(bad, None))
    with pytest.raises(PayloadError, match=r"'IV Rank' at .*data row 2 \(QQQ\) is 120 .*outside 0..100"):
        BarchartSource(csv_dir=tmp_path).fetch_iv_rank(DAY, ["SPY"], [CLOSE])


def test_ondemand_iv_rank_outside_0_100_names_field_and_row(env):
    fake, srv = env
    fake.history["SPY"][1]["impliedVolatilityPercentile1y"] = 140.0
    with source(srv) as src, pytest.raises(PayloadError) as ei:
        src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
    assert "'impliedVolatilityPercentile1y'" in str(ei.value) and "row 1 (2025-01-14)" in str(ei.value)
