"""The Dagster shell of the crypto datasets: daily assets, their checks, the UTC schedule and
recovery, and the capture heartbeat sensor (pure work in ``archive_platform.crypto``).

* One asset per crypto dataset (``capture_gaps``, ``crypto_trades``, ``orderbook_l2``), on UTC-day
  partitions: for a closed UTC day it compacts what the capture service spooled (live, when
  ``ARCHIVE_CRYPTO_CAPTURE`` is on; Binance trades the capture missed come from the public
  daily files) or simulates the day (sim), writes it through the store (which validates it) and
  reports coverage per stream. Checks: schema, unique_key, in_session, values, and ``coverage``
  (every stream at least ``ARCHIVE_CRYPTO_COVERAGE_MIN`` of its slots).
* The derived crypto datasets (``crypto_daily_bars``, ``crypto_candles``, ``orderbook_features``):
  built by ``defs/crypto_derived.py``, downstream of the assets they read.
* ``archive_utc_daily``: 00:30 UTC, the previous UTC day of every UTC dataset.
* ``refresh_crypto_derived``: rebuilds a derived crypto day when an input it reads was
  materialized after it (late trades re-archived).
* ``recover_utc_days``: missing or failed UTC days in the last ``ARCHIVE_RECOVERY_LOOKBACK`` days,
  of the datasets that can fill them (sim: all; capture: trades, and books/gaps with a spool);
  with capture on, also built days whose spool received files after their build (a restart gap,
  a flushed tail), compared with the spool listing each build records in its metadata.
* With capture configured: ``capture_heartbeat`` watches the service's heartbeat and, when it
  stops, runs ``capture_health``, whose ``capture_alive`` check on ``orderbook_l2`` fails.
"""


import hashlib
import json
import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone

import dagster as dg

from archive_platform import quality
from archive_platform.archiving import NotReadyError
from archive_platform.crypto import daily, report
from archive_platform.crypto.declare import CapturedDataset
from archive_platform.crypto.spool import SpoolListing, late_spool, spool_files, spool_listing
from archive_platform.defs.assets import column_schema
from archive_platform.defs.crypto_derived import build_crypto_derived_asset, is_crypto_derived
from archive_platform.defs.resources import ArchiveResource, SourcesResource, can_backfill
from archive_platform.settings import Settings

UTC = timezone.utc
DAILY_TIME = time(0, 30)  # UTC: the previous day's run of archive_utc_daily
DAILY_CRON = f"{DAILY_TIME.minute} {DAILY_TIME.hour} * * *"
RECOVERY_INTERVAL_S = 15 * 60
#: materialization metadata of a captured day: the spool files its build listed (count, newest
#: name), against which ``recover_utc_days`` finds the files that reached the spool after it
SPOOL_FILES_META, SPOOL_NEWEST_META = "spool_files", "spool_newest"
#: the captured datasets whose day a late spool file of a dataset makes stale: a late gap also
#: changes the trades' coverage (slots inside recorded gaps) and their Binance backfill
LATE_REBUILDS = {"capture_gaps": ("capture_gaps", "crypto_trades"), "crypto_trades": ("crypto_trades",),
                 "orderbook_l2": ("orderbook_l2",)}
#: the day just closed is the daily schedule's until this long after its tick: the recovery
#: sensor must not request it before the schedule does (two runs writing one day)
SCHEDULE_GRACE = timedelta(minutes=15)
CHECKS = {
    "schema": "Stored columns and types equal the canonical schema.",
    "unique_key": "No two rows share the dataset's dedup key.",
    "in_session": "Every row's time lies inside its UTC day.",
    "values": "Hard invariants (finite, positive prices and sizes, known side) and soft "
    "anomalies (crossed or locked books: stored, counted here).",
    "coverage": "Every stream holds at least ARCHIVE_CRYPTO_COVERAGE_MIN of its 100 ms slots "
    "(books at their source's cadence; trades: slots outside recorded gaps, and trade-id holes).",
}


def is_captured(d) -> bool:
    """A crypto dataset (captured, or derived from the captured ones): its asset is built here,
    not by ``defs.assets``."""
    return isinstance(d, CapturedDataset) or is_crypto_derived(d)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _meta(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return dg.MetadataValue.json(v)


def _streams(name: str, stored, gaps, day: date, expected) -> list[dict]:
    if name == "orderbook_l2":
        return report.book_streams(stored, gaps, day, expected)
    if name == "crypto_trades":
        return report.trade_streams(stored, gaps, day, expected)
    return report.gap_streams(stored, day)


def build_crypto_asset(d: CapturedDataset, partitions_def, settings: Settings) -> dg.AssetsDefinition:
    if is_crypto_derived(d):
        return build_crypto_derived_asset(d, partitions_def, settings)
    capture = settings.crypto_capture
    kind = settings.crypto_kind
    minimum = settings.crypto_coverage_min
    key = dg.AssetKey(d.name)
    names = [n for n in CHECKS if n != "coverage" or d.name != "capture_gaps"]
    # partitioned like the asset: each UTC day gets its own result of every check (the
    # Partitions tab of a check shows which days passed), tied to that day's materialization
    specs = [dg.AssetCheckSpec(n, asset=key, description=CHECKS[n], partitions_def=partitions_def)
             for n in names]
    deps = [] if d.name == "capture_gaps" else [dg.AssetKey("capture_gaps")]

    @dg.asset(
        name=d.name, partitions_def=partitions_def, group_name=d.group, description=d.description,
        check_specs=specs, deps=deps, required_resource_keys={"archive", "sources"},
        kinds={"parquet", "python" if capture else "sim"},
        tags={"archive/source": "capture" if capture else "sim", "archive/store": kind,
              "archive/calendar": d.calendar_name},
        metadata={"grain": d.grain, "dedup_key": ", ".join(d.dedup_key), "calendar": d.calendar_name,
                  "source": "capture spool" if capture else "simulated venue", "archive": kind},
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        archive: ArchiveResource = context.resources.archive
        sources: SourcesResource = context.resources.sources
        day = date.fromisoformat(context.partition_key)
        start, end = daily.day_bounds(day)
        now = sources.now()
        if now < end:
            raise NotReadyError(f"{d.name} {day}: the UTC day closes at {end.isoformat()} and is "
                                    f"archived after that; now is {now.isoformat()}")
        store = archive.store(kind)
        listing = None
        if capture:
            # listed before compacting: a file renamed in between is read and also counts as late
            # (one rebuild too many), never the reverse; recover_utc_days compares the spool with it
            listing = spool_listing(archive.root("live"), d.name, day)
            rows = daily.captured_day(d.name, day, root=archive.root("live"), symbols=settings.crypto.symbols,
                                      data_url=settings.crypto.binance_data_url)
            expected = [(s.exchange, s.symbol) for s in settings.crypto.symbols]
        else:
            rows = daily.simulated_day(d.name, day, seed=sources.sim_seed)
            expected = [("sim", s) for s in daily.SIM_SYMBOLS]
        for note in rows.notes:
            context.log.info(f"{d.name} {day}: {note}")
        store.write_day(d, day, rows.table)  # validates: schema, day, hard rules
        stored = store.read_day(d, day)
        gaps = stored if d.name == "capture_gaps" else store.read_day("capture_gaps", day)
        streams = _streams(d.name, stored, gaps, day, expected if d.name != "capture_gaps" else ())
        passed, desc = report.judge(streams, minimum)
        if d.name == "capture_gaps":
            passed, desc = True, f"{stored.num_rows} gaps recorded"
        totals = {k: sum(s.get(k) or 0 for s in streams)
                  for k in ("expected_slots", "present_slots", "crossed", "locked", "out_of_order",
                            "recorded_gaps", "id_holes", "gaps", "missing_slots")
                  if any(k in s for s in streams)}
        cadence = sorted({s["cadence_ms"] for s in streams if "cadence_ms" in s})
        meta = {
            "dagster/row_count": stored.num_rows,
            "dagster/size_bytes": dg.MetadataValue.int(store.partition_bytes(d, day)),
            "dagster/column_schema": column_schema(d), "origin": rows.origin,
            "streams": len(streams), "min_ratio": min((s["ratio"] for s in streams), default=None),
            "coverage_min": minimum, "cadence_ms": ", ".join(map(str, cadence)),
            **totals, "notes": "; ".join(rows.notes),
            "coverage_by_stream": dg.MetadataValue.json(streams),
            "path": dg.MetadataValue.path(str(store.partition_dir(d, day))),
        }
        if listing is not None:
            meta.update({SPOOL_FILES_META: listing.files, SPOOL_NEWEST_META: listing.newest or ""})
        if not capture:
            meta["cadence_note"] = (f"simulated venue: books every {daily.SIM_BOOK_MS} ms (the exchanges "
                                    "send 100 ms); coverage is judged on the declared cadence")
        outcomes = {
            "schema": quality.check_schema(stored, d),
            "unique_key": quality.check_unique_key(stored, d),
            "in_session": quality.check_in_window(stored, d, day),
            "values": quality.check_values(stored, d),
            "coverage": quality.CheckOutcome(passed, desc, {"coverage_min": minimum, "streams": streams}),
        }
        results = [dg.AssetCheckResult(check_name=n, passed=o.passed, description=o.description,
                                       severity=dg.AssetCheckSeverity(o.severity),
                                       metadata={k: _meta(v) for k, v in o.metadata.items()})
                   for n, o in outcomes.items() if n in names]
        context.log.info(f"{d.name} {day}: {stored.num_rows:,} rows from {rows.origin}; {desc}")
        return dg.MaterializeResult(metadata={k: v for k, v in meta.items() if v is not None},
                                    check_results=results)

    return _asset


def _first_day(datasets, settings: Settings) -> date | None:
    from archive_platform.defs.recovery import LedgerContext

    # ARCHIVE_START_DATE, else the first day stored where the UTC datasets live (crypto_kind)
    return LedgerContext(settings, datasets, {}).first_day()


def _recoverable_today(d, day: date, settings: Settings, root) -> bool:
    if not is_captured(d):
        return can_backfill(settings.sources, d)
    if not settings.crypto_capture:
        return True
    if is_crypto_derived(d):  # once its inputs are stored
        from archive_platform.store import ArchiveStore

        return all(ArchiveStore(root, kind="live").partition_files(n, day) for n in d.derived_from)
    if d.name == "crypto_trades" and any(s.exchange == "binance" for s in settings.crypto.symbols):
        return True  # the public daily files fill what the spool lacks
    return bool(spool_files(root, d.name, day))


def build_crypto_automation(datasets: Sequence, partitions_def, job, settings: Settings):
    """(schedules, sensors, extra jobs, asset checks) of the UTC datasets."""
    lookback = settings.recovery_lookback
    live_root = settings.root("live")

    @dg.schedule(name="archive_utc_daily", cron_schedule=DAILY_CRON, execution_timezone="UTC", job=job,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="00:30 UTC: the previous (closed) UTC day of every UTC dataset.")
    def archive_utc_daily(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.astimezone(UTC).date() - timedelta(days=1)
        return dg.RunRequest(run_key=f"utc-daily:{day}", partition_key=day.isoformat(),
                             tags={"archive/trigger": "schedule"})

    @dg.sensor(name="recover_utc_days", job=job, minimum_interval_seconds=RECOVERY_INTERVAL_S,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Missing or failed UTC days of the last {lookback} closed days, of the "
               "datasets that can fill them (sim: all; capture: trades from Binance's daily files, "
               "books and gaps only where the spool holds the day); with capture on, also the days whose "
               "spool received files after their build (a restart gap, a late tail), once per change.")
    def recover_utc_days(context: dg.SensorEvaluationContext):
        reqs = utc_recovery_requests(context.instance, datasets, partitions_def, settings, utcnow(), lookback,
                                     live_root, log=context.log)
        return reqs or dg.SkipReason("no missing, failed or late-spooled UTC days in the lookback window")

    schedules, sensors, jobs, checks = [archive_utc_daily], [recover_utc_days], [], []
    if any(is_crypto_derived(d) for d in datasets):
        from archive_platform.defs.crypto_derived import build_refresh_sensor

        sensors.append(build_refresh_sensor(datasets, partitions_def, job, lookback, RECOVERY_INTERVAL_S))
    if settings.crypto_capture:
        check, health_job, sensor = build_heartbeat(live_root)
        checks, jobs, sensors = [check], [health_job], [*sensors, sensor]
    return schedules, sensors, jobs, checks


def utc_recovery_days(now: datetime, lookback: int) -> list[date]:
    """The closed UTC days the recovery sensor may request, oldest first: the last ``lookback``,
    except the day just closed while the daily schedule owns it (until ``SCHEDULE_GRACE`` after
    its 00:30 tick), so the two never launch two runs of one day."""
    today = now.astimezone(UTC).date()
    days = [today - timedelta(days=i) for i in range(lookback, 0, -1)]
    owned_until = datetime.combine(today, DAILY_TIME, tzinfo=UTC) + SCHEDULE_GRACE
    return [x for x in days if x < today - timedelta(days=1) or now >= owned_until]


def utc_recovery_requests(instance, datasets, partitions_def, settings, now: datetime, lookback: int, root,
                          log=None):
    """One run per closed UTC day over the datasets missing (or failed) there and fillable,
    from the archive's first day on (``ARCHIVE_START_DATE``, else the first UTC day any UTC
    dataset has stored; none stored and no start date: nothing to recover), as the NYSE
    recovery does: a new archive is never back-filled into days before it began.

    With the capture on, also the captured days whose spool received files after their last
    build (``late_spool_rebuilds``: a restart gap, a flushed tail), once per such change.
    ``log``: a logger told why each late rebuild is requested."""
    from archive_platform.datasets import DATASETS

    from archive_platform.defs.recovery import partition_statuses

    first = _first_day([d for d in DATASETS if d.calendar_name == "utc"], settings)
    if first is None:
        return []
    days = [x for x in utc_recovery_days(now, lookback) if x >= first]
    with dg.partition_loading_context(effective_dt=now):
        keys = [x.isoformat() for x in days if partitions_def.has_partition_key(x.isoformat())]
    # IN_PROGRESS only while a live run holds the day; a run that died leaves it LOST (missing)
    statuses = partition_statuses(instance, datasets, {d.name: keys for d in datasets},
                                  {d.calendar_name: partitions_def for d in datasets}, now)
    missing: dict[str, list[str]] = {}
    for d in datasets:
        for k in keys:
            day = date.fromisoformat(k)
            st = statuses.get((d.name, day))
            # a derived day waits while a live run is still writing an input of that day
            writing = any(statuses.get((n, day)) == "IN_PROGRESS" for n in d.derived_from)
            if st in (None, "FAILED", "LOST") and not writing and _recoverable_today(d, day, settings, root):
                missing.setdefault(k, []).append(d.name)
    late = late_spool_rebuilds(instance, datasets, statuses, keys, settings, root) if settings.crypto_capture else {}
    hour = now.astimezone(UTC).strftime("%Y%m%d%H")
    reqs = []
    for k in sorted({*missing, *late}):
        names = sorted({*missing.get(k, ()), *(late[k][0] if k in late else ())})
        tags = {"archive/trigger": "recovery"}
        if k in missing:  # with a late rebuild of the same day: one run, retried hourly like any recovery
            key = f"recover-utc:{k}:{'+'.join(names)}:{hour}"
        else:
            # once per change of the spool: the key names the day's newest file (and file count)
            key = f"late-spool-utc:{k}:{'+'.join(names)}:{late[k][2]}"
            tags["archive/trigger"] = "late_spool"
        if k in late:
            why = late[k][1]
            tags["archive/late_spool"] = why[:1000]
            if log is not None:
                log.info(f"recover_utc_days: rebuilding {', '.join(late[k][0])} of {k}: the spool received "
                         f"files after the last build: {why}")
        reqs.append(dg.RunRequest(run_key=key, partition_key=k, asset_selection=[dg.AssetKey(n) for n in names],
                                  tags=tags))
    return reqs


def _latest_materialization(instance, name: str, key: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[key]), limit=1).records
    return records[0] if records else None


def _read_listing(record) -> SpoolListing | None:
    """The spool listing a materialization recorded (None: built before it was recorded, or sim)."""
    meta = record.asset_materialization.metadata if record.asset_materialization else {}
    files, newest = meta.get(SPOOL_FILES_META), meta.get(SPOOL_NEWEST_META)
    if files is None or newest is None:
        return None
    return SpoolListing(int(files.value), str(newest.value) or None)


def late_spool_rebuilds(instance, datasets, statuses, keys: Sequence[str], settings: Settings, root,
                        ) -> dict[str, tuple[list[str], str, str]]:
    """Per partition key of ``keys`` (closed UTC days of the recovery window), the captured
    datasets to build again because their spool (or the gaps' spool) received files after the
    day's latest materialization: ``(datasets, why, change id)``. A day is left alone while a
    live run writes any captured dataset of it, and a dataset whose spool lost files since its
    build (deleted: a rebuild would drop their rows) is not rebuilt. Files are compared with
    the listing the build recorded (``spool_files``/``spool_newest`` metadata), else, for a
    materialization without one, their names' write time with its timestamp."""
    captured = [d for d in datasets if isinstance(d, CapturedDataset) and not is_crypto_derived(d)]
    by_name = {d.name: d for d in captured}
    out: dict[str, tuple[list[str], str, str]] = {}
    for k in keys:
        day = date.fromisoformat(k)
        if any(statuses.get((d.name, day)) == "IN_PROGRESS" for d in captured):
            continue  # a live run writes the day: it reads the spool as it is now
        changes, pruned = {}, set()
        for d in captured:
            if statuses.get((d.name, day)) != "MATERIALIZED":
                continue
            record = _latest_materialization(instance, d.name, k)
            if record is None:
                continue
            change = late_spool(root, d.name, day, read=_read_listing(record),
                                built_ns=int(record.timestamp * 1e9))
            if change.pruned:
                pruned.add(d.name)
            if change.changed:
                changes[d.name] = change
        stale = {n for c in changes if c not in pruned for n in LATE_REBUILDS[c]
                 if n in by_name and n not in pruned and statuses.get((n, day)) == "MATERIALIZED"
                 and _recoverable_today(by_name[n], day, settings, root)}
        if not stale:
            continue
        why = "; ".join(f"{n}: {c.describe()}" for n, c in sorted(changes.items()))
        skipped = sorted(pruned & set(changes))
        if skipped:
            why += f" (not rebuilt: {', '.join(skipped)}, whose spool files were deleted since its build)"
        ident = "+".join(f"{c.newest}/{c.files}" for _, c in sorted(changes.items()))
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        newest = max((c.newest for c in changes.values() if c.newest), default="")
        out[k] = (sorted(stale), why, f"{newest.removesuffix('.parquet')}:{digest}")
    return out


def _problem_signature(problems: Sequence[str]) -> list[str]:
    """The problems without their ages and row counts (which grow every tick): what identifies
    an incident."""
    return sorted({re.sub(r"[\d,]+ rows\b", "N rows", re.sub(r"\d+ s\b", "N s", p)) for p in problems})


def heartbeat_incident(problems: Sequence[str], cursor: str | None, now: datetime) -> tuple[str | None, str]:
    """(run key or None, new cursor) of the heartbeat sensor on a tick with ``problems``.

    One ``capture_health`` run per incident: when the problems appear, and again when they
    change (another stream goes silent, the service restarts and stops again), but not every
    tick while the same problems last (a silent stream under a live service rewrites the
    heartbeat every few seconds, so its ``written_at`` cannot identify the incident)."""
    sig = _problem_signature(problems)
    prev = json.loads(cursor) if cursor else None
    if prev is not None and prev.get("problems") == sig:
        return None, cursor
    since = now.astimezone(UTC).isoformat()
    digest = hashlib.sha256("|".join(sig).encode()).hexdigest()[:12]
    return f"capture-down:{since}:{digest}", json.dumps({"since": since, "problems": sig})


def build_heartbeat(live_root):
    """The ``capture_alive`` check, the ``capture_health`` job running it, and the sensor."""
    from archive_platform.crypto.health import capture_problems, read_heartbeat

    @dg.asset_check(asset=dg.AssetKey("orderbook_l2"), name="capture_alive", required_resource_keys={"archive"},
                    description="The capture service's heartbeat is fresh and every stream delivers.")
    def capture_alive(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        beat = read_heartbeat(context.resources.archive.root("live"))
        problems = capture_problems(beat, utcnow())
        meta = {"problems": dg.MetadataValue.json(problems)}
        if beat:
            meta.update(written_at=beat.get("written_at"), reconnects=beat.get("reconnects"),
                        malformed=beat.get("malformed"), exchange_errors=beat.get("exchange_errors", 0),
                        last_exchange_error=beat.get("last_exchange_error") or "",
                        open_gaps=dg.MetadataValue.json(beat.get("open_gaps")),
                        buffered_rows=beat.get("buffered_rows", 0), spool_errors=beat.get("spool_errors", 0),
                        spool_error=beat.get("spool_error") or "", dropped_rows=beat.get("dropped_rows", 0))
        return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.ERROR, metadata=meta,
                                   description="; ".join(problems) or "capture is running")

    health_job = dg.define_asset_job("capture_health", selection=dg.AssetSelection.checks(capture_alive),
                                     description="Evaluate the capture_alive check (the heartbeat sensor runs it).")

    @dg.sensor(name="capture_heartbeat", job=health_job, minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Reads the capture heartbeat; when capture stops, runs capture_health, "
               "whose capture_alive check fails (once per stale heartbeat).")
    def capture_heartbeat(context: dg.SensorEvaluationContext):
        now = utcnow()
        beat = read_heartbeat(live_root)
        problems = capture_problems(beat, now)
        if not problems:
            context.update_cursor(None)  # healthy: the next problem is a new incident
            return dg.SkipReason(f"capture is running ({len((beat or {}).get('streams', {}))} streams)")
        context.log.error("capture is down: " + "; ".join(problems))
        run_key, cursor = heartbeat_incident(problems, context.cursor, now)
        context.update_cursor(cursor)
        if run_key is None:
            since = json.loads(cursor)["since"]
            return dg.SkipReason(f"capture still has the same problems since {since} (capture_health "
                                 "already ran for them): " + "; ".join(problems))
        return dg.RunRequest(run_key=run_key,
                             tags={"archive/trigger": "capture_heartbeat",
                                   "archive/capture_problem": problems[0][:200]})

    return capture_alive, health_job, capture_heartbeat
