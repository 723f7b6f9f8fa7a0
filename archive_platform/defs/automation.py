"""Schedules and sensors: intraday snapshots, flow polling, end of day, IV rank, recovery.

Every decision (is this tick a snapshot instant? which partitions are missing?) is a pure
function of the instant and the calendar, tested without a daemon; the Dagster definitions only
wrap them. Nothing here ever requests a future session: keys come from the tick's own session or
from the sessions before today's market date (``recovery_candidates``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta

import dagster as dg

from archive_platform import calendar
from archive_platform.archiving import iv_rank_instants
from archive_platform.defs.assets import TAG_MODE, TAG_SINCE, TAG_SNAPSHOT, TAG_UNTIL
from archive_platform.defs.recovery import LedgerContext
from archive_platform.defs.recovery import recovery_requests as ledger_requests
from archive_platform.schemas import ArchiveType, spec_for

TZ = "America/New_York"
EOD_TIME = time(20, 15)  # after after-hours, so the day's executions are final
FLOW_OVERLAP = timedelta(minutes=2)  # re-poll a little behind the cursor; dedup makes it free
RECOVERY_INTERVAL_S = 15 * 60


def utcnow() -> datetime:
    """The sensors' clock (one place, so tests can pin the instant)."""
    return datetime.now(calendar.UTC)


# -- pure decisions -----------------------------------------------------------------------------


def snapshot_request(tick: datetime, every: timedelta) -> tuple[str, datetime] | None:
    """(partition key, snapshot instant) when ``tick`` is on the session's snapshot grid."""
    tick = tick.astimezone(calendar.UTC).replace(second=0, microsecond=0)
    day = calendar.market_date(tick)
    if not calendar.is_trading_day(day):
        return None
    if tick not in calendar.snapshot_times(day, every):
        return None
    return day.isoformat(), tick


def iv_rank_request(tick: datetime, times_et: Sequence[time]) -> tuple[str, datetime] | None:
    """(partition key, instant) when ``tick`` is one of a trading day's IV-rank times."""
    tick = tick.astimezone(calendar.UTC).replace(second=0, microsecond=0)
    day = calendar.market_date(tick)
    if not calendar.is_trading_day(day) or tick not in iv_rank_instants(day, times_et):
        return None
    return day.isoformat(), tick


def eod_request(tick: datetime) -> str | None:
    """The partition key to close out when ``tick`` falls on a trading day (after its session)."""
    day = calendar.market_date(tick)
    if not calendar.is_trading_day(day) or tick < calendar.session(day).close_utc:
        return None
    return day.isoformat()


#: "since" of a poll window that starts at the session's open (the run has no since tag)
OPEN = "open"


def _polls_end(day: date) -> datetime:
    """20:00 ET of ``day`` (the end of after-hours, where the flow polls stop) in UTC."""
    return datetime.combine(day, calendar.AFTER_HOURS_CLOSE, tzinfo=calendar.ET).astimezone(calendar.UTC)


def parse_flow_cursor(cursor: str | None) -> datetime | None:
    """The flow sensor's cursor as an aware instant, or None when it is unset or unusable (not
    an ISO instant, or without a UTC offset): a corrupted cursor must not stop the polls."""
    if not cursor:
        return None
    try:
        last = datetime.fromisoformat(cursor)
    except (TypeError, ValueError):
        return None
    return last if last.tzinfo is not None else None


def flow_poll(
    now: datetime, cursor: str | None, unfetched: datetime | str | None = None,
) -> tuple[str, datetime | None, datetime] | None:
    """(partition key, since, until) of the next flow poll, or None outside polling hours.

    Polls run from the open to 20:00 ET (after hours included): ETF and index options trade
    until 16:15 ET and the vendor reports alerts after the close, all of the session's market
    date. ``since`` resumes from the cursor (the last poll's ``until``) minus a small overlap,
    so a restart loses nothing; it is None (the session open) on a new day. ``unfetched`` is
    where the oldest window of today that a failed poll left unfetched starts (``OPEN``: at the
    open; see ``unfetched_flow_since``): the poll reaches back to it, so an outage longer than
    the overlap loses nothing either (the end-of-day run only compacts what the polls stored).

    The first tick after 20:00 ET makes one last poll of the day, up to 20:00 exactly, when
    the cursor is that day's and ends before 20:00: the alerts between the last poll inside the
    hours and 20:00 are fetched too. A cursor that cannot be read, or that lies after ``now``
    (a clock set back), is not trusted: the poll starts at the open (dedup makes it free).
    """
    last = parse_flow_cursor(cursor)
    if last is not None and last > now:
        last = None
    day = calendar.market_date(now)
    until = now
    if calendar.market_status(now) not in ("open", "after_hours"):
        if last is None or not calendar.is_trading_day(day):
            return None
        end = _polls_end(day)
        if not (calendar.market_date(last) == day and last < end <= now):
            return None
        until = end
    since = None
    if last is not None and calendar.market_date(last) == day:
        since = last - FLOW_OVERLAP
    if unfetched == OPEN:
        since = None
    elif isinstance(unfetched, datetime) and since is not None and calendar.market_date(unfetched) == day:
        since = min(since, unfetched)
    return day.isoformat(), since, until


def _window(run) -> tuple[datetime | None, datetime | None]:
    tags = run.tags
    since, until = tags.get(TAG_SINCE), tags.get(TAG_UNTIL)
    return (datetime.fromisoformat(since) if since else None,
            datetime.fromisoformat(until) if until else None)


#: failed poll runs that start at one window before the polls stop reaching back to it (problem
#: of one window the vendor always refuses: every later poll reaching back would fail too)
# 30: polls run every minute, so a vendor outage of up to about half an hour is still fetched
# again on its own once the vendor answers; a longer one is flagged for a backfill like a
# window the vendor always refuses (5 gave up on every outage longer than 5 minutes)
MAX_REACH_BACK = 30
#: after 20:00 ET, a failed window of the day is still fetched until this time: the end-of-day
#: run (``EOD_TIME``) compacts the day, and nothing compacts it again after a late append
LATE_RETRY_END = time(20, 10)


def _poll_filter(job_name: str | None, key: str, statuses) -> dg.RunsFilter:
    tags = {"dagster/partition": key, TAG_MODE: "poll"}
    return dg.RunsFilter(job_name=job_name, statuses=list(statuses), tags=tags)


def unfetched_flow_windows(instance, job_name: str | None, key: str) -> list[tuple[datetime | str, datetime | None, int]]:
    """The poll windows of partition ``key`` that failed or canceled poll runs left unfetched
    (no later successful poll covered them), oldest first: ``(since, until, attempts)`` with
    ``since`` ``OPEN`` for a window from the open, ``until`` the furthest end asked for, and
    ``attempts`` how many failed runs tried the window: a later failed run that started at or
    before the window's start (a poll reaching back to it) is one more attempt at it; one that
    started after it is a window of its own."""
    failed = instance.get_run_records(_poll_filter(
        job_name, key, [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]))
    if not failed:
        return []
    first = min(r.create_timestamp for r in failed)
    done = [_window(r.dagster_run) for r in instance.get_run_records(dg.RunsFilter(
        job_name=job_name, statuses=[dg.DagsterRunStatus.SUCCESS], created_after=first,
        tags={"dagster/partition": key, TAG_MODE: "poll"}))]
    clusters: list[list] = []  # [start (None: the open), end, attempts], in creation order
    for rec in sorted(failed, key=lambda r: r.create_timestamp):
        since, until = _window(rec.dagster_run)
        covered = any((s is None or (since is not None and s <= since)) and u is not None
                      and until is not None and u >= until for s, u in done)
        if covered:
            continue
        # a run that started at or before a window's start reached back to it: another attempt
        # at that window; a run starting later is a window of its own
        home = next((c for c in clusters if since is None or (c[0] is not None and since <= c[0])), None)
        if home is None:
            clusters.append([since, until, 1])
            continue
        home[0] = since if since is None else min(home[0], since)
        if until is not None and (home[1] is None or until > home[1]):
            home[1] = until
        home[2] += 1
    clusters.sort(key=lambda c: -1.0 if c[0] is None else c[0].timestamp())
    return [(OPEN if c[0] is None else c[0], c[1], c[2]) for c in clusters]


def unfetched_flow_since(instance, job_name: str | None, key: str,
                         max_attempts: int | None = None) -> datetime | str | None:
    """Where the oldest poll window of partition ``key`` starts that a failed or canceled poll
    run left unfetched, i.e. that no later successful poll covered (``OPEN`` for a window from
    the open); None when every failed window was fetched again. With ``max_attempts``, windows
    that failed that many times are given up on (``abandoned_flow_windows`` lists them)."""
    for since, _, attempts in unfetched_flow_windows(instance, job_name, key):
        if max_attempts is None or attempts < max_attempts:
            return since
    return None


def abandoned_flow_windows(windows, max_attempts: int = MAX_REACH_BACK):
    """The unfetched windows the polls no longer reach back to (failed ``max_attempts`` times)."""
    return [w for w in windows if w[2] >= max_attempts]


def late_flow_day(now: datetime) -> str | None:
    """The partition key of the trading day whose polling hours ended before ``now``, while
    ``now`` is still before ``LATE_RETRY_END`` (the window in which a failed poll of that day,
    its last one included, is still fetched again before the end-of-day compaction)."""
    day = calendar.market_date(now)
    if not calendar.is_trading_day(day):
        return None
    end = _polls_end(day)
    stop = datetime.combine(day, LATE_RETRY_END, tzinfo=calendar.ET).astimezone(calendar.UTC)
    return day.isoformat() if end <= now < stop else None


def late_flow_poll(now: datetime, unfetched: datetime | str | None) -> tuple[str, datetime | None, datetime] | None:
    """(key, since, until=20:00 ET) of a poll that fetches again, after 20:00 ET and before
    ``LATE_RETRY_END``, the day's window a failed poll left unfetched; None otherwise."""
    key = late_flow_day(now)
    if key is None or unfetched is None:
        return None
    day = calendar.market_date(now)
    end = _polls_end(day)
    if unfetched == OPEN:
        return key, None, end
    if calendar.market_date(unfetched) != day or unfetched >= end:
        return None
    return key, unfetched, end


_LIVE = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
         dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
#: metadata key of the observation that records a poll window given up on
UNFETCHED_META = "unfetched_poll_window"


def _flag_abandoned(context, key: str, abandoned) -> None:
    """Keeps a window the polls gave up on visible: a warning on every tick that sees it, and
    once per window an ``AssetObservation`` of ``uw_flow`` on the partition (the UI's event
    list of that day; ``flow_gaps`` reads them back)."""
    if not abandoned:
        return
    recorded = set(flow_gaps(context.instance, key))
    for since, until, attempts in abandoned:
        label = since if since == OPEN else since.isoformat()
        end = until.isoformat() if until is not None else "?"
        context.log.warning(f"flow alerts of {key} from {label} to {end} stay unfetched: {attempts} polls "
                            f"of that window failed, the polls go on from the cursor without it; "
                            f"a day run of uw_flow {key} (backfill) fetches them")
        if (label, end) in recorded:
            continue
        context.instance.report_runless_asset_event(dg.AssetObservation(
            asset_key=dg.AssetKey(spec_for(ArchiveType.UW_FLOW).name), partition=key,
            description=f"poll window {label} .. {end} failed {attempts} times and is no longer reached back to",
            metadata={UNFETCHED_META: f"{label}/{end}", "failed_attempts": attempts}))


def flow_gaps(instance, key: str) -> list[tuple[str, str]]:
    """(since, until) of each poll window of ``key`` the polls gave up on (their observations)."""
    recs = instance.fetch_observations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(spec_for(ArchiveType.UW_FLOW).name), asset_partitions=[key]), limit=1000).records
    out = []
    for r in recs:
        meta = r.asset_observation.metadata if r.asset_observation else {}
        if UNFETCHED_META in meta:
            since, _, until = meta[UNFETCHED_META].value.partition("/")
            out.append((since, until))
    return sorted(set(out))


def missing_partitions(
    candidates: Sequence[str],
    status_by_asset: Mapping[str, Mapping[str, str | None]],
) -> dict[str, list[str]]:
    """Per partition key, the assets whose partition is missing or failed (not in progress)."""
    out: dict[str, list[str]] = {}
    for key in candidates:
        for asset, statuses in status_by_asset.items():
            st = statuses.get(key)
            if st in (None, "FAILED"):
                out.setdefault(key, []).append(asset)
    return out


# -- Dagster wrappers ---------------------------------------------------------------------------


def _cron_every(minutes: int) -> str:
    return f"*/{minutes} 9-16 * * 1-5"


def build_automation(
    partitions_def: dg.TimeWindowPartitionsDefinition,
    jobs: Mapping[str, dg.UnresolvedAssetJobDefinition],
    *,
    snapshot_minutes: int,
    iv_rank_times: Sequence[time],
    recoverable: Iterable[ArchiveType],
    recovery_lookback: int,
    ledger: LedgerContext | None = None,
) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    every = timedelta(minutes=snapshot_minutes)
    running = dg.DefaultScheduleStatus.RUNNING

    def grid_schedule(name: str, job_key: str, prefix: str, what: str) -> dg.ScheduleDefinition:
        @dg.schedule(
            name=name,
            job=jobs[job_key],
            cron_schedule=_cron_every(snapshot_minutes),
            execution_timezone=TZ,
            default_status=running,
            description=f"Appends one {what} every {snapshot_minutes} minutes from the open to "
            "the close inclusive, on NYSE sessions only (half days end at 13:00).",
        )
        def _grid(context: dg.ScheduleEvaluationContext):
            hit = snapshot_request(context.scheduled_execution_time, every)
            if hit is None:
                return dg.SkipReason(f"{context.scheduled_execution_time} is not a snapshot instant of a session")
            key, ts = hit
            return dg.RunRequest(
                run_key=f"{prefix}:{ts.isoformat()}",
                partition_key=key,
                tags={TAG_MODE: "snapshot", TAG_SNAPSHOT: ts.isoformat()},
            )

        return _grid

    grids = [grid_schedule("options_snapshots", "options_snapshot", "options",
                           "options snapshot (and its gex)")]
    if "grid_snapshot" in jobs:  # the other datasets on the grid (vix), in runs of their own
        grids.append(grid_schedule("grid_snapshots", "grid_snapshot", "grid",
                                   "snapshot of the other grid datasets"))

    iv_crons = sorted({f"{t.minute} {t.hour} * * 1-5" for t in iv_rank_times})

    @dg.schedule(
        name="iv_rank_snapshots",
        job=jobs["iv_rank"],
        cron_schedule=iv_crons if len(iv_crons) > 1 else iv_crons[0],
        execution_timezone=TZ,
        default_status=running,
        description="Archives IV rank at "
        + " and ".join(t.strftime("%H:%M") for t in iv_rank_times) + " ET on NYSE sessions.",
    )
    def iv_rank_snapshots(context: dg.ScheduleEvaluationContext):
        hit = iv_rank_request(context.scheduled_execution_time, iv_rank_times)
        if hit is None:
            return dg.SkipReason("not an IV-rank time of a trading day")
        key, ts = hit
        return dg.RunRequest(
            run_key=f"iv_rank:{ts.isoformat()}",
            partition_key=key,
            tags={TAG_MODE: "snapshot", TAG_SNAPSHOT: ts.isoformat()},
        )

    @dg.schedule(
        name="end_of_day",
        job=jobs["archive_all"],
        cron_schedule=f"{EOD_TIME.minute} {EOD_TIME.hour} * * 1-5",
        execution_timezone=TZ,
        default_status=running,
        description="After the session: compacts the intraday parts of options, gex, flow and IV "
        "rank into the daily files, and archives the day's 1-minute bars and executions.",
    )
    def end_of_day(context: dg.ScheduleEvaluationContext):
        key = eod_request(context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason("not a trading day")
        return dg.RunRequest(run_key=f"eod:{key}", partition_key=key, tags={TAG_MODE: "eod"})

    @dg.schedule(
        name="refresh_views",
        job=jobs["views"],
        cron_schedule=f"{EOD_TIME.minute + 30} {EOD_TIME.hour} * * 1-5",
        execution_timezone=TZ,
        default_status=running,
        description="Rebuilds the DuckDB views after the end-of-day run (new days are picked up "
        "by the views' globs anyway; this makes a type's view real once its first file exists).",
    )
    def refresh_views(context: dg.ScheduleEvaluationContext):
        return dg.RunRequest(run_key=f"views:{context.scheduled_execution_time.date()}")

    @dg.sensor(
        name="uw_flow_poll",
        job=jobs["uw_flow"],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Polls flow alerts every 60 seconds from the open to 20:00 ET; the cursor is the "
        "last poll's end, so a restart resumes where it stopped and each alert is stored once.",
    )
    def uw_flow_poll(context: dg.SensorEvaluationContext):
        now = utcnow()
        job_name = jobs["uw_flow"].name
        if context.cursor and parse_flow_cursor(context.cursor) is None:
            context.log.warning(f"uw_flow_poll: cursor {context.cursor!r} is not an ISO instant with a "
                                "UTC offset; ignoring it (this poll starts at the session open)")
        poll = flow_poll(now, context.cursor)
        key = poll[0] if poll is not None else late_flow_day(now)
        if key is None:
            return dg.SkipReason(f"market is {calendar.market_status(now)}")
        windows = unfetched_flow_windows(context.instance, job_name, key)
        _flag_abandoned(context, key, abandoned_flow_windows(windows))
        unfetched = next((w[0] for w in windows if w[2] < MAX_REACH_BACK), None)
        late = False
        if poll is None:
            # after 20:00 ET: a failed window of the day (the last poll's too) is fetched again,
            # until LATE_RETRY_END, i.e. before the end-of-day run compacts the day
            poll = late_flow_poll(now, unfetched)
            if poll is None:
                return dg.SkipReason(f"market is {calendar.market_status(now)}; nothing of {key} left to fetch")
            if context.instance.get_run_records(_poll_filter(job_name, key, _LIVE), limit=1):
                return dg.SkipReason(f"a poll run of {key} is still in flight")
            late = True
        if unfetched is not None:
            context.log.warning(f"a failed poll left flow alerts of {key} unfetched from "
                                f"{unfetched if unfetched == OPEN else unfetched.isoformat()}: this poll reaches back")
            if not late:
                poll = flow_poll(now, context.cursor, unfetched)
        key, since, until = poll
        tags = {TAG_MODE: "poll", TAG_UNTIL: until.isoformat()}
        if since is not None:
            tags[TAG_SINCE] = since.isoformat()
        context.update_cursor(until.isoformat())
        # a late retry ends at 20:00 like the failed last poll: its own run key, or the daemon
        # would skip it as that run's duplicate
        run_key = f"flow:{until.isoformat()}" + (f":retry:{now.replace(second=0, microsecond=0).isoformat()}"
                                                  if late else "")
        return dg.RunRequest(run_key=run_key, partition_key=key, tags=tags)

    recover_keys = [dg.AssetKey(spec_for(t).name) for t in recoverable]

    @dg.sensor(
        name="recover_missing_partitions",
        asset_selection=dg.AssetSelection.assets(*recover_keys),
        minimum_interval_seconds=RECOVERY_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests again, from the coverage ledger, the days of the last "
        f"{recovery_lookback} closed sessions that are missing (never written, deleted on disk, "
        "or their run died), failed, or degraded in a way a new fetch can fix. Never asks for a "
        "day before the archive's first day, today's open session or the future.",
    )
    def recover_missing_partitions(context: dg.SensorEvaluationContext):
        now = utcnow()
        if ledger is None:
            reqs = recovery_requests(context.instance, partitions_def, recover_keys, now, recovery_lookback)
        else:
            keys = recovery_candidates(partitions_def, now, recovery_lookback)
            reqs = ledger_requests(ledger, context.instance, keys, now, log=context.log)
        return reqs or dg.SkipReason("nothing missing, failed or reconcilable in the lookback window")

    return [*grids, iv_rank_snapshots, end_of_day, refresh_views], [
        uw_flow_poll,
        recover_missing_partitions,
    ]


def recovery_candidates(partitions_def, now: datetime, lookback: int) -> list[str]:
    """The last ``lookback`` closed sessions before today's market date, oldest first (as
    ``archive-platform status`` counts them): today's partition is the intraday runs' and the
    EOD run's to fill, and it does not shrink the window while its session runs."""
    if lookback <= 0:
        return []
    newest = calendar.previous_trading_day(calendar.market_date(now))
    keys = [d.isoformat() for d in calendar.last_trading_days(lookback, as_of=newest)]
    with dg.partition_loading_context(effective_dt=now):
        return [k for k in keys if partitions_def.has_partition_key(k)]


def recovery_requests(instance, partitions_def, asset_keys, now: datetime, lookback: int):
    """The run requests of the recovery sensor: one run per day over the assets missing there."""
    keys = recovery_candidates(partitions_def, now, lookback)
    if not keys:
        return []
    statuses: dict[str, dict[str, str | None]] = {}
    for ak in asset_keys:
        with dg.partition_loading_context(effective_dt=now):
            by_key = instance.get_status_by_partition(ak, keys, partitions_def) or {}
        statuses[ak.to_user_string()] = {k: (v.value if v is not None else None) for k, v in by_key.items()}
    missing = missing_partitions(keys, statuses)
    hour = now.astimezone(calendar.UTC).strftime("%Y%m%d%H")
    return [
        dg.RunRequest(
            # one attempt per day and hour at most: a vendor outage does not become a run storm
            run_key=f"recover:{key}:{'+'.join(sorted(assets))}:{hour}",
            partition_key=key,
            asset_selection=[dg.AssetKey(a) for a in sorted(assets)],
            tags={TAG_MODE: "day", "archive/trigger": "recovery"},
        )
        for key, assets in sorted(missing.items())
    ]
