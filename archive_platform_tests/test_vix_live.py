"""``vix`` from a vendor in the archive: the store keeps what it had when a vendor fails, and a live
configuration (``ARCHIVE_SOURCE_VIX=polygon``) archives vix and, from it, market_regime's VIX
close through Dagster against the loopback Polygon fake."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from archive_platform import calendar
from archive_platform.archiving import Request, Settings, archive_partition
from archive_platform.datasets import BY_NAME
from archive_platform.schemas import ArchiveType
from archive_platform.sources.base import EmptySession
from archive_platform.store import ArchiveStore
from archive_platform.vendors.errors import PayloadError, VendorError
from archive_platform.vendors.http import new_breaker
from archive_platform.vendors.polygon import PolygonSource, build_http
from archive_platform.vendors.resilience import reset_registries
from archive_platform_tests.e2e_helpers import assert_checks, assert_key_nowhere, live_file, materialize, stored, vendor_defs
from archive_platform_tests.fakes.polygon import PolygonFake
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.test_vendor_polygon import bars as stock_bars
from archive_platform_tests.test_vix_vendors import index_bars, level

UTC = timezone.utc
KEY = "pgkey_vixlive_7Tq0Lw"
DAY = date(2025, 11, 26)  # a full session in EST: 14:30-21:00 UTC
OPEN = datetime(2025, 11, 26, 14, 30, tzinfo=UTC)
AFTER = datetime(2025, 11, 26, 22, 0, tzinfo=UTC)
VIX = BY_NAME["vix"]


@pytest.fixture(autouse=True)
def fresh_registries():
    reset_registries()  # breakers are per process: one opened elsewhere must not leak in
    yield
    reset_registries()


@pytest.fixture
def polygon():
    fake = PolygonFake(api_key=KEY)
    with FakeVendorServer() as srv:
        fake.install(srv)
        yield fake, srv


def source(srv) -> PolygonSource:
    http = build_http(KEY, srv.url, breaker=new_breaker(), timeout=0.5, sleep=lambda s: None, max_attempts=2)
    return PolygonSource(KEY, srv.url, http=http)


def test_a_failing_vendor_leaves_the_stored_partition_as_it_was(polygon, tmp_path):
    fake, srv = polygon
    fake.bars["I:VIX"] = index_bars(DAY)
    store = ArchiveStore(tmp_path / "live", kind="live")
    settings = Settings(symbols=("SPY",))
    with source(srv) as src:
        archive_partition(VIX, Request(DAY), store=store, source=src, settings=settings, now=AFTER)
    before = store.read_day("vix", DAY)
    assert before.num_rows == 27 and set(before["source"].to_pylist()) == {"polygon"}
    assert before["level"].to_pylist()[-1] == level(389)  # 16:00: the close of the 15:59 bar

    # a whole-day re-fetch that meets 500s, then one that meets a malformed page: both fail
    srv.fail_next(2, status=500)
    with source(srv) as src, pytest.raises(VendorError, match="polygon: GET .*/v2/aggs/ticker/I:VIX/.* failed after 2"):
        archive_partition(VIX, Request(DAY), store=store, source=src, settings=settings, now=AFTER)
    fake.bars["I:VIX"] = [{k: v for k, v in b.items() if k != "c"} for b in index_bars(DAY)]
    with source(srv) as src, pytest.raises(PayloadError, match="missing field 'c'"):
        archive_partition(VIX, Request(DAY), store=store, source=src, settings=settings, now=AFTER)
    assert store.read_day("vix", DAY).equals(before)

    # an intraday snapshot that fails appends nothing next to the parts already collected
    snap = OPEN + timedelta(minutes=30)
    fake.bars["I:VIX"] = index_bars(DAY)
    with source(srv) as src:
        archive_partition(VIX, Request(DAY, "snapshot", snapshot_time=snap), store=store, source=src,
                          settings=settings, now=snap + timedelta(seconds=5))
    parts = store.partition_files("vix", DAY)
    fake.bars["I:VIX"] = []
    with source(srv) as src, pytest.raises(EmptySession, match="polygon: no VIX value in the 2025-11-26 session"):
        archive_partition(VIX, Request(DAY, "snapshot", snapshot_time=snap + timedelta(minutes=15)),
                          store=store, source=src, settings=settings, now=snap + timedelta(minutes=15, seconds=5))
    assert store.partition_files("vix", DAY) == parts


@pytest.mark.slow
def test_live_configuration_archives_vix_and_market_regime_reads_it(tmp_path, monkeypatch):
    fake = PolygonFake(api_key=KEY)
    fake.bars["SPY"] = stock_bars(390, start=OPEN)
    fake.bars["I:VIX"] = index_bars(DAY)
    with FakeVendorServer() as srv, dg.instance_for_test() as instance:
        fake.install(srv)
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_STOCKS_1M="polygon",
                           ARCHIVE_SOURCE_VIX="polygon", POLYGON_API_KEY=KEY, POLYGON_BASE_URL=srv.url)
        result = materialize(defs, ["stocks_1m", "vix", "daily_bars", "market_regime"], DAY, instance)
        assert result.success
        vix = stored(tmp_path, result, ArchiveType.VIX, DAY, "polygon")
        assert vix["snapshot_time"].to_pylist() == calendar.snapshot_times(DAY)
        assert vix["level"].to_pylist()[0] == level(0) - 0.005 and vix["level"].to_pylist()[-1] == level(389)
        assert_checks(result, "vix")
        regime = stored(tmp_path, result, ArchiveType.MARKET_REGIME, DAY, "derived").to_pylist()
        assert [(r["symbol"], r["vix_close"], r["vix_date"]) for r in regime] == [("SPY", level(389), DAY)]
        assert_key_nowhere(KEY, result, instance, [live_file(tmp_path, ArchiveType.VIX, DAY)])
    assert any(r.raw_path.startswith("/v2/aggs/ticker/I:VIX/range/1/minute/2025-11-26/2025-11-26?")
               for r in srv.requests)


@pytest.mark.slow
def test_vix_from_thetadata_and_from_ib_through_their_resources(tmp_path, monkeypatch):
    from archive_platform_tests.fakes.ib import FakeIBGateway
    from archive_platform_tests.fakes.thetadata import FakeThetaTerminal
    from archive_platform_tests.test_vix_vendors import PRICE_FMT, ib_bars, price_rows

    grid = calendar.snapshot_times(DAY)
    with FakeVendorServer() as srv, dg.instance_for_test() as instance:
        FakeThetaTerminal(srv).set("/v2/hist/index/price", PRICE_FMT, price_rows(DAY), root="VIX")
        defs = vendor_defs(tmp_path / "theta", monkeypatch, ARCHIVE_SOURCE_VIX="thetadata",
                           THETADATA_API="v2", THETADATA_BASE_URL=srv.url)
        result = materialize(defs, ["vix"], DAY, instance)
        table = stored(tmp_path / "theta", result, ArchiveType.VIX, DAY, "thetadata")
        # 09:30 reported 0 (no value yet): 26 rows, so the complete check fails, the rest pass
        assert table["snapshot_time"].to_pylist() == grid[1:]
        assert table["level"].to_pylist() == [level(15 * k) for k in range(1, 27)]
        evals = assert_checks(result, "vix", passed=("in_session", "schema", "unique_key", "values"))
        assert not evals["complete"].passed

    gateway = FakeIBGateway(underlyings={"VIX": ("IND", 13455763)}, bar_script=[(ib_bars(DAY), [])])
    built = []

    def gateway_factory(host, port, client_id, *, connect_timeout=10.0):
        built.append((host, port, client_id))
        return gateway

    monkeypatch.setattr("archive_platform.vendors.ib.AsyncIBGateway", gateway_factory)
    with dg.instance_for_test() as instance:
        defs = vendor_defs(tmp_path / "ib", monkeypatch, ARCHIVE_SOURCE_VIX="ib", IB_PORT="4002")
        result = materialize(defs, ["vix"], DAY, instance)
        table = stored(tmp_path / "ib", result, ArchiveType.VIX, DAY, "ib")
        assert table["snapshot_time"].to_pylist() == grid
        assert table["level"].to_pylist()[-1] == level(389)
        assert_checks(result, "vix")
    assert built == [("127.0.0.1", 4002, 1)] and gateway.calls[-1] == ("disconnect", None)
