"""``archive-platform backtest``: a backtest over archived crypto data, metrics printed, curve saved.

The click command ``backtest`` is attached to the main group by the CLI module; ``run_backtest_cli``
does the work and is callable without click. Data are read from the hive layout
``<root>/crypto_trades/date=YYYY-MM-DD/*.parquet`` (and ``<root>/orderbook_l2/...`` for the
order-book strategy), plain Parquet.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import click
import polars as pl

from archive_platform.analysis.backtest import (
    BacktestResult, feature_bars, imbalance_signal, run_backtest, sma_cross_backtest,
)
from archive_platform.analysis.candles import TIMEFRAMES, candles
from archive_platform.analysis.features import orderbook_features
from archive_platform.analysis.metrics import periods_per_year
from archive_platform.store import default_root

STRATEGIES = ("sma_cross", "ob_imbalance")


def _read_days(root: Path, dataset: str, symbol: str, first: date, last: date,
               exchange: str | None) -> pl.DataFrame:
    files = []
    day = first
    while day <= last:
        folder = root / dataset / f"date={day.isoformat()}"
        files += sorted(folder.glob("*.parquet"))
        day += timedelta(days=1)
    if not files:
        raise click.ClickException(f"no {dataset} Parquet files under {root / dataset} for {first}..{last}")
    df = pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="diagonal_relaxed")
    df = df.filter(pl.col("symbol") == symbol)
    if exchange:
        df = df.filter(pl.col("exchange") == exchange)
    if df.height == 0:
        raise click.ClickException(f"{dataset}: no rows for symbol {symbol!r}"
                                   f"{f' on {exchange!r}' if exchange else ''} in {first}..{last}")
    if df["exchange"].n_unique() > 1:
        raise click.ClickException(f"{symbol} trades on {df['exchange'].unique().to_list()}; pick one with --exchange")
    return df


def run_backtest_cli(*, strategy: str, symbol: str, timeframe: str, start: date, end: date,
                     root: Path, out_dir: Path, exchange: str | None = None, fast: int = 20,
                     slow: int = 50, allow_short: bool = False, threshold: float = 0.3,
                     fee: float = 0.001, slippage_bps: float = 0.0) -> tuple[BacktestResult, Path, Path]:
    """Run one backtest over the UTC days start..end; write ``equity.parquet`` and ``trades.parquet``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    lo = datetime.combine(start, time(0), tzinfo=timezone.utc)
    hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=timezone.utc)
    if strategy == "sma_cross":
        # the day after `end` may hold the trade exactly at midnight that closes the last candle
        trades = _read_days(root, "crypto_trades", symbol, start, end + timedelta(days=1), exchange)
        bars = candles(trades, timeframe, start=lo, end=hi)
        result = sma_cross_backtest(bars, timeframe=timeframe, fast=fast, slow=slow, allow_short=allow_short,
                                    fee=fee, slippage_bps=slippage_bps)
    else:
        books = _read_days(root, "orderbook_l2", symbol, start, end, exchange)
        trades = None
        if (root / "crypto_trades").exists():
            try:
                trades = _read_days(root, "crypto_trades", symbol, start, end, exchange)
            except click.ClickException:
                trades = None
        bars = feature_bars(orderbook_features(books, trades))
        result = run_backtest(bars, imbalance_signal(bars, threshold=threshold),
                              periods_per_year=periods_per_year("1s", "crypto"), fee=fee, slippage_bps=slippage_bps)
    out_dir.mkdir(parents=True, exist_ok=True)
    equity_path, trades_path = out_dir / "equity.parquet", out_dir / "trades.parquet"
    result.equity.write_parquet(equity_path)
    result.trades.write_parquet(trades_path)
    return result, equity_path, trades_path


def format_metrics(m: dict[str, float]) -> str:
    pct = {"total_return", "annual_return", "max_drawdown", "win_rate", "exposure"}
    lines = []
    for k, v in m.items():
        if k in pct and not math.isnan(v):
            lines.append(f"  {k:<24} {v * 100:10.2f} %")
        else:
            lines.append(f"  {k:<24} {v:13.4f}")
    return "\n".join(lines)


@click.command("backtest")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="sma_cross", show_default=True)
@click.option("--symbol", required=True, help="The exchange's own symbol, e.g. BTCUSDT.")
@click.option("--timeframe", type=click.Choice(list(TIMEFRAMES)), default="1h", show_default=True,
              help="Candle timeframe (sma_cross); ob_imbalance runs on 1 s features.")
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First UTC day.")
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last UTC day.")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Archive root holding crypto_trades/ (default: $ARCHIVE_ROOT or data/archive).")
@click.option("--exchange", default=None, help="binance | hyperliquid | sim, when the symbol is on several.")
@click.option("--fast", default=20, show_default=True, type=click.IntRange(1))
@click.option("--slow", default=50, show_default=True, type=click.IntRange(2))
@click.option("--short/--no-short", "allow_short", default=False, show_default=True)
@click.option("--threshold", default=0.3, show_default=True, type=click.FloatRange(0, 1))
@click.option("--fee", default=0.001, show_default=True, type=click.FloatRange(0, 0.1), help="Per side.")
@click.option("--slippage-bps", default=0.0, show_default=True, type=click.FloatRange(0))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("data/backtests"),
              show_default=True, help="Folder for equity.parquet and trades.parquet.")
def backtest(strategy, symbol, timeframe, start, end, root, exchange, fast, slow, allow_short,
             threshold, fee, slippage_bps, out_dir):
    """Backtest a strategy on archived crypto data; print the metrics, save curve and trades."""
    root = root or default_root("live")
    try:
        result, equity_path, trades_path = run_backtest_cli(
            strategy=strategy, symbol=symbol, timeframe=timeframe, start=start.date(), end=end.date(),
            root=root, out_dir=out_dir, exchange=exchange, fast=fast, slow=slow, allow_short=allow_short,
            threshold=threshold, fee=fee, slippage_bps=slippage_bps)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backtest {strategy} {symbol} {timeframe if strategy == 'sma_cross' else '1s'} "
               f"{start.date()}..{end.date()} (fee {fee:.4%} per side, slippage {slippage_bps} bps)")
    click.echo(format_metrics(result.metrics))
    click.echo(f"equity curve: {equity_path}\ntrades: {trades_path}")
