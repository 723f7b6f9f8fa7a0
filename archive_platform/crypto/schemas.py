"""Arrow schemas of the crypto datasets (UTC-day partitions by the UTC date of ``event_time``).

Declared once here; the normalisers, the spool, compaction, coverage and the simulated venue
all build their tables from these. Prices and sizes arrive as decimal strings and are stored as
float64: a stored value ``v`` equals the sent string ``s`` in the sense
``Decimal(repr(v)) == Decimal(s)`` (exact for up to 15 significant digits).
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
F64_LIST = pa.list_(pa.float64())
I32_LIST = pa.list_(pa.int32())

#: one row per trade; ``side`` is the aggressor's side ("buy" | "sell")
CRYPTO_TRADES = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("trade_id", pa.int64(), nullable=False),
        pa.field("event_time", TS, nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("size", pa.float64(), nullable=False),
        pa.field("side", pa.string(), nullable=False),
        pa.field("receive_time", TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ],
    metadata={"description": "one row per trade per exchange and symbol"},
)

#: one row per book snapshot; levels best first, up to 20 per side
ORDERBOOK_L2 = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("event_time", TS, nullable=False),
        pa.field("receive_time", TS, nullable=False),
        pa.field("update_id", pa.int64(), nullable=True),
        pa.field("prev_update_id", pa.int64(), nullable=True),
        pa.field("bid_px", F64_LIST, nullable=False),
        pa.field("bid_sz", F64_LIST, nullable=False),
        pa.field("ask_px", F64_LIST, nullable=False),
        pa.field("ask_sz", F64_LIST, nullable=False),
        pa.field("bid_n", I32_LIST, nullable=True),
        pa.field("ask_n", I32_LIST, nullable=True),
        pa.field("source", pa.string(), nullable=False),
    ],
    metadata={"description": "one row per order-book snapshot per exchange and symbol"},
)

#: one row per interruption of one stream of one symbol: no data between start and end
CAPTURE_GAPS = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("start", TS, nullable=False),
        pa.field("end", TS, nullable=False),
        pa.field("cause", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ],
    metadata={"description": "one row per capture gap per exchange, stream and symbol"},
)

SCHEMAS: dict[str, pa.Schema] = {
    "crypto_trades": CRYPTO_TRADES,
    "orderbook_l2": ORDERBOOK_L2,
    "capture_gaps": CAPTURE_GAPS,
}
DEDUP_KEYS: dict[str, tuple[str, ...]] = {
    # Hyperliquid's tid is a hash of the buyer's and seller's order ids: unique only with the
    # block time (its docs: "use (block_time, coin, tid)"); Binance's T is fixed per aggregate id
    "crypto_trades": ("exchange", "symbol", "trade_id", "event_time"),
    "orderbook_l2": ("exchange", "symbol", "event_time", "update_id"),
    "capture_gaps": ("exchange", "stream", "symbol", "start"),
}
#: the key a crypto trade is unique by (for code outside the dataset declaration)
TRADE_KEY = DEDUP_KEYS["crypto_trades"]
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "crypto_trades": ("exchange", "symbol", "event_time", "trade_id"),
    "orderbook_l2": ("exchange", "symbol", "event_time", "update_id"),
    "capture_gaps": ("exchange", "stream", "symbol", "start"),
}
#: the column whose UTC date is the row's partition
TIME_COLUMN: dict[str, str] = {"crypto_trades": "event_time", "orderbook_l2": "event_time", "capture_gaps": "start"}
DATASETS = tuple(SCHEMAS)

#: Parquet writer options for day files of the logical tables, by measurement (bench/capture.py,
#: bench/book_codec.py, docs/performance.md): for books, no dictionary on the level columns keeps
#: a level repeated from the previous snapshot byte-aligned (160 bytes back) so zstd finds it;
#: level 9 pays off on a day file; delta encoding makes the time and id columns almost free.
#: Books stored in the physical form of ``crypto.book_codec`` (integer ticks and lots, about a
#: third of these bytes) use ``book_codec.PARQUET_OPTIONS`` instead.
WRITER_OPTIONS: dict[str, dict] = {
    "orderbook_l2": {"compression": "zstd", "compression_level": 9,
                     "use_dictionary": ["exchange", "symbol", "source"],
                     "column_encoding": {c: "DELTA_BINARY_PACKED"
                                         for c in ("event_time", "receive_time", "update_id", "prev_update_id")}},
    "crypto_trades": {"compression": "zstd"},
    "capture_gaps": {"compression": "zstd"},
}
