"""``vix`` from the vendors: the grid sampling rule, and Polygon ``I:VIX`` aggregates, ThetaData
index price history and IB ``Index('VIX', 'CBOE')`` bars against loopback fakes speaking each
vendor's format (the Polygon and ThetaData fakes over HTTP, IB at the gateway seam)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from ib_async.objects import BarData

from archive_platform import calendar
from archive_platform.datasets import BY_NAME
from archive_platform.sources.base import EmptySession
from archive_platform.vendors.errors import PayloadError, VendorError
from archive_platform.vendors.http import new_breaker
from archive_platform.vendors.ib import IBSource
from archive_platform.vendors.ib_seam import HistoricalPacer
from archive_platform.vendors.polygon import PolygonSource, build_http
from archive_platform.vendors.thetadata import ThetaDataSource
from archive_platform.vendors.vix import Level, bar_levels, sample_to_grid
from archive_platform_tests.fakes.ib import FakeIBGateway
from archive_platform_tests.fakes.polygon import PolygonFake
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.thetadata import FakeThetaTerminal, et_ms
from archive_platform_tests.fakes.thetadata_v3 import PRICE, FakeThetaTerminalV3, ts

UTC = timezone.utc
KEY = "pgkey_vix_Hq55Rt2w"
VIX = BY_NAME["vix"]
WINTER = date(2025, 1, 15)  # EST: the session is 14:30-21:00 UTC
SUMMER = date(2025, 7, 15)  # EDT: 13:30-20:00 UTC
HALF = date(2025, 11, 28)  # the day after Thanksgiving closes at 13:00 ET (18:00 UTC)
PRICE_FMT = ["ms_of_day", "price", "date"]


def level(i: int) -> float:
    """A distinct VIX value per minute of the session (minute 0 = the open)."""
    return round(15.0 + 0.01 * i, 4)


def minutes(day: date) -> int:
    s = calendar.session(day)
    return int((s.close_utc - s.open_utc).total_seconds() // 60)


def index_bars(day: date, skip: range = range(0)) -> list[dict]:
    """Polygon index aggregates of the session (``t`` = bar start in ms; no volume for an
    index), plus two of Cboe's global-trading-hours bars before the open."""
    s = calendar.session(day)
    out = []
    for i in [-3, -1, *range(minutes(day))]:
        if i in skip:
            continue
        t = s.open_utc + timedelta(minutes=i)
        out.append({"t": int(t.timestamp() * 1000), "o": level(i) - 0.005, "h": level(i) + 0.02,
                    "l": level(i) - 0.02, "c": level(i)} if i >= 0 else
                   {"t": int(t.timestamp() * 1000), "o": 99.0, "h": 99.0, "l": 99.0, "c": 99.0})
    return out


def expected(day: date) -> list[tuple[datetime, datetime, float]]:
    """(snapshot_time, timestamp, level) the bar rule gives for the whole grid of ``day``."""
    s = calendar.session(day)
    out = []
    for g in calendar.snapshot_times(day):
        i = int((g - s.open_utc).total_seconds() // 60)
        out.append((g, g, level(0) - 0.005) if i == 0 else (g, g, level(i - 1)))
    return out


def rows(table) -> list[tuple[datetime, datetime, float]]:
    return [(r["snapshot_time"], r["timestamp"], r["level"]) for r in table.to_pylist()]


# -- the sampling rule ---------------------------------------------------------------------------


def test_bar_rule_uses_closes_from_the_bar_end_and_the_open_only_at_the_open():
    s = calendar.session(WINTER)
    o = s.open_utc
    bars = [(o - timedelta(minutes=1), 50.0, 50.0),  # before the open: ignored
            (o, 16.0, 16.5), (o + timedelta(minutes=1), 16.5, 17.0),
            (o + timedelta(minutes=9), 18.0, 19.0)]  # a gap of 7 bars, then one more
    obs = bar_levels(bars, s, "polygon", "test")
    assert obs == [Level(o, 16.0), Level(o + timedelta(minutes=1), 16.5),
                   Level(o + timedelta(minutes=2), 17.0), Level(o + timedelta(minutes=10), 19.0)]
    grid = [o, o + timedelta(minutes=1), o + timedelta(seconds=119), o + timedelta(minutes=7),
            o + timedelta(minutes=8), o + timedelta(minutes=10)]
    got = dict(sample_to_grid(obs, grid, max_age=timedelta(minutes=5)))
    assert got[o].value == 16.0  # the opening instant takes the open of the opening bar
    assert got[o + timedelta(minutes=1)].value == 16.5  # the close of the bar that just ended
    # 09:31:59: the 09:31 bar has not ended, so its close (17.0) is not used yet (no look-ahead)
    assert got[o + timedelta(seconds=119)] == Level(o + timedelta(minutes=1), 16.5)
    assert got[o + timedelta(minutes=7)].value == 17.0  # 5 minutes old: still within max_age
    assert o + timedelta(minutes=8) not in got  # 6 minutes old: left out
    assert got[o + timedelta(minutes=10)] == Level(o + timedelta(minutes=10), 19.0)


def test_bar_rule_refuses_a_non_positive_value_naming_the_vendor():
    s = calendar.session(WINTER)
    with pytest.raises(PayloadError, match=r"ib: here: VIX value 0\.0 at 2025-01-15T14:32:00\+00:00 "
                                           "is not a positive finite number"):
        bar_levels([(s.open_utc + timedelta(minutes=1), 15.0, 0.0)], s, "ib", "here")


# -- Polygon ---------------------------------------------------------------------------------------


@pytest.fixture
def polygon():
    fake = PolygonFake(api_key=KEY)
    with FakeVendorServer() as srv:
        fake.install(srv)
        yield fake, srv


def polygon_source(srv, **kw) -> PolygonSource:
    http = build_http(KEY, srv.url, breaker=new_breaker(), timeout=0.5, sleep=lambda s: None, **kw)
    return PolygonSource(KEY, srv.url, http=http)


def test_polygon_i_vix_bars_sampled_to_the_grid_across_pages(polygon):
    fake, srv = polygon
    fake.bars["I:VIX"] = index_bars(WINTER)
    fake.bars_page_size = 150  # 392 bars: three pages linked by next_url
    with polygon_source(srv) as src:
        t = src.fetch_vix(WINTER, ["VIX"], calendar.snapshot_times(WINTER))
    assert t.schema.equals(VIX.schema, check_metadata=False)
    assert rows(t) == expected(WINTER) and t.num_rows == 27
    assert rows(t)[1] == (datetime(2025, 1, 15, 14, 45, tzinfo=UTC),) * 2 + (15.14,)
    assert set(t["symbol"].to_pylist()) == {"VIX"} and set(t["source"].to_pylist()) == {"polygon"}
    assert set(t["et_offset"].to_pylist()) == {-300}
    assert len(srv.requests) == 3
    first = srv.requests[0]
    # the ticker is sent as Polygon documents it: I:VIX, the colon not percent-encoded
    assert first.raw_path.startswith("/v2/aggs/ticker/I:VIX/range/1/minute/2025-01-15/2025-01-15?")
    assert first.query == {"sort": "asc", "limit": "50000", "apiKey": KEY}
    assert all(r.path.startswith("/v2/aggs/ticker/I:VIX/range/1/minute/") and r.query["apiKey"] == KEY
               for r in srv.requests[1:])


def test_polygon_gap_leaves_those_snapshots_out(polygon, caplog):
    fake, srv = polygon
    # no index update between 10:00 and 10:24 ET: 10:15 has nothing newer than 10:00
    fake.bars["I:VIX"] = index_bars(WINTER, skip=range(30, 55))
    with polygon_source(srv) as src:
        t = src.fetch_vix(WINTER, ["VIX"], calendar.snapshot_times(WINTER))
    got = {g: (ts, v) for g, ts, v in rows(t)}
    ten = datetime(2025, 1, 15, 15, 0, tzinfo=UTC)
    assert ten + timedelta(minutes=15) not in got and t.num_rows == 26
    assert got[ten] == (ten, level(29))
    assert got[ten + timedelta(minutes=30)] == (ten + timedelta(minutes=30), level(59))
    assert "no VIX value within 0:05:00 before 1 of 27 instant(s)" in caplog.text


def test_polygon_empty_session_is_an_empty_session_error(polygon):
    _, srv = polygon
    with polygon_source(srv) as src, pytest.raises(EmptySession, match=r"polygon: no VIX value in the 2025-01-15 session"):
        src.fetch_vix(WINTER, ["VIX"], calendar.snapshot_times(WINTER))


def test_polygon_delayed_plan_names_the_lag(polygon):
    fake, srv = polygon
    fake.bars["I:VIX"] = index_bars(WINTER)[:20]  # values up to 09:47 ET only
    with polygon_source(srv) as src, pytest.raises(EmptySession, match="a delayed-data plan lags by 15 min"):
        src.fetch_vix(WINTER, ["VIX"], [datetime(2025, 1, 15, 15, 0, tzinfo=UTC)])


def test_polygon_refusal_names_vendor_status_and_key_variable_without_the_key(polygon):
    _, srv = polygon
    srv.fail_next(1, status=403, body={"status": "NOT_AUTHORIZED", "request_id": "x",
                                       "message": "You are not entitled to this data."})
    with polygon_source(srv) as src, pytest.raises(VendorError) as err:
        src.fetch_vix(WINTER, ["VIX"], calendar.snapshot_times(WINTER))
    msg = str(err.value)
    assert err.value.status == 403 and "polygon" in msg and "POLYGON_API_KEY" in msg
    assert "/v2/aggs/ticker/I:VIX/range/1/minute" in msg and "apiKey=REDACTED" in msg and KEY not in msg
    assert len(srv.requests) == 1  # a refusal is not retried


def test_polygon_server_errors_are_retried_then_fail(polygon):
    fake, srv = polygon
    fake.bars["I:VIX"] = index_bars(WINTER)
    srv.fail_next(2, status=502)
    with polygon_source(srv) as src:
        assert src.fetch_vix(WINTER, ["VIX"], calendar.snapshot_times(WINTER)).num_rows == 27
    srv.fail_next(5, status=500)
    with polygon_source(srv, max_attempts=5) as src, pytest.raises(VendorError, match="failed after 5 attempt"):
        src.fetch_vix(WINTER, ["VIX"], calendar.snapshot_times(WINTER))


@pytest.mark.parametrize("bad, problem", [
    ({"o": 15.0}, "'c'"),  # a bar without its close
    ({"c": "n/a"}, "'c'"),
])
def test_polygon_malformed_bar_names_field_and_row(polygon, bad, problem):
    fake, srv = polygon
    bars = index_bars(WINTER)
    broken = {k: v for k, v in bars[7].items() if k != "c"} | bad
    fake.bars["I:VIX"] = bars[:7] + [broken] + bars[8:]
    with polygon_source(srv) as src, pytest.raises(PayloadError) as err:
        src.fetch_vix(WINTER, ["VIX"], calendar.snapshot_times(WINTER))
    assert "polygon: unexpected payload from" in str(err.value) and problem in str(err.value)
    assert "row 7" in str(err.value) and KEY not in str(err.value)


def test_polygon_non_positive_level_is_refused(polygon):
    fake, srv = polygon
    bars = index_bars(WINTER)
    bars[40]["c"] = -1.0
    fake.bars["I:VIX"] = bars
    with polygon_source(srv) as src, pytest.raises(PayloadError, match=r"polygon: .*VIX value -1\.0"):
        src.fetch_vix(WINTER, ["VIX"], calendar.snapshot_times(WINTER))


def test_only_vix_and_only_session_instants(polygon):
    _, srv = polygon
    with polygon_source(srv) as src:
        with pytest.raises(ValueError, match=r"the vix dataset is the VIX index only, not \['SPY'\]"):
            src.fetch_vix(WINTER, ["SPY"], calendar.snapshot_times(WINTER))
        with pytest.raises(ValueError, match="is outside the 2025-01-15 session"):
            src.fetch_vix(WINTER, ["VIX"], [datetime(2025, 1, 15, 21, 15, tzinfo=UTC)])
    assert srv.requests == []


# -- ThetaData v2 (THETADATA_API=v2) -------------------------------------------------------------


@pytest.fixture
def theta():
    with FakeVendorServer() as srv:
        yield FakeThetaTerminal(srv, page_size=200), srv


def price_rows(day: date, n: int | None = None) -> list[list]:
    """``hist/index/price`` at ivl=60000: one price per minute 09:30..close inclusive (the price
    AT that instant); the first minute reports 0 (no report yet, as the terminal fills it)."""
    d = int(f"{day:%Y%m%d}")
    n = minutes(day) + 1 if n is None else n
    return [[et_ms(9, 30) + i * 60_000, 0 if i == 0 else level(i), d] for i in range(n)]


def test_thetadata_price_at_each_grid_instant_across_pages(theta):
    term, srv = theta
    term.set("/v2/hist/index/price", PRICE_FMT, price_rows(SUMMER), root="VIX", ivl=60000)
    with ThetaDataSource(srv.url, api="v2", timeout=2.0) as src:
        t = src.fetch_vix(SUMMER, [], calendar.snapshot_times(SUMMER))
    assert t.schema.equals(VIX.schema, check_metadata=False) and t.num_rows == 26
    got = {g: (ts, v) for g, ts, v in rows(t)}
    open_ = datetime(2025, 7, 15, 13, 30, tzinfo=UTC)
    assert open_ not in got  # 09:30 reported 0: no value at the open, so no row
    for k in range(1, 27):
        g = open_ + timedelta(minutes=15 * k)
        assert got[g] == (g, level(15 * k))  # the price at exactly that instant
    assert set(t["et_offset"].to_pylist()) == {-240} and set(t["source"].to_pylist()) == {"thetadata"}
    first = srv.requests[0]
    assert first.path == "/v2/hist/index/price"
    assert first.query == {"root": "VIX", "start_date": "20250715", "end_date": "20250715", "ivl": "60000"}
    assert len(srv.requests) == 2  # 391 rows in pages of 200: next_page followed


def test_thetadata_no_data_is_an_empty_session(theta):
    _, srv = theta  # nothing registered: the fake terminal answers 472 NO_DATA
    with ThetaDataSource(srv.url, api="v2", timeout=2.0) as src, pytest.raises(EmptySession, match="thetadata: no VIX value in the 2025-07-15 session"):
        src.fetch_vix(SUMMER, ["VIX"], calendar.snapshot_times(SUMMER))


def test_thetadata_permission_error_names_the_subscription(theta):
    _, srv = theta
    srv.fail_next(1, status=471, body="PERMISSION")
    with ThetaDataSource(srv.url, api="v2", timeout=2.0) as src, pytest.raises(VendorError) as err:
        src.fetch_vix(SUMMER, ["VIX"], calendar.snapshot_times(SUMMER))
    assert err.value.status == 471 and "/v2/hist/index/price" in str(err.value)
    assert "PERMISSION: your ThetaData subscription does not include this data" in str(err.value)


@pytest.mark.parametrize("fmt, response, problem", [
    (["ms_of_day", "close", "date"], [[et_ms(10), 15.0, 20250715]], r"header.format .* lacks \['price'\]"),
    (PRICE_FMT, [[et_ms(10), 15.0]], r"response\[0\] is \[36000000, 15.0\]; expected 3 values"),
    (PRICE_FMT, [[et_ms(10), 15.0, "yesterday"]], r"'yesterday' is not a YYYYMMDD date"),
    (PRICE_FMT, [[et_ms(10), None, 20250715]], r"VIX value None"),
])
def test_thetadata_malformed_answer_names_the_problem(theta, fmt, response, problem):
    term, srv = theta
    term.set("/v2/hist/index/price", fmt, response, root="VIX")
    with ThetaDataSource(srv.url, api="v2", timeout=2.0) as src, pytest.raises(PayloadError, match=problem) as err:
        src.fetch_vix(SUMMER, ["VIX"], calendar.snapshot_times(SUMMER))
    assert str(err.value).startswith("thetadata: ")


# -- ThetaData v3 (the default API) ------------------------------------------------------------


@pytest.fixture
def theta_v3():
    with FakeVendorServer() as srv:
        yield FakeThetaTerminalV3(srv), srv


def price_rows_v3(day: date) -> list[dict]:
    """``/v3/index/history/price`` at interval=1m: the price AT each minute 09:30..close; the
    first minute reports 0.0 (the docs' sample), the second an empty cell (no report yet)."""
    s = calendar.session(day)
    out = []
    for i in range(minutes(day) + 1):
        wall = (s.open_utc + timedelta(minutes=i)).astimezone(calendar.ET)
        price = 0.0 if i == 0 else None if i == 1 else level(i)
        out.append({"timestamp": ts(day, wall.hour, wall.minute), "price": price})
    return out


@pytest.mark.parametrize("day", [WINTER, SUMMER])
def test_thetadata_v3_price_at_each_grid_instant(theta_v3, day):
    term, srv = theta_v3
    term.set("/v3/index/history/price", price_rows_v3(day), symbol="VIX", interval="1m")
    with ThetaDataSource(srv.url, timeout=2.0) as src:
        t = src.fetch_vix(day, ["VIX"], calendar.snapshot_times(day))
    assert t.schema.equals(VIX.schema, check_metadata=False) and t.num_rows == 26
    got = {g: (ts_, v) for g, ts_, v in rows(t)}
    open_ = calendar.session(day).open_utc  # 14:30 UTC in January (EST), 13:30 in July (EDT)
    assert open_ not in got  # 0.0 at 09:30, nothing at 09:31: no value within reach of the open
    for k in range(1, 27):
        g = open_ + timedelta(minutes=15 * k)
        assert got[g] == (g, level(15 * k))
    assert set(t["et_offset"].to_pylist()) == {-300 if day == WINTER else -240}
    (req,) = srv.requests
    assert req.path == "/v3/index/history/price"
    assert req.query == {"symbol": "VIX", "date": f"{day:%Y%m%d}", "interval": "1m", "format": "csv"}


def test_thetadata_v3_no_data_is_an_empty_session(theta_v3):
    _, srv = theta_v3  # nothing registered: the fake terminal answers 472 NO_DATA
    with ThetaDataSource(srv.url, timeout=2.0) as src, pytest.raises(EmptySession, match="thetadata: no VIX value in the 2025-07-15 session"):
        src.fetch_vix(SUMMER, ["VIX"], calendar.snapshot_times(SUMMER))


@pytest.mark.parametrize("columns, cells, problem", [
    (["timestamp", "close"], {"close": 15.0}, r"lacks the column\(s\) \['price'\]"),
    (PRICE, {"price": "n/a"}, r"row 2: price 'n/a' is not a number"),
    (PRICE, {"timestamp": "15/07/2025 10:00"}, r"timestamp '15/07/2025 10:00' is not"),
    (PRICE, {"price": -1.0}, r"VIX value -1.0"),
])
def test_thetadata_v3_malformed_answer_names_the_problem(theta_v3, columns, cells, problem):
    term, srv = theta_v3
    term.set("/v3/index/history/price", [{"timestamp": ts(SUMMER, 10), **cells}], columns=columns, symbol="VIX")
    with ThetaDataSource(srv.url, timeout=2.0) as src, pytest.raises(PayloadError, match=problem) as err:
        src.fetch_vix(SUMMER, ["VIX"], calendar.snapshot_times(SUMMER))
    assert str(err.value).startswith("thetadata: ") and "/v3/index/history/price" in str(err.value)


# -- IB -------------------------------------------------------------------------------------------

VIX_CON_ID = 13455763


def ib_bars(day: date, n: int | None = None) -> list[BarData]:
    """``reqHistoricalData`` TRADES bars of the index (formatDate=2: UTC bar starts; an index
    has no volume, IB sends -1)."""
    s = calendar.session(day)
    n = minutes(day) if n is None else n
    return [BarData(s.open_utc + timedelta(minutes=i), level(i) - 0.005, level(i) + 0.02,
                    level(i) - 0.02, level(i), -1.0, -1.0, -1) for i in range(n)]


def ib_source(gw: FakeIBGateway, now: datetime) -> IBSource:
    return IBSource(gateway=gw, clock=lambda: now, sleep=lambda s: None, breaker=new_breaker(),
                    pacer=HistoricalPacer(min_interval=0, clock=lambda: 0.0, sleep=lambda s: None))


def test_ib_index_bars_of_a_half_day(caplog):
    gw = FakeIBGateway(underlyings={"VIX": ("IND", VIX_CON_ID)}, bar_script=[(ib_bars(HALF), [])])
    src = ib_source(gw, datetime(2025, 11, 29, tzinfo=UTC))
    t = src.fetch_vix(HALF, ["VIX"], calendar.snapshot_times(HALF))
    src.close()
    assert rows(t) == expected(HALF) and t.num_rows == 15
    assert set(t["source"].to_pylist()) == {"ib"}
    close = datetime(2025, 11, 28, 18, 0, tzinfo=UTC)
    assert ("qualify", 1) in gw.calls
    assert ("historical_bars", ("VIX", close, "1 D", "1 min", "TRADES", True, 2)) in gw.calls
    assert gw.calls[-1] == ("disconnect", None)


def test_ib_live_snapshot_asks_history_up_to_the_instant():
    day = date(2025, 11, 21)
    g = datetime(2025, 11, 21, 15, 0, tzinfo=UTC)  # 10:00 ET, 30 bars so far
    gw = FakeIBGateway(underlyings={"VIX": ("IND", VIX_CON_ID)}, bar_script=[(ib_bars(day, 30), [])])
    t = ib_source(gw, g + timedelta(seconds=5)).fetch_vix(day, ["VIX"], [g])
    assert rows(t) == [(g, g, level(29))]
    (call,) = [c for c in gw.calls if c[0] == "historical_bars"]
    assert call[1][1] == g


def test_ib_no_data_is_an_empty_session():
    gw = FakeIBGateway(underlyings={"VIX": ("IND", VIX_CON_ID)},
                       bar_script=[([], [(162, "HMDS query returned no data: VIX@CBOE Trades")])])
    with pytest.raises(EmptySession, match="ib: no VIX value in the 2025-11-28 session"):
        ib_source(gw, datetime(2025, 11, 29, tzinfo=UTC)).fetch_vix(HALF, ["VIX"], calendar.snapshot_times(HALF))


def test_ib_errors_name_the_vendor_and_the_problem():
    now = datetime(2025, 11, 29, tzinfo=UTC)
    unknown = FakeIBGateway()  # no VIX index: error 200 on qualification
    with pytest.raises(VendorError, match="ib: cannot qualify underlying VIX .error 200"):
        ib_source(unknown, now).fetch_vix(HALF, ["VIX"], calendar.snapshot_times(HALF))
    denied = FakeIBGateway(underlyings={"VIX": ("IND", VIX_CON_ID)}, bar_script=[
        ([], [(162, "Historical Market Data Service error message:No market data permissions for CBOE IND")])])
    with pytest.raises(VendorError, match="ib: reqHistoricalData VIX 2025-11-28: error 162: .*No market data permissions"):
        ib_source(denied, now).fetch_vix(HALF, ["VIX"], calendar.snapshot_times(HALF))
    naive = ib_bars(HALF, 3)
    naive[1] = BarData(datetime(2025, 11, 28, 9, 31), 15.0, 15.0, 15.0, 15.0, -1.0, -1.0, -1)
    malformed = FakeIBGateway(underlyings={"VIX": ("IND", VIX_CON_ID)}, bar_script=[(naive, [])])
    with pytest.raises(PayloadError, match=r"ib: reqHistoricalData VIX 2025-11-28: bar date .* is not a UTC datetime"):
        ib_source(malformed, now).fetch_vix(HALF, ["VIX"], calendar.snapshot_times(HALF))
