"""Example analyst queries over ``archive_platform.connect()`` (the README shows the same SQL;
a test runs it).

Each query uses only the dataset names and bound parameters (``$symbol``, ``$at``, ``$day``); nothing is
formatted into SQL from user input.
"""

from __future__ import annotations

from pathlib import Path


# Wall-clock ET of an instant is ``timezone('America/New_York', ts)``: it does not depend on the
# DuckDB session's TimeZone (``ts::TIMESTAMP`` does: it is the wall clock of the session's zone).
LATEST_CHAIN = """
-- The latest chain of a symbol at or before an instant (point in time: no look-ahead)
SELECT snapshot_time, expiry, strike, "right", bid, ask, iv, delta, gamma, underlying_price
FROM options
WHERE symbol = $symbol
  AND snapshot_time = (SELECT max(snapshot_time) FROM options
                       WHERE symbol = $symbol AND snapshot_time <= $at)
ORDER BY expiry, strike, "right"
"""

ATM_IV_THROUGH_DAY = """
-- ATM implied volatility of a symbol through a day: front expiry at least 7 days out,
-- strike nearest the underlying, mean of call and put IV, one row per snapshot
WITH chain AS (
    SELECT snapshot_time, expiry, strike, iv, underlying_price,
           timezone('America/New_York', snapshot_time)::TIME AS et_time
    FROM options
    WHERE symbol = $symbol AND date = $day AND expiry >= $day + 7
),
front AS (
    SELECT * FROM chain
    QUALIFY expiry = min(expiry) OVER (PARTITION BY snapshot_time)
),
atm AS (
    SELECT * FROM front
    QUALIFY abs(strike - underlying_price)
          = min(abs(strike - underlying_price)) OVER (PARTITION BY snapshot_time)
)
SELECT et_time, any_value(expiry) AS expiry, any_value(strike) AS strike,
       round(any_value(underlying_price), 2) AS underlying, round(avg(iv), 4) AS atm_iv
FROM atm
GROUP BY snapshot_time, et_time
ORDER BY snapshot_time
"""

FLOW_WITH_CHAIN = """
-- Flow alerts joined to the chain snapshot at or before each alert (ASOF join: no look-ahead)
SELECT f.timestamp AS alert_time, f.symbol, f.option_type, f.strike, f.expiration,
       f.premium, f.sentiment, o.snapshot_time, o.bid, o.ask, o.iv, o.delta, o.open_interest
FROM uw_flow AS f
ASOF LEFT JOIN options AS o
  ON  o.symbol = f.symbol
  AND o.expiry = f.expiration
  AND o.strike = f.strike
  AND o."right" = left(f.option_type, 1)
  AND o.snapshot_time <= f.timestamp
WHERE f.symbol = $symbol
ORDER BY f.timestamp
LIMIT 20
"""

STRADDLE_BACKTEST = """
-- Backtest: buy the ATM straddle of a symbol at the 10:00 ET snapshot (front expiry at least
-- 5 days out), mark it at the day's last snapshot; P&L per day at mid prices
WITH chain AS (
    SELECT date, snapshot_time, expiry, strike, "right", (bid + ask) / 2 AS mid, underlying_price,
           timezone('America/New_York', snapshot_time)::TIME AS et_time
    FROM options
    WHERE symbol = $symbol AND expiry >= date + 5
),
entry AS (
    SELECT * FROM chain WHERE et_time = TIME '10:00'
    QUALIFY expiry = min(expiry) OVER (PARTITION BY date)
        AND abs(strike - underlying_price)
          = min(abs(strike - underlying_price)) OVER (PARTITION BY date, expiry)
),
exit AS (
    SELECT * FROM chain QUALIFY snapshot_time = max(snapshot_time) OVER (PARTITION BY date)
)
SELECT e.date, e.expiry, e.strike,
       round(sum(e.mid), 2) AS entry_cost,
       round(sum(x.mid), 2) AS exit_value,
       round(sum(x.mid) - sum(e.mid), 2) AS pnl,
       round(any_value(x.underlying_price) - any_value(e.underlying_price), 2) AS underlying_move
FROM entry e
JOIN exit x USING (date, expiry, strike, "right")
GROUP BY e.date, e.expiry, e.strike
ORDER BY e.date
"""

EXAMPLES = {
    "latest_chain": LATEST_CHAIN,
    "atm_iv_through_day": ATM_IV_THROUGH_DAY,
    "flow_with_chain": FLOW_WITH_CHAIN,
    "straddle_backtest": STRADDLE_BACKTEST,
}


def run_query(root: Path, sql: str, params: dict | None = None, *, kind: str = "sim"):
    """Run ``sql`` on ``archive_platform.connect()`` of the archive at ``root`` (read-only),
    whose catalog and data path are those set for ``kind`` (``ARCHIVE_SIM_S3_URL``, ...);
    returns (columns, rows)."""
    from archive_platform import connect

    con = connect(root=root, kind=kind)
    try:
        cur = con.execute(sql, params or {})
        cols = [d[0] for d in cur.description]
        return cols, cur.fetchall()
    finally:
        con.close()
