"""Flow alerts after 16:00 ET are kept (issue 11, item 2): every alert of the market date.

A QQQ alert created at 16:27 ET (ETF options trade until 16:15 and the vendor reports later
alerts) goes through the Unusual Whales client, the store and the ``in_session`` check, and the
poll sensor still polls after the close.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa

from archive_platform import quality
from archive_platform.calendar import ET
from archive_platform.datasets.docs import render
from archive_platform.defs.automation import flow_poll
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.store import ArchiveStore
from archive_platform.vendors.uw import UnusualWhalesSource, build_http
from archive_platform.vendors.http import new_breaker
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.uw import UnusualWhalesFake, flow_alert

KEY = "uwkey_flowwindow"
DAY = date(2025, 11, 26)
EXP = date(2025, 11, 28)


def _et(h, m, day=DAY):
    return datetime(day.year, day.month, day.day, h, m, tzinfo=ET)


def _alert(sym, ts, i):
    return flow_alert(sym, ts, alert_id=f"a-{i}", expiry=EXP, right="C", strike=500.0,
                      total_premium=50000.0, ask_prem=40000.0, bid_prem=10000.0)


def _fetch(alerts) -> pa.Table:
    fake = UnusualWhalesFake(api_key=KEY)
    fake.alerts += alerts
    with FakeVendorServer() as srv:
        fake.install(srv)
        http = build_http(KEY, srv.url, breaker=new_breaker(), limiter=None, sleep=lambda s: None,
                          timeout=2.0)
        with UnusualWhalesSource(KEY, srv.url, http=http) as src:
            return src.fetch_uw_flow(DAY, ["SPY", "QQQ"])


def test_an_alert_after_the_close_is_fetched_stored_and_passes_the_window_check(tmp_path):
    alerts = [
        _alert("SPY", _et(10, 5), 1),
        _alert("QQQ", _et(16, 27), 2),  # after the close: ETF options trade until 16:15
        _alert("QQQ", _et(19, 40), 3),  # reported late in the evening, same market date
        _alert("SPY", _et(23, 50, DAY - timedelta(days=1)), 4),  # the previous market date
        _alert("SPY", _et(0, 10, DAY + timedelta(days=1)), 5),  # the next market date
    ]
    table = _fetch(alerts)
    got = sorted((r["symbol"], r["timestamp"].astimezone(ET).strftime("%H:%M"))
                 for r in table.to_pylist())
    assert got == [("QQQ", "16:27"), ("QQQ", "19:40"), ("SPY", "10:05")]

    store = ArchiveStore(tmp_path / "live", kind="live")
    store.write_day(ArchiveType.UW_FLOW, DAY, table)
    stored = store.read_day(ArchiveType.UW_FLOW, DAY)
    assert sorted(stored["alert_id"].to_pylist()) == ["a-1", "a-2", "a-3"]
    outcome = quality.check_in_window(stored, spec_for(ArchiveType.UW_FLOW), DAY)
    assert outcome.passed, outcome.description


def test_the_window_check_still_refuses_another_market_date():
    spec = spec_for(ArchiveType.UW_FLOW)
    assert spec.window == "day"
    lo, hi = spec.calendar.event_window(DAY, spec.window)
    assert lo == _et(0, 0) and hi == _et(0, 0, DAY + timedelta(days=1)) - timedelta(microseconds=1)


def test_the_poll_sensor_polls_after_the_close_until_20_et():
    at = _et(16, 27).astimezone(timezone.utc)
    key, since, until = flow_poll(at, (at - timedelta(minutes=1)).isoformat())
    assert key == DAY.isoformat() and until == at and since == at - timedelta(minutes=3)
    assert flow_poll(_et(20, 0).astimezone(timezone.utc), None) is None


def test_schemas_doc_says_which_window_each_dataset_keeps():
    doc = render()
    flow = doc.split("## `uw_flow`")[1].split("\n## ")[0]
    assert "Keeps events of the window `day`" in flow and "after the close" in flow
    options = doc.split("## `options`")[1].split("\n## ")[0]
    assert "Keeps events of the window `session`" in options
    assert "| `uw_flow` | `day` |" in doc and "| `trades` | `extended` |" in doc
