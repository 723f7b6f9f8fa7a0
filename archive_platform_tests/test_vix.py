"""The tutorial dataset ``vix`` (docs/adding-a-dataset.md), end to end."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pyarrow as pa
import pytest

from archive_platform import calendar
from archive_platform.archiving import fetch
from archive_platform.datasets import BY_NAME
from archive_platform.sim import SimulatedMarket
from archive_platform.store import ArchiveStore
from archive_platform.store.errors import ArchiveValidationError
from archive_platform.views import connect, refresh_views
from archive_platform_tests.dagster_helpers import QUIET, checks, defs_for, materializations

FULL, HALF = date(2025, 11, 26), date(2025, 11, 28)
VIX = BY_NAME["vix"]


def test_simulated_vix_follows_the_snapshot_grid():
    sim = SimulatedMarket()
    for day, n in ((FULL, 27), (HALF, 15)):
        t = fetch(VIX, sim, day, ["SPY"], instants=calendar.snapshot_times(day))
        assert t.num_rows == n and t.schema.equals(VIX.schema)
        assert set(t["symbol"].to_pylist()) == {"VIX"}
        levels = t["level"].to_pylist()
        assert all(5 < v < 80 for v in levels)
        assert t["snapshot_time"].to_pylist() == calendar.snapshot_times(day)
    again = fetch(VIX, SimulatedMarket(), FULL, [], instants=calendar.snapshot_times(FULL))
    assert again.equals(fetch(VIX, sim, FULL, [], instants=calendar.snapshot_times(FULL)))


def test_store_refuses_a_non_positive_level(tmp_path):
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    t = fetch(VIX, SimulatedMarket(), FULL, [], instants=calendar.snapshot_times(FULL))
    levels = t["level"].to_pylist()
    levels[4] = -1.0
    bad = t.set_column(t.schema.get_field_index("level"), t.schema.field("level"), pa.array(levels))
    with pytest.raises(ArchiveValidationError, match="column 'level' has value -1.0 at row 4, breaking the rule 'level > 0'"):
        store.write_day("vix", FULL, bad)
    assert store.days("vix") == []


@pytest.mark.slow
def test_vix_archived_through_dagster_with_checks_and_daily_ohlc(tmp_path):
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY")
    with dg.instance_for_test() as instance:
        result = dg.materialize([defs.resolve_assets_def("vix")], partition_key=FULL.isoformat(),
                                instance=instance, run_config=QUIET)
    assert result.success
    assert materializations(result)["vix"]["dagster/row_count"] == 27
    evals = {name: e for (asset, name), e in checks(result).items() if asset == "vix"}
    assert {n: e.passed for n, e in evals.items()} == {
        "schema": True, "unique_key": True, "in_session": True, "complete": True, "values": True}
    stored = ArchiveStore(tmp_path / "sim", kind="sim").read_day("vix", FULL)
    levels = stored["level"].to_pylist()
    db = tmp_path / "views.duckdb"
    refresh_views(tmp_path / "sim", db)
    con = connect(db)
    row = con.execute(
        "SELECT arg_min(level, snapshot_time), max(level), min(level), arg_max(level, snapshot_time) "
        "FROM vix WHERE date = DATE '2025-11-26'"
    ).fetchone()
    con.close()
    assert row == (levels[0], max(levels), min(levels), levels[-1])
