"""The calendar interface every dataset's calendar implements."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Protocol

from archive_platform.calendar import NotATradingDay


class NotASession(NotATradingDay):
    """A day that is not a partition of the calendar was used where one is required."""


class Calendar(Protocol):
    """Sessions (one partition each), their time windows, snapshot grids and market status.

    ``name`` is the value a dataset declares; ``timezone`` is the IANA zone the partitions'
    windows and the schedules' crons are expressed in; ``first_day``/``last_day`` bound what
    the calendar knows; ``default_start`` is where partitions begin unless configured.
    """

    name: str
    timezone: str
    label: str  # "NYSE session", "UTC day": how messages name one partition
    first_day: date
    last_day: date
    default_start: date

    def is_session(self, day: date) -> bool: ...

    def sessions(self, start: date, end: date) -> list[date]: ...

    def require_session(self, day: date) -> None:
        """Raise ``NotASession`` (naming the day and the calendar) unless ``day`` is a session."""

    def previous_session(self, day: date) -> date: ...

    def next_session(self, day: date) -> date: ...

    def last_sessions(self, n: int, *, as_of: date) -> list[date]: ...

    def partition_window(self, day: date) -> tuple[datetime, datetime]:
        """[start, end) in UTC of the instants whose market date is ``day``."""

    def event_window(self, day: date, window: str) -> tuple[datetime, datetime]:
        """Inclusive UTC bounds of a dataset's event window (``session``/``extended``/``day``)."""

    def snapshot_grid(self, day: date, every: timedelta) -> list[datetime]: ...

    def market_date(self, ts: datetime) -> date: ...

    def status(self, ts: datetime) -> str:
        """``open``, ``closed``, ``pre_market`` or ``after_hours`` at the instant ``ts``."""

    def opened(self, day: date) -> datetime:
        """The instant the session of ``day`` opens (its partition becomes current)."""
