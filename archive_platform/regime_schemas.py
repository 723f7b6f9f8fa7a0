"""Arrow schemas and column units of the derived daily datasets (see regime.py, docs/timegrid.md).

``SCHEMAS[name]`` is the schema of a dataset and ``UNITS[name][column] = (unit, meaning)`` says
what each column holds; a test checks that the two list the same columns.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
_OHLC = ["open", "high", "low", "close"]


def _schema(fields: list[tuple[str, pa.DataType]], description: str) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in fields], metadata={"description": description})


DAILY_BARS_SCHEMA = _schema(
    [("symbol", pa.string()), ("date", pa.date32())]
    + [(c, pa.float64()) for c in _OHLC]
    + [("volume", pa.int64()), ("vwap", pa.float64()), ("trade_count", pa.int64()),
       ("bars", pa.int32()), ("session_minutes", pa.int32()), ("first_bar", TS), ("last_bar", TS)],
    "One row per symbol per NYSE session, from the session's one-minute bars.",
)
DAILY_BARS_CRYPTO_SCHEMA = _schema(
    [("exchange", pa.string()), ("symbol", pa.string()), ("date", pa.date32())]
    + [(c, pa.float64()) for c in _OHLC]
    + [("volume", pa.float64()), ("vwap", pa.float64()), ("trade_count", pa.int64()),
       ("first_trade", TS), ("last_trade", TS)],
    "One row per exchange and symbol per UTC day, from the day's trades.",
)
DAILY_IV_SCHEMA = _schema(
    [("symbol", pa.string()), ("date", pa.date32())]
    + [(f"front_{c}", pa.float64()) for c in _OHLC + ["mean"]]
    + [("front_expiry", pa.date32()), ("front_snapshots", pa.int32())]
    + [(f"iv30_{c}", pa.float64()) for c in _OHLC + ["mean"]]
    + [("iv30_snapshots", pa.int32()), ("snapshots", pa.int32()),
       ("first_snapshot", TS), ("last_snapshot", TS)],
    "One row per symbol per NYSE session: OHLC of front ATM IV and of 30-day ATM IV.",
)
VIX_DAILY_SCHEMA = _schema(
    [("symbol", pa.string()), ("date", pa.date32())]
    + [(c, pa.float64()) for c in _OHLC]
    + [("snapshots", pa.int32()), ("first_snapshot", TS), ("last_snapshot", TS)],
    "One row per NYSE session: OHLC of the VIX level over the session's snapshots.",
)
MARKET_REGIME_SCHEMA = _schema(
    [("symbol", pa.string()), ("date", pa.date32()), ("close", pa.float64()),
     ("sma20", pa.float64()), ("sma20_first", pa.date32()),
     ("sma50", pa.float64()), ("sma50_first", pa.date32()), ("trend", pa.string()),
     ("rv20", pa.float64()), ("rv20_first", pa.date32()),
     ("iv", pa.float64()), ("iv_rank", pa.float64()), ("iv_percentile", pa.float64()),
     ("iv_sessions", pa.int32()), ("iv_window_start", pa.date32()),
     ("iv_first", pa.date32()), ("iv_rank_note", pa.string()),
     ("vix_close", pa.float64()), ("vix_date", pa.date32())],
    "One row per symbol per NYSE session with a bar or an IV: trend, volatility, IV rank, VIX.",
)

SCHEMAS = {
    "daily_bars": DAILY_BARS_SCHEMA, "daily_bars_crypto": DAILY_BARS_CRYPTO_SCHEMA,
    "daily_iv": DAILY_IV_SCHEMA, "vix_daily": VIX_DAILY_SCHEMA,
    "market_regime": MARKET_REGIME_SCHEMA,
}

_PX = "USD (quote currency)"
UNITS: dict[str, dict[str, tuple[str, str]]] = {
    "daily_bars": {
        "symbol": ("", "ticker"), "date": ("date", "NYSE session (America/New_York)"),
        "open": (_PX, "open of the session's first minute bar"),
        "high": (_PX, "highest minute high"), "low": (_PX, "lowest minute low"),
        "close": (_PX, "close of the session's last minute bar"),
        "volume": ("shares", "sum of minute volumes"),
        "vwap": (_PX, "volume-weighted mean of the minute VWAPs (minutes with a VWAP)"),
        "trade_count": ("trades", "sum of minute trade counts"),
        "bars": ("minutes", "minute bars inside the session"),
        "session_minutes": ("minutes", "length of the session (390, or 210 on a 13:00 close)"),
        "first_bar": ("UTC instant", "start of the first bar"),
        "last_bar": ("UTC instant", "start of the last bar"),
    },
    "daily_bars_crypto": {
        "exchange": ("", "exchange"), "symbol": ("", "the exchange's own symbol"),
        "date": ("date", "UTC day of event_time"),
        "open": (_PX, "first trade price (by event_time, trade_id)"),
        "high": (_PX, "highest trade price"), "low": (_PX, "lowest trade price"),
        "close": (_PX, "last trade price"), "volume": ("base units", "sum of trade sizes"),
        "vwap": (_PX, "sum(price * size) / sum(size)"), "trade_count": ("trades", "trades"),
        "first_trade": ("UTC instant", "first event_time"),
        "last_trade": ("UTC instant", "last event_time"),
    },
    "daily_iv": {
        "symbol": ("", "underlying"), "date": ("date", "NYSE session"),
        **{f"front_{c}": ("annualised IV, 0.25 = 25 %", f"{c} of the front ATM IV over the "
                          "session's snapshots") for c in _OHLC + ["mean"]},
        "front_expiry": ("date", "front expiry of the last snapshot with a front ATM IV"),
        "front_snapshots": ("snapshots", "snapshots with a front ATM IV"),
        **{f"iv30_{c}": ("annualised IV, 0.25 = 25 %", f"{c} of the 30-day constant-maturity "
                         "ATM IV over the session's snapshots") for c in _OHLC + ["mean"]},
        "iv30_snapshots": ("snapshots", "snapshots with an iv30"),
        "snapshots": ("snapshots", "snapshots of the session with any IV"),
        "first_snapshot": ("UTC instant", "first snapshot used"),
        "last_snapshot": ("UTC instant", "last snapshot used"),
    },
    "vix_daily": {
        "symbol": ("", "VIX"), "date": ("date", "NYSE session"),
        **{c: ("index points", f"{c} of the level over the session's snapshots") for c in _OHLC},
        "snapshots": ("snapshots", "snapshots of the session"),
        "first_snapshot": ("UTC instant", "first snapshot"),
        "last_snapshot": ("UTC instant", "last snapshot"),
    },
    "market_regime": {
        "symbol": ("", "ticker"), "date": ("date", "NYSE session"),
        "close": (_PX, "daily_bars close"),
        "sma20": (_PX, "mean close of the 20 sessions ending on date"),
        "sma20_first": ("date", "first session of the SMA20 window"),
        "sma50": (_PX, "mean close of the 50 sessions ending on date"),
        "sma50_first": ("date", "first session of the SMA50 window"),
        "trend": ("label", "uptrend | downtrend | neutral"),
        "rv20": ("annualised, 0.25 = 25 %", "stdev of 20 log close-to-close returns * sqrt(252)"),
        "rv20_first": ("date", "session of the first close the rv20 window uses"),
        "iv": ("annualised IV", "daily_iv iv30_close of the session"),
        "iv_rank": ("0..100", "(iv - min) / (max - min) * 100 over the 60-session window"),
        "iv_percentile": ("0..100", "% of the window's sessions with iv below today's"),
        "iv_sessions": ("sessions", "sessions of the window with an iv"),
        "iv_window_start": ("date", "first NYSE session of the 60-session window"),
        "iv_first": ("date", "first session of the window that has an iv"),
        "iv_rank_note": ("", "why rank/percentile are 50 or null; null when computed"),
        "vix_close": ("index points", "VIX close of the session"),
        "vix_date": ("date", "session the VIX close comes from (= date when present)"),
    },
}


# -- the archived form of the derived datasets (archive_platform/datasets/<name>.py) ----------
#: columns every archived derived row carries besides the regime columns
STORED_UNITS = {
    "timestamp": "UTC instant of the session's close: the instant the day's value is final "
    "(its NYSE date is the partition; the DuckDB view adds it back as `date`)",
    "et_offset": "minutes; US/Eastern UTC offset at `timestamp` (-300 winter, -240 summer)",
    "source": "sim when derived from the simulated archive, else derived",
}
#: regime columns stored as not nullable (the dataset's keys)
_KEYS = {"symbol"}


def stored_fields(name: str) -> list[pa.Field]:
    """The regime dataset ``name`` as archived: ``timestamp`` first, no ``date`` (the partition)."""
    fields = [pa.field("timestamp", TS, nullable=False)]
    for f in SCHEMAS[name]:
        if f.name != "date":
            fields.append(pa.field(f.name, f.type, nullable=f.name not in _KEYS))
    return fields


def stored_units(name: str) -> dict[str, str]:
    """The data dictionary of the archived dataset ``name`` (``unit; meaning`` per column)."""
    out = {"timestamp": STORED_UNITS["timestamp"]}
    for col, (unit, meaning) in UNITS[name].items():
        if col != "date":
            out[col] = f"{unit}; {meaning}" if unit else meaning
    return out | {"et_offset": STORED_UNITS["et_offset"], "source": STORED_UNITS["source"]}
