"""Simulated history for the time-grid and regime tests (built once per process, small).

SPY: one-minute bars and option chains (5 snapshots a session, 3 on a 13:00 close) for every
session from 2025-02-24 to 2025-12-05: both DST switches (2025-03-09, 2025-11-02), the half days
2025-07-03 and 2025-11-28, holidays inside horizons (Good Friday 2025-04-18, 2025-07-04,
Thanksgiving 2025-11-27). AAPL: the same from 2025-11-03 only (fewer than 30 sessions).
VIX: one row per SPY snapshot in the contract's `vix` schema, a seeded random walk.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import pyarrow as pa

from archive_platform import calendar as cal
from archive_platform import regime
from archive_platform.sim import SimConfig, SimulatedMarket

START, END = date(2025, 2, 24), date(2025, 12, 5)
YOUNG_START = date(2025, 11, 3)
EVERY = timedelta(minutes=105)
TS = pa.timestamp("us", tz="UTC")


def market() -> SimulatedMarket:
    return SimulatedMarket(seed=7, config=SimConfig(max_strikes_per_expiry=5, monthly_expiries=2))


@lru_cache(maxsize=1)
def history() -> dict[str, pa.Table]:
    m = market()
    bars, opts = [], []
    for d in cal.trading_days(START, END):
        syms = ["AAPL", "SPY"] if d >= YOUNG_START else ["SPY"]
        bars.append(m.fetch_stocks_1m(d, syms))
        opts.append(m.fetch_options(d, syms, cal.snapshot_times(d, EVERY)))
    stocks_1m = pa.concat_tables(bars)
    options = pa.concat_tables(opts)
    snaps = options.filter(pa.compute.equal(options["symbol"], "SPY"))
    t = np.unique(snaps["snapshot_time"].to_numpy())
    off = {}
    for ts, o in zip(snaps["snapshot_time"].to_pylist(), snaps["et_offset"].to_pylist()):
        off.setdefault(ts, o)
    rng = np.random.default_rng(11)
    level = np.round(16.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, len(t)))), 2)
    times = pa.array(t, TS)
    vix = pa.table({
        "timestamp": times, "snapshot_time": times, "symbol": pa.array(["VIX"] * len(t)),
        "level": pa.array(level), "et_offset": pa.array([off[x] for x in times.to_pylist()], pa.int16()),
        "source": pa.array(["sim"] * len(t)),
    })
    return {"stocks_1m": stocks_1m, "options": options, "vix": vix}


@lru_cache(maxsize=1)
def derived() -> dict[str, pa.Table]:
    h = history()
    out = {
        "daily_bars": regime.daily_bars(h["stocks_1m"]),
        "daily_iv": regime.daily_iv(h["options"]),
        "vix_daily": regime.vix_daily(h["vix"]),
    }
    out["market_regime"] = regime.market_regime(out["daily_bars"], out["daily_iv"], out["vix_daily"])
    return out


def doc_connection(time_zone: str = "UTC"):
    """A DuckDB connection over the simulated history with the macros, as docs/timegrid.md uses."""
    import duckdb

    from archive_platform import macros

    d, h = derived(), history()
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{time_zone}'")
    con.register("daily_bars", d["daily_bars"])
    con.register("daily_iv", d["daily_iv"])
    con.register("options", h["options"])
    con.register("market_regime", d["market_regime"])
    macros.install(con)
    return con


def markdown_table(con, sql: str) -> str:
    """The result of ``sql`` as a Markdown table (how docs/timegrid.md shows outputs)."""
    cur = con.execute(sql)
    names = [c[0] for c in cur.description]

    def cell(v) -> str:
        if v is None:
            return "NULL"
        if hasattr(v, "tzinfo") and getattr(v, "tzinfo", None) is not None:
            return v.astimezone(__import__("datetime").timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return v.isoformat() if hasattr(v, "isoformat") else str(v)

    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in cur.fetchall()]
    return "\n".join(lines)
