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


def _snapshots(root) -> list[int]:
    from archive_platform.lake import connect

    con = connect(root)
    try:
        return [r[0] for r in con.execute("SELECT snapshot_id FROM ducklake_snapshots('lake') ORDER BY 1").fetchall()]
    finally:
        con.close()


def _age(root, when: datetime) -> None:
    """Every snapshot of the lake at ``root`` committed at ``when`` (through DuckDB's sqlite
    extension: Python's sqlite3 must not open a catalog DuckDB uses in this process)."""
    from archive_platform.lake.extensions import new_connection

    con = new_connection(("sqlite_scanner",))
    try:
        con.execute(f"ATTACH '{root / '_lake' / 'catalog.sqlite'}' AS c (TYPE sqlite)")
        con.execute("UPDATE c.ducklake_snapshot SET snapshot_time = ?",
                    [when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")])
    finally:
        con.close()


def test_the_retention_setting_is_the_period_the_daily_maintenance_expires(tmp_path):
    """ARCHIVE_LAKE_RETENTION_DAYS sets what duckdb_views expires: snapshots three days old
    stay with the default (7 days) and go with a retention of 2 days; the latest stays."""
    from datetime import timedelta

    rows = _store_books(tmp_path / "live")
    _store_books(tmp_path / "live")  # a second write of the day: the first snapshot is superseded
    before = _snapshots(tmp_path / "live")
    assert len(before) >= 3
    _age(tmp_path / "live", datetime.now(timezone.utc) - timedelta(days=3))

    kept = _views(sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1"))
    meta = next(iter(kept.asset_materializations_for_node("duckdb_views"))).metadata
    assert meta["live_retention_days"].value == 7
    assert _snapshots(tmp_path / "live") == before

    short = _views(sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1", ARCHIVE_LAKE_RETENTION_DAYS="2"))
    meta = next(iter(short.asset_materializations_for_node("duckdb_views"))).metadata
    assert meta["live_retention_days"].value == 2
    assert _snapshots(tmp_path / "live") == before[-1:]  # only the snapshot current at the cutoff
    con = duckdb.connect(str(tmp_path / "live.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM orderbook_l2 WHERE date = ?", [DAY]).fetchone()[0] == rows
    finally:
        con.close()


def test_a_retention_under_a_day_is_refused_naming_the_variable(tmp_path):
    import pytest

    from archive_platform.config import ConfigError

    assert Settings.from_env(sim_env(tmp_path)).lake_retention_days == 7
    assert Settings.from_env(sim_env(tmp_path, ARCHIVE_LAKE_RETENTION_DAYS="30")).lake_retention_days == 30
    for bad in ("0", "-1", "7d", "1.5"):
        with pytest.raises(ConfigError, match="ARCHIVE_LAKE_RETENTION_DAYS"):
            Settings.from_env(sim_env(tmp_path, ARCHIVE_LAKE_RETENTION_DAYS=bad))
