"""stocks_1m's completeness rule judges which minutes the bars start at, not only how many there
are: a day of bars stamped at their end (09:31..16:00 ET, a vendor convention the archive does not
use) or with a 16:00 bar in place of the 09:30 one has 390 bars per symbol and used to pass every
check (found by the checks audit)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from archive_platform import calendar
from archive_platform.coverage import reason_kind
from archive_platform.datasets import DATASETS
from archive_platform.datasets.base import CompletenessContext

STOCKS = next(d for d in DATASETS if d.name == "stocks_1m")


def bars(day: date, shift: timedelta = timedelta(0)) -> pl.DataFrame:
    s = calendar.session(day)
    starts = [s.open_utc + timedelta(minutes=i) + shift for i in range(s.minutes)]
    return pl.DataFrame({"symbol": ["SPY"] * len(starts) + ["QQQ"] * len(starts), "timestamp": starts * 2})


def judge(df: pl.DataFrame, day: date):
    return STOCKS.completeness(df, CompletenessContext(day=day, symbols=("SPY", "QQQ"), calendar=STOCKS.calendar))


@pytest.mark.parametrize("day", [date(2025, 11, 26), date(2025, 11, 28), date(2025, 11, 3), date(2025, 3, 10)])
def test_bars_on_every_session_minute_are_complete(day):
    problems, meta = judge(bars(day), day)
    assert problems == [] and "bars_off_session_minutes" not in meta


def test_bars_stamped_at_their_end_are_not_complete():
    day = date(2025, 11, 26)
    problems, meta = judge(bars(day, timedelta(minutes=1)), day)
    assert problems == ["2 bars not starting on a minute of the session (14:30-20:59 UTC, the bar's start time)"]
    assert meta["bars_off_session_minutes"] == 2
    assert meta["off_session_examples"] == ["QQQ 2025-11-26T21:00:00+00:00", "SPY 2025-11-26T21:00:00+00:00"]
    assert reason_kind(problems[0]) == "minutes"


def test_a_close_bar_in_place_of_the_open_bar_and_a_bar_off_the_minute_are_not_complete():
    day = date(2025, 11, 28)  # 13:00 ET close: 210 bars
    df = bars(day)
    s = calendar.session(day)
    ts = df["timestamp"].to_list()
    ts[0] = s.close_utc  # 13:00 ET
    ts[1] = ts[1] + timedelta(seconds=30)
    problems, meta = judge(df.with_columns(pl.Series("timestamp", ts, dtype=df.schema["timestamp"])), day)
    assert meta["bars_off_session_minutes"] == 2
    assert problems == ["2 bars not starting on a minute of the session (14:30-17:59 UTC, the bar's start time)"]
