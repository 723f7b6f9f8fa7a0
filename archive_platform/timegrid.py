"""The time-grid helpers in Python: the same functions as the DuckDB macros (macros.py).

``trading_day_add`` and ``trading_days_between`` work on the NYSE calendar directly. The helpers
over data take Arrow tables (or polars/pandas frames) of ``daily_bars``, ``daily_iv`` and
``options`` in a ``TimeGrid`` and run the very macros an analyst uses in SQL, on a private
in-memory DuckDB connection, so Python and SQL cannot drift apart. Results are Arrow tables
(``close_after``: a float). Bad input raises ``TimeGridError`` (a ``ValueError``) with the
macro's message.

the time-grid note's examples: ``trading_day_add(date(2020, 10, 20), 28) == date(2020, 11, 30)``;
``vector(4)`` from a day is ``bars_forward(symbol, day, 4)`` and ``vector(29, start_at: 28)``
is ``bars_forward(symbol, day, 29, start_at=28)`` (the one bar 28 sessions later).
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import duckdb
import pyarrow as pa

from archive_platform import calendar, macros
from archive_platform.regime import DAILY_BARS_SCHEMA, DAILY_IV_SCHEMA
from archive_platform.schemas import OPTIONS_SCHEMA


class TimeGridError(ValueError):
    """A helper was given input it cannot answer for (the message says why)."""


def _need(name: str, value) -> None:
    if value is None:
        raise TimeGridError(f"{name} is None")


def trading_day_add(day: date, n: int) -> date:
    """The session ``n`` sessions after (n > 0) or before (n < 0) ``day`` (calendar.add_trading_days)."""
    _need("day", day)
    _need("n", n)
    try:  # a count that is not a whole number: calendar.add_trading_days names it
        return calendar.add_trading_days(day, n)
    except (ValueError, TypeError) as e:
        raise TimeGridError(f"trading_day_add: {e}") from e


def trading_days_between(a: date, b: date) -> int:
    """The n with ``trading_day_add(a, n) == b`` when b is a session: sessions in (a, b], or
    minus the sessions in [b, a) when b < a."""
    _need("a", a)
    _need("b", b)
    try:
        own = 1 if calendar.is_trading_day(a) else 0
        if b >= a:
            return len(calendar.trading_days(a, b)) - own
        return -len(calendar.trading_days(b, a)) + own
    except (ValueError, TypeError) as e:
        raise TimeGridError(f"trading_days_between: {e}") from e


def _instant(fn: str, at) -> datetime:
    """``at`` as a UTC instant; a date, a string or a naive datetime is refused by name."""
    if not isinstance(at, datetime):
        raise TimeGridError(f"{fn}: at must be a timezone-aware datetime (an instant), got "
                            f"{type(at).__name__} {at!r}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise TimeGridError(f"{fn}: naive datetime {at!r}; pass an aware instant")
    return at.astimezone(timezone.utc)


def _arrow(data, schema: pa.Schema) -> pa.Table:
    if data is None:
        return schema.empty_table()
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatchReader):  # what DuckDB 1.5's ``.arrow()`` returns
        return data.read_all()
    if hasattr(data, "to_arrow"):  # polars
        return data.to_arrow()
    if not hasattr(data, "columns"):  # pyarrow's pandas conversion fails deep inside on these
        raise TimeGridError(f"expected an Arrow table, a polars or pandas frame (or an Arrow "
                            f"record batch reader), got {type(data).__name__}")
    return pa.Table.from_pandas(data, preserve_index=False)


class TimeGrid:
    """The time-grid helpers over in-memory tables (any of them may be None: empty)."""

    def __init__(self, daily_bars=None, daily_iv=None, options=None) -> None:
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        for name, data, schema in (("daily_bars", daily_bars, DAILY_BARS_SCHEMA),
                                   ("daily_iv", daily_iv, DAILY_IV_SCHEMA),
                                   ("options", options, OPTIONS_SCHEMA)):
            self._con.register(name, _arrow(data, schema))
        macros.install(self._con)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> TimeGrid:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, sql: str, params: list) -> pa.Table:
        try:
            return self._con.sql(sql, params=params).to_arrow_table()
        except duckdb.InvalidInputException as e:
            raise TimeGridError(str(e).removeprefix("Invalid Input Error: ")) from None

    def bar_of_day(self, symbol: str, day: date) -> pa.Table:
        return self._run("SELECT * FROM bar_of_day(?, ?)", [symbol, day])

    def bars_forward(self, symbol: str, day: date, n: int, start_at: int = 0) -> pa.Table:
        return self._run("SELECT * FROM bars_forward(?, ?, ?, start_at := ?)",
                         [symbol, day, n, start_at])

    def iv_bar_of_day(self, symbol: str, day: date) -> pa.Table:
        return self._run("SELECT * FROM iv_bar_of_day(?, ?)", [symbol, day])

    def iv_bars_forward(self, symbol: str, day: date, n: int, start_at: int = 0) -> pa.Table:
        return self._run("SELECT * FROM iv_bars_forward(?, ?, ?, start_at := ?)",
                         [symbol, day, n, start_at])

    def close_after(self, symbol: str, day: date, n: int) -> float:
        return self._run("SELECT close_after(?, ?, ?) AS c", [symbol, day, n]).column("c")[0].as_py()

    def change_after_weekday(self, symbol: str, weekday: int, n: int) -> pa.Table:
        """``weekday`` is ISO: 1 = Monday .. 5 = Friday."""
        return self._run("SELECT * FROM change_after_weekday(?, ?, ?)", [symbol, weekday, n])

    def finish_probability(
        self, symbol: str, horizon_sessions: int, moneyness: float, at: datetime | None = None
    ) -> pa.Table:
        if at is not None:
            at = _instant("finish_probability", at)
            return self._run(
                "SELECT * FROM finish_probability(?, ?, ?, snapshot_at := CAST(? AS TIMESTAMPTZ))",
                [symbol, horizon_sessions, moneyness, at.isoformat()])
        return self._run("SELECT * FROM finish_probability(?, ?, ?)",
                         [symbol, horizon_sessions, moneyness])

    def latest_chain(self, symbol: str, at: datetime) -> pa.Table:
        _need("at", at)
        return self._run("SELECT * FROM latest_chain(?, CAST(? AS TIMESTAMPTZ))",
                         [symbol, _instant("latest_chain", at).isoformat()])

    def iv_history(self, symbol: str, days: int) -> pa.Table:
        return self._run("SELECT * FROM iv_history(?, ?)", [symbol, days])
