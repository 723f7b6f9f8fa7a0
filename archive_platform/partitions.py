"""Dagster partitions for NYSE trading days, and the helpers schedules/sensors use to pick keys.

One partition per NYSE session, keyed ``YYYY-MM-DD`` (the session's ET date). The definition is a
daily cron at 00:00 America/New_York with weekends excluded by cron and holidays/closures excluded
by date, so every partition's time window is exactly its own ET calendar day
``[D 00:00, D+1 00:00)`` (a weekday cron ``0 0 * * 1-5`` would instead give Friday the window ``[Fri, Mon)``).

``end_offset=1`` keeps the current session's key in the definition while the session runs, but it
also exposes the NEXT session's key from 00:00 ET on the day after the previous session (so from
Saturday 00:00 for a Monday, from 00:00 on a holiday for the session after it). Schedules and
sensors must therefore choose keys with :func:`requestable_keys` / :func:`current_session_key`,
never with ``get_last_partition_key()``. See docs/calendar.md for the measured semantics.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache

import dagster as dg

from archive_platform import calendar
from archive_platform.settings import DEFAULT_START_DATE, environment, parse_start_date

START_DATE_ENV = "ARCHIVE_START_DATE"
PARTITION_KEY_FORMAT = "%Y-%m-%d"
TIMEZONE = "America/New_York"
#: weekends are excluded by cron (Saturday and Sunday 00:00 ticks of the daily cron)
WEEKEND_EXCLUSIONS = ("0 0 * * 6", "0 0 * * 0")


def trading_day_partitions(
    start_date: str | date | None = None,
) -> dg.TimeWindowPartitionsDefinition:
    """One partition per NYSE session from ``start_date`` to ``calendar.CALENDAR_END``.

    Keys are ``YYYY-MM-DD`` ET session dates; each key's window is its ET calendar day. The start
    is ``start_date`` if given, else the ``ARCHIVE_START_DATE`` environment variable (read now, at
    call time), else 2024-01-02. It must be an ISO date that is an NYSE session; anything else
    raises ``ValueError`` naming the value and where it came from. The end is exclusive at
    ``CALENDAR_END + 1 day`` because beyond it the calendar knows no holidays to exclude.
    """
    if start_date is None:
        env = environment().get(START_DATE_ENV)
        if env is not None and env.strip():
            start = parse_start_date(env.strip(), source=f"environment variable {START_DATE_ENV}")
        else:
            start = DEFAULT_START_DATE
    else:
        start = parse_start_date(start_date, source="start_date argument")
    return _build_partitions(start)


@lru_cache(maxsize=8)
def _build_partitions(start: date) -> dg.TimeWindowPartitionsDefinition:
    # Cached because every asset module asks for the same definition; building it needs the
    # calendar's schedule (~1.5 s once per process) while the Dagster object itself is cheap.
    closed = calendar.holidays_and_closures(start, calendar.CALENDAR_END)
    # Naive midnights: Dagster re-attaches the definition's timezone to exclusion datetimes, and
    # an excluded tick must equal the cron tick (00:00 ET) exactly.
    exclusions: list[str | datetime] = [*WEEKEND_EXCLUSIONS]
    exclusions += [datetime(d.year, d.month, d.day) for d in closed]
    return dg.TimeWindowPartitionsDefinition(
        start=start.strftime(PARTITION_KEY_FORMAT),
        end=(calendar.CALENDAR_END + timedelta(days=1)).strftime(PARTITION_KEY_FORMAT),
        fmt=PARTITION_KEY_FORMAT,
        timezone=TIMEZONE,
        cron_schedule="0 0 * * *",
        end_offset=1,
        exclusions=exclusions,
    )


@lru_cache(maxsize=8)
def utc_day_partitions(start: date) -> dg.TimeWindowPartitionsDefinition:
    """One partition per UTC day (every day of the year), keyed ``YYYY-MM-DD``; the running
    day's key exists from its 00:00 UTC (``end_offset=1``), as with the NYSE partitions."""
    from archive_platform.calendars import UTC_DAYS

    return dg.TimeWindowPartitionsDefinition(
        start=start.strftime(PARTITION_KEY_FORMAT),
        end=(UTC_DAYS.last_day + timedelta(days=1)).strftime(PARTITION_KEY_FORMAT),
        fmt=PARTITION_KEY_FORMAT,
        timezone="UTC",
        cron_schedule="0 0 * * *",
        end_offset=1,
    )


def partitions_for(calendar_name: str, start: date | None = None) -> dg.TimeWindowPartitionsDefinition:
    """The partitions of a dataset on calendar ``calendar_name`` (``nyse`` or ``utc``)."""
    if calendar_name == "nyse":
        return trading_day_partitions(start or DEFAULT_START_DATE)
    if calendar_name == "utc":
        return utc_day_partitions(start or DEFAULT_START_DATE)
    raise ValueError(f"no partitions for calendar {calendar_name!r}")


def current_session_key(now: datetime) -> str | None:
    """The key of today's session once it has opened, else None.

    "Today" is ``now``'s ET date. From the open (inclusive) until ET midnight of a session day the
    answer is that day's key, including after the close; before the open, and all day on
    weekends, holidays and closures, it is None. ``now`` must be timezone-aware.
    """
    today = calendar.market_date(now)
    if not calendar.is_trading_day(today):
        return None
    if now < calendar.session(today).open_utc:
        return None
    return today.isoformat()


def latest_closed_session(now: datetime) -> date:
    """The last session whose close (the early close on half days) is at or before ``now``."""
    today = calendar.market_date(now)
    if calendar.is_trading_day(today) and calendar.session(today).close_utc <= now:
        return today
    # every earlier session closed before ET midnight of its own day, so before ``now``
    return calendar.previous_trading_day(today)


def latest_opened_session(now: datetime) -> date:
    """The last session whose open is at or before ``now`` (today's once the bell has rung)."""
    key = current_session_key(now)
    if key is not None:
        return date.fromisoformat(key)
    return calendar.previous_trading_day(calendar.market_date(now))


def requestable_keys(
    partitions_def: dg.TimeWindowPartitionsDefinition, now: datetime, lookback: int
) -> list[str]:
    """Keys of the last ``lookback`` sessions that are not in the future at ``now``, oldest first.

    The newest possible key is today's session once it has opened, else the previous session;
    the later session that ``end_offset=1`` exposes early is never returned, nor is any key
    before the definition's start. Fewer than ``lookback`` keys come back near the start.
    """
    if lookback < 0:
        raise ValueError(f"lookback must be >= 0 sessions, got {lookback}")
    if lookback == 0:
        return []
    newest = latest_opened_session(now)
    wanted = calendar.last_trading_days(lookback, as_of=newest)
    keys = [d.isoformat() for d in wanted]
    with dg.partition_loading_context(effective_dt=now):
        return [k for k in keys if partitions_def.has_partition_key(k)]


def latest_complete_session(now: datetime, datasets) -> date:
    """The last session every whole-day NYSE dataset of ``datasets`` can be archived for.

    A session's close is not enough: executions (``trades``) are archived after 20:00 ET, so
    between the close and then the latest complete session is the one before.
    """
    day = latest_closed_session(now)
    whole_day = [d for d in datasets if d.calendar_name == "nyse" and not d.incremental]
    while any(d.calendar.event_window(day, d.window)[1] > now for d in whole_day):
        day = calendar.previous_trading_day(day)
    return day
