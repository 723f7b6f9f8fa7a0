"""Market calendars behind one small interface (pure: no Dagster).

A dataset names its calendar; partitions, schedules, store validation and checks ask the
calendar, never assume NYSE. Two exist: ``nyse`` (regular sessions with early closes and
closures; one partition per session) and ``utc`` (24/7; one partition per UTC day, every day).
"""

from __future__ import annotations

from archive_platform.calendars.base import Calendar, NotASession
from archive_platform.calendars.nyse import NYSE
from archive_platform.calendars.utc import UTC_DAYS

CALENDARS: dict[str, Calendar] = {c.name: c for c in (NYSE, UTC_DAYS)}


def get_calendar(name: str) -> Calendar:
    try:
        return CALENDARS[name]
    except KeyError:
        raise ValueError(f"unknown calendar {name!r}; expected one of {sorted(CALENDARS)}") from None


__all__ = ["CALENDARS", "Calendar", "NYSE", "NotASession", "UTC_DAYS", "get_calendar"]
