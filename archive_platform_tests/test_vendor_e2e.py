"""One end-to-end Dagster materialization per vendor-backed asset against loopback fake vendors.

Each test builds the definitions from an environment mapping (live root in a temp folder, the
vendor selected through ``ARCHIVE_SOURCE_*``, base URLs pointing at a ``FakeVendorServer``),
runs the asset(s) for one past full session, and reads back what landed in the LIVE root in the
seed layout ``<root>/<dir>/date=YYYY-MM-DD/<stem>_YYYYMMDD.parquet``: rows, the ``source``
column, materialization metadata agreeing with the file, the asset checks, and, for the keyed
vendors, that the API key appears in no metadata value, no event of the run and no Parquet byte.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ib_async.contract import Option, Stock

from archive_platform.defs import build_definitions
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.vendors.resilience import reset_registries
from archive_platform_tests.dagster_helpers import QUIET, checks, materializations, run_job, sim_env
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


def vendor_defs(tmp_path: Path, monkeypatch, **extra: str) -> dg.Definitions:
    """Definitions over temp roots for SPY only; every variable also goes to ``os.environ``
    because secrets reach the resource as ``dg.EnvVar`` and resolve at run time."""
    env = sim_env(tmp_path, ARCHIVE_SYMBOLS="SPY", **extra)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return build_definitions(env)


def materialize(defs: dg.Definitions, assets: list[str], instance, *, raise_on_error=True):
    """A run of just ``assets`` for DAY (no run tags: mode ``day``, the whole partition).

    ``resolve_assets_def`` hands back the assets with the definitions' resources bound."""
    return dg.materialize(
        [defs.resolve_assets_def(a) for a in assets], partition_key=DAY.isoformat(),
        instance=instance, run_config=QUIET, raise_on_error=raise_on_error,
    )


def live_file(tmp_path: Path, t: ArchiveType) -> Path:
    spec = spec_for(t)
    return tmp_path / "live" / spec.directory / f"date={DAY}" / f"{spec.file_stem}_{DAY:%Y%m%d}.parquet"


def stored(tmp_path: Path, result, t: ArchiveType, vendor: str) -> pa.Table:
    """The day file of ``t`` in the live root, checked against the run's metadata and checks."""
    path = live_file(tmp_path, t)
    assert path.exists(), f"{t.value} not at {path}"
    assert not (tmp_path / "sim" / spec_for(t).directory).exists(), "vendor rows went to the sim root"
    table = pq.read_table(path)
    assert table.schema.names == spec_for(t).schema.names
    assert set(table.column("source").to_pylist()) == {vendor}
    meta = materializations(result)[t.value]
    assert meta["rows"] == table.num_rows == pq.read_metadata(path).num_rows
    assert meta["files"] == 1 and meta["path"].endswith(f"date={DAY}")
    return table


def assert_checks(result, asset: str, passed: tuple[str, ...]) -> dict:
    evals = {name: e for (a, name), e in checks(result).items() if a == asset}
    assert set(evals) == {"schema", "unique_key", "in_session", "complete", "values"}
    failed = {n: evals[n].description for n in passed if not evals[n].passed}
    assert failed == {}
    return evals


def assert_key_nowhere(key: str, result, instance, files: list[Path]) -> None:
    """The secret is in no metadata value, no event of the run (nor the run record), no file."""
    for asset, meta in materializations(result).items():
        for name, value in meta.items():
            assert key not in str(value), f"{asset} metadata {name!r} holds the key"
    for ev in result.all_events:
        assert key not in dg.serialize_value(ev), f"event {ev.event_type_value} holds the key"
    logs = instance.all_logs(result.run_id)
    assert logs, "the run wrote no event log"
    for entry in logs:
        assert key not in dg.serialize_value(entry), f"event log entry holds the key: {entry.user_message}"
    assert key not in dg.serialize_value(instance.get_run_by_id(result.run_id))
    for path in files:
        assert key.encode() not in path.read_bytes(), f"{path} holds the key's bytes"
        table = pq.read_table(path)  # the bytes are zstd-compressed: look at decoded strings too
        for col in table.column_names:
            if pa.types.is_string(table.schema.field(col).type):
                assert not any(key in v for v in table.column(col).to_pylist() if v), f"{path}:{col}"


# -- uw_flow from Unusual Whales ------------------------------------------------------------


def test_uw_flow_from_unusual_whales_pages_back_over_the_session(tmp_path, monkeypatch, instance):
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
        flow_alert("SPY", OPEN - timedelta(minutes=45), alert_id="pre-market", expiry=exp, right="C",
                   strike=600.0, total_premium=1.0, ask_prem=1.0, bid_prem=0.0),
        flow_alert("QQQ", OPEN + timedelta(hours=1), alert_id="not-configured", expiry=exp, right="C",
                   strike=500.0, total_premium=1.0, ask_prem=1.0, bid_prem=0.0),
    ]
    fake.alerts = session_alerts + outside
    with FakeVendorServer() as srv:
        fake.install(srv)
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_UW_FLOW="unusual_whales",
                           UW_API_KEY=UW_KEY, UW_BASE_URL=srv.url)
        result = run_job(defs, "uw_flow_poll", instance, partition_key=DAY.isoformat())
        requests = list(srv.requests)
    assert result.success
    table = stored(tmp_path, result, ArchiveType.UW_FLOW, "unusual_whales")
    ids = table.column("alert_id").to_pylist()
    assert len(ids) == len(set(ids)) == 450  # page overlaps did not store an alert twice
    assert set(ids) == {f"uw-{i}" for i in range(450)}
    assert set(table.column("symbol").to_pylist()) == {"SPY"}
    first = min(table.to_pylist(), key=lambda r: r["timestamp"])
    assert (first["alert_id"], first["timestamp"], first["option_type"]) == ("uw-0", OPEN + timedelta(seconds=10), "CALL")
    assert first["premium"] == 25_000.0 and first["sentiment"] == "BULLISH" and first["et_offset"] == -300
    # the walk took several pages, each asking for the full page, the key sent as bearer only
    assert len(requests) >= 3
    assert {r.query["limit"] for r in requests} == {"200"}
    assert {r.headers["authorization"] for r in requests} == {f"Bearer {UW_KEY}"}
    assert all(UW_KEY not in r.raw_path for r in requests)
    assert_checks(result, "uw_flow", ("schema", "unique_key", "in_session", "complete", "values"))
    assert_key_nowhere(UW_KEY, result, instance, [live_file(tmp_path, ArchiveType.UW_FLOW)])


# -- stocks_1m from Polygon and from ThetaData ----------------------------------------------


def test_stocks_1m_from_polygon_follows_next_url(tmp_path, monkeypatch, instance):
    fake = PolygonFake(api_key=POLYGON_KEY, bars_page_size=100)
    fake.bars["SPY"] = polygon_bars(390, start=OPEN)
    with FakeVendorServer() as srv:
        fake.install(srv)
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_STOCKS_1M="polygon",
                           POLYGON_API_KEY=POLYGON_KEY, POLYGON_BASE_URL=srv.url)
        result = materialize(defs, ["stocks_1m"], instance)
        requests = list(srv.requests)
    assert result.success
    table = stored(tmp_path, result, ArchiveType.STOCKS_1M, "polygon")
    assert table.num_rows == 390
    ts = table.column("timestamp").to_pylist()
    assert ts == [OPEN + timedelta(minutes=i) for i in range(390)]
    r = table.slice(389, 1).to_pylist()[0]  # bar i has open 100+i, close 100.5+i (the builder)
    assert (r["open"], r["high"], r["low"], r["close"], r["volume"]) == (489.0, 490.0, 488.0, 489.5, 1389)
    assert len(requests) == 4  # 390 bars at 100 a page
    assert all(req.query.get("apiKey") == POLYGON_KEY for req in requests)
    assert all("cursor" in req.query for req in requests[1:])
    evals = assert_checks(result, "stocks_1m", ("schema", "unique_key", "in_session", "complete", "values"))
    assert evals["complete"].metadata["expected_bars_per_symbol"].value == 390
    assert_key_nowhere(POLYGON_KEY, result, instance, [live_file(tmp_path, ArchiveType.STOCKS_1M)])


def theta_bars(n: int) -> list[list]:
    return [row(OHLC_FMT, ms_of_day=et_ms(9, 30) + i * 60_000, open=600.0 + i / 10, high=601.0 + i / 10,
                low=599.0 + i / 10, close=600.5 + i / 10, volume=2000 + i, count=20, date=D) for i in range(n)]


def test_stocks_1m_from_thetadata_history(tmp_path, monkeypatch, instance):
    pre_open = row(OHLC_FMT, ms_of_day=et_ms(9, 29), open=1, high=1, low=1, close=1, volume=1, count=1, date=D)
    after_close = row(OHLC_FMT, ms_of_day=et_ms(16, 0), open=1, high=1, low=1, close=1, volume=1, count=1, date=D)
    with FakeVendorServer() as srv:
        FakeThetaTerminal(srv, page_size=200).set(
            "/v2/hist/stock/ohlc", OHLC_FMT, [pre_open, *theta_bars(390), after_close],
            root="SPY", start_date=D, end_date=D, ivl=60000,
        )
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_STOCKS_1M="thetadata", THETADATA_BASE_URL=srv.url)
        result = materialize(defs, ["stocks_1m"], instance)
        pages = srv.requests_to(r"/v2/page/\d+")
    assert result.success
    table = stored(tmp_path, result, ArchiveType.STOCKS_1M, "thetadata")
    assert table.column("timestamp").to_pylist() == [OPEN + timedelta(minutes=i) for i in range(390)]
    first = table.slice(0, 1).to_pylist()[0]
    assert (first["open"], first["close"], first["volume"], first["trade_count"], first["vwap"]) == (600.0, 600.5, 2000, 20, None)
    assert len(pages) == 1  # 392 rows at 200 a page: the next_page was followed
    assert_checks(result, "stocks_1m", ("schema", "unique_key", "in_session", "complete", "values"))


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


def test_options_backfill_from_thetadata_and_gex_derived_in_the_same_run(tmp_path, monkeypatch, instance):
    with FakeVendorServer() as srv:
        load_theta_history(FakeThetaTerminal(srv))
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_OPTIONS="thetadata", THETADATA_BASE_URL=srv.url)
        result = run_job(defs, "options_snapshot", instance, partition_key=DAY.isoformat())
        hist = srv.requests_to(r"/v2/bulk_hist/option/quote")
        live = srv.requests_to(r"/v2/bulk_snapshot/.*")
    assert result.success
    opts = stored(tmp_path, result, ArchiveType.OPTIONS, "thetadata")
    grid = [datetime.combine(DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=14, minutes=30 + 15 * i)
            for i in range(27)]  # 09:30..16:00 ET = 14:30..21:00 UTC
    assert sorted(set(opts.column("snapshot_time").to_pylist())) == grid
    assert opts.num_rows == 27 * 3
    rows = {(r["snapshot_time"], r["expiry"], r["strike"], r["right"]): r for r in opts.to_pylist()}
    c = rows[(grid[2], date(2025, 11, 28), 600.0, "C")]
    assert (c["bid"], c["ask"], c["delta"], c["gamma"], c["open_interest"]) == (4.0, 4.2, 0.52, 0.02, 1000)
    assert c["timestamp"] == grid[2] and c["vega"] == pytest.approx(0.25)  # 25 per 1.00 of vol
    assert sorted(r.query["exp"] for r in hist) == ["20251128", "20251205"]  # 20251121 had expired
    assert {r.query["ivl"] for r in hist} == {"900000"} and live == []
    evals = assert_checks(result, "options", ("schema", "unique_key", "in_session", "complete", "values"))
    assert evals["complete"].metadata["expected_snapshots"].value == 27

    gex = stored(tmp_path, result, ArchiveType.GEX, "thetadata")  # derived rows keep the options' source
    assert gex.num_rows == 27 * 2  # strikes 600 and 610 at every snapshot
    g = {(r["snapshot_time"], r["strike"]): r for r in gex.to_pylist()}
    # VENDORS.md section 7: gamma * OI * 100 * S^2 * 0.01 per contract, calls +, puts -
    call_gex = 0.02 * 1000 * 100 * 600.0**2 * 0.01  # 7,200,000
    put_gex = -0.015 * 800 * 100 * 600.0**2 * 0.01  # -4,320,000
    at600 = g[(grid[10], 600.0)]
    assert at600["call_gex"] == pytest.approx(call_gex) and at600["put_gex"] == pytest.approx(put_gex)
    assert at600["net_gex"] == pytest.approx(call_gex + put_gex)
    assert (at600["call_open_interest"], at600["put_open_interest"]) == (1000, 800)
    assert g[(grid[10], 610.0)]["call_gex"] == 0.0  # no open interest, no exposure
    assert_checks(result, "gex", ("schema", "unique_key", "in_session", "complete", "values"))


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
    table = stored(tmp_path, result, ArchiveType.IV_RANK, "barchart")
    got = [(r["snapshot_time"], r["timestamp"], r["symbol"], r["iv"], r["iv_rank"], r["iv_percentile"])
           for r in table.to_pylist()]
    morning, evening = datetime(2025, 11, 26, 12, 0, tzinfo=UTC), datetime(2025, 11, 27, 0, 0, tzinfo=UTC)
    assert got == [
        (morning, datetime(2025, 11, 26, 11, 30, tzinfo=UTC), "SPY", pytest.approx(0.1725), 21.4, 38.0),
        (evening, datetime(2025, 11, 26, 23, 30, tzinfo=UTC), "SPY", pytest.approx(0.185), 26.1, 44.0),
    ]
    evals = assert_checks(result, "iv_rank", ("schema", "unique_key", "in_session", "complete", "values"))
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
    table = stored(tmp_path, result, ArchiveType.IV_RANK, "barchart")
    got = [(r["snapshot_time"], r["timestamp"], r["iv"], r["iv_rank"], r["iv_percentile"]) for r in table.to_pylist()]
    morning, evening = datetime(2025, 11, 26, 12, 0, tzinfo=UTC), datetime(2025, 11, 27, 0, 0, tzinfo=UTC)
    # a daily value is known at its session's close: 07:00 ET sees the 25th's, 19:00 ET the 26th's
    assert got == [
        (morning, datetime(2025, 11, 25, 21, 0, tzinfo=UTC), 0.16, 20.0, 35.0),
        (evening, datetime(2025, 11, 26, 21, 0, tzinfo=UTC), 0.175, 24.0, 41.0),
    ]
    assert_checks(result, "iv_rank", ("schema", "unique_key", "in_session", "complete", "values"))
    assert_key_nowhere(BARCHART_KEY, result, instance, [live_file(tmp_path, ArchiveType.IV_RANK)])


# -- trades from Interactive Brokers -------------------------------------------------------


def test_trades_from_ib_through_the_gateway_seam(tmp_path, monkeypatch, instance):
    t1 = datetime(2025, 11, 26, 15, 1, 2, tzinfo=UTC)
    opt = Option("SPY", "20251219", 590.0, "P", "SMART")
    opt.secType = "OPT"
    gateway = FakeIBGateway(fills_list=[
        fill(Stock("SPY", "SMART", "USD"), "e2e.0001", t1, "BOT", 100, 600.25, 1.0),
        fill(opt, "e2e.0002", t1 + timedelta(minutes=5), "SLD", 3, 4.5, 0.65),
        fill(Stock("SPY", "SMART", "USD"), "e2e.0000", datetime(2025, 11, 25, 20, 0, tzinfo=UTC), "BOT", 1, 1.0, 1.0),
    ])
    built: list[tuple] = []

    def gateway_factory(host, port, client_id):
        built.append((host, port, client_id))
        return gateway

    # IBSource builds AsyncIBGateway(host, port, client_id) from the resource's settings
    monkeypatch.setattr("archive_platform.vendors.ib.AsyncIBGateway", gateway_factory)
    defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_TRADES="ib", IB_HOST="127.0.0.1",
                       IB_PORT="4002", IB_CLIENT_ID="17")
    result = materialize(defs, ["trades"], instance)
    assert result.success
    assert built == [("127.0.0.1", 4002, 17)]
    assert ("fills", DAY) in gateway.calls and gateway.calls[-1] == ("disconnect", None)
    table = stored(tmp_path, result, ArchiveType.TRADES, "ib")
    rows = {r["exec_id"]: r for r in table.to_pylist()}
    assert set(rows) == {"e2e.0001", "e2e.0002"}  # the previous day's fill is not this partition's
    stk, o = rows["e2e.0001"], rows["e2e.0002"]
    assert (stk["side"], stk["quantity"], stk["price"], stk["commission"], stk["timestamp"]) == ("BUY", 100.0, 600.25, 1.0, t1)
    assert (o["side"], o["contract"], o["expiry"], o["strike"], o["right"]) == ("SELL", "SPY251219P00590000", date(2025, 12, 19), 590.0, "P")
    assert_checks(result, "trades", ("schema", "unique_key", "in_session", "complete", "values"))
