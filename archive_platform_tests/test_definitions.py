"""The whole code location loads, and its configuration fails loudly when wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from archive_platform.config import ConfigError, SourceSelection
from archive_platform.defs import build_definitions
from archive_platform.datasets import DATASETS
from archive_platform.defs.derived_assets import RECONCILE
from archive_platform.schemas import ArchiveType
from archive_platform_tests.dagster_helpers import sim_env

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = [t.value for t in ArchiveType]


def test_backfill_chunk_is_one_size_per_deployment(tmp_path):
    """Simulated deployments backfill in chunks of 84 sessions (process starts dominated a
    year's backfill); one vendor-backed dataset brings every NYSE asset back to 5, so no job
    mixes policies."""
    from archive_platform_tests.dagster_helpers import defs_for

    live = defs_for(tmp_path, ARCHIVE_SOURCE_STOCKS_1M="polygon", POLYGON_API_KEY="k")
    graph = live.resolve_asset_graph()
    chunks = {d.name: graph.get(dg.AssetKey(d.name)).backfill_policy.max_partitions_per_run
              for d in DATASETS if d.calendar_name == "nyse"}
    chunks["backtests"] = graph.get(dg.AssetKey("backtests")).backfill_policy.max_partitions_per_run
    assert set(chunks.values()) == {5}, chunks
    sim = build_definitions(sim_env(tmp_path)).resolve_asset_graph()
    assert sim.get(dg.AssetKey("backtests")).backfill_policy.max_partitions_per_run == 84


def test_definitions_graph(tmp_path):
    defs = build_definitions(sim_env(tmp_path))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(ARCHIVE) | {"duckdb_views", "coverage", "backtests"}
    # gex is derived from options; the views depend on every dataset and the coverage ledger
    assert graph.get(dg.AssetKey("gex")).parent_keys == {dg.AssetKey("options")}
    assert graph.get(dg.AssetKey("duckdb_views")).parent_keys == {dg.AssetKey(a) for a in [*ARCHIVE, "coverage"]}
    for d in (d for d in DATASETS if d.calendar_name == "utc"):  # crypto: defs/crypto.py
        node = graph.get(dg.AssetKey(d.name))
        assert node.partitions_def.timezone == "UTC"
        if d.derived_from:  # crypto_candles, orderbook_features... (defs/crypto_derived.py)
            assert {k.name for k in node.check_keys} == {"schema", "unique_key", "in_session", "values",
                                                         "complete", "matches_inputs"}, d.name
            assert node.parent_keys == {dg.AssetKey(n) for n in d.derived_from}, d.name
            continue
        assert {k.name for k in node.check_keys} == {"schema", "unique_key", "in_session", "values"} | (
            set() if d.name == "capture_gaps" else {"coverage"})
    for d in (d for d in DATASETS if d.calendar_name == "nyse"):
        node = graph.get(dg.AssetKey(d.name))
        assert isinstance(node.partitions_def, dg.TimeWindowPartitionsDefinition)
        assert node.partitions_def.timezone == "America/New_York", d.name
        # every NYSE dataset simulated or derived: a year backfills in 3 runs of 84 sessions
        assert node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run == 84
        assert "one row per" in (node.description or "")
        checks = {k.name for k in node.check_keys}
        base = {"schema", "unique_key", "in_session", "complete", "values"}
        # the derived daily datasets are also recomputed from their stored inputs
        assert checks == (base | {"matches_inputs"} if d.name in RECONCILE else base), d.name
    # options' guarding checks block gex; completeness does not
    opts = defs.resolve_assets_def("options")
    blocking = {s.name for s in opts.check_specs if s.blocking}
    assert blocking == {"schema", "unique_key", "in_session", "values"}
    assert {s.name for s in defs.schedules} == {
        "options_snapshots", "grid_snapshots", "iv_rank_snapshots", "end_of_day", "refresh_views",
        "coverage_ledger", "archive_utc_daily"}
    assert {s.name for s in defs.sensors} == {"uw_flow_poll", "recover_missing_partitions", "recover_utc_days",
                                              "refresh_crypto_derived"}
    recover = next(s for s in defs.sensors if s.name == "recover_missing_partitions")
    assert recover.default_status == dg.DefaultSensorStatus.RUNNING


def test_module_definitions_validate_with_cli(tmp_path):
    """`dagster definitions validate` on the real module, as a user runs it."""
    env = {**os.environ, **sim_env(tmp_path), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text((REPO / "deploy" / "instance" / "dagster.yaml").read_text())
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-m", "archive_platform.definitions"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_importing_definitions_reads_no_environment(monkeypatch):
    """Nothing happens at import: a bad setting fails when Dagster loads, not when importing."""
    monkeypatch.setenv("ARCHIVE_SOURCE_OPTIONS", "nonsense")
    code = "import archive_platform.definitions as d; print('imported')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "ARCHIVE_SOURCE_OPTIONS": "nonsense"}, cwd=REPO)
    assert out.returncode == 0 and "imported" in out.stdout, out.stderr


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ARCHIVE_SOURCE_OPTIONS": "bloomberg"},
         "ARCHIVE_SOURCE_OPTIONS='bloomberg' is not supported for options; choose one of: sim, thetadata, polygon, ib"),
        ({"ARCHIVE_SOURCE_TRADES": "polygon"}, "ARCHIVE_SOURCE_TRADES='polygon' is not supported for trades"),
        ({"ARCHIVE_SOURCE_UW_FLOW": "unusual_whales"}, "UW_API_KEY is not set, but uw_flow is configured"),
        ({"ARCHIVE_SOURCE_OPTIONS": "thetadata", "ARCHIVE_SOURCE_GEX": "sim"}, "would mix simulated and live data"),
        ({"ARCHIVE_SOURCE_IV_RANK": "barchart"}, "needs BARCHART_API_KEY (OnDemand API) or BARCHART_CSV_DIR"),
    ],
)
def test_unsupported_configuration_fails_at_load(tmp_path, env, message):
    with pytest.raises(ConfigError) as err:
        build_definitions(sim_env(tmp_path, **env))
    assert message in str(err.value)


def test_vendor_selection_switches_root_and_defaults_gex_to_derived():
    sel = SourceSelection.from_env({"ARCHIVE_SOURCE_OPTIONS": "thetadata"})
    assert sel["gex"] == "derived"
    assert sel.store_kind("options") == "live" and sel.store_kind("gex") == "live"
    assert sel.store_kind("uw_flow") == "sim"


def test_secrets_arrive_as_envvar_and_never_in_config(tmp_path, monkeypatch):
    monkeypatch.setenv("UW_API_KEY", "uw-secret-123")
    defs = build_definitions(sim_env(tmp_path, ARCHIVE_SOURCE_UW_FLOW="unusual_whales", UW_API_KEY="uw-secret-123"))
    # one resource per vendor, holding its key as an EnvVar (the variable's name, not the value)
    uw = defs.resources["vendor_unusual_whales"]
    assert isinstance(uw.api_key, dg.EnvVar) and uw.api_key.env_var_name == "UW_API_KEY"
    assert "uw-secret-123" not in repr(uw) and "uw-secret-123" not in repr(defs.resources["sources"])
    assert "vendor_polygon" not in defs.resources  # only the vendors the configuration uses
    # vendor-backed assets take a slot of their vendor's pool; simulated ones need none
    assert defs.resolve_assets_def("uw_flow").op.pool == "vendor_unusual_whales"
    assert defs.resolve_assets_def("options").op.pool is None


def test_bad_start_date_names_the_variable(tmp_path):
    with pytest.raises(ValueError, match="environment variable ARCHIVE_START_DATE 2025-11-27 is not an NYSE trading day"):
        build_definitions(sim_env(tmp_path, ARCHIVE_START_DATE="2025-11-27"))


def test_snapshot_minutes_must_divide_thirty(tmp_path):
    with pytest.raises(ValueError, match="does not divide 30"):
        build_definitions(sim_env(tmp_path, ARCHIVE_SNAPSHOT_MINUTES="7"))




def test_every_allowed_vendor_pair_is_served_by_that_vendor():
    """Configuration never offers a pair the client cannot serve (it would fail at 3 am, not at load)."""
    from archive_platform.config import ALLOWED_SOURCES
    from archive_platform.defs.resources import source_class

    for t, allowed in ALLOWED_SOURCES.items():
        for name in allowed:
            if name == "derived":
                continue
            source_cls = source_class(name)
            assert t in source_cls.supported, f"{name} is allowed for {t.value} but does not serve it"
            assert source_cls.name == name

