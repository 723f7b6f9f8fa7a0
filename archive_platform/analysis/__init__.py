"""Analysis on top of the archive (issue 10): candles, order-book features, backtests.

Pure functions on pyarrow Tables / polars DataFrames; no Dagster here (the Dagster assets and the
CLI group wire these in). See docs/analysis.md for the definitions, formulas and units.
"""

from archive_platform.analysis.backtest import BacktestResult, run_backtest, sma_cross_backtest
from archive_platform.analysis.checks import check_candles
from archive_platform.analysis.candles import (
    CANDLE_COLUMNS,
    CANDLES_SCHEMA,
    TIMEFRAMES,
    candles,
    candles_from_bars,
)
from archive_platform.analysis.features import FEATURE_DICTIONARY, orderbook_features
from archive_platform.analysis.metrics import metrics, periods_per_year
from archive_platform.analysis.microprice import apply_micro_price, fit_micro_price
from archive_platform.analysis.upsert import apply_late_trades, upsert_candles

__all__ = [
    "CANDLE_COLUMNS",
    "CANDLES_SCHEMA",
    "FEATURE_DICTIONARY",
    "TIMEFRAMES",
    "BacktestResult",
    "apply_late_trades",
    "apply_micro_price",
    "check_candles",
    "candles",
    "candles_from_bars",
    "fit_micro_price",
    "metrics",
    "orderbook_features",
    "periods_per_year",
    "run_backtest",
    "sma_cross_backtest",
    "upsert_candles",
]
