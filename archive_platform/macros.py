"""The time-grid helpers as DuckDB macros (see docs/timegrid.md for each one with an example).

``install(con)`` creates the ``trading_days`` table (NYSE sessions from ``archive_platform.calendar``
with a running index ``idx``) and the macros below (``change_after_weekday`` and
``finish_probability`` are in ``macros_stats.py``) in a DuckDB connection that has (or later
gets) tables or views ``daily_bars``, ``daily_iv`` and ``options``:

scalar: ``trading_day_add(day, n)``, ``trading_days_between(a, b)``, ``close_after(symbol, day, n)``
table:  ``bar_of_day(symbol, day)``, ``bars_forward(symbol, day, n, start_at := 0)``,
        ``iv_bar_of_day``, ``iv_bars_forward`` (the same over daily_iv),
        ``change_after_weekday(symbol, weekday, n)``,
        ``finish_probability(symbol, horizon, moneyness, snapshot_at := NULL)``,
        ``latest_chain(symbol, at)``, ``iv_history(symbol, days)``

Bad input (NULL, unknown symbol, a day that is not a session, a negative horizon, an instant
that is not a TIMESTAMPTZ) raises a DuckDB error whose message names the helper and the problem.
A session without a stored row gives a row of NULLs whose ``note`` says so, never a number from
another day. Nothing depends on the session TimeZone: ET dates come from ``et_offset`` and
instants are compared as instants.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from archive_platform import calendar
from archive_platform.macros_stats import _CHANGE_AFTER_WEEKDAY, _FINISH, _q, _symbol_check

# z of a two-sided 95 % interval: NormalDist().inv_cdf(0.975)
Z95 = 1.959963984540054


def trading_days_table(start: date, end: date) -> pa.Table:
    """The NYSE sessions in [start, end] with their index and open/close instants."""
    sessions = [calendar.session(d) for d in calendar.trading_days(start, end)]
    ts = pa.timestamp("us", tz="UTC")
    return pa.table({
        "idx": pa.array(range(len(sessions)), pa.int32()),
        "day": pa.array([s.day for s in sessions], pa.date32()),
        "open_utc": pa.array([s.open_utc for s in sessions], ts),
        "close_utc": pa.array([s.close_utc for s in sessions], ts),
        "minutes": pa.array([s.minutes for s in sessions], pa.int32()),
    })


_BASE = f"""
CREATE OR REPLACE MACRO _tg_idx(d) AS (SELECT idx FROM trading_days WHERE day = d);
CREATE OR REPLACE MACRO _tg_day(i) AS (SELECT day FROM trading_days WHERE idx = i);
CREATE OR REPLACE MACRO _tg_in_range(d) AS
    d BETWEEN (SELECT min(day) FROM trading_days) AND (SELECT max(day) FROM trading_days);
CREATE OR REPLACE MACRO _tg_session(fn, d) AS CASE
    WHEN d IS NULL THEN error(fn || ': day is NULL')
    WHEN NOT _tg_in_range(d) THEN error(fn || ': ' || d || ' is outside the installed calendar')
    WHEN _tg_idx(d) IS NULL THEN error(fn || ': ' || d || ' is not an NYSE session')
    ELSE true END;
CREATE OR REPLACE MACRO _tg_count(fn, name, n) AS CASE
    WHEN n IS NULL THEN error(fn || ': ' || name || ' is NULL')
    WHEN n < 0 THEN error(fn || ': ' || name || ' must be >= 0, got ' || n)
    WHEN n <> trunc(n) THEN error(fn || ': ' || name || ' must be a whole number, got ' || n)
    ELSE true END;
CREATE OR REPLACE MACRO _tg_add_raw(d, n) AS CASE
    WHEN n = 0 THEN _tg_day(_tg_idx(d))
    WHEN n > 0 THEN _tg_day((SELECT min(idx) FROM trading_days WHERE day > d) + n - 1)
    ELSE _tg_day((SELECT min(idx) FROM trading_days WHERE day >= d) + n) END;
CREATE OR REPLACE MACRO trading_day_add(d, n) AS CASE
    WHEN d IS NULL OR n IS NULL
        THEN error('trading_day_add: NULL argument (day=' || {_q('d')} || ', n=' || {_q('n')} || ')')
    WHEN NOT _tg_in_range(d) THEN error('trading_day_add: ' || d || ' is outside the installed calendar')
    WHEN n <> trunc(n) THEN error('trading_day_add: n must be a whole number of sessions, got ' || n)
    WHEN n = 0 AND _tg_idx(d) IS NULL
        THEN error('trading_day_add: ' || d || ' is not an NYSE session (n = 0 needs one)')
    WHEN _tg_add_raw(d, n) IS NULL
        THEN error('trading_day_add: ' || n || ' sessions from ' || d || ' is outside the installed calendar')
    ELSE _tg_add_raw(d, n) END;
CREATE OR REPLACE MACRO trading_days_between(a, b) AS CASE
    WHEN a IS NULL OR b IS NULL
        THEN error('trading_days_between: NULL argument (a=' || {_q('a')} || ', b=' || {_q('b')} || ')')
    WHEN NOT (_tg_in_range(a) AND _tg_in_range(b))
        THEN error('trading_days_between: ' || a || ' or ' || b || ' is outside the installed calendar')
    ELSE (SELECT count(*) FROM trading_days WHERE day > a AND day <= b)
       - (SELECT count(*) FROM trading_days WHERE day >= b AND day < a) END;
CREATE OR REPLACE MACRO _tg_wilson(k, n, sign) AS CASE WHEN n > 0 THEN
    ((k / n + {Z95}^2 / (2 * n))
     + sign * {Z95} * sqrt((k / n) * (1 - k / n) / n + {Z95}^2 / (4 * n * n)))
    / (1 + {Z95}^2 / n) END;
"""


def _forward(fn: str, table: str) -> str:
    """bars_forward / iv_bars_forward: the bars at session offsets start_at..n-1 from day.

    ``_fn`` only names the helper in error messages (bar_of_day calls bars_forward).
    """
    one = fn.replace("bars_forward", "bar_of_day")
    return f"""
CREATE OR REPLACE MACRO {fn}(sym, d, n, start_at := 0, _fn := '{fn}') AS TABLE
WITH chk AS (SELECT CASE WHEN sym IS NULL THEN error(_fn || ': symbol is NULL')
    WHEN NOT EXISTS (SELECT 1 FROM {table} WHERE symbol = sym)
        THEN error(_fn || ': unknown symbol ' || sym || ' (no rows in {table})')
    WHEN NOT _tg_session(_fn, d) THEN NULL
    WHEN NOT (_tg_count(_fn, 'n', n) AND _tg_count(_fn, 'start_at', start_at)) THEN NULL
    WHEN start_at >= n THEN error(_fn || ': start_at (' || start_at || ') must be < n (' || n
        || '): the bars returned are offsets start_at .. n-1')
    WHEN _tg_idx(d) + n - 1 > (SELECT max(idx) FROM trading_days)
        THEN error(_fn || ': ' || n || ' sessions from ' || d || ' run past the installed calendar')
    ELSE true END AS ok),
grid AS (SELECT t.idx - _tg_idx(d) AS "offset", t.day FROM trading_days t
         WHERE t.idx BETWEEN _tg_idx(d) + start_at AND _tg_idx(d) + n - 1)
SELECT grid."offset", grid.day AS date, b.* EXCLUDE (symbol, date),
       CASE WHEN b.date IS NULL THEN 'no {table} row stored for ' || sym || ' on ' || grid.day END AS note
FROM grid CROSS JOIN chk LEFT JOIN {table} b ON b.symbol = sym AND b.date = grid.day
WHERE chk.ok ORDER BY grid."offset";
CREATE OR REPLACE MACRO {one}(sym, d) AS TABLE
SELECT * EXCLUDE ("offset") FROM {fn}(sym, d, 1, _fn := '{one}');
"""


_CLOSE_AFTER = f"""
CREATE OR REPLACE MACRO _tg_close(sym, d) AS (SELECT close FROM daily_bars WHERE symbol = sym AND date = d);
CREATE OR REPLACE MACRO close_after(sym, d, n) AS CASE {_symbol_check('close_after', 'daily_bars')}
    WHEN NOT (_tg_session('close_after', d) AND _tg_count('close_after', 'n', n)) THEN NULL
    WHEN _tg_close(sym, trading_day_add(d, n)) IS NULL
        THEN error('close_after: no daily_bars close stored for ' || sym || ' on '
                   || trading_day_add(d, n) || ' (' || n || ' sessions after ' || d || ')')
    ELSE _tg_close(sym, trading_day_add(d, n)) END;
"""

_CHAIN = f"""
CREATE OR REPLACE MACRO latest_chain(sym, at_) AS TABLE
WITH snap AS (SELECT max(snapshot_time) AS t FROM options WHERE symbol = sym AND snapshot_time <= at_),
chk AS (SELECT CASE {_symbol_check('latest_chain', 'options')}
    WHEN at_ IS NULL THEN error('latest_chain: at is NULL')
    WHEN typeof(at_) <> 'TIMESTAMP WITH TIME ZONE'
        THEN error('latest_chain: at must be a TIMESTAMPTZ (an instant), got ' || typeof(at_)
                   || '; a naive timestamp would depend on the session TimeZone')
    WHEN (SELECT t FROM snap) IS NULL
        THEN error('latest_chain: no options snapshot of ' || sym || ' at or before ' || strftime(timezone('UTC', CAST(at_ AS TIMESTAMPTZ)), '%Y-%m-%d %H:%M:%S UTC'))
    ELSE true END AS ok)
SELECT o.* FROM options o, snap, chk
WHERE chk.ok AND o.symbol = sym AND o.snapshot_time = snap.t
ORDER BY o.expiry, o.strike, o."right";
CREATE OR REPLACE MACRO iv_history(sym, days) AS TABLE
WITH chk AS (SELECT CASE {_symbol_check('iv_history', 'daily_iv')}
    WHEN days IS NULL OR days < 1 THEN error('iv_history: days must be >= 1, got ' || {_q('days')})
    WHEN days <> trunc(days) THEN error('iv_history: days must be a whole number, got ' || days)
    ELSE true END AS ok),
last AS (SELECT max(t.idx) AS li FROM daily_iv d JOIN trading_days t ON t.day = d.date WHERE d.symbol = sym),
grid AS (SELECT t.day FROM trading_days t, last WHERE t.idx > last.li - days AND t.idx <= last.li)
SELECT grid.day AS date, d.front_low AS iv_min, d.front_high AS iv_max, d.front_mean AS iv_mean,
       d.front_close AS iv_close, d.front_expiry AS expiry, d.front_snapshots AS snapshots,
       CASE WHEN d.date IS NULL THEN 'no daily_iv row stored for ' || sym || ' on ' || grid.day END AS note
FROM grid CROSS JOIN chk LEFT JOIN daily_iv d ON d.symbol = sym AND d.date = grid.day
WHERE chk.ok ORDER BY grid.day;
"""


REQUIRED = ("daily_bars", "daily_iv", "options")


def _empty_schemas() -> dict[str, pa.Schema]:
    from archive_platform.regime import DAILY_BARS_SCHEMA, DAILY_IV_SCHEMA
    from archive_platform.schemas import OPTIONS_SCHEMA

    return {"daily_bars": DAILY_BARS_SCHEMA, "daily_iv": DAILY_IV_SCHEMA, "options": OPTIONS_SCHEMA}


def install(
    con,
    *,
    start: date = date(2000, 1, 3),
    end: date = calendar.CALENDAR_END,
    create_missing: bool = False,
) -> None:
    """Create ``trading_days`` (sessions in [start, end]) and every helper macro in ``con``.

    ``daily_bars``, ``daily_iv`` and ``options`` must exist as tables or views (DuckDB binds a
    scalar macro's tables when it is created); ``create_missing=True`` creates an empty table in
    the canonical schema for each one that is absent instead of raising. Tables or views may be
    replaced later by ones with the same columns.
    """
    if start > end:
        raise ValueError(f"install: start {start} is after end {end}")
    have = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()}
    missing = [t for t in REQUIRED if t not in have]
    if missing and not create_missing:
        raise ValueError(
            f"install: the connection has no table or view named {', '.join(missing)}; "
            "create them first (or pass create_missing=True for empty ones)"
        )
    for name in missing:
        con.register("_tg_empty", _empty_schemas()[name].empty_table())
        try:
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _tg_empty')
        finally:
            con.unregister("_tg_empty")
    con.register("_tg_sessions", trading_days_table(start, end))
    try:
        con.execute("CREATE OR REPLACE TABLE trading_days AS SELECT * FROM _tg_sessions ORDER BY idx")
    finally:
        con.unregister("_tg_sessions")
    for block in helper_blocks():
        con.execute(block)


def helper_blocks() -> list[str]:
    """The SQL of every helper macro, in creation order (after ``trading_days`` and the tables
    they read exist); ``install`` runs them, and ``archive-platform sql`` puts them in the DuckDB
    CLI's init script."""
    return [_BASE, _forward("bars_forward", "daily_bars"), _forward("iv_bars_forward", "daily_iv"),
            _CLOSE_AFTER, _CHANGE_AFTER_WEEKDAY, _FINISH, _CHAIN]


def install_for_views(con) -> list[str]:
    """Install the helpers in the analysts' DuckDB file (the views file), returning what it
    created empty: a view or table named in ``REQUIRED`` that is missing (its dataset is not
    registered, or the file predates it) becomes an empty table in the canonical schema, so every
    helper exists and answers "no rows" instead of failing to bind. Call it on a read-write
    connection after the views are created (``archive_platform.views.refresh_views``)."""
    have = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()}
    install(con, create_missing=True)
    return [t for t in REQUIRED if t not in have]
