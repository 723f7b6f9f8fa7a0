"""Datasets as declarations: the registry, hard/soft value rules, settings read once, and the
calendars (a 24/7 dataset declared here materializes a Saturday; an NYSE one refuses it)."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from archive_platform import quality
from archive_platform.config import ConfigError
from archive_platform.datasets import DATASETS, MODULES, Dataset, Rule
from archive_platform.datasets.base import TS, make_schema
from archive_platform.defs import build_definitions
from archive_platform.defs.resources import SourcesResource, source_class
from archive_platform.settings import Settings
from archive_platform.store import ArchiveStore
from archive_platform.store.errors import ArchiveValidationError, NotATradingDayError
from archive_platform_tests.dagster_helpers import QUIET, sim_env
from archive_platform_tests.store_helpers import options_snapshot

REPO = Path(__file__).resolve().parents[1]
SATURDAY = date(2025, 11, 29)
UTC = timezone.utc


def test_registry_lists_one_module_per_dataset():
    assert [d.name for d in DATASETS] == list(MODULES)
    assert "vix" in MODULES
    for d in DATASETS:
        assert set(d.units) == set(d.schema.names)  # the data dictionary covers every column
        assert d.grain.startswith("one row per")


def test_declared_backfill_sources_match_the_source_classes():
    """The declaration's ``backfill_sources`` says what the client classes say (no drift)."""
    for d in DATASETS:
        for name in d.sources:
            if name == "derived":
                continue
            cls = source_class(name)
            assert (name in d.backfill_sources) == (d.name in {t.value for t in cls.backfillable}), (
                d.name, name)


@pytest.mark.parametrize("value, message", [
    ("abc", "ARCHIVE_RECOVERY_LOOKBACK='abc' is not an integer"),
    ("-5", "ARCHIVE_RECOVERY_LOOKBACK=-5 is out of range; allowed: 1..365"),
    ("100000000", "ARCHIVE_RECOVERY_LOOKBACK=100000000 is out of range"),
])
def test_every_setting_is_validated_and_named(value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env({"ARCHIVE_RECOVERY_LOOKBACK": value})
    with pytest.raises(ConfigError, match="IB_PORT=70000 is out of range"):
        Settings.from_env({"IB_PORT": "70000"})
    with pytest.raises(ConfigError, match="ARCHIVE_SIM_SEED='x' is not an integer"):
        Settings.from_env({"ARCHIVE_SIM_SEED": "x"})
    s = Settings.from_env({"ARCHIVE_RECOVERY_LOOKBACK": "20", "ARCHIVE_ROOT": "/a"})
    assert s.recovery_lookback == 20 and s.root("live") == Path("/a")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'recovery_lookback'"):
        s.recovery_lookback = 3  # frozen
    assert s.recovery_lookback == 20


def test_no_module_reads_the_environment_but_settings_and_the_cli():
    pattern = re.compile(r"os\.environ|os\.getenv|getenv\(")
    offenders = []
    for path in (REPO / "archive_platform").rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        if rel == "archive_platform/settings.py" or rel.startswith("archive_platform/cli/"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert offenders == []


def test_pure_layers_import_no_dagster():
    for sub in ("datasets", "calendars", "store", "sim"):
        for path in (REPO / "archive_platform" / sub).rglob("*.py"):
            assert "import dagster" not in path.read_text(), path
    for name in ("settings.py", "storage.py", "archiving.py", "quality.py", "config.py", "calendar.py"):
        assert "import dagster" not in (REPO / "archive_platform" / name).read_text(), name


def test_hard_rules_refuse_the_batch_naming_column_and_row(tmp_path):
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    day = date(2025, 11, 26)
    good = options_snapshot(day, 0)
    store.write_day("options", day, good)
    for col, value, rule in [("right", "X", "right is C or P"), ("strike", float("nan"), "strike is finite"),
                             ("volume", -3, "volume >= 0"), ("iv", -0.2, "iv >= 0")]:
        values = good[col].to_pylist()
        values[2] = value
        bad = good.set_column(good.schema.get_field_index(col), col, pa.array(values, good[col].type))
        with pytest.raises(ArchiveValidationError, match=rf"column '{col}' has value .* at row \d+, breaking the rule '{re.escape(rule)}'"):
            store.write_day("options", day, bad)
    assert store.read_day("options", day).num_rows == good.num_rows  # nothing stored changed
    # iv_rank is a 0-100 scale: a fraction-looking 120 is refused
    from archive_platform_tests.store_helpers import iv_rank_rows

    rows = iv_rank_rows(day, [(7, "SPY", 0.2)])
    rows = rows.set_column(rows.schema.get_field_index("iv_rank"), rows.schema.field("iv_rank"),
                           pa.array([120.0]))
    with pytest.raises(ArchiveValidationError, match=r"column 'iv_rank' has value 120.0 at row 0, breaking the rule 'iv_rank in \[0,100\]'"):
        store.write_day("iv_rank", day, rows)


def test_soft_anomaly_is_stored_and_counted_by_the_check(tmp_path):
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    day = date(2025, 11, 26)
    from archive_platform import calendar
    from archive_platform.sim import SimulatedMarket

    t = SimulatedMarket().fetch_options(day, ["SPY"], calendar.snapshot_times(day)[:1])
    bid, ask = t["bid"].to_pylist(), t["ask"].to_pylist()
    i = next(k for k, a in enumerate(ask) if a is not None)
    bid[i] = ask[i] + 0.5  # a crossed quote
    t = t.set_column(t.schema.get_field_index("bid"), "bid", pa.array(bid, pa.float64()))
    store.write_day("options", day, t)
    stored = store.read_day("options", day)
    assert stored.num_rows == t.num_rows
    outcome = quality.check_values(stored, DATASETS[MODULES.index("options")])
    assert not outcome.passed and outcome.metadata["violations"] == {"bid <= ask": 1}
    assert outcome.metadata["hard_violations"] == []


# -- a 24/7 dataset declared here, on the UTC calendar --------------------------------------------

TICKS_SCHEMA = make_schema(
    [pa.field("timestamp", TS, nullable=False), pa.field("symbol", pa.string(), nullable=False),
     pa.field("price", pa.float64(), nullable=False)],
    "One row per test tick.", et_offset=False,
)


def _simulate_ticks(market, day, symbols, instants, **_):
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ts = [start + timedelta(hours=h) for h in range(24)]
    return pa.table({"timestamp": pa.array(ts, TS), "symbol": ["BTC"] * 24,
                     "price": [90_000.0 + h for h in range(24)], "source": ["sim"] * 24},
                    schema=TICKS_SCHEMA)


TICKS = Dataset(
    name="test_ticks", schema=TICKS_SCHEMA, dedup_key=("symbol", "timestamp"),
    sort_key=("symbol", "timestamp"), grain="one row per test tick",
    description="Test-only 24/7 dataset, one row per hourly tick.",
    units={"timestamp": "UTC", "symbol": "coin", "price": "USD", "source": "sim"},
    group="test", sources=("sim",), backfill_sources=frozenset({"sim"}),
    calendar_name="utc", window="day",
    rules=(Rule("price > 0", "price", __import__("polars").col("price") > 0, hard=True),),
    freshness=("0 1 * * *", timedelta(hours=24)), simulate=_simulate_ticks,
)


def test_utc_dataset_materializes_a_saturday_and_nyse_refuses_it(tmp_path):
    built = build_definitions(sim_env(tmp_path), datasets=[*DATASETS, TICKS])
    sources = SourcesResource(symbols=["SPY"], as_of="2025-12-01T00:00:00+00:00")
    defs = dg.Definitions(assets=built.assets, jobs=built.jobs,
                          resources={**built.resources, "sources": sources})
    ticks = defs.resolve_assets_def("test_ticks")
    pdef = ticks.partitions_def
    assert pdef.timezone == "UTC"
    with dg.partition_loading_context(effective_dt=datetime(2025, 12, 2, tzinfo=UTC)):
        assert pdef.has_partition_key("2025-11-29") and pdef.has_partition_key("2025-11-30")
    assert "archive_all_utc" in {j.name for j in defs.jobs}
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("archive_all_utc").execute_in_process(  # the crypto datasets: test_crypto_assets
        partition_key="2025-11-29", instance=instance, run_config=QUIET,
        asset_selection=[dg.AssetKey("test_ticks")])
    assert result.success
    stored = ArchiveStore(tmp_path / "sim", kind="sim").read_day(TICKS, SATURDAY)
    assert stored.num_rows == 24 and stored["price"][0].as_py() == 90_000.0
    assert (tmp_path / "sim" / "test_ticks" / "date=2025-11-29" / "test_ticks_20251129.parquet").exists()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"schema": True, "unique_key": True, "in_session": True, "complete": True,
                      "values": True}
    # the NYSE dataset has no Saturday partition: Dagster refuses the key before any code runs
    with pytest.raises(dg.DagsterUnknownPartitionError, match="Could not find a partition with key `2025-11-29`"):
        defs.resolve_job_def("archive_all").execute_in_process(
            partition_key="2025-11-29", instance=instance, run_config=QUIET)
    # and the store itself refuses a Saturday for an NYSE dataset, naming the day and calendar
    with pytest.raises(NotATradingDayError, match="cannot store options for 2025-11-29: 2025-11-29 is not an NYSE trading day"):
        ArchiveStore(tmp_path / "sim", kind="sim").write_day("options", SATURDAY, options_snapshot(date(2025, 11, 28), 0))


def test_store_implements_the_storage_contract_and_reads_a_range(tmp_path):
    from archive_platform.storage import Storage
    from archive_platform.store import layout

    store = ArchiveStore(tmp_path / "sim", kind="sim")
    assert isinstance(store, Storage)
    days = [date(2025, 11, 25), date(2025, 11, 26), date(2025, 11, 28)]
    for i, day in enumerate(days):
        store.write_day("options", day, options_snapshot(day, 0, symbols=i + 1))
        assert store.daily_path("options", day) == layout.partition_dir(
            store.root, "options", day) / layout.daily_name("options", day)
    got = store.read_range("options", date(2025, 11, 26), date(2025, 11, 30))
    per_day = [store.read_day("options", d).num_rows for d in days[1:]]
    assert got.num_rows == sum(per_day) and per_day[0] > 0
    snaps = got["snapshot_time"].to_pylist()
    assert snaps == sorted(snaps)  # day order
    assert store.read_range("options", date(2025, 12, 1), date(2025, 12, 5)).num_rows == 0


@pytest.mark.parametrize("raw", ["..", ".", "-", "SPY/..", "Ｓ", "SPY１", "SPY٣", "A\x00B", "'SPY'", "SPY,,.."])
def test_archive_symbols_follow_the_vendor_ticker_grammar(raw):
    """Issue 11 item 4: settings refuse what the vendor clients would refuse, naming the variable."""
    with pytest.raises(ConfigError, match="ARCHIVE_SYMBOLS"):
        Settings.from_env({"ARCHIVE_SYMBOLS": raw})


def test_archive_symbols_accept_class_shares_and_normalise_case():
    s = Settings.from_env({"ARCHIVE_SYMBOLS": " brk.b, SPY ,spy"})
    assert list(s.symbols) == ["BRK.B", "SPY"]
