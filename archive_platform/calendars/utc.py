"""The 24/7 calendar: every UTC calendar day is one session, open all day (crypto markets)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from archive_platform.calendars.base import NotASession

UTC = timezone.utc


def _require_date(day: date) -> None:
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"expected a datetime.date, got {type(day).__name__} {day!r}")


def _require_aware(ts: datetime) -> None:
    if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
        raise ValueError(f"naive datetime {ts!r}: pass a timezone-aware instant (e.g. UTC)")


class UTCDaysCalendar:
    name = "utc"
    timezone = "UTC"
    label = "UTC day"
    first_day = date(2009, 1, 3)
    last_day = date(2036, 12, 31)
    default_start = date(2024, 1, 1)

    def is_session(self, day: date) -> bool:
        _require_date(day)
        return self.first_day <= day <= self.last_day

    def sessions(self, start: date, end: date) -> list[date]:
        start, end = max(start, self.first_day), min(end, self.last_day)
        return [start + timedelta(days=i) for i in range((end - start).days + 1)]

    def require_session(self, day: date) -> None:
        if not self.is_session(day):
            raise NotASession(
                f"{day.isoformat()} is outside the UTC calendar's range "
                f"{self.first_day.isoformat()}..{self.last_day.isoformat()}"
            )

    def previous_session(self, day: date) -> date:
        return day - timedelta(days=1)

    def next_session(self, day: date) -> date:
        return day + timedelta(days=1)

    def last_sessions(self, n: int, *, as_of: date) -> list[date]:
        if n < 0:
            raise ValueError(f"last_sessions needs n >= 0, got {n}")
        return [as_of - timedelta(days=i) for i in reversed(range(n))]

    def partition_window(self, day: date) -> tuple[datetime, datetime]:
        self.require_session(day)
        lo = datetime.combine(day, time(0), tzinfo=UTC)
        return lo, lo + timedelta(days=1)

    def event_window(self, day: date, window: str) -> tuple[datetime, datetime]:
        """Every window of a 24/7 market is the whole UTC day."""
        lo, hi = self.partition_window(day)
        return lo, hi - timedelta(microseconds=1)

    def snapshot_grid(self, day: date, every: timedelta) -> list[datetime]:
        lo, hi = self.partition_window(day)
        n = int((hi - lo) / every)
        return [lo + i * every for i in range(n)]

    def market_date(self, ts: datetime) -> date:
        _require_aware(ts)
        return ts.astimezone(UTC).date()

    def status(self, ts: datetime) -> str:
        _require_aware(ts)
        return "open"

    def opened(self, day: date) -> datetime:
        return self.partition_window(day)[0]


UTC_DAYS = UTCDaysCalendar()
