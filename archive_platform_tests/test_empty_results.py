"""Issue 11, item 1, through Dagster: a vendor answering no alerts for a day that has 300 stored
fails the materialization with a clear error and metadata, and changes nothing stored."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pyarrow.parquet as pq
import pytest

from archive_platform.store import ArchiveStore
from archive_platform.vendors.resilience import reset_registries
from archive_platform_tests.e2e_helpers import live_file, materialize, vendor_defs
from archive_platform_tests.fakes.server import FakeVendorServer
from archive_platform_tests.fakes.uw import UnusualWhalesFake, flow_alert
from archive_platform.schemas import ArchiveType

pytestmark = pytest.mark.slow
DAY = date(2025, 11, 26)
OPEN = datetime(2025, 11, 26, 14, 30, tzinfo=timezone.utc)
KEY = "uwkey_empty_0b1c2d3e"


def test_an_empty_vendor_answer_does_not_erase_a_stored_uw_flow_day(tmp_path, monkeypatch):
    reset_registries()
    fake = UnusualWhalesFake(api_key=KEY)
    fake.alerts = [flow_alert("SPY", OPEN + timedelta(seconds=10 + 60 * i), alert_id=f"uw-{i}",
                              expiry=date(2025, 11, 28), right="CP"[i % 2], strike=600.0,
                              total_premium=25_000.0, ask_prem=20_000.0, bid_prem=5_000.0)
                   for i in range(300)]
    with FakeVendorServer() as srv, dg.instance_for_test() as instance:
        fake.install(srv)
        defs = vendor_defs(tmp_path, monkeypatch, ARCHIVE_SOURCE_UW_FLOW="unusual_whales",
                           UW_API_KEY=KEY, UW_BASE_URL=srv.url)
        assert materialize(defs, ["uw_flow"], DAY, instance).success
        path = live_file(tmp_path, ArchiveType.UW_FLOW, DAY)
        assert pq.read_metadata(path).num_rows == 300
        fake.alerts = []  # the vendor now answers nothing for that day
        result = materialize(defs, ["uw_flow"], DAY, instance, raise_on_error=False)
    reset_registries()
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.event_specific_data
    assert "uw_flow 2025-11-26: refusing to replace 300 stored rows with an empty result" in data.error.message
    meta = {k: v.value for k, v in data.user_failure_data.metadata.items()}
    assert meta == {"refused": "an empty result would have replaced stored rows",
                    "partition": "2025-11-26", "stored_rows": 300}
    # nothing changed: the catalog and the plain layout still hold the 300 alerts
    assert ArchiveStore(tmp_path / "live").read_day("uw_flow", DAY).num_rows == 300
    assert pq.read_metadata(path).num_rows == 300


def test_store_refuses_an_empty_day_over_stored_rows_unless_declared_and_asked(tmp_path):
    """The store rule itself: refused by default; a dataset that declares the day may be empty
    and a caller that asks explicitly replace it."""
    import dataclasses

    from archive_platform.datasets import DATASETS
    from archive_platform.store import EmptyReplacementRefused
    from archive_platform_tests.store_helpers import make_table

    store = ArchiveStore(tmp_path / "sim", kind="sim")
    store.write_day("trades", DAY, make_table("trades", DAY, 4))
    empty = make_table("trades", DAY, 0)
    with pytest.raises(EmptyReplacementRefused, match="refusing to replace 4 stored rows"):
        store.write_day("trades", DAY, empty)
    with pytest.raises(EmptyReplacementRefused, match="does not declare an empty 2025-11-26 valid"):
        store.write_day("trades", DAY, empty, replace_empty=True)
    assert store.read_day("trades", DAY).num_rows == 4
    trades = next(d for d in DATASETS if d.name == "trades")
    lenient = dataclasses.replace(trades, empty_valid=lambda day: True)
    with pytest.raises(EmptyReplacementRefused, match="did not pass replace_empty=True"):
        store.write_day(lenient, DAY, empty)
    store.write_day(lenient, DAY, empty, replace_empty=True)
    assert store.read_day("trades", DAY).num_rows == 0
