"""The time-grid helpers as DuckDB macros (see docs/timegrid.md for each one with an example).

``install(con)`` creates the ``trading_days`` table (NYSE sessions from ``archive_platform.calendar``
with a running index ``idx``) and the macros below in a DuckDB connection that has (or later
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


def _q(x: str) -> str:
    """SQL text of a value inside an error message."""
    return f"coalesce(CAST({x} AS VARCHAR), 'NULL')"


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
    ELSE true END;
CREATE OR REPLACE MACRO _tg_add_raw(d, n) AS CASE
    WHEN n = 0 THEN _tg_day(_tg_idx(d))
    WHEN n > 0 THEN _tg_day((SELECT min(idx) FROM trading_days WHERE day > d) + n - 1)
    ELSE _tg_day((SELECT min(idx) FROM trading_days WHERE day >= d) + n) END;
CREATE OR REPLACE MACRO trading_day_add(d, n) AS CASE
    WHEN d IS NULL OR n IS NULL
        THEN error('trading_day_add: NULL argument (day=' || {_q('d')} || ', n=' || {_q('n')} || ')')
    WHEN NOT _tg_in_range(d) THEN error('trading_day_add: ' || d || ' is outside the installed calendar')
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


def _symbol_check(fn: str, table: str) -> str:
    return f"""WHEN sym IS NULL THEN error('{fn}: symbol is NULL')
    WHEN NOT EXISTS (SELECT 1 FROM {table} WHERE symbol = sym)
        THEN error('{fn}: unknown symbol ' || sym || ' (no rows in {table})')"""


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

_CHANGE_AFTER_WEEKDAY = f"""
CREATE OR REPLACE MACRO change_after_weekday(sym, wd, n) AS TABLE
WITH chk AS (SELECT CASE {_symbol_check('change_after_weekday', 'daily_bars')}
    WHEN wd IS NULL OR wd NOT BETWEEN 1 AND 7
        THEN error('change_after_weekday: weekday must be an ISO day number 1..7 (5 = Friday), got ' || {_q('wd')})
    WHEN NOT _tg_count('change_after_weekday', 'n', n) THEN NULL ELSE true END AS ok),
span AS (SELECT min(date) AS a, max(date) AS b FROM daily_bars WHERE symbol = sym),
picks AS (SELECT CAST(unnest(generate_series(a, b, INTERVAL 1 DAY)) AS DATE) AS day FROM span),
j AS (SELECT p.day, t.idx, t2.day AS target FROM picks p
      LEFT JOIN trading_days t ON t.day = p.day LEFT JOIN trading_days t2 ON t2.idx = t.idx + n
      WHERE isodow(p.day) = wd)
SELECT j.day, j.target AS target_day, b0.close AS start_close, b1.close AS end_close,
       b1.close - b0.close AS change, b1.close / b0.close - 1 AS pct_change,
       CASE WHEN j.idx IS NULL THEN 'skipped: ' || j.day || ' is not an NYSE session'
            WHEN b0.close IS NULL THEN 'skipped: no bar stored on ' || j.day
            WHEN j.target IS NULL THEN 'skipped: ' || n || ' sessions later is past the installed calendar'
            WHEN b1.close IS NULL THEN 'skipped: no bar stored ' || n || ' sessions later (' || j.target || ')'
       END AS note,
       b0.close IS NULL OR b1.close IS NULL AS skipped
FROM j CROSS JOIN chk
LEFT JOIN daily_bars b0 ON b0.symbol = sym AND b0.date = j.day
LEFT JOIN daily_bars b1 ON b1.symbol = sym AND b1.date = j.target
WHERE chk.ok ORDER BY j.day;
"""

# Risk-neutral P(S_T > K) from one snapshot's chain: with K1 <= K < K2 the listed strikes around
# K (both with a call and a put quote), the call spread (C1 - C2) / (K2 - K1) is the discounted
# probability; put-call parity gives the discount factor D * (K2 - K1) = (C1 - P1) - (C2 - P2)
# without knowing the rate or dividends, so P = (C1 - C2) / ((C1 - P1) - (C2 - P2)) at mid prices.
_FINISH = f"""
CREATE OR REPLACE MACRO finish_probability(sym, horizon, m, snapshot_at := NULL) AS TABLE
WITH chk AS (SELECT CASE {_symbol_check('finish_probability', 'daily_bars')}
    WHEN horizon IS NULL OR horizon < 1
        THEN error('finish_probability: horizon must be >= 1 session, got ' || {_q('horizon')})
    WHEN m IS NULL OR m <= 0 THEN error('finish_probability: moneyness must be > 0, got ' || {_q('m')})
    WHEN snapshot_at IS NOT NULL AND typeof(snapshot_at) <> 'TIMESTAMP WITH TIME ZONE'
        THEN error('finish_probability: snapshot_at must be a TIMESTAMPTZ (an instant), got ' || typeof(snapshot_at))
    ELSE true END AS ok),
b AS (SELECT x.date, x.close, t.idx FROM daily_bars x JOIN trading_days t ON t.day = x.date
      WHERE x.symbol = sym AND x.close IS NOT NULL),
pairs AS (SELECT s.date AS start_day, s.close AS c0, e.close AS c1 FROM b s JOIN b e ON e.idx = s.idx + horizon),
emp AS (SELECT count(*) AS n, count(*) FILTER (WHERE c1 > m * c0) AS above,
               count(*) FILTER (WHERE c1 < m * c0) AS below,
               min(start_day) AS first_start, max(start_day) AS last_start FROM pairs),
snap AS (SELECT max(snapshot_time) AS t FROM options WHERE symbol = sym AND snapshot_time <= snapshot_at),
ch AS (SELECT o.expiry, o.strike, o."right", (o.bid + o.ask) / 2 AS mid, o.underlying_price AS spot,
              CAST(make_timestamp(epoch_us(o.snapshot_time) + o.et_offset * CAST(60000000 AS BIGINT)) AS DATE) AS sday
       FROM options o JOIN snap ON o.snapshot_time = snap.t
       WHERE o.symbol = sym AND o.bid IS NOT NULL AND o.ask IS NOT NULL),
tgt AS (SELECT trading_day_add(any_value(sday), horizon) AS target, any_value(spot) AS spot,
               any_value(spot) * m AS k FROM ch HAVING count(*) > 0),
ex AS (SELECT e.expiry FROM (SELECT DISTINCT expiry FROM ch) e, tgt
       ORDER BY abs(e.expiry - tgt.target), e.expiry DESC LIMIT 1),
pc AS (SELECT strike, max(mid) FILTER (WHERE "right" = 'C') AS c, max(mid) FILTER (WHERE "right" = 'P') AS p
       FROM ch WHERE expiry = (SELECT expiry FROM ex) GROUP BY strike
       HAVING c IS NOT NULL AND p IS NOT NULL),
k1 AS (SELECT pc.* FROM pc, tgt WHERE pc.strike <= tgt.k ORDER BY pc.strike DESC LIMIT 1),
k2 AS (SELECT pc.* FROM pc, tgt WHERE pc.strike > tgt.k ORDER BY pc.strike LIMIT 1),
rn AS (SELECT (SELECT t FROM snap) AS rn_snapshot, (SELECT expiry FROM ex) AS rn_expiry,
              (SELECT target FROM tgt) AS rn_target_day, (SELECT spot FROM tgt) AS rn_spot,
              (SELECT strike FROM k1) AS rn_strike_lo, (SELECT strike FROM k2) AS rn_strike_hi,
              ((SELECT c FROM k1) - (SELECT c FROM k2))
              / (((SELECT c FROM k1) - (SELECT p FROM k1)) - ((SELECT c FROM k2) - (SELECT p FROM k2))) AS p_above),
sides AS (SELECT 'above' AS side, above AS hits, rn.p_above AS rn_probability FROM emp, rn
          UNION ALL SELECT 'below', below, 1 - rn.p_above FROM emp, rn)
SELECT sides.side, CAST(m AS DOUBLE) AS moneyness, horizon AS horizon_sessions, emp.n AS sample_size, sides.hits,
       CASE WHEN emp.n > 0 THEN sides.hits / emp.n END AS probability,
       _tg_wilson(sides.hits, emp.n, -1) AS wilson_lo, _tg_wilson(sides.hits, emp.n, 1) AS wilson_hi,
       emp.first_start, emp.last_start,
       sides.rn_probability, rn.rn_snapshot, rn.rn_expiry, rn.rn_target_day, rn.rn_spot,
       rn.rn_strike_lo, rn.rn_strike_hi,
       CASE WHEN emp.n = 0 THEN 'no pair of closes ' || horizon || ' sessions apart is stored' END AS note,
       CASE WHEN snapshot_at IS NULL THEN 'no snapshot instant given (snapshot_at)'
            WHEN rn.rn_snapshot IS NULL THEN 'no options snapshot of ' || sym || ' at or before ' || snapshot_at
            WHEN rn.rn_strike_lo IS NULL OR rn.rn_strike_hi IS NULL
                THEN 'strike ' || round(rn.rn_spot * m, 2) || ' is not inside the listed strikes of ' || rn.rn_expiry
       END AS rn_note
FROM sides, emp, rn, chk WHERE chk.ok ORDER BY sides.side;
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
    for block in (_BASE, _forward("bars_forward", "daily_bars"), _forward("iv_bars_forward", "daily_iv"),
                  _CLOSE_AFTER, _CHANGE_AFTER_WEEKDAY, _FINISH, _CHAIN):
        con.execute(block)


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
