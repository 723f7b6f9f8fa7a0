"""The daily serving asset (``duckdb_views``) maintains every archive a dataset lives in.

With the crypto capture on, the UTC-day datasets live in the live archive while every NYSE
dataset may come from the simulated market. The asset used to pick archives by the NYSE source
selection only, so the live archive's snapshots were never expired and its views file, the one
holding the captured books, was never rebuilt."""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg
import duckdb

from archive_platform.crypto import sim_venue
from archive_platform.defs import build_definitions
from archive_platform.settings import Settings
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, sim_env

DAY = date(2025, 11, 29)


def _views(env):
    built = build_definitions(env)
    views = next(a for a in built.assets if isinstance(a, dg.AssetsDefinition) and a.key == dg.AssetKey("duckdb_views"))
    return dg.materialize([views], resources={"archive": built.resources["archive"]}, run_config=QUIET,
                          instance=dg.DagsterInstance.ephemeral())


def _store_books(root):
    start = int(datetime(2025, 11, 29, tzinfo=timezone.utc).timestamp()) * 1_000_000
    w = sim_venue.simulate("BTC", start, start + 600 * 1_000_000, seed=3, book_ms=1000)
    _, books = sim_venue.window_tables(w, exchange="hyperliquid", source="hyperliquid")
    store = ArchiveStore(root, kind="live")
    store.write_day("orderbook_l2", DAY, books)
    store.close()
    return books.num_rows


def test_with_capture_on_the_live_archive_gets_its_views_and_expiry(tmp_path):
    env = sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1")
    settings = Settings.from_env(env)
    assert {settings.sources.store_kind(d) for d in settings_datasets() if d.calendar_name == "nyse"} == {"sim"}
    rows = _store_books(tmp_path / "live")
    result = _views(env)
    meta = next(iter(result.asset_materializations_for_node("duckdb_views"))).metadata
    assert "live_views" in meta and "orderbook_l2" in meta["live_views"].value
    assert "live_expired_files" in meta  # the live lake exists, so its retention ran
    assert "sim_views" in meta  # and the NYSE datasets' archive still gets its views
    con = duckdb.connect(str(tmp_path / "live.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM orderbook_l2 WHERE date = ?", [DAY]).fetchone()[0] == rows
    finally:
        con.close()


def test_with_capture_off_only_the_simulated_archive_is_maintained(tmp_path):
    result = _views(sim_env(tmp_path))
    meta = next(iter(result.asset_materializations_for_node("duckdb_views"))).metadata
    assert "sim_views" in meta and not any(k.startswith("live_") for k in meta)
    assert not (tmp_path / "live.duckdb").exists()


def settings_datasets():
    from archive_platform.datasets import DATASETS

    return DATASETS
