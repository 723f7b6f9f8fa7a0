"""A whole-day derived dataset (daily bars, daily IV, market regime, candles...) is derived only
once the day's window has ended: deriving daily_bars at 11:30 ET stored the morning's 120 bars as
the day's bar, stamped with the 16:00 close, and nothing ever replaced it."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from archive_platform.archiving import NotReadyError, Request, Settings, archive_partition
from archive_platform.datasets import BY_NAME
from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import make_table

UTC = timezone.utc
DAY = date(2025, 11, 26)  # 14:30-21:00 UTC
MORNING = datetime(2025, 11, 26, 16, 30, tzinfo=UTC)  # 11:30 ET
EVENING = datetime(2025, 11, 26, 21, 5, tzinfo=UTC)


def test_daily_bars_are_not_derived_before_the_close_and_are_after_it(tmp_path):
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    store.write_day("stocks_1m", DAY, make_table("stocks_1m", DAY, 120))
    settings = Settings(symbols=("SPY",))
    bars = BY_NAME["daily_bars"]
    with pytest.raises(NotReadyError, match=r"daily_bars for 2025-11-26 is archived after the session's end"):
        archive_partition(bars, Request(DAY), store=store, source=None, settings=settings, now=MORNING,
                          options_store=store)
    assert store.days("daily_bars") == []  # nothing stored as if the day were complete
    result = archive_partition(bars, Request(DAY), store=store, source=None, settings=settings, now=EVENING,
                               options_store=store)
    assert store.days("daily_bars") == [DAY]
    # one bar per symbol, stamped with the 16:00 ET close, made of that symbol's stored minute
    # bars (make_table: 120 symbols with one bar each)
    minute = {r["symbol"]: r for r in store.read_day("stocks_1m", DAY).to_pylist()}
    daily = store.read_day("daily_bars", DAY).to_pylist()
    assert result.rows_written == len(daily) == len(minute) == 120
    close = datetime(2025, 11, 26, 21, 0, tzinfo=UTC)
    for d in daily:
        m = minute[d["symbol"]]
        assert d["timestamp"] == close and d["session_minutes"] == 390, d
        assert (d["open"], d["high"], d["low"], d["close"], d["volume"]) == (
            m["open"], m["high"], m["low"], m["close"], m["volume"]), (d, m)
        assert d["bars"] == 1 and d["first_bar"] == d["last_bar"] == m["timestamp"], (d, m)
