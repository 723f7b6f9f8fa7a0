"""``orderbook_features``: order-book and microstructure features of crypto books on a 1-second
grid per exchange and symbol, one UTC day per partition, derived from ``orderbook_l2`` and
``crypto_trades`` (formulas: archive_platform/analysis/features.py, docs/analysis.md)."""

import polars as pl
import pyarrow as pa

from archive_platform.analysis.features import FEATURE_DICTIONARY
from archive_platform.crypto import declare as c
from archive_platform.datasets.base import TS, CompletenessContext, Dataset, Rule, make_schema, nonneg

NAME = "orderbook_features"
GRID_SECONDS = 86_400
_INTS = {"bid_walls", "ask_walls", "updates"}

SCHEMA = make_schema(
    [pa.field("exchange", pa.string(), nullable=False), pa.field("symbol", pa.string(), nullable=False),
     pa.field("timestamp", TS, nullable=False)]
    + [pa.field(k, pa.int64() if k in _INTS else pa.float64()) for k in FEATURE_DICTIONARY if k != "timestamp"]
    + [pa.field("vpin_bucket_volume", pa.float64())],
    "One row per exchange, symbol and UTC second of the day (86,400 per series).",
    et_offset=False,
)


def derive(input_store, day, symbols=(), instants=None):
    from archive_platform.analysis.crypto_days import derive_orderbook_features

    return derive_orderbook_features(input_store, day)


def complete(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """Every series in the partition has every second of the UTC day, once."""
    from archive_platform.analysis.crypto_checks import features_grid_problems

    return features_grid_problems(df, ctx.day)


def _between(col: str, lo: float, hi: float) -> pl.Expr:
    return pl.col(col).is_null() | pl.col(col).is_between(lo - 1e-9, hi + 1e-9)


# no "|" in a unit: the generated data dictionary is a Markdown table
_units = {k: f"{u}; {m}".replace("|V_buy - V_sell|", "abs(V_buy - V_sell)")
          for k, (u, m) in FEATURE_DICTIONARY.items()}
_units["timestamp"] = ("UTC instant; grid second t of the partition's UTC day (00:00:00 .. "
                       "23:59:59): the book as of t, flows over (t - 1 s, t]; null features "
                       "where no book is known at t")
_units["updates"] += " (0 where no book is known)"

DATASET = Dataset(
    name=NAME,
    schema=SCHEMA,
    dedup_key=("exchange", "symbol", "timestamp"),
    sort_key=("exchange", "symbol", "timestamp"),
    grain="one row per exchange and symbol per UTC second",
    description="Order-book and microstructure features of the crypto books on a 1-second grid: "
    "spread, depth imbalance, weighted mid, micro-price, depth within 10/25/50 bps, walls, book "
    "velocity, order-flow imbalance, Kyle's lambda, VPIN, effective and realized spread. Derived "
    "from orderbook_l2 and crypto_trades of the UTC day and the last two minutes of the day before.",
    units={"exchange": c.EXCHANGE, "symbol": c.SYMBOL, **_units,
           "vpin_bucket_volume": "base units; the VPIN volume bucket V of the series: the previous "
           "UTC day's traded volume / 500 (the day's own volume / 500 when the previous day is not "
           "stored; null without trades)",
           "source": "sim when derived from the simulated archive, else derived"},
    derived_from=("orderbook_l2", "crypto_trades"),
    **c.DERIVED_DAY,
    derive=derive,
    rules=(
        Rule("imbalances within [-1, 1]", "imbalance_5",
             _between("imbalance_1", -1, 1) & _between("imbalance_5", -1, 1) & _between("imbalance_10", -1, 1),
             hard=True),
        Rule("vpin within [0, 1]", "vpin", _between("vpin", 0, 1), hard=True),
        Rule("volumes, depths, counts >= 0", "volume",
             nonneg("volume") & nonneg("liquidity_10bps") & nonneg("liquidity_25bps") & nonneg("liquidity_50bps")
             & nonneg("updates") & nonneg("book_velocity") & nonneg("bid_walls") & nonneg("ask_walls"), hard=True),
        Rule("prices > 0", "mid", (pl.col("mid").is_null() | (pl.col("mid") > 0))
             & (pl.col("best_bid").is_null() | (pl.col("best_bid") > 0)), hard=True),
        Rule("|signed_volume| <= volume", "signed_volume", pl.col("signed_volume").is_null()
             | (pl.col("signed_volume").abs() <= pl.col("volume") + 1e-9), hard=True),
        # a real book is crossed or locked for an instant (stored, counted by the values check)
        Rule("spread > 0", "spread", pl.col("spread").is_null() | (pl.col("spread") > 0)),
    ),
    completeness=complete,
)
