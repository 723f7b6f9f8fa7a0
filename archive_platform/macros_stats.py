"""The statistics macros of ``macros.py`` (``change_after_weekday``, ``finish_probability``)
and the SQL snippets every helper uses to name bad input in its error message.

SQL text only: ``macros.install`` executes it after the base macros (``_tg_*``, ``trading_day_add``).
"""

from __future__ import annotations


def _q(x: str) -> str:
    """SQL text of a value inside an error message."""
    return f"coalesce(CAST({x} AS VARCHAR), 'NULL')"


def _symbol_check(fn: str, table: str) -> str:
    return f"""WHEN sym IS NULL THEN error('{fn}: symbol is NULL')
    WHEN NOT EXISTS (SELECT 1 FROM {table} WHERE symbol = sym)
        THEN error('{fn}: unknown symbol ' || sym || ' (no rows in {table})')"""


_CHANGE_AFTER_WEEKDAY = f"""
CREATE OR REPLACE MACRO change_after_weekday(sym, wd, n) AS TABLE
WITH chk AS (SELECT CASE {_symbol_check('change_after_weekday', 'daily_bars')}
    WHEN wd IS NULL OR wd NOT BETWEEN 1 AND 7 OR wd <> trunc(wd)
        THEN error('change_after_weekday: weekday must be an ISO day number 1..7 (5 = Friday), got ' || {_q('wd')})
    WHEN NOT _tg_count('change_after_weekday', 'n', n) THEN NULL ELSE true END AS ok),
span AS (SELECT min(date) AS a, max(date) AS b FROM daily_bars WHERE symbol = sym),
picks AS (SELECT CAST(unnest(generate_series(a, b, INTERVAL 1 DAY)) AS DATE) AS day FROM span),
j AS (SELECT p.day, t.idx, t2.day AS target FROM picks p
      LEFT JOIN trading_days t ON t.day = p.day LEFT JOIN trading_days t2 ON t2.idx = t.idx + n
      WHERE isodow(p.day) = wd)
SELECT j.day, j.target AS target_day, b0.close AS start_close, b1.close AS end_close,
       b1.close - b0.close AS change,
       -- a simple return from a non-positive start close is undefined: NULL, not the inf/NaN
       -- DuckDB's IEEE division gives
       CASE WHEN b0.close > 0 THEN b1.close / b0.close - 1 END AS pct_change,
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
    WHEN horizon <> trunc(horizon)
        THEN error('finish_probability: horizon must be a whole number of sessions, got ' || horizon)
    WHEN m IS NULL OR m <= 0 THEN error('finish_probability: moneyness must be > 0, got ' || {_q('m')})
    WHEN NOT isfinite(CAST(m AS DOUBLE))
        THEN error('finish_probability: moneyness must be a finite number, got ' || m)
    WHEN snapshot_at IS NOT NULL AND typeof(snapshot_at) <> 'TIMESTAMP WITH TIME ZONE'
        THEN error('finish_probability: snapshot_at must be a TIMESTAMPTZ (an instant), got ' || typeof(snapshot_at))
    ELSE true END AS ok),
-- closes <= 0 (a zero print daily_bars stores with a warning) are left out: "S_T > m * S_0"
-- against a zero start would count every later close as a hit
b AS (SELECT x.date, x.close, t.idx FROM daily_bars x JOIN trading_days t ON t.day = x.date
      WHERE x.symbol = sym AND x.close > 0),
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
rn0 AS (SELECT (SELECT t FROM snap) AS rn_snapshot, (SELECT expiry FROM ex) AS rn_expiry,
              (SELECT target FROM tgt) AS rn_target_day, (SELECT spot FROM tgt) AS rn_spot,
              (SELECT strike FROM k1) AS rn_strike_lo, (SELECT strike FROM k2) AS rn_strike_hi,
              (SELECT c FROM k1) - (SELECT c FROM k2) AS rn_spread,
              ((SELECT c FROM k1) - (SELECT p FROM k1)) - ((SELECT c FROM k2) - (SELECT p FROM k2)) AS rn_disc),
-- DuckDB divides by zero to inf/NaN: quotes whose discount factor is not positive, or whose ratio
-- is not a probability (stale or crossed quotes), give NULL and a note (rn_note)
rn AS (SELECT *, CASE WHEN rn_disc > 0 AND rn_spread / rn_disc BETWEEN 0 AND 1 THEN rn_spread / rn_disc END
              AS p_above FROM rn0),
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
            WHEN rn.p_above IS NULL
                THEN 'the quotes at strikes ' || rn.rn_strike_lo || ' and ' || rn.rn_strike_hi || ' of ' || rn.rn_expiry
                     || ' imply no probability: call spread ' || round(rn.rn_spread, 4)
                     || ', (C1 - P1) - (C2 - P2) = ' || round(rn.rn_disc, 4)
       END AS rn_note
FROM sides, emp, rn, chk WHERE chk.ok ORDER BY sides.side;
"""
