"""The NYSE calendar behind the ``Calendar`` interface (a thin view of ``archive_platform.calendar``)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from archive_platform import calendar as nyse
from archive_platform.calendars.base import NotASession


class NYSECalendar:
    name = "nyse"
    timezone = "America/New_York"
    label = "NYSE trading day"
    first_day = nyse.CALENDAR_START
    last_day = nyse.CALENDAR_END
    default_start = date(2024, 1, 2)

    def is_session(self, day: date) -> bool:
        return nyse.is_trading_day(day)

    def sessions(self, start: date, end: date) -> list[date]:
        return nyse.trading_days(start, end)

    def require_session(self, day: date) -> None:
        if not nyse.is_trading_day(day):
            raise NotASession(f"{day.isoformat()} is not an NYSE trading day")

    def previous_session(self, day: date) -> date:
        return nyse.previous_trading_day(day)

    def next_session(self, day: date) -> date:
        return nyse.next_trading_day(day)

    def last_sessions(self, n: int, *, as_of: date) -> list[date]:
        return nyse.last_trading_days(n, as_of=as_of)

    def partition_window(self, day: date) -> tuple[datetime, datetime]:
        lo = datetime.combine(day, time(0), tzinfo=nyse.ET).astimezone(nyse.UTC)
        hi = datetime.combine(day + timedelta(days=1), time(0), tzinfo=nyse.ET).astimezone(nyse.UTC)
        return lo, hi

    def event_window(self, day: date, window: str) -> tuple[datetime, datetime]:
        return nyse.window_bounds(day, window)

    def snapshot_grid(self, day: date, every: timedelta) -> list[datetime]:
        return nyse.snapshot_times(day, every)

    def market_date(self, ts: datetime) -> date:
        return nyse.market_date(ts)

    def status(self, ts: datetime) -> str:
        return nyse.market_status(ts)

    def opened(self, day: date) -> datetime:
        return nyse.session(day).open_utc


NYSE = NYSECalendar()
