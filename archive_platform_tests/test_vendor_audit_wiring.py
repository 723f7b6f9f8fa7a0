"""Audit of the vendor wiring: keys as ``dg.EnvVar`` whatever the loading process has, Barchart's
status envelope (message, retries), ``BARCHART_CSV_DIR`` validation, IB VIX at the open."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from ib_async.objects import BarData

from archive_platform import calendar
from archive_platform.defs.vendor_resources import vendor_resources
from archive_platform.defs.vendor_resources.barchart import BarchartResource
from archive_platform.defs.vendor_resources.polygon import PolygonResource
from archive_platform.settings import Settings
from archive_platform.vendors.barchart import BarchartSource, build_http
from archive_platform.vendors.http import PayloadError, VendorError, new_breaker
from archive_platform.vendors.ib import IBSource
from archive_platform.vendors.ib_seam import HistoricalPacer
from archive_platform_tests.dagster_helpers import sim_env
from archive_platform_tests.fakes.barchart import BarchartOnDemandFake
from archive_platform_tests.fakes.ib import FakeIBGateway
from archive_platform_tests.fakes.server import FakeVendorServer

UTC = timezone.utc
REPO = Path(__file__).resolve().parents[1]


# -- 1. the key reaches the run as dg.EnvVar, whatever the loading process had -----------------


def loaded_without_secrets(tmp_path, **env) -> Settings:
    """The settings as a code server without the vendor keys would hold them (the keys are only
    needed by the run workers)."""
    return dataclasses.replace(Settings.from_env(sim_env(tmp_path, **env)), secrets_set=frozenset())


@pytest.mark.parametrize("source_var, vendor, key_var", [
    ("ARCHIVE_SOURCE_STOCKS_1M", "polygon", "POLYGON_API_KEY"),
    ("ARCHIVE_SOURCE_UW_FLOW", "unusual_whales", "UW_API_KEY"),
    ("ARCHIVE_SOURCE_IV_RANK", "barchart", "BARCHART_API_KEY"),  # no CSV folder: the key is the input
])
def test_key_is_an_envvar_even_when_the_loading_process_lacks_it(tmp_path, source_var, vendor, key_var):
    settings = loaded_without_secrets(tmp_path, **{source_var: vendor, key_var: "k-123"})
    resource = vendor_resources(settings)[f"vendor_{vendor}"]
    assert isinstance(resource.api_key, dg.EnvVar) and resource.api_key.env_var_name == key_var
    assert "k-123" not in repr(resource)


def test_barchart_csv_only_gets_no_envvar_and_a_loaded_key_does(tmp_path):
    drops = tmp_path / "drops"
    drops.mkdir()
    csv_only = Settings.from_env(sim_env(tmp_path, ARCHIVE_SOURCE_IV_RANK="barchart", BARCHART_CSV_DIR=str(drops)))
    resource = vendor_resources(csv_only)["vendor_barchart"]
    assert resource.api_key is None and resource.csv_dir == str(drops)
    both = Settings.from_env(sim_env(tmp_path, ARCHIVE_SOURCE_IV_RANK="barchart", BARCHART_CSV_DIR=str(drops),
                                     BARCHART_API_KEY="bc-1"))
    key = vendor_resources(both)["vendor_barchart"].api_key
    assert isinstance(key, dg.EnvVar) and key.env_var_name == "BARCHART_API_KEY"


def test_the_run_reads_the_key_from_its_own_environment(tmp_path, monkeypatch):
    """A definition loaded without the key, run where the key is set: the run gets it; run where
    it is not set: the run fails at start naming the variable (never with a key-less client)."""
    settings = loaded_without_secrets(tmp_path, ARCHIVE_SOURCE_STOCKS_1M="polygon", POLYGON_API_KEY="x")
    resource = PolygonResource.from_settings(settings)
    seen: list[str | None] = []

    @dg.asset
    def probe(vendor_polygon: PolygonResource):
        seen.append(vendor_polygon.api_key)

    monkeypatch.setenv("POLYGON_API_KEY", "run-worker-key")
    result = dg.materialize([probe], resources={"vendor_polygon": resource})
    assert result.success and seen == ["run-worker-key"]

    monkeypatch.delenv("POLYGON_API_KEY")
    with pytest.raises(Exception, match="POLYGON_API_KEY") as err:
        dg.materialize([probe], resources={"vendor_polygon": resource})
    assert "not set" in str(err.value) and seen == ["run-worker-key"]


# -- 2. Barchart's status envelope ---------------------------------------------------------------

KEY = "bckey_audit_99zz"
DAY = date(2025, 1, 15)
CLOSE = datetime(2025, 1, 15, 21, 0, tzinfo=UTC)
HISTORY = "/getEquityOptionsOverviewHistory.json"


@pytest.fixture
def ondemand():
    fake = BarchartOnDemandFake(api_key=KEY)
    fake.history["SPY"] = [{"date": "2025-01-15", "weightedImpliedVolatility": 16.0,
                            "impliedVolatilityRank1y": 25.0, "impliedVolatilityPercentile1y": 41.0}]
    with FakeVendorServer() as srv:
        fake.install(srv)
        yield fake, srv


def barchart(srv, sleeps: list[float], **kw) -> BarchartSource:
    http = build_http(KEY, srv.url, breaker=new_breaker(), timeout=2.0, sleep=sleeps.append, **kw)
    return BarchartSource(KEY, srv.url, http=http)


def test_envelope_5xx_with_http_200_is_retried(ondemand):
    fake, srv = ondemand
    fake.envelope_failures += [(500, "Internal error"), (503, "Service busy")]
    sleeps: list[float] = []
    with barchart(srv, sleeps) as src:
        table = src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
    got = [(r["snapshot_time"], r["iv"], r["iv_rank"], r["iv_percentile"]) for r in table.to_pylist()]
    assert got == [(CLOSE, 0.16, 25.0, 41.0)]
    assert len(srv.requests) == 3 and len(sleeps) == 2
    assert all(r.path == HISTORY and r.query["symbol"] == "SPY" for r in srv.requests)


def test_envelope_5xx_that_persists_fails_with_barchart_message(ondemand):
    fake, srv = ondemand
    fake.envelope_failures += [(500, f"Database timeout for apikey {KEY}")] * 3
    with barchart(srv, [], max_attempts=3) as src, pytest.raises(VendorError) as err:
        src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
    msg = str(err.value)
    assert len(srv.requests) == 3  # retried by the shared HTTP policy, as an HTTP 500 would be
    assert "failed after 3 attempt(s): HTTP 200 whose body says status 500: Database timeout for apikey" in msg
    assert KEY not in msg and HISTORY in msg


def test_envelope_4xx_fails_at_once_with_barchart_message(ondemand):
    fake, srv = ondemand
    fake.envelope_failures.append((403, "Not entitled to getEquityOptionsOverviewHistory"))
    sleeps: list[float] = []
    with barchart(srv, sleeps) as src, pytest.raises(PayloadError) as err:
        src.fetch_iv_rank(DAY, ["SPY"], [CLOSE])
    msg = str(err.value)
    assert len(srv.requests) == 1 and sleeps == []
    assert "field 'status.code' is 403 ('Not entitled to getEquityOptionsOverviewHistory')" in msg
    assert "(not retried)" in msg and KEY not in msg


# -- 3. BARCHART_CSV_DIR ----------------------------------------------------------------------


def test_relative_csv_dir_is_refused_when_the_definitions_load(tmp_path):
    from archive_platform.defs import build_definitions

    with pytest.raises(ValueError) as err:
        build_definitions(sim_env(tmp_path, ARCHIVE_SOURCE_IV_RANK="barchart", BARCHART_CSV_DIR="drops/barchart"))
    assert "BARCHART_CSV_DIR='drops/barchart' is a relative path" in str(err.value)


def test_missing_csv_dir_fails_naming_the_variable_and_the_path(tmp_path):
    gone = tmp_path / "no-such-folder"
    with pytest.raises(ValueError) as err:
        BarchartResource(csv_dir=str(gone)).client()
    assert str(err.value).startswith(f"BARCHART_CSV_DIR={str(gone)!r}: {gone} does not exist")
    a_file = tmp_path / "a-file.csv"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=r"BARCHART_CSV_DIR=.*a-file\.csv is not a folder"):
        BarchartResource(csv_dir=str(a_file)).client()
    with pytest.raises(ValueError, match=r"BARCHART_CSV_DIR='rel' is a relative path"):
        BarchartResource(csv_dir="rel").client()
    ok = tmp_path / "drops"
    ok.mkdir()
    assert BarchartResource(csv_dir=str(ok)).client().csv_dir == ok


def test_csv_dir_is_documented():
    text = (REPO / "docs" / "vendors.md").read_text()
    assert "BARCHART_CSV_DIR" in text and "absolute path" in text


# -- 4. IB VIX at the open and at the close -----------------------------------------------------

SESSION_DAY = date(2025, 7, 15)  # a full EDT session: 13:30-20:00 UTC


def vix_bars(day: date) -> list[BarData]:
    """One TRADES bar per session minute (formatDate=2: UTC starts), open 20 + i/100, close
    20 + i/100 + 0.005."""
    s = calendar.session(day)
    n = int((s.close_utc - s.open_utc).total_seconds() // 60)
    return [BarData(s.open_utc + timedelta(minutes=i), 20 + i / 100, 21.0, 19.0, 20 + i / 100 + 0.005,
                    -1.0, -1.0, -1) for i in range(n)]


def ib_vix(instants: list[datetime]):
    gw = FakeIBGateway(underlyings={"VIX": ("IND", 13455763)}, bar_script=[(vix_bars(SESSION_DAY), [])])
    src = IBSource(gateway=gw, clock=lambda: datetime(2025, 7, 16, tzinfo=UTC), sleep=lambda s: None,
                   breaker=new_breaker(),
                   pacer=HistoricalPacer(min_interval=0, clock=lambda: 0.0, sleep=lambda s: None))
    table = src.fetch_vix(SESSION_DAY, ["VIX"], instants)
    src.close()
    (call,) = [c for c in gw.calls if c[0] == "historical_bars"]
    rows = [(r["snapshot_time"], r["timestamp"], r["level"]) for r in table.to_pylist()]
    return rows, call[1]


def test_ib_backfill_of_the_open_alone_gets_the_opening_value():
    s = calendar.session(SESSION_DAY)
    rows, request = ib_vix([s.open_utc])
    assert rows == [(s.open_utc, s.open_utc, 20.0)]  # the 09:30 bar's open, observed at 09:30
    # the history ends one minute after the open, so the bar starting at 09:30 is sent
    assert request == ("VIX", s.open_utc + timedelta(minutes=1), "1 D", "1 min", "TRADES", True, 2)


def test_ib_backfill_of_open_and_close_gets_both():
    s = calendar.session(SESSION_DAY)
    rows, request = ib_vix([s.open_utc, s.close_utc])
    last = 20 + 389 / 100 + 0.005  # the 15:59 bar's close, observed at 16:00
    assert rows == [(s.open_utc, s.open_utc, 20.0), (s.close_utc, s.close_utc, pytest.approx(last))]
    assert request[1] == s.close_utc
