"""Per-dataset health of the archive from the coverage ledger: pure, no Dagster.

``archive-platform status`` prints it and the ``coverage`` asset shows it as a table. A dataset
is healthy when its latest day due by its freshness deadline is stored, no day from the archive's
first day to the due day is missing or failed (in the lookback, which the recovery sensor
retries, or before it, which only a backfill can fix), and (capture datasets) its capture
heartbeat is fresh. Degraded days are listed but do not make it unhealthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from archive_platform.coverage import Entry
from archive_platform.datasets.base import Dataset

COLUMNS = ("dataset", "healthy", "days_stored", "first_day", "last_day", "rows", "bytes",
           "last_day_rows", "last_day_bytes", "last_write", "due_day", "fresh",
           "missing", "failed", "degraded", "missing_older", "heartbeat", "problems")


def due_day(ds: Dataset, now: datetime) -> date | None:
    """The newest partition that must be written by ``now``: the latest session whose
    freshness deadline (the declaration's cron: minute and hour, in the calendar's zone) is past.
    A session ends the same day (the deadline is that evening); a UTC day ends at midnight, so
    its deadline is on the next day (03:00 UTC the day after)."""
    cron, _ = ds.freshness
    minute, hour = (int(x) for x in cron.split()[:2])
    cal = ds.calendar
    tz = ZoneInfo(cal.timezone)
    lag = timedelta(days=1) if ds.calendar_name == "utc" else timedelta(0)
    day = now.astimezone(tz).date()
    for _ in range(10):
        if day < cal.first_day:
            return None
        if cal.is_session(day) and datetime.combine(day + lag, time(hour, minute), tzinfo=tz) <= now:
            return day
        day -= timedelta(days=1)
    return None


def lookback_days(ds: Dataset, now: datetime, lookback: int, first: date | None) -> list[date]:
    """The last ``lookback`` closed partitions (before today's market date), from ``first`` on."""
    cal = ds.calendar
    today = cal.market_date(now)
    days = cal.last_sessions(lookback, as_of=cal.previous_session(today))
    return [d for d in days if first is None or d >= first]


def name_days(days: Sequence[str], most: int = 6) -> str:
    """The days, or the first and last few of a long list with how many are left out."""
    if len(days) <= most:
        return ", ".join(days)
    half = most // 2
    return f"{', '.join(days[:half])} ... {', '.join(days[-half:])} ({len(days) - 2 * half} more between)"


def dataset_status(ds: Dataset, entries: Sequence[Entry], now: datetime, *, lookback: int,
                   first: date | None, heartbeat: list[str] | None = None) -> dict:
    """One dataset's line of the status (see ``COLUMNS``)."""
    stored = sorted((e for e in entries if e.files), key=lambda e: e.day)
    last = stored[-1] if stored else None
    due = due_day(ds, now)
    # closed days whose deadline has not passed yet (a UTC day just after midnight) are not late
    window = {d for d in lookback_days(ds, now, lookback, first) if due is None or d <= due}
    recent = [e for e in entries if e.day in window]
    # due before the archive's first day (or nothing due yet): nothing can be late
    nothing_due = due is None or (first is not None and due < first)
    fresh = bool(nothing_due or any(e.day == due for e in stored))
    missing = sorted(str(e.day) for e in recent if e.state == "missing")
    failed = sorted(str(e.day) for e in recent if e.state == "failed")
    degraded = sorted(str(e.day) for e in recent if e.state == "degraded")
    # days not stored before the lookback: the recovery sensor no longer asks for them, so
    # only a backfill brings them back; they are as lost as a missing day of the lookback
    start = min(window) if window else None
    older = sorted(str(e.day) for e in entries if e.state in ("missing", "failed")
                   and e.day not in window and (start is None or e.day < start)
                   and (due is None or e.day <= due))
    problems = []
    if not stored and not nothing_due:
        problems.append("nothing stored")
    elif not fresh:
        problems.append(f"stale: {due} was due by its deadline and is not stored")
    if missing:
        problems.append(f"{len(missing)} missing in the last {lookback} days: {name_days(missing)}")
    if failed:
        problems.append(f"{len(failed)} failed in the last {lookback} days: {name_days(failed)}")
    if older:
        problems.append(f"{len(older)} not stored before the last {lookback} days (recovery no longer "
                        f"retries them; backfill them): {name_days(older)}")
    problems += heartbeat or []
    return {
        "dataset": ds.name,
        "healthy": not problems,
        "days_stored": len(stored),
        "first_day": str(stored[0].day) if stored else None,
        "last_day": str(last.day) if last else None,
        "rows": sum(e.rows for e in stored),
        "bytes": sum(e.bytes for e in stored),
        "last_day_rows": last.rows if last else 0,
        "last_day_bytes": last.bytes if last else 0,
        "last_write": max(e.last_write for e in stored).isoformat() if stored and any(
            e.last_write for e in stored) else None,
        "due_day": str(due) if due else None,
        "fresh": fresh,
        "missing": missing,
        "failed": failed,
        "degraded": degraded,
        "missing_older": older,
        "heartbeat": "; ".join(heartbeat) if heartbeat else ("ok" if heartbeat is not None else None),
        "problems": problems,
    }


def archive_status(datasets: Sequence[Dataset], entries: Sequence[Entry], now: datetime, *,
                   lookback: int, first: date | None,
                   heartbeats: Mapping[str, list[str]] | None = None) -> dict:
    """``{"healthy": bool, "checked_at": ..., "datasets": [one line per dataset]}``."""
    heartbeats = heartbeats or {}
    lines = [dataset_status(ds, [e for e in entries if e.dataset == ds.name], now,
                            lookback=lookback, first=first, heartbeat=heartbeats.get(ds.name))
             for ds in datasets]
    return {"healthy": all(x["healthy"] for x in lines), "checked_at": now.isoformat(),
            "first_day": str(first) if first else None, "lookback": lookback, "datasets": lines}


def render_text(status: dict) -> str:
    """A plain-text table of the status, one line per dataset."""
    # as wide as the longest name (market_regime, orderbook_features), so the columns align
    w = max([len("dataset")] + [len(x["dataset"]) for x in status["datasets"]])
    head = f"{'dataset':<{w}} {'ok':<3} {'days':>5} {'first':<10} {'last':<10} {'rows':>12} " \
           f"{'bytes':>13} {'last write':<20} problems"
    out = [head]
    for x in status["datasets"]:
        out.append(
            f"{x['dataset']:<{w}} {'yes' if x['healthy'] else 'NO':<3} {x['days_stored']:>5} "
            f"{x['first_day'] or '-':<10} {x['last_day'] or '-':<10} {x['rows']:>12,} "
            f"{x['bytes']:>13,} {(x['last_write'] or '-')[:19]:<20} {'; '.join(x['problems']) or '-'}"
            # degraded days do not make a dataset unhealthy, but the text must not hide them
            + (f" (degraded, not counted against health: {name_days(x['degraded'])})"
               if x.get("degraded") else ""))
    out.append("healthy" if status["healthy"] else "UNHEALTHY")
    return "\n".join(out)


def heartbeat_for(ds: Dataset, root, now: datetime) -> list[str] | None:
    """Capture datasets (24/7, filled by the capture service): the heartbeat's problems when
    a heartbeat exists under ``root`` (empty list: fresh); None for other datasets."""
    if ds.calendar_name != "utc":
        return None
    from archive_platform.crypto.health import capture_problems, read_heartbeat

    beat = read_heartbeat(root)
    return None if beat is None else capture_problems(beat, now)
