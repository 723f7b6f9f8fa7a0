"""Each archive asset materialized through Dagster against the simulated market, into temp roots."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from archive_platform import calendar
from archive_platform.defs.assets import CHECKS, TAG_MODE, TAG_SINCE, TAG_SNAPSHOT, TAG_UNTIL
from archive_platform.defs.derived_assets import RECONCILE
from archive_platform.schemas import SPECS, ArchiveType

#: the datasets the NYSE job `archive_all` archives (UTC datasets have their own job)
NYSE = [t for t in ArchiveType if SPECS[t].calendar_name == "nyse"]
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import checks, defs_for, materializations, run_job

FULL_DAY = date(2025, 11, 26)  # Wednesday before Thanksgiving: a full session
HALF_DAY = date(2025, 11, 28)  # 13:00 close
SYMS = ["AAPL", "QQQ", "SPY"]


@pytest.fixture(scope="module")
def archived_full_day(tmp_path_factory):
    """Every NYSE dataset materialized for one full session (shared: it is the expensive part)."""
    tmp = tmp_path_factory.mktemp("full")
    defs = defs_for(tmp)
    with dg.instance_for_test() as instance:
        result = run_job(defs, "archive_all", instance, partition_key=FULL_DAY.isoformat())
        yield tmp, result, instance


def test_every_asset_writes_the_seed_layout(archived_full_day):
    tmp, result, _ = archived_full_day
    assert result.success
    for t in NYSE:
        spec = SPECS[t]
        path = tmp / "sim" / spec.directory / "date=2025-11-26" / f"{spec.file_stem}_20251126.parquet"
        assert path.exists(), f"{t.value} not at {path}"
        meta = pq.read_metadata(path)
        assert meta.row_group(0).column(0).compression == "ZSTD"
        assert pq.read_schema(path).names == [*spec.schema.names, "date"]  # plus the partition column
    assert (tmp / "sim" / "stocks" / "date=2025-11-26" / "stocks_1m_20251126.parquet").exists()


def test_materialization_metadata_matches_the_files(archived_full_day):
    tmp, result, _ = archived_full_day
    meta = materializations(result)
    store = ArchiveStore(tmp / "sim", kind="sim")
    for t in NYSE:
        m = meta[t.value]
        table = store.read_day(t, FULL_DAY)
        assert m["dagster/row_count"] == table.num_rows > 0
        on_disk = sum(p.stat().st_size for p in store.partition_files(t, FULL_DAY))
        assert m["dagster/size_bytes"] == on_disk and isinstance(m["dagster/size_bytes"], int)
        assert m["compression_ratio"] == pytest.approx(table.nbytes / on_disk, abs=0.005)  # rounded to 2 places
        assert m["path"].endswith("date=2025-11-26")
        # the preview is a table of the first stored rows, not Markdown
        preview = m["preview"]
        assert isinstance(preview, dg.TableMetadataValue)
        assert len(preview.records) == min(5, table.num_rows)
        first = table.slice(0, 1).to_pylist()[0]
        col = preview.schema.columns[0].name
        assert preview.records[0].data[col] == (
            first[col].isoformat() if hasattr(first[col], "isoformat") else first[col])
        # first/last event as timestamps (epoch seconds) equal to the stored extremes
        ts = table["timestamp"].to_pylist()
        assert m["first_event"] == min(ts).timestamp() and m["last_event"] == max(ts).timestamp()
        # the column schema carries each column's unit / meaning from the declaration
        cols = {c.name: c for c in m["dagster/column_schema"].columns}
        assert list(cols) == SPECS[t].schema.names
        assert all(cols[n].description == SPECS[t].units[n] for n in cols)
    assert meta["options"]["snapshots"] == 27 and meta["gex"]["snapshots"] == 27
    assert meta["iv_rank"]["snapshots"] == 2
    assert meta["stocks_1m"]["dagster/row_count"] == 390 * len(SYMS)
    assert meta["options"]["symbols"] == len(SYMS) and meta["options"]["symbol_list"] == ", ".join(SYMS)


def test_all_checks_pass_on_a_clean_day(archived_full_day):
    _, result, _ = archived_full_day
    evals = checks(result)
    # every NYSE dataset's five checks, the derived datasets' reconcile check, the backtests' own
    assert len(evals) == len(NYSE) * 5 + len(RECONCILE) + 1
    failed = {k: e.description for k, e in evals.items() if not e.passed}
    assert failed == {}
    assert evals[("stocks_1m", "complete")].metadata["expected_bars_per_symbol"].value == 390
    assert evals[("options", "complete")].metadata["expected_snapshots"].value == 27


def test_gex_agrees_with_the_options_it_came_from(archived_full_day):
    tmp, _, _ = archived_full_day
    store = ArchiveStore(tmp / "sim", kind="sim")
    opts = store.read_day(ArchiveType.OPTIONS, FULL_DAY).to_pylist()
    gex = store.read_day(ArchiveType.GEX, FULL_DAY).to_pylist()
    first = min(r["snapshot_time"] for r in opts)
    want = 0.0
    for r in opts:
        if r["symbol"] == "SPY" and r["snapshot_time"] == first and r["right"] == "C":
            want += (r["gamma"] or 0) * (r["open_interest"] or 0) * 100 * r["underlying_price"] ** 2 * 0.01
    got = sum(g["call_gex"] for g in gex if g["symbol"] == "SPY" and g["snapshot_time"] == first)
    assert got == pytest.approx(want, rel=1e-9)


def test_half_day_has_fewer_snapshots_and_bars(tmp_path):
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY")
    with dg.instance_for_test() as instance:
        result = run_job(defs, "archive_all", instance, partition_key=HALF_DAY.isoformat())
    meta = materializations(result)
    assert meta["options"]["snapshots"] == 15
    assert meta["stocks_1m"]["dagster/row_count"] == 210
    assert all(e.passed for e in result.get_asset_check_evaluations())
    last = datetime.fromtimestamp(meta["stocks_1m"]["last_event"], timezone.utc)
    assert last == datetime(2025, 11, 28, 17, 59, tzinfo=timezone.utc)  # 12:59 ET bar start


def test_intraday_snapshot_appends_one_part_and_eod_compacts(tmp_path):
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY")
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    grid = calendar.snapshot_times(FULL_DAY)
    with dg.instance_for_test() as instance:
        for ts in grid[:3]:
            r = run_job(defs, "options_snapshot", instance, partition_key=FULL_DAY.isoformat(),
                        tags={TAG_MODE: "snapshot", TAG_SNAPSHOT: ts.isoformat()})
            assert r.success
        parts = store.partition_files(ArchiveType.OPTIONS, FULL_DAY)
        assert len(parts) == 3 and all(p.name.startswith("part-") for p in parts)  # one lake file each
        meta = materializations(r)
        assert meta["options"]["snapshots"] == 3 and meta["gex"]["snapshots"] == 3
        # run the same snapshot again: idempotent, and the simulated market sends the same
        # rows, which the day already holds as one part: no new file, said so in the log
        rerun = run_job(defs, "options_snapshot", instance, partition_key=FULL_DAY.isoformat(),
                        tags={TAG_MODE: "snapshot", TAG_SNAPSHOT: grid[2].isoformat()})
        again = store.read_day(ArchiveType.OPTIONS, FULL_DAY)
        assert again.num_rows == meta["options"]["dagster/row_count"]
        assert store.partition_files(ArchiveType.OPTIONS, FULL_DAY) == parts
        said = [r.user_message for r in instance.all_logs(rerun.run_id)]
        assert any(" options " in m and "rows already stored as sent (unchanged)" in m for m in said), said
        eod = run_job(defs, "options_snapshot", instance, partition_key=FULL_DAY.isoformat(),
                      tags={TAG_MODE: "eod"})
        [daily] = store.partition_files(ArchiveType.OPTIONS, FULL_DAY)  # published in the plain layout
        assert daily.samefile(store.daily_path(ArchiveType.OPTIONS, FULL_DAY))
        assert store.read_day(ArchiveType.OPTIONS, FULL_DAY).num_rows == again.num_rows
        # completeness is judged against the full session and fails: 3 of 27 snapshots
        evals = checks(eod)
        assert not evals[("options", "complete")].passed
        assert "without exactly 27 snapshots" in evals[("options", "complete")].description


def test_flow_polls_store_each_alert_once(tmp_path):
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY,QQQ")
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    s = calendar.session(FULL_DAY)
    cuts = [s.open_utc.replace(hour=s.open_utc.hour + h) for h in (1, 3, 5)] + [s.close_utc]
    since = None
    with dg.instance_for_test() as instance:
        for until in cuts:
            tags = {TAG_MODE: "poll", TAG_UNTIL: until.isoformat()}
            if since:
                tags[TAG_SINCE] = since.isoformat()
            assert run_job(defs, "uw_flow_poll", instance, partition_key=FULL_DAY.isoformat(), tags=tags).success
            since = until
        polled = store.read_day(ArchiveType.UW_FLOW, FULL_DAY)
        # the whole day fetched at once equals the union of the polls
        full = run_job(defs, "uw_flow_poll", instance, partition_key=FULL_DAY.isoformat())
        whole = store.read_day(ArchiveType.UW_FLOW, FULL_DAY)
    assert polled.num_rows == whole.num_rows > 0
    assert sorted(polled["alert_id"].to_pylist()) == sorted(whole["alert_id"].to_pylist())
    assert materializations(full)["uw_flow"]["dagster/row_count"] == whole.num_rows


def test_three_day_backfill_in_one_chunked_run(tmp_path):
    """A backfill over a range runs as one run covering the chunk (BackfillPolicy.multi_run) and
    still reports ONE materialization per day with that day's own figures, and each day's checks
    (issue 11 item 7: every day used to carry the run's totals and the last day's path)."""
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY")
    days = ["2025-11-24", "2025-11-25", "2025-11-26"]
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    with dg.instance_for_test() as instance:
        result = run_job(
            defs, "archive_all", instance,
            tags={"dagster/asset_partition_range_start": days[0],
                  "dagster/asset_partition_range_end": days[-1]},
        )
        assert result.success
        for t in NYSE:
            key = dg.AssetKey(t.value)
            mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
                    if e.event_specific_data.materialization.asset_key == key]
            assert sorted(m.partition for m in mats) == days, t.value  # one per day, no run total
            for m in mats:
                day = date.fromisoformat(m.partition)
                files = store.partition_files(t, day)
                assert m.metadata["dagster/row_count"].value == sum(pq.read_metadata(f).num_rows for f in files)
                assert m.metadata["dagster/size_bytes"].value == sum(f.stat().st_size for f in files)
                assert m.metadata["path"].value.endswith(f"date={m.partition}")
            # each day's check results, stored per partition and tied to that day's materialization
            check_keys = [dg.AssetCheckKey(key, name) for name in CHECKS]
            info = instance.event_log_storage.get_asset_check_partition_info(check_keys)
            by = {(i.check_key.name, i.partition_key): i for i in info}
            assert set(by) == {(n, d) for n in CHECKS for d in days}, t.value
            assert all(i.latest_execution_status.value == "SUCCEEDED" and i.is_current for i in info)
        evals = [e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("options")]
        assert sorted((e.check_name, e.partition) for e in evals) == sorted((n, d) for n in CHECKS for d in days)
    rows = {m.partition: m.metadata["dagster/row_count"].value
            for e in result.get_asset_materialization_events()
            if (m := e.event_specific_data.materialization).asset_key == dg.AssetKey("stocks_1m")}
    assert rows == {d: 390 for d in days}
    # each day's completeness check counts that day's rows, not the run's
    complete = {e.partition: e.metadata["rows"].value for e in evals if e.check_name == "complete"}
    assert complete == {d: store.read_day(ArchiveType.OPTIONS, date.fromisoformat(d)).num_rows for d in days}
    assert store.days(ArchiveType.GEX) == [date(2025, 11, 24), date(2025, 11, 25), date(2025, 11, 26)]


def test_views_asset_serves_what_the_store_holds(archived_full_day):
    tmp, _, instance = archived_full_day
    import duckdb

    defs = defs_for(tmp)
    assert run_job(defs, "refresh_views", instance).success
    con = duckdb.connect(str(tmp / "sim.duckdb"), read_only=True)
    store = ArchiveStore(tmp / "sim", kind="sim")
    for t in NYSE:
        n = con.execute(f"SELECT count(*) FROM {t.value} WHERE date = DATE '2025-11-26'").fetchone()[0]
        assert n == store.read_day(t, FULL_DAY).num_rows
    con.close()


def test_future_and_unclosed_days_fail_clearly(tmp_path):
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY",)
    # pretend it is 11:00 ET on the full day: bars of that day cannot be complete yet
    with dg.instance_for_test() as instance:
        from archive_platform.defs.resources import SourcesResource

        defs2 = dg.Definitions(
            assets=defs.assets, jobs=defs.jobs,
            resources={**defs.resources,
                       "sources": SourcesResource(symbols=["SPY"], as_of="2025-11-26T11:00:00-05:00")},
        )
        r = run_job(defs2, "archive_all", instance, partition_key=FULL_DAY.isoformat(), raise_on_error=False)
    assert not r.success
    errors = [e.event_specific_data.error.to_string() for e in r.all_events if e.event_type_value == "STEP_FAILURE"]
    assert any("archived after the session's end" in e and "never stored as if complete" in e for e in errors)
    # options up to 11:00 ET were stored: the 7 snapshots due by then
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    snaps = set(store.read_day(ArchiveType.OPTIONS, FULL_DAY)["snapshot_time"].to_pylist())
    assert len(snaps) == 7
    assert not (Path(tmp_path) / "sim" / "stocks" / "date=2025-11-26").exists() or not list(
        (Path(tmp_path) / "sim" / "stocks" / "date=2025-11-26").glob("*.parquet"))
