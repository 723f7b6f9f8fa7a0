"""The Dagster shell of the crypto derived datasets (``crypto_daily_bars``, ``crypto_candles``,
``orderbook_features``): one UTC-day asset each, downstream of the crypto assets it reads, with
its checks (pure work in ``archive_platform.analysis.crypto_days`` and ``crypto_checks``).

The asset writes to the archive its inputs are in (``live`` when the capture service is on, else
``sim``), like the crypto assets, and the store replaces the partition: re-materializing a day
after late trades arrived rebuilds it from what is stored (candles upsert by key, last write
wins). A day also reads the tail of the previous UTC day (right alignment); the dependency is
declared on the same day only (see ``build_crypto_derived_asset``), and the
``refresh_crypto_derived`` sensor rebuilds a day whose previous-day input changed after it.
"""

from collections.abc import Callable
from datetime import date, timedelta

import dagster as dg
import polars as pl

from archive_platform import quality
from archive_platform.analysis import crypto_checks as chk
from archive_platform.analysis import crypto_days as cd
from archive_platform.datasets.base import CompletenessContext, Dataset
from archive_platform.defs.assets import column_schema
from archive_platform.settings import Settings


def _candles(store, day):
    return chk.reconcile_crypto_candles(store.read_day("crypto_candles", day), cd.trades_window(store, day), day)


def _features(store, day):
    books, trades, _ = cd.feature_inputs(store, day)
    return chk.reconcile_orderbook_features(store.read_day("orderbook_features", day), books, trades, day)


def _bars(store, day):
    return chk.reconcile_crypto_daily_bars(store.read_day("crypto_daily_bars", day),
                                           store.read_day("crypto_trades", day), day)


#: dataset -> (what matches_inputs compares, reconcile(store, day) -> (problems, metadata))
RECONCILE: dict[str, tuple[str, Callable]] = {
    "crypto_candles": ("No duplicate, no gap, OHLC order, empty candles carry the previous close; each "
                       "candle's volume and trade count equal the stored trades bucketed by close time, "
                       "and its close is the last trade at or before its close time (an as-of join).",
                       _candles),
    "orderbook_features": ("Every series with a book that day has its 86,400 seconds; on every second "
                           "with a book, mid, spread and imbalance_1 equal an as-of join of the stored "
                           "books, and updates, volume and signed volume a per-second group-by of the "
                           "stored books and trades.", _features),
    "crypto_daily_bars": ("OHLC, volume, VWAP and trade count per series equal a DuckDB aggregation "
                          "of the day's stored trades.", _bars),
}
#: the derived datasets that read the previous day's tail (right-aligned candles and grid)
READS_PREVIOUS_DAY = {"crypto_candles", "orderbook_features"}
CHECKS = {
    "schema": "Stored columns and types equal the canonical schema.",
    "unique_key": "No two rows share the dataset's dedup key.",
    "in_session": "Every row's timestamp lies inside its UTC day.",
    "values": "Hard invariants (refused by the store) and soft anomalies (counted here).",
    "complete": "The day's grid is complete for every series (see the dataset's description).",
}


def is_crypto_derived(d) -> bool:
    """A dataset on the UTC calendar derived from others (built here, not by ``defs.assets``)."""
    return d.calendar_name == "utc" and bool(d.derived_from) and d.name in RECONCILE


def _meta(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else str(v)


def _outcome(problems_meta) -> quality.CheckOutcome:
    problems, meta = problems_meta
    return quality.CheckOutcome(not problems, "; ".join(problems) or "passed", meta)


def build_crypto_derived_asset(d: Dataset, partitions_def, settings: Settings) -> dg.AssetsDefinition:
    kind = settings.crypto_kind
    key = dg.AssetKey(d.name)
    what, reconcile = RECONCILE[d.name]
    descs = {**CHECKS, "matches_inputs": what}
    # partitioned like the asset: one result of every check per UTC day
    specs = [dg.AssetCheckSpec(n, asset=key, description=desc, partitions_def=partitions_def)
             for n, desc in descs.items()]
    # Declared on the same day only. Day D also reads the end of day D-1 (candles and features
    # are right-aligned), but a D-1..D mapping made every asset backfill of days A..B also
    # request the derived day B+1, whose own inputs were not in it, so the backfill failed.
    # A day whose D-1 input lands later is rebuilt by the refresh_crypto_derived sensor.
    deps = [dg.AssetDep(n) for n in d.derived_from]

    @dg.asset(
        name=d.name, partitions_def=partitions_def, group_name=d.group, description=d.description,
        check_specs=specs, deps=deps, required_resource_keys={"archive"}, kinds={"parquet", "python"},
        tags={"archive/source": "derived", "archive/store": kind, "archive/calendar": d.calendar_name},
        metadata={"grain": d.grain, "dedup_key": ", ".join(d.dedup_key), "calendar": d.calendar_name,
                  "archive": kind, "dagster/column_schema": column_schema(d)},
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        store = context.resources.archive.store(kind)
        day = date.fromisoformat(context.partition_key)
        try:
            table = cd.DERIVE[d.name](store, day)
        except cd.NoInput as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        store.write_day(d, day, table)  # replaces the day: validates schema, day and hard rules
        stored = store.read_day(d, day)
        ctx = CompletenessContext(day=day, symbols=(), calendar=d.calendar)

        outcomes = {
            "schema": quality.check_schema(stored, d),
            "unique_key": quality.check_unique_key(stored, d),
            "in_session": quality.check_in_window(stored, d, day),
            "values": quality.check_values(stored, d),
            "complete": _outcome(d.completeness(pl.from_arrow(stored), ctx)),
            "matches_inputs": _outcome(reconcile(store, day)),
        }
        results = [dg.AssetCheckResult(check_name=n, passed=o.passed, description=o.description[:1000],
                                       severity=dg.AssetCheckSeverity(o.severity),
                                       metadata={k: _meta(v) for k, v in o.metadata.items()})
                   for n, o in outcomes.items()]
        series = pl.from_arrow(stored.select(["exchange", "symbol"])).unique().sort("exchange", "symbol")
        meta = {
            "dagster/row_count": stored.num_rows,
            "dagster/size_bytes": dg.MetadataValue.int(store.partition_bytes(d, day)),
            "series": ", ".join(f"{e}:{s}" for e, s in series.iter_rows()),
            "inputs": f"{', '.join(d.derived_from)} of " + (f"{day - timedelta(days=1)} (its end) and {day}"
                                                            if d.name in READS_PREVIOUS_DAY else str(day)),
            "path": dg.MetadataValue.path(str(store.partition_dir(d, day))),
        }
        context.log.info(f"{d.name} {day}: {stored.num_rows:,} rows; "
                         f"{sum(o.passed for o in outcomes.values())}/{len(outcomes)} checks passed")
        return dg.MaterializeResult(metadata=meta, check_results=results)

    return _asset


def stale_derived_requests(instance, datasets, partitions_def, now, lookback: int) -> list[dg.RunRequest]:
    """One run per (derived dataset, UTC day) in the last ``lookback`` closed days whose stored
    partition is older than a materialization of an input it reads (the day, and the day before
    for ``READS_PREVIOUS_DAY``): late trades re-archived on D rebuild the candles of D and D+1 and
    the daily bars of D. Days never built are left to the recovery sensor. A day that a live run
    is building, or whose inputs a live run is still writing, is left to that run: requesting it
    now would duplicate the run in flight (and read inputs about to change)."""
    from datetime import timezone

    from archive_platform.defs.recovery import partition_statuses

    today = now.astimezone(timezone.utc).date()
    days = [today - timedelta(days=i) for i in range(lookback, 0, -1)]
    derived = [x for x in datasets if is_crypto_derived(x)]
    involved = [x for x in datasets if x in derived or any(x.name in d.derived_from for d in derived)]
    with dg.partition_loading_context(effective_dt=now):
        keys = [k for x in [days[0] - timedelta(days=1), *days]
                if partitions_def.has_partition_key(k := x.isoformat())]
    statuses = partition_statuses(instance, involved, {x.name: keys for x in involved},
                                  {x.calendar_name: partitions_def for x in involved}, now)

    def busy(name: str, day: date) -> bool:
        return statuses.get((name, day)) == "IN_PROGRESS"

    def latest(name: str, day: date):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[day.isoformat()]), limit=1).records
        return records[0] if records else None

    reqs = []
    for d in derived:
        for day in days:
            with dg.partition_loading_context(effective_dt=now):
                if not partitions_def.has_partition_key(day.isoformat()):
                    continue
            built = latest(d.name, day)
            if built is None:
                continue
            read = (day - timedelta(days=1), day) if d.name in READS_PREVIOUS_DAY else (day,)
            if busy(d.name, day) or any(busy(n, x) for n in d.derived_from for x in read):
                continue
            newer = [r for n in d.derived_from for x in read
                     if (r := latest(n, x)) is not None and r.timestamp > built.timestamp]
            if newer:
                ids = "+".join(str(r.storage_id) for r in sorted(newer, key=lambda r: r.storage_id))
                reqs.append(dg.RunRequest(run_key=f"refresh:{d.name}:{day}:{ids}", partition_key=day.isoformat(),
                                          asset_selection=[dg.AssetKey(d.name)],
                                          tags={"archive/trigger": "inputs_changed"}))
    return reqs


def build_refresh_sensor(datasets, partitions_def, job, lookback: int, interval_s: int):
    """``refresh_crypto_derived``: rebuilds derived crypto days whose inputs changed since."""
    from archive_platform.defs.crypto import utcnow

    @dg.sensor(name="refresh_crypto_derived", job=job, minimum_interval_seconds=interval_s,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Re-materializes a derived crypto day (candles, features, daily bars) of the "
               f"last {lookback} closed UTC days when an input it reads (that day or the day before) "
               "was materialized after it, e.g. late trades re-archived.")
    def refresh_crypto_derived(context: dg.SensorEvaluationContext):
        reqs = stale_derived_requests(context.instance, datasets, partitions_def, utcnow(), lookback)
        return reqs or dg.SkipReason("every derived crypto day is newer than its inputs")

    return refresh_crypto_derived
