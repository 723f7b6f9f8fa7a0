"""One end-to-end Dagster materialization per vendor-backed asset against loopback fake vendors.

Each test builds the definitions from an environment mapping (live root in a temp folder, the
vendor selected through ``ARCHIVE_SOURCE_*``, base URLs pointing at a ``FakeVendorServer``),
runs the asset(s) for one past full session, and reads back what landed in the LIVE root in the
seed layout ``<root>/<dir>/date=YYYY-MM-DD/<stem>_YYYYMMDD.parquet``: rows, the ``source``
column, materialization metadata agreeing with the file, the asset checks, and, for the keyed
vendors, that the API key appears in no metadata value, no event of the run and no Parquet byte.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest
from ib_async.contract import Option, Stock

from archive_platform.schemas import ArchiveType
from archive_platform.vendors.resilience import reset_registries
from archive_platform_tests.dagster_helpers import materializations, run_job
from archive_platform_tests.e2e_helpers import (
    assert_checks,
    assert_key_nowhere,
    live_file,
    materialize,
    stored,
    vendor_defs,
)
from archive_platform_tests.fakes.barchart import BarchartOnDemandFake, iv_rank_csv
from archive_platform_tests.fakes.ib import FakeIBGateway
from archive_platform_tests.fakes.polygon import PolygonFake
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.thetadata import (
    ALL_GREEKS_FMT,
    OHLC_FMT,
    OI_FMT,
    QUOTE_FMT,
    FakeThetaTerminal,
    contract,
    et_ms,
    row,
)
from archive_platform_tests.fakes.thetadata_v3 import FakeThetaTerminalV3, ts
from archive_platform_tests.fakes.uw import UnusualWhalesFake, flow_alert
from archive_platform_tests.test_vendor_ib import fill
from archive_platform_tests.test_vendor_polygon import bars as polygon_bars

UTC = timezone.utc
DAY = date(2025, 11, 26)  # Wednesday before Thanksgiving: a full session, EST (14:30-21:00 UTC)
D = 20251126
OPEN = datetime(2025, 11, 26, 14, 30, tzinfo=UTC)
UW_KEY = "uwkey_e2e_5f0c9a7d31"
POLYGON_KEY = "pgkey_e2e_Qm72Vx09"
BARCHART_KEY = "bckey_e2e_4411aa77"
#: the 27 snapshot instants of a full day at 15 minutes, 09:30..16:00 ET, as ms of the ET day
GRID_MS = [et_ms(9, 30) + i * 900_000 for i in range(27)]


@pytest.fixture(autouse=True)
def fresh_registries():
    # breakers and limiters are per process: a breaker another test opened must not leak in
    reset_registries()
    yield
    reset_registries()


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


# -- uw_flow from Unusual Whales ------------------------------------------------------------


def test_uw_flow_from_unusual_whales_pages_back_over_the_session(tmp_path, monkeypatch, instance, caplog):
    caplog.set_level(logging.DEBUG)
    fake = UnusualWhalesFake(api_key=UW_KEY)
    exp = date(2025, 11, 28)
    # 450 session alerts 50 s apart: more than two pages at the client's page limit of 200
    session_alerts = [
        flow_alert("SPY", OPEN + timedelta(seconds=10 + 50 * i), alert_id=f"uw-{i}", expiry=exp,
                   right="CP"[i % 2], strike=600.0 + i % 7, total_premium=25_000.0 + i,
                   ask_prem=20_000.0, bid_prem=5_000.0)
        for i in range(450)
    ]
    outside = [
        # the previous market date (alerts of the day's own extended hours are kept: issue 11 item 2)
        flow_alert("SPY", OPEN - timedelta(days=1), alert_id="previous-day", expiry=exp, right="C",
                   strike=600.0, total_premium=1.0, ask_prem=1.0, bid_prem=0.0),
        flow_alert("QQQ", OPEN + timedelta(hours=1), alert_id="not-configured", expiry=exp, right="C",
                   strike=500.0, total_premium=1.0, ask_prem=1.0, bid_prem=0.0),
    ]
    fake.alerts = session_alerts + outside
    with FakeVendorServer() as srv:
        fake.install(srv)
        # a throttled first answer echoing the token: retried, and logged without the token
        srv.throttle_next(1, retry_after="0", body={"msg": f"slow down, token {UW_KEY}"})
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_UW_FLOW="unusual_whales",
                           UW_API_KEY=UW_KEY, UW_BASE_URL=srv.url)
        result = run_job(defs, "uw_flow_poll", instance, partition_key=DAY.isoformat())
        requests = list(srv.requests)
    assert result.success
    table = stored(tmp_path, result, ArchiveType.UW_FLOW, DAY, "unusual_whales")
    ids = table.column("alert_id").to_pylist()
    assert len(ids) == len(set(ids)) == 450  # page overlaps did not store an alert twice
    assert set(ids) == {f"uw-{i}" for i in range(450)}
    assert set(table.column("symbol").to_pylist()) == {"SPY"}
    first = min(table.to_pylist(), key=lambda r: r["timestamp"])
    assert (first["alert_id"], first["timestamp"], first["option_type"]) == (
        "uw-0", OPEN + timedelta(seconds=10), "CALL")
    assert first["premium"] == 25_000.0 and first["sentiment"] == "BULLISH" and first["et_offset"] == -300
    # the walk took several pages, each asking for the full page, the key sent as bearer only
    assert len(requests) >= 1 + 3  # the throttled one, then several pages
    assert {r.query["limit"] for r in requests} == {"200"}
    assert {r.headers["authorization"] for r in requests} == {f"Bearer {UW_KEY}"}
    assert all(UW_KEY not in r.raw_path for r in requests)
    assert_checks(result, "uw_flow")
    assert_key_nowhere(UW_KEY, result, instance, [live_file(tmp_path, ArchiveType.UW_FLOW, DAY)])
    assert any(r.levelno >= logging.WARNING and "429" in r.getMessage() for r in caplog.records)
    assert all(UW_KEY not in r.getMessage() for r in caplog.records)


# -- stocks_1m from Polygon and from ThetaData ----------------------------------------------


def test_stocks_1m_from_polygon_follows_next_url(tmp_path, monkeypatch, instance):
    fake = PolygonFake(api_key=POLYGON_KEY, bars_page_size=100)
    fake.bars["SPY"] = polygon_bars(390, start=OPEN)
    with FakeVendorServer() as srv:
        fake.install(srv)
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_STOCKS_1M="polygon",
                           POLYGON_API_KEY=POLYGON_KEY, POLYGON_BASE_URL=srv.url)
        result = materialize(defs, ["stocks_1m"], DAY, instance)
        requests = list(srv.requests)
    assert result.success
    table = stored(tmp_path, result, ArchiveType.STOCKS_1M, DAY, "polygon")
    assert table.num_rows == 390
    ts = table.column("timestamp").to_pylist()
    assert ts == [OPEN + timedelta(minutes=i) for i in range(390)]
    r = table.slice(389, 1).to_pylist()[0]  # bar i has open 100+i, close 100.5+i (the builder)
    assert (r["open"], r["high"], r["low"], r["close"], r["volume"]) == (489.0, 490.0, 488.0, 489.5, 1389)
    assert len(requests) == 4  # 390 bars at 100 a page
    assert all(req.query.get("apiKey") == POLYGON_KEY for req in requests)
    assert all("cursor" in req.query for req in requests[1:])
    evals = assert_checks(result, "stocks_1m")
    assert evals["complete"].metadata["expected_bars_per_symbol"].value == 390
    assert_key_nowhere(POLYGON_KEY, result, instance, [live_file(tmp_path, ArchiveType.STOCKS_1M, DAY)])


def theta_bars(n: int) -> list[list]:
    return [row(OHLC_FMT, ms_of_day=et_ms(9, 30) + i * 60_000, open=600.0 + i / 10, high=601.0 + i / 10,
                low=599.0 + i / 10, close=600.5 + i / 10, volume=2000 + i, count=20, date=D) for i in range(n)]


def theta_bars_v3(n: int) -> list[dict]:
    """``theta_bars`` as the v3 terminal writes them (ET wall-clock timestamps, CSV)."""
    return [{"timestamp": ts(DAY, 9 + (30 + i) // 60, (30 + i) % 60), "open": 600.0 + i / 10,
             "high": 601.0 + i / 10, "low": 599.0 + i / 10, "close": 600.5 + i / 10, "volume": 2000 + i,
             "count": 20, "vwap": 600.0} for i in range(n)]


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_stocks_1m_from_thetadata_history(tmp_path, monkeypatch, instance, api):
    with FakeVendorServer() as srv:
        if api == "v2":
            pre_open = row(OHLC_FMT, ms_of_day=et_ms(9, 29), open=1, high=1, low=1, close=1, volume=1, count=1, date=D)
            after_close = row(OHLC_FMT, ms_of_day=et_ms(16, 0), open=1, high=1, low=1, close=1, volume=1, count=1,
                              date=D)
            FakeThetaTerminal(srv, page_size=200).set(
                "/v2/hist/stock/ohlc", OHLC_FMT, [pre_open, *theta_bars(390), after_close],
                root="SPY", start_date=D, end_date=D, ivl=60000,
            )
            env = {"THETADATA_API": "v2"}
        else:  # the default API: THETADATA_API unset
            outside = {"open": 1, "high": 1, "low": 1, "close": 1, "volume": 1, "count": 1}
            FakeThetaTerminalV3(srv).set(
                "/v3/stock/history/ohlc",
                [{"timestamp": ts(DAY, 9, 29), **outside}, *theta_bars_v3(390), {"timestamp": ts(DAY, 16), **outside}],
                symbol="SPY", date=D, interval="1m",
            )
            env = {}
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_STOCKS_1M="thetadata", THETADATA_BASE_URL=srv.url,
                           **env)
        result = materialize(defs, ["stocks_1m"], DAY, instance)
        requests = list(srv.requests)
    assert result.success
    table = stored(tmp_path, result, ArchiveType.STOCKS_1M, DAY, "thetadata")
    assert table.column("timestamp").to_pylist() == [OPEN + timedelta(minutes=i) for i in range(390)]
    first = table.slice(0, 1).to_pylist()[0]
    assert (first["open"], first["close"], first["volume"], first["trade_count"], first["vwap"]) == (
        600.0, 600.5, 2000, 20, None)
    last = table.slice(389, 1).to_pylist()[0]
    assert (last["open"], last["close"], last["volume"]) == (pytest.approx(638.9), pytest.approx(639.4), 2389)
    if api == "v2":  # 392 rows at 200 a page: the next_page was followed
        assert [r.path for r in requests] == ["/v2/hist/stock/ohlc", requests[1].path]
        assert requests[1].path.startswith("/v2/page/")
    else:  # v3 has no pages: one CSV answer
        assert [(r.path, r.query["format"]) for r in requests] == [("/v3/stock/history/ohlc", "csv")]
    assert_checks(result, "stocks_1m")


def test_stocks_1m_vendor_refusal_fails_the_run_without_the_key(tmp_path, monkeypatch, instance):
    fake = PolygonFake(api_key=POLYGON_KEY)
    with FakeVendorServer() as srv:
        fake.install(srv)
        srv.fail_next(1, status=403, body={"status": "NOT_AUTHORIZED", "message": f"key {POLYGON_KEY} not entitled"})
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_STOCKS_1M="polygon",
                           POLYGON_API_KEY=POLYGON_KEY, POLYGON_BASE_URL=srv.url)
        result = materialize(defs, ["stocks_1m"], DAY, instance, raise_on_error=False)
        requests = list(srv.requests)
    assert not result.success and len(requests) == 1  # a 403 is not retried
    (failure,) = result.get_step_failure_events()
    err = failure.event_specific_data.error.cause
    assert err.cls_name == "VendorError"
    for needle in ("polygon", "403", "/v2/aggs/ticker/SPY/range/1/minute", "apiKey=REDACTED", "POLYGON_API_KEY"):
        assert needle in err.message
    assert not (tmp_path / "live" / "stocks").exists()
    assert_key_nowhere(POLYGON_KEY, result, instance, [])


# -- options (+ derived gex) from ThetaData; options from Polygon for the past ---------------

C600 = contract("SPY", 20251128, 600000, "C")
P600 = contract("SPY", 20251128, 600000, "P")
C610 = contract("SPY", 20251205, 610000, "C")
#: contract -> (bid, ask, delta, gamma, open interest); underlying 600 all day
THETA_CHAIN = {
    "C600": (C600, 4.0, 4.2, 0.52, 0.02, 1000),
    "P600": (P600, 3.8, 4.0, -0.48, 0.015, 800),
    "C610": (C610, 1.0, 1.1, 0.30, 0.01, 0),
}


def load_theta_history(fake: FakeThetaTerminal) -> None:
    fake.set("/v2/list/expirations", ["date"], [20251121, 20251128, 20251205], root="SPY")
    for exp in (20251128, 20251205):
        items = [v for v in THETA_CHAIN.values() if v[0]["expiration"] == exp]
        params = dict(root="SPY", exp=exp, start_date=D, end_date=D, ivl=900000)
        fake.set_bulk("/v2/bulk_hist/option/quote", QUOTE_FMT, [
            (c, [row(QUOTE_FMT, ms_of_day=m, bid=bid, ask=ask, date=D) for m in GRID_MS])
            for c, bid, ask, *_ in items], **params)
        fake.set_bulk("/v2/bulk_hist/option/all_greeks", ALL_GREEKS_FMT, [
            (c, [row(ALL_GREEKS_FMT, ms_of_day=m, bid=bid, ask=ask, delta=delta, gamma=gamma, theta=-0.3,
                     vega=25.0, implied_vol=0.17, underlying_price=600.0, date=D) for m in GRID_MS])
            for c, bid, ask, delta, gamma, _ in items], **params)
        fake.set_bulk("/v2/bulk_hist/option/open_interest", OI_FMT, [
            (c, [row(OI_FMT, ms_of_day=et_ms(6, 30), open_interest=oi, date=D)])
            for c, *_, oi in items], root="SPY", exp=exp, start_date=D, end_date=D)


def load_theta_history_v3(fake: FakeThetaTerminalV3) -> None:
    """``load_theta_history``'s market as the v3 terminal serves it."""
    fake.set("/v3/option/list/expirations", [{"expiration": e} for e in ("2025-11-21", "2025-11-28", "2025-12-05")],
             symbol="SPY")
    grid = [ts(DAY, 9 + (30 + 15 * i) // 60, (30 + 15 * i) % 60) for i in range(27)]
    for exp in (date(2025, 11, 28), date(2025, 12, 5)):
        items = [v for v in THETA_CHAIN.values() if v[0]["expiration"] == int(f"{exp:%Y%m%d}")]
        cells = lambda c: {"expiration": exp.isoformat(), "strike": f"{c['strike'] / 1000:.3f}",  # noqa: E731
                           "right": {"C": "CALL", "P": "PUT"}[c["right"]]}
        params = dict(symbol="SPY", expiration=f"{exp:%Y%m%d}", date=DAY.strftime("%Y%m%d"), interval="15m")
        fake.set("/v3/option/history/quote", [
            {**cells(c), "timestamp": t, "bid": bid, "ask": ask} for c, bid, ask, *_ in items for t in grid], **params)
        fake.set("/v3/option/history/greeks/all", [
            {**cells(c), "timestamp": t, "bid": bid, "ask": ask, "delta": delta, "gamma": gamma, "theta": -0.3,
             "vega": 25.0, "implied_vol": 0.17, "underlying_price": 600.0}
            for c, bid, ask, delta, gamma, _ in items for t in grid], **params)
        fake.set("/v3/option/history/open_interest", [
            {**cells(c), "timestamp": ts(DAY, 6, 30), "open_interest": oi} for c, *_, oi in items],
            symbol="SPY", expiration=f"{exp:%Y%m%d}", date=DAY.strftime("%Y%m%d"))


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_options_backfill_from_thetadata_and_gex_derived_in_the_same_run(tmp_path, monkeypatch, instance, api):
    with FakeVendorServer() as srv:
        if api == "v2":
            load_theta_history(FakeThetaTerminal(srv))
        else:
            load_theta_history_v3(FakeThetaTerminalV3(srv))
        env = {"THETADATA_API": "v2"} if api == "v2" else {}  # v3: the default
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_OPTIONS="thetadata", THETADATA_BASE_URL=srv.url,
                           **env)
        result = run_job(defs, "options_snapshot", instance, partition_key=DAY.isoformat())
        hist = srv.requests_to(r"/v2/bulk_hist/option/quote|/v3/option/history/quote")
        live = srv.requests_to(r"/v2/bulk_snapshot/.*|/v3/option/snapshot/.*")
    assert result.success
    opts = stored(tmp_path, result, ArchiveType.OPTIONS, DAY, "thetadata")
    grid = [datetime.combine(DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=14, minutes=30 + 15 * i)
            for i in range(27)]  # 09:30..16:00 ET = 14:30..21:00 UTC
    assert sorted(set(opts.column("snapshot_time").to_pylist())) == grid
    assert opts.num_rows == 27 * 3
    rows = {(r["snapshot_time"], r["expiry"], r["strike"], r["right"]): r for r in opts.to_pylist()}
    c = rows[(grid[2], date(2025, 11, 28), 600.0, "C")]
    assert (c["bid"], c["ask"], c["delta"], c["gamma"], c["open_interest"]) == (4.0, 4.2, 0.52, 0.02, 1000)
    assert c["timestamp"] == grid[2] and c["vega"] == pytest.approx(0.25)  # 25 per 1.00 of vol
    exp, ivl = ("exp", "ivl") if api == "v2" else ("expiration", "interval")
    assert sorted(r.query[exp] for r in hist) == ["20251128", "20251205"]  # 20251121 had expired
    assert {r.query[ivl] for r in hist} == {"900000" if api == "v2" else "15m"} and live == []
    evals = assert_checks(result, "options")
    assert evals["complete"].metadata["expected_snapshots"].value == 27

    gex = stored(tmp_path, result, ArchiveType.GEX, DAY, "thetadata")  # derived rows keep the options' source
    assert gex.num_rows == 27 * 2  # strikes 600 and 610 at every snapshot
    g = {(r["snapshot_time"], r["strike"]): r for r in gex.to_pylist()}
    # (vendor's API documentation): gamma * OI * 100 * S^2 * 0.01 per contract, calls +, puts -
    call_gex = 0.02 * 1000 * 100 * 600.0**2 * 0.01  # 7,200,000
    put_gex = -0.015 * 800 * 100 * 600.0**2 * 0.01  # -4,320,000
    at600 = g[(grid[10], 600.0)]
    assert at600["call_gex"] == pytest.approx(call_gex) and at600["put_gex"] == pytest.approx(put_gex)
    assert at600["net_gex"] == pytest.approx(call_gex + put_gex)
    assert (at600["call_open_interest"], at600["put_open_interest"]) == (1000, 800)
    assert g[(grid[10], 610.0)]["call_gex"] == 0.0  # no open interest, no exposure
    assert_checks(result, "gex")


def test_options_from_polygon_for_a_past_day_fail_without_writing(tmp_path, monkeypatch, instance):
    fake = PolygonFake(api_key=POLYGON_KEY)
    with FakeVendorServer() as srv:
        fake.install(srv)
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_OPTIONS="polygon",
                           POLYGON_API_KEY=POLYGON_KEY, POLYGON_BASE_URL=srv.url)
        result = run_job(defs, "options_snapshot", instance, partition_key=DAY.isoformat(),
                         raise_on_error=False)
        requests = list(srv.requests)
    assert not result.success
    failures = result.get_step_failure_events()
    assert [f.step_key for f in failures] == ["options"]  # gex is skipped, not failed
    err = failures[0].event_specific_data.error.cause  # Dagster wraps the asset's exception
    assert err.cls_name == "SnapshotNotReproducible"
    assert f"polygon serves options live only and nothing was collected for {DAY}" in err.message
    assert requests == []  # refused before asking the vendor for a past snapshot
    assert not (tmp_path / "live" / "options").exists() and not (tmp_path / "live" / "gex").exists()
    assert materializations(result) == {}
    assert_key_nowhere(POLYGON_KEY, result, instance, [])


# -- iv_rank from Barchart CSV drops ---------------------------------------------------------


def test_iv_rank_from_barchart_csv_drops(tmp_path, monkeypatch, instance):
    drops = tmp_path / "barchart"
    drops.mkdir()
    name = "stocks-options-iv-rank-and-iv-percentile-11-26-2025"
    # 05:30 CST = 06:30 ET (before the 07:00 snapshot); 17:30 CST = 18:30 ET (before 19:00)
    (drops / f"{name}.csv").write_text(iv_rank_csv([
        {"Symbol": "SPY", "Imp Vol": "17.25%", "IV Rank": "21.40%", "IV Pctl": "38.00%"},
        {"Symbol": "QQQ", "Imp Vol": "22.00%", "IV Rank": "30.00%", "IV Pctl": "50.00%"},
    ], datetime(2025, 11, 26, 5, 30)))
    (drops / f"{name} (1).csv").write_text(iv_rank_csv([
        {"Symbol": "SPY", "Imp Vol": "18.50%", "IV Rank": "26.10%", "IV Pctl": "44.00%"},
    ], datetime(2025, 11, 26, 17, 30)))
    (drops / "stocks-options-iv-rank-and-iv-percentile-11-25-2025.csv").write_text(iv_rank_csv([
        {"Symbol": "SPY", "Imp Vol": "99.00%", "IV Rank": "99.00%", "IV Pctl": "99.00%"},
    ], datetime(2025, 11, 25, 17, 30)))  # another day's drop: must not be read
    defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_IV_RANK="barchart", BARCHART_CSV_DIR=str(drops))
    result = run_job(defs, "iv_rank_snapshot", instance, partition_key=DAY.isoformat())
    assert result.success
    table = stored(tmp_path, result, ArchiveType.IV_RANK, DAY, "barchart")
    got = [(r["snapshot_time"], r["timestamp"], r["symbol"], r["iv"], r["iv_rank"], r["iv_percentile"])
           for r in table.to_pylist()]
    morning, evening = datetime(2025, 11, 26, 12, 0, tzinfo=UTC), datetime(2025, 11, 27, 0, 0, tzinfo=UTC)
    assert got == [
        (morning, datetime(2025, 11, 26, 11, 30, tzinfo=UTC), "SPY", pytest.approx(0.1725), 21.4, 38.0),
        (evening, datetime(2025, 11, 26, 23, 30, tzinfo=UTC), "SPY", pytest.approx(0.185), 26.1, 44.0),
    ]
    evals = assert_checks(result, "iv_rank")
    assert evals["complete"].metadata["expected_snapshots"].value == 2


def test_iv_rank_from_barchart_ondemand_keeps_the_key_out(tmp_path, monkeypatch, instance):
    fake = BarchartOnDemandFake(api_key=BARCHART_KEY)
    fake.history["SPY"] = [
        {"date": "2025-11-25", "weightedImpliedVolatility": 16.0, "impliedVolatilityRank1y": 20.0,
         "impliedVolatilityPercentile1y": 35.0},
        {"date": "2025-11-26", "weightedImpliedVolatility": 17.5, "impliedVolatilityRank1y": 24.0,
         "impliedVolatilityPercentile1y": 41.0},
        {"date": "2025-11-28", "weightedImpliedVolatility": 99.0, "impliedVolatilityRank1y": 99.0},
    ]
    with FakeVendorServer() as srv:
        fake.install(srv)
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_IV_RANK="barchart",
                           BARCHART_API_KEY=BARCHART_KEY, BARCHART_BASE_URL=srv.url)
        result = run_job(defs, "iv_rank_snapshot", instance, partition_key=DAY.isoformat())
        requests = list(srv.requests)
    assert result.success
    assert [r.query["apikey"] for r in requests] == [BARCHART_KEY]  # the key did reach the vendor
    table = stored(tmp_path, result, ArchiveType.IV_RANK, DAY, "barchart")
    got = [(r["snapshot_time"], r["timestamp"], r["iv"], r["iv_rank"], r["iv_percentile"])
           for r in table.to_pylist()]
    morning, evening = datetime(2025, 11, 26, 12, 0, tzinfo=UTC), datetime(2025, 11, 27, 0, 0, tzinfo=UTC)
    # a daily value is known at its session's close: 07:00 ET sees the 25th's, 19:00 ET the 26th's
    assert got == [
        (morning, datetime(2025, 11, 25, 21, 0, tzinfo=UTC), 0.16, 20.0, 35.0),
        (evening, datetime(2025, 11, 26, 21, 0, tzinfo=UTC), 0.175, 24.0, 41.0),
    ]
    assert_checks(result, "iv_rank")
    assert_key_nowhere(BARCHART_KEY, result, instance, [live_file(tmp_path, ArchiveType.IV_RANK, DAY)])


# -- trades from Interactive Brokers -------------------------------------------------------


def test_trades_from_ib_through_the_gateway_seam(tmp_path, monkeypatch, instance):
    t1 = datetime(2025, 11, 26, 15, 1, 2, tzinfo=UTC)
    opt = Option("SPY", "20251219", 590.0, "P", "SMART")
    opt.secType = "OPT"
    gateway = FakeIBGateway(fills_list=[
        fill(Stock("SPY", "SMART", "USD"), "e2e.0001", t1, "BOT", 100, 600.25, 1.0),
        fill(opt, "e2e.0002", t1 + timedelta(minutes=5), "SLD", 3, 4.5, 0.65),
        fill(Stock("SPY", "SMART", "USD"), "e2e.0000", datetime(2025, 11, 25, 20, 0, tzinfo=UTC),
             "BOT", 1, 1.0, 1.0),  # the previous session's fill
    ])
    built: list[tuple] = []

    def gateway_factory(host, port, client_id, *, connect_timeout=10.0):
        built.append((host, port, client_id))
        return gateway

    # IBSource builds AsyncIBGateway(host, port, client_id) from the resource's settings
    monkeypatch.setattr("archive_platform.vendors.ib.AsyncIBGateway", gateway_factory)
    defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_TRADES="ib", IB_HOST="127.0.0.1",
                       IB_PORT="4002", IB_CLIENT_ID="17")
    result = materialize(defs, ["trades"], DAY, instance)
    assert result.success
    assert built == [("127.0.0.1", 4002, 17)]
    assert ("fills", DAY) in gateway.calls and gateway.calls[-1] == ("disconnect", None)
    table = stored(tmp_path, result, ArchiveType.TRADES, DAY, "ib")
    rows = {r["exec_id"]: r for r in table.to_pylist()}
    assert set(rows) == {"e2e.0001", "e2e.0002"}  # the previous day's fill is not this partition's
    stk, o = rows["e2e.0001"], rows["e2e.0002"]
    assert (stk["side"], stk["quantity"], stk["price"], stk["commission"], stk["timestamp"]) == (
        "BUY", 100.0, 600.25, 1.0, t1)
    assert (o["side"], o["contract"], o["expiry"], o["strike"], o["right"], o["commission"]) == (
        "SELL", "SPY251219P00590000", date(2025, 12, 19), 590.0, "P", 0.65)
    assert_checks(result, "trades")
