"""``archive-platform backtest``: a backtest over archived crypto data, metrics printed, curve saved.

The click command ``backtest`` is attached to the main group by the CLI module; ``run_backtest_cli``
does the work and is callable without click. Data are read from the hive layout
``<root>/crypto_trades/date=YYYY-MM-DD/*.parquet`` (and ``<root>/orderbook_l2/...`` for the
order-book strategy), plain Parquet, under ``--root``, the live root, or the simulated one with
``--sim``. Every UTC day of the range must hold rows of the symbol: a missing day ends the command
with a message naming it (it is never filled with flat candles, which would skew the metrics).
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import click
import polars as pl

from archive_platform.analysis.backtest import (
    BacktestResult, feature_bars, imbalance_signal, ruin, run_backtest, sma_cross_backtest,
)
from archive_platform.analysis.candles import TIMEFRAMES, candles
from archive_platform.analysis.features import orderbook_features
from archive_platform.analysis.metrics import periods_per_year
from archive_platform.store import default_root

STRATEGIES = ("sma_cross", "ob_imbalance")


def _partition(folder: Path) -> date | None:
    try:
        return date.fromisoformat(folder.name.removeprefix("date="))
    except ValueError:
        return None


def archived_days(root: Path, dataset: str) -> list[date]:
    """The days of ``<root>/<dataset>/date=YYYY-MM-DD/`` holding at least one Parquet file, sorted."""
    base = root / dataset
    if not base.is_dir():
        return []
    days = (_partition(f) for f in base.glob("date=*") if f.is_dir() and any(f.glob("*.parquet")))
    return sorted(d for d in days if d is not None)


def day_runs(days) -> str:
    """``2026-12-01..2026-12-31, 2027-01-03`` (consecutive days as one range)."""
    days = sorted(days)
    runs: list[list[date]] = []
    for d in days:
        if runs and d - runs[-1][1] == timedelta(days=1):
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in runs)


def _read_days(root: Path, dataset: str, symbol: str, first: date, last: date,
               exchange: str | None, *, what: str = "rows", require: tuple[date, date] | None = None
               ) -> pl.DataFrame:
    """The rows of ``symbol`` in the partitions first..last. With ``require`` (lo, hi), every day
    of lo..hi must hold some: a missing day is named, never filled (docs/analysis.md)."""
    files: list[tuple[date, Path]] = []
    day = first
    while day <= last:
        folder = root / dataset / f"date={day.isoformat()}"
        files += [(day, f) for f in sorted(folder.glob("*.parquet"))]
        day += timedelta(days=1)
    lo, hi = require or (first, last)  # the days asked for (sma_cross also reads the day after)
    if not files:
        raise click.ClickException(f"no {dataset} Parquet files under {root / dataset} for {lo}..{hi}."
                                   + _archived_note(root, dataset))
    df = pl.concat([pl.read_parquet(f, hive_partitioning=False).with_columns(pl.lit(d).alias("_day"))
                    for d, f in files], how="diagonal_relaxed")
    df = df.filter(pl.col("symbol") == symbol)
    if exchange:
        df = df.filter(pl.col("exchange") == exchange)
    where = f" on {exchange!r}" if exchange else ""
    if df.height == 0:
        raise click.ClickException(f"{dataset}: no rows for symbol {symbol!r}{where} in {lo}..{hi}")
    if df["exchange"].n_unique() > 1:
        raise click.ClickException(f"{symbol} trades on {df['exchange'].unique().to_list()}; pick one with --exchange")
    if require is not None:
        have = set(df["_day"].unique().to_list())
        missing = [lo + timedelta(days=i) for i in range((hi - lo).days + 1)
                   if lo + timedelta(days=i) not in have]
        if missing:
            raise click.ClickException(
                f"{dataset}: no {symbol} {what}{where} archived on {len(missing)} of the "
                f"{(hi - lo).days + 1} requested days ({lo}..{hi}): {day_runs(missing)}."
                f"{_archived_note(root, dataset)} Days without data are not backtested as flat "
                f"candles: choose --from/--to within the archived days.")
    return df.drop("_day")


def _archived_note(root: Path, dataset: str) -> str:
    days = archived_days(root, dataset)
    return f" Archived {dataset} days under {root}: {day_runs(days)}." if days else ""


def run_backtest_cli(*, strategy: str, symbol: str, timeframe: str, start: date | None, end: date | None,
                     root: Path, out_dir: Path, exchange: str | None = None, fast: int = 20,
                     slow: int = 50, allow_short: bool = False, threshold: float = 0.3,
                     fee: float = 0.001, slippage_bps: float = 0.0
                     ) -> tuple[BacktestResult, Path, Path, tuple[date, date]]:
    """Run one backtest over the UTC days start..end; write ``equity.parquet`` and ``trades.parquet``.

    ``start``/``end`` None mean the first/last day archived of the strategy's input. Every day of
    the range must hold rows of the symbol, else ``click.ClickException`` names the missing days
    (they are never filled with flat candles). Returns (result, equity path, trades path, the
    (first, last) day used).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    dataset = "crypto_trades" if strategy == "sma_cross" else "orderbook_l2"
    if start is None or end is None:
        days = archived_days(root, dataset)
        if not days:
            raise click.ClickException(f"no {dataset} Parquet files under {root / dataset}")
        start, end = start or days[0], end or days[-1]
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    lo = datetime.combine(start, time(0), tzinfo=timezone.utc)
    hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=timezone.utc)
    if strategy == "sma_cross":
        # the day after `end` may hold the trade exactly at midnight that closes the last candle
        trades = _read_days(root, "crypto_trades", symbol, start, end + timedelta(days=1), exchange,
                            what="trades", require=(start, end))
        bars = candles(trades, timeframe, start=lo, end=hi)
        result = sma_cross_backtest(bars, timeframe=timeframe, fast=fast, slow=slow, allow_short=allow_short,
                                    fee=fee, slippage_bps=slippage_bps)
    else:
        books = _read_days(root, "orderbook_l2", symbol, start, end, exchange, what="order books",
                           require=(start, end))
        trades = None
        if (root / "crypto_trades").exists():  # optional: the trade features of the days that have them
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
    return result, equity_path, trades_path, (start, end)


RUIN_LEVEL = 0.01  # an equity at or below 1 % of the start is reported as ruined


def ruin_warning(result: BacktestResult, fee: float, slippage_bps: float) -> str | None:
    """The warning printed when the equity was ruined (fell to RUIN_LEVEL of the start or
    below), saying whether the costs or the positions themselves did it; None otherwise."""
    hit = ruin(result, level=RUIN_LEVEL)
    if hit is None:
        return None
    when, low = hit
    m = result.metrics
    gross = m.get("gross_return", math.nan)
    head = (f"WARNING: the equity is ruined: it fell to {low * 100:.4g}% of the start (at most {RUIN_LEVEL:.0%}) "
            f"at the bar closing {when:%Y-%m-%d %H:%M:%S} UTC and ends at {m['final_equity']:.3g} "
            f"(total return {m['total_return']:.2%}).")
    cost = f"{fee:.4%} per side + {slippage_bps:g} bps of slippage"
    if gross > -1 + RUIN_LEVEL:
        why = (f" Before costs the same positions return {gross:+.2%}: the costs of its "
               f"{int(m['fills']):,} fills ({cost}, on each change of position) consumed the equity. "
               f"This is the strategy's result, not a fault of the backtest: its edge does not pay "
               f"for its turnover at these costs (see docs/analysis.md).")
    else:
        why = f" The positions lose it before costs too (gross return {gross:+.2%}), with {cost}."
    return head + why


def format_metrics(m: dict[str, float]) -> str:
    """One metric a line; a value that is not a number says why (``inf``/``nan`` alone would
    read as a fault: a profit factor is infinite when no trade lost, undefined without trades)."""
    pct = {"total_return", "annual_return", "max_drawdown", "win_rate", "exposure", "gross_return"}
    no_trades = m.get("trades") == 0
    lines = []
    for k, v in m.items():
        if math.isinf(v) and k == "profit_factor":
            lines.append(f"  {k:<24} {'inf':>13} (no losing trade)")
        elif math.isnan(v):
            lines.append(f"  {k:<24} {'n/a':>13}" + (" (no trades)" if no_trades and k in _PER_TRADE else ""))
        elif k in pct:
            lines.append(f"  {k:<24} {v * 100:10.2f} %")
        else:
            lines.append(f"  {k:<24} {v:13.4f}")
    return "\n".join(lines)


#: metrics computed over closed trades: undefined (NaN) when there was none
_PER_TRADE = {"win_rate", "profit_factor"}


@click.command("backtest")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="sma_cross", show_default=True)
@click.option("--symbol", required=True,
              help="The exchange's own symbol, e.g. BTCUSDT (the simulated venue's: BTC, ETH).")
@click.option("--timeframe", type=click.Choice(list(TIMEFRAMES)), default="1h", show_default=True,
              help="Candle timeframe (sma_cross); ob_imbalance runs on 1 s features.")
@click.option("--from", "start", default=None, type=click.DateTime(["%Y-%m-%d"]),
              help="First UTC day (default: the first day archived).")
@click.option("--to", "end", default=None, type=click.DateTime(["%Y-%m-%d"]),
              help="Last UTC day (default: the last day archived).")
@click.option("--sim", is_flag=True,
              help="Read the simulated archive ($ARCHIVE_SIM_ROOT or data/sim/archive, what `demo` writes).")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Archive root holding crypto_trades/ (and orderbook_l2/ for ob_imbalance) "
                   "(default: $ARCHIVE_ROOT or data/archive; overrides --sim).")
@click.option("--exchange", default=None, help="binance | hyperliquid | sim, when the symbol is on several.")
@click.option("--fast", default=20, show_default=True, type=click.IntRange(1))
@click.option("--slow", default=50, show_default=True, type=click.IntRange(2))
@click.option("--short/--no-short", "allow_short", default=False, show_default=True)
@click.option("--threshold", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="ob_imbalance: long while imbalance_5 > threshold, short while < -threshold.")
@click.option("--fee", default=0.001, show_default=True, type=click.FloatRange(0, 0.1),
              help="Per side, a fraction of the notional traded (0.001 = 0.1 %).")
@click.option("--slippage-bps", default=0.0, show_default=True, type=click.FloatRange(0))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("data/backtests"),
              show_default=True, help="Folder for equity.parquet and trades.parquet.")
def backtest(strategy, symbol, timeframe, start, end, sim, root, exchange, fast, slow, allow_short,
             threshold, fee, slippage_bps, out_dir):
    """Backtest a strategy on archived crypto data; print the metrics, save curve and trades.

    Every UTC day from --from to --to must be archived for the symbol: missing days end the
    command with a message naming them.
    """
    given = root is not None
    root = root or default_root("sim" if sim else "live")
    try:
        result, equity_path, trades_path, (first, last) = run_backtest_cli(
            strategy=strategy, symbol=symbol, timeframe=timeframe, start=start and start.date(),
            end=end and end.date(), root=root, out_dir=out_dir, exchange=exchange, fast=fast, slow=slow,
            allow_short=allow_short, threshold=threshold, fee=fee, slippage_bps=slippage_bps)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except click.ClickException as exc:
        dataset = "crypto_trades" if strategy == "sma_cross" else "orderbook_l2"
        if not (given or sim or (root / dataset).is_dir()):
            exc.message += " (`demo` writes the simulated archive: add --sim to read it)"
        raise
    ts, n_days = result.equity["timestamp"], (last - first).days + 1
    click.echo(f"backtest {strategy} {symbol} {timeframe if strategy == 'sma_cross' else '1s'} "
               f"{first}..{last} ({n_days} UTC day{'s' if n_days != 1 else ''} under {root}; "
               f"fee {fee:.4%} per side, slippage {slippage_bps} bps)")
    if ts.len():
        click.echo(f"  period: bars closing {ts.min():%Y-%m-%d %H:%M:%S} .. {ts.max():%Y-%m-%d %H:%M:%S} UTC")
    click.echo(format_metrics(result.metrics))
    click.echo(f"equity curve: {equity_path}\ntrades: {trades_path}")
    warning = ruin_warning(result, fee, slippage_bps)
    if warning:
        click.echo(warning, err=True)
    bars = int(result.metrics.get("bars", 0))
    if strategy == "sma_cross" and bars < slow:
        # the slow average never forms: flat all along, which must not read as "no edge"
        click.echo(f"WARNING: only {bars} {timeframe} candles for SMA({slow}): the slow average never "
                   f"forms, so the strategy never takes a position; widen --from/--to or lower --slow.",
                   err=True)
