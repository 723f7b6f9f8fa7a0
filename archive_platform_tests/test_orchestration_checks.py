"""Asset checks per partition, as the UI's check Partitions tab reads them from the instance
(``get_asset_check_partition_info``): every day of a run gets its own result of every check,
tied to that day's materialization, and a day with bad data fails with readable metadata.

* a backfill chunk (one run over a range of sessions) records ``matches_inputs`` of every
  derived dataset and ``consistent`` of ``backtests`` per day, and backtests each day as of itself;
* a tampered day fails its own ``matches_inputs`` while the other days of the range pass;
* the crypto checks are per UTC day: a captured day with a silent stream fails ``coverage``,
  the next day passes, and a day with nothing captured fails its run, naming why.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.crypto.schemas import CRYPTO_TRADES
from archive_platform.crypto.spool import spool_dir
from archive_platform.defs import build_definitions
from archive_platform.defs.derived_assets import RECONCILE
from archive_platform.defs.resources import SourcesResource
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, defs_for, run_job, sim_env

UTC = timezone.utc
DAYS = ["2025-11-24", "2025-11-25", "2025-11-26"]
RANGE = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}


def _partition_info(instance, asset: str, check: str) -> dict:
    info = instance.event_log_storage.get_asset_check_partition_info([dg.AssetCheckKey(dg.AssetKey(asset), check)])
    return {i.partition_key: i for i in info}


def _latest(instance, asset: str, check: str, partition: str):
    """The latest evaluation of ``check`` on ``partition`` as stored by the instance."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    for rec in instance.event_log_storage.get_asset_check_execution_history(key, limit=50):
        ev = rec.event
        if ev is not None and ev.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION" \
                and ev.dagster_event.event_specific_data.partition == partition:
            return ev.dagster_event.event_specific_data
    return None


@pytest.fixture(scope="module")
def chunk(tmp_path_factory):
    """archive_all over three sessions in ONE run, as a backfill chunk of the daemon runs it."""
    tmp = tmp_path_factory.mktemp("chunk")
    defs = defs_for(tmp, ARCHIVE_SYMBOLS="SPY")
    with dg.instance_for_test() as instance:
        result = run_job(defs, "archive_all", instance, tags=RANGE)
        assert result.success
        yield tmp, defs, instance, result


def test_a_backfill_chunk_records_every_derived_check_for_every_day(chunk):
    _, _, instance, result = chunk
    for name in RECONCILE:
        by_day = _partition_info(instance, name, "matches_inputs")
        # one executed result per day; none left "planned" (shown as running for ever) and no
        # result without a partition
        assert set(by_day) == set(DAYS), name
        assert {k: i.latest_execution_status.value for k, i in by_day.items()} == dict.fromkeys(DAYS, "SUCCEEDED")
        assert all(i.is_current for i in by_day.values()), name
        for day in DAYS:
            ev = _latest(instance, name, "matches_inputs", day)
            assert ev.passed and ev.metadata["partition"].value == day
            # tied to that day's own materialization
            (mat,) = [e for e in result.get_asset_materialization_events()
                      if e.event_specific_data.materialization.asset_key == dg.AssetKey(name)
                      and e.event_specific_data.materialization.partition == day]
            rec = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(name), asset_partitions=[day]), limit=1).records[0]
            assert ev.target_materialization_data.storage_id == rec.storage_id
    evals = [(e.asset_key.to_user_string(), e.check_name, e.partition) for e in result.get_asset_check_evaluations()
             if e.check_name in ("matches_inputs", "consistent")]
    assert sorted(evals) == sorted([(n, "matches_inputs", d) for n in RECONCILE for d in DAYS]
                                   + [("backtests", "consistent", d) for d in DAYS])


def test_a_backfill_chunk_backtests_each_day_as_of_itself(chunk):
    tmp, _, instance, result = chunk
    by_day = _partition_info(instance, "backtests", "consistent")
    assert {k: i.latest_execution_status.value for k, i in by_day.items()} == dict.fromkeys(DAYS, "SUCCEEDED")
    mats = {m.partition: {k: v.value for k, v in m.metadata.items()}
            for e in result.get_asset_materialization_events()
            if (m := e.event_specific_data.materialization).asset_key == dg.AssetKey("backtests")}
    assert sorted(mats) == DAYS
    for day, meta in mats.items():
        assert meta["as_of"] == day  # each day's own backtest, not the chunk's last day's
        assert f"date={day}" in meta["equity_path"] and Path(meta["equity_path"]).is_file()
        curve = pl.read_parquet(meta["equity_path"])
        assert curve["equity"][-1] == pytest.approx(meta["equity_final"], rel=1e-12)
        assert meta["history"].endswith(f"({DAYS.index(day) + 1} sessions, {meta['rows']} candles)") \
            and meta["history"].startswith(f"{DAYS[0]}..{day}")
    assert mats[DAYS[0]]["rows"] < mats[DAYS[1]]["rows"] < mats[DAYS[2]]["rows"]


def test_a_tampered_day_fails_its_own_check_and_only_its_own(chunk):
    tmp, defs, instance, _ = chunk
    store = ArchiveStore(tmp / "sim", kind="sim")
    day = date.fromisoformat(DAYS[1])
    bars = store.read_day("daily_bars", day)
    store.write_day("daily_bars", day, bars.set_column(
        bars.schema.get_field_index("volume"), "volume", (pl.from_arrow(bars["volume"]) + 7).to_arrow()))
    check = dg.AssetCheckKey(dg.AssetKey("daily_bars"), "matches_inputs")
    job = dg.define_asset_job("check_daily_bars", selection=dg.AssetSelection.checks(check),
                              partitions_def=defs.resolve_job_def("archive_all").partitions_def)
    d = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=defs.resources)
    r = d.resolve_job_def("check_daily_bars").execute_in_process(
        instance=instance, run_config=QUIET, tags=RANGE, raise_on_error=False)
    assert not r.success  # the check blocks market_regime: a failed day stops the run
    by_day = _partition_info(instance, "daily_bars", "matches_inputs")
    assert {k: i.latest_execution_status.value for k, i in by_day.items()} == {
        DAYS[0]: "SUCCEEDED", DAYS[1]: "FAILED", DAYS[2]: "SUCCEEDED"}
    ev = _latest(instance, "daily_bars", "matches_inputs", DAYS[1])
    assert not ev.passed and ev.description.startswith(f"differs from its inputs on {DAYS[1]}")
    assert ev.metadata["problems"].value == ["1 values differ from the input"]
    assert any("volume" in x for x in ev.metadata["differences"].value)


# -- crypto ----------------------------------------------------------------------------------------


def _hl_trades(day: date, symbol: str, n: int) -> pa.Table:
    t0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
    times = [t0 + timedelta(seconds=60 * i + 1) for i in range(n)]
    return pa.table({"exchange": ["hyperliquid"] * n, "symbol": [symbol] * n, "trade_id": list(range(1, n + 1)),
                     "event_time": times, "price": [100.0 + i for i in range(n)], "size": [1.0] * n,
                     "side": ["buy"] * n, "receive_time": times, "source": ["hyperliquid"] * n},
                    schema=CRYPTO_TRADES)


def _spool(root: Path, dataset: str, day: date, table: pa.Table) -> None:
    folder = spool_dir(root, dataset, day)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0000000000001000000-1-0.parquet")


def test_crypto_checks_are_per_utc_day_and_fail_on_a_silent_stream(tmp_path):
    live = tmp_path / "live"
    sick, well, empty = date(2025, 11, 29), date(2025, 11, 30), date(2025, 12, 1)
    _spool(live, "crypto_trades", sick, _hl_trades(sick, "BTC", 50))  # ETH captured nothing
    _spool(live, "crypto_trades", well, pa.concat_tables([_hl_trades(well, "BTC", 50), _hl_trades(well, "ETH", 50)]))
    built = build_definitions(sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1", ARCHIVE_CRYPTO_SYMBOLS="BTC,ETH"))
    defs = dg.Definitions(assets=built.assets, jobs=built.jobs, asset_checks=built.asset_checks, resources={
        **built.resources, "sources": SourcesResource(symbols=["SPY"], as_of="2025-12-03T00:00:00+00:00")})
    job = defs.resolve_job_def("archive_all_utc")
    with dg.instance_for_test() as instance:
        for day in (sick, well, empty):
            job.execute_in_process(partition_key=day.isoformat(), instance=instance, run_config=QUIET,
                                   asset_selection=[dg.AssetKey("crypto_trades")], raise_on_error=False)
        cov = _partition_info(instance, "crypto_trades", "coverage")
        # one result per day (no result without a partition, nothing left planned)
        # one result per day, no result without a partition; the empty day's check never ran
        # because its run failed (the UI shows the planned check of a failed run as failed)
        assert {k: i.latest_execution_status.value for k, i in cov.items()} == {
            sick.isoformat(): "FAILED", well.isoformat(): "SUCCEEDED", empty.isoformat(): "PLANNED"}
        planned_by = instance.get_run_by_id(cov[empty.isoformat()].latest_planned_run_id)
        assert planned_by.status == dg.DagsterRunStatus.FAILURE
        ev = _latest(instance, "crypto_trades", "coverage", sick.isoformat())
        assert not ev.passed and "hyperliquid:crypto_trades:ETH" in ev.description
        streams = {s["stream"]: s for s in ev.metadata["streams"].value}
        assert streams["hyperliquid:crypto_trades:ETH"]["ratio"] == 0.0
        assert streams["hyperliquid:crypto_trades:BTC"]["ratio"] == 1.0
        assert ev.metadata["coverage_min"].value == 0.99
        schema = _partition_info(instance, "crypto_trades", "schema")
        assert {k: i.latest_execution_status.value for k, i in schema.items()
                if k != empty.isoformat()} == {sick.isoformat(): "SUCCEEDED", well.isoformat(): "SUCCEEDED"}
        # the day with nothing captured: the run fails, saying why, and the partition is FAILED
        status = instance.get_status_by_partition(dg.AssetKey("crypto_trades"), [empty.isoformat()],
                                                  job.partitions_def)
        assert status[empty.isoformat()].value == "FAILED"
        (failure,) = [r for r in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))]
        assert failure.dagster_run.tags["dagster/partition"] == empty.isoformat()
        logs = instance.all_logs(failure.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        assert "nothing captured and nothing backfilled" in logs[0].dagster_event.event_specific_data.error.to_string()
