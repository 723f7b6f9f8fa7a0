"""Canonical Arrow schemas of the six archive types: declared once, used everywhere.

The writer validates against these, the checks compare against them, the simulated market and
the vendor clients produce them, and the DuckDB views cast to them. Nothing else in the project
spells a column list of its own.

Conventions shared by every type (see docs/schemas.md):

* ``timestamp``  the event instant, ``timestamp[us, tz=UTC]``.
* ``et_offset``  the US/Eastern UTC offset at that instant in minutes (-300 in winter, -240 in
  summer), so a reader can recover wall-clock ET without a timezone database.
* ``source``     where the row came from (``sim``, ``unusual_whales``, ``thetadata``, ...).
* ``snapshot_time`` (intraday snapshot types only: options, gex, iv_rank) the scheduled grid
  instant the row belongs to, ``timestamp[us, tz=UTC]``. A vendor's quote time (``timestamp``)
  can differ from one fetch of the same snapshot to the next; the grid instant does not, which
  is why the snapshot dedup keys use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

_COMMON_TAIL = [
    pa.field("et_offset", pa.int16(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
]


def _schema(fields: list[pa.Field], description: str) -> pa.Schema:
    return pa.schema(fields + _COMMON_TAIL, metadata={"description": description})


class ArchiveType(str, Enum):
    """The six archive types; the value is the asset key and the folder name stem."""

    UW_FLOW = "uw_flow"
    OPTIONS = "options"
    GEX = "gex"
    STOCKS_1M = "stocks_1m"
    IV_RANK = "iv_rank"
    TRADES = "trades"

    def __str__(self) -> str:  # f"{t}" gives the plain key
        return self.value


@dataclass(frozen=True)
class ArchiveSpec:
    """Everything the store, checks and views need to know about one archive type."""

    type: ArchiveType
    schema: pa.Schema
    dedup_key: tuple[str, ...]
    sort_key: tuple[str, ...]
    directory: str  # folder under the archive root (seed 000: stocks_1m lives in stocks/)
    file_stem: str  # file name stem: <file_stem>_YYYYMMDD.parquet
    grain: str  # one line for docs and the UI: what one row is
    # Which instants of a trading day the events may fall in (see calendar.py):
    #   "session"  regular session [open, close] (inclusive of the close snapshot)
    #   "extended" pre-market to after-hours, 04:00-20:00 ET
    #   "day"      any instant of the ET calendar day
    window: str = "session"
    snapshot: bool = False  # rows carry snapshot_time and arrive in intraday batches

    @property
    def name(self) -> str:
        return self.type.value


UW_FLOW_SCHEMA = _schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("alert_id", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("option_chain", pa.string(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("expiration", pa.date32(), nullable=False),
        pa.field("option_type", pa.string(), nullable=False),  # CALL | PUT
        pa.field("sentiment", pa.string(), nullable=False),  # BULLISH | BEARISH | NEUTRAL
        pa.field("premium", pa.float64(), nullable=False),
        pa.field("ask_side_premium", pa.float64()),
        pa.field("bid_side_premium", pa.float64()),
        pa.field("price", pa.float64()),
        pa.field("underlying_price", pa.float64()),
        pa.field("volume", pa.int64(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("open_interest", pa.int64()),
        pa.field("volume_oi_ratio", pa.float64()),
        pa.field("trade_count", pa.int64()),
        pa.field("iv", pa.float64()),  # not in UW's REST alert; null when the source lacks it
        pa.field("delta", pa.float64()),
        pa.field("has_sweep", pa.bool_()),
        pa.field("has_floor", pa.bool_()),
        pa.field("alert_rule", pa.string()),
        pa.field("is_unusual", pa.bool_(), nullable=False),
    ],
    "One row per options-flow alert.",
)

OPTIONS_SCHEMA = _schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("snapshot_time", TS, nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("expiry", pa.date32(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("right", pa.string(), nullable=False),  # C | P
        pa.field("bid", pa.float64()),
        pa.field("ask", pa.float64()),
        pa.field("last", pa.float64()),
        pa.field("volume", pa.int64()),
        pa.field("open_interest", pa.int64()),
        pa.field("iv", pa.float64()),
        pa.field("delta", pa.float64()),
        pa.field("gamma", pa.float64()),
        pa.field("theta", pa.float64()),
        pa.field("vega", pa.float64()),
        pa.field("underlying_price", pa.float64(), nullable=False),
    ],
    "One row per option contract per snapshot.",
)

GEX_SCHEMA = _schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("snapshot_time", TS, nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("underlying_price", pa.float64(), nullable=False),
        pa.field("call_gex", pa.float64(), nullable=False),  # >= 0, dollars per 1% move
        pa.field("put_gex", pa.float64(), nullable=False),  # <= 0
        pa.field("net_gex", pa.float64(), nullable=False),  # call_gex + put_gex
        pa.field("call_open_interest", pa.int64(), nullable=False),
        pa.field("put_open_interest", pa.int64(), nullable=False),
    ],
    "One row per underlying per strike per snapshot (net over expiries).",
)

STOCKS_1M_SCHEMA = _schema(
    [
        pa.field("timestamp", TS, nullable=False),  # bar start
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.int64(), nullable=False),
        pa.field("vwap", pa.float64()),
        pa.field("trade_count", pa.int64()),
    ],
    "One row per symbol per regular-session minute (bar start time).",
)

IV_RANK_SCHEMA = _schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("snapshot_time", TS, nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("iv", pa.float64(), nullable=False),  # annualised, 0.25 = 25 %
        pa.field("iv_rank", pa.float64(), nullable=False),  # 0..100
        pa.field("iv_percentile", pa.float64()),  # 0..100
    ],
    "One row per symbol per IV-rank snapshot (twice a day).",
)

TRADES_SCHEMA = _schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("exec_id", pa.string(), nullable=False),
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),  # underlying
        pa.field("contract", pa.string(), nullable=False),  # OCC symbol for options, ticker for stock
        pa.field("sec_type", pa.string(), nullable=False),  # STK | OPT
        pa.field("expiry", pa.date32()),
        pa.field("strike", pa.float64()),
        pa.field("right", pa.string()),
        pa.field("side", pa.string(), nullable=False),  # BUY | SELL
        pa.field("quantity", pa.float64(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("commission", pa.float64()),
    ],
    "One row per execution (fill) of the account.",
)


SPECS: dict[ArchiveType, ArchiveSpec] = {
    s.type: s
    for s in [
        ArchiveSpec(
            ArchiveType.UW_FLOW,
            UW_FLOW_SCHEMA,
            dedup_key=("alert_id",),
            sort_key=("symbol", "timestamp", "alert_id"),
            directory="uw_flow",
            file_stem="uw_flow",
            grain="one row per options-flow alert",
        ),
        ArchiveSpec(
            ArchiveType.OPTIONS,
            OPTIONS_SCHEMA,
            dedup_key=("snapshot_time", "symbol", "strike", "expiry", "right"),
            sort_key=("symbol", "snapshot_time", "expiry", "strike", "right"),
            directory="options",
            file_stem="options",
            grain="one row per option contract per snapshot",
            snapshot=True,
        ),
        ArchiveSpec(
            ArchiveType.GEX,
            GEX_SCHEMA,
            dedup_key=("snapshot_time", "symbol", "strike"),
            sort_key=("symbol", "snapshot_time", "strike"),
            directory="gex",
            file_stem="gex",
            grain="one row per underlying per strike per snapshot",
            snapshot=True,
        ),
        ArchiveSpec(
            ArchiveType.STOCKS_1M,
            STOCKS_1M_SCHEMA,
            dedup_key=("symbol", "timestamp"),
            sort_key=("symbol", "timestamp"),
            directory="stocks",
            file_stem="stocks_1m",
            grain="one row per symbol per one-minute bar",
        ),
        ArchiveSpec(
            ArchiveType.IV_RANK,
            IV_RANK_SCHEMA,
            dedup_key=("snapshot_time", "symbol"),
            sort_key=("symbol", "snapshot_time"),
            directory="iv_rank",
            file_stem="iv_rank",
            grain="one row per symbol per IV-rank snapshot",
            window="day",
            snapshot=True,
        ),
        ArchiveSpec(
            ArchiveType.TRADES,
            TRADES_SCHEMA,
            dedup_key=("exec_id",),
            sort_key=("symbol", "timestamp", "exec_id"),
            directory="trades",
            file_stem="trades",
            grain="one row per execution",
            window="extended",
        ),
    ]
}


class UnknownArchiveType(ValueError):
    """Raised for an archive type name that is not one of the six."""


def spec_for(archive_type: str | ArchiveType) -> ArchiveSpec:
    """Return the spec of an archive type given by enum or name; a clear error otherwise."""
    try:
        return SPECS[ArchiveType(archive_type)]
    except ValueError:
        known = ", ".join(t.value for t in ArchiveType)
        raise UnknownArchiveType(
            f"unknown archive type {archive_type!r}; expected one of: {known}"
        ) from None


def empty_table(archive_type: str | ArchiveType) -> pa.Table:
    """A zero-row table with the canonical schema of the type."""
    return spec_for(archive_type).schema.empty_table()
