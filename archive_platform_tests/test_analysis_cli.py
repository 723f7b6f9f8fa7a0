"""``archive-platform backtest`` over a hive-partitioned crypto_trades folder (issue 10)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from archive_platform.analysis.backtest import run_backtest, sma_cross_signal
from archive_platform.analysis.candles import candles
from archive_platform.analysis.cli import backtest

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def write_trades(root, days=3, per_hour=4, seed=1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * 24 * per_hour
    times = [T0 + timedelta(minutes=15 * i + 7) for i in range(n)]
    price = 60000 * np.cumprod(1 + rng.normal(0, 0.004, n))
    df = pl.DataFrame({
        "exchange": "binance", "symbol": "BTCUSDT", "trade_id": np.arange(n, dtype=np.int64),
        "event_time": times, "price": price, "size": rng.uniform(0.01, 1, n),
        "side": rng.choice(["buy", "sell"], n), "receive_time": times, "source": "binance",
    }).with_columns(pl.col("event_time", "receive_time").cast(pl.Datetime("us", "UTC")))
    other = df.head(10).with_columns(symbol=pl.lit("ETHUSDT"), price=pl.lit(3000.0))
    full = pl.concat([df, other])
    for (day,), part in full.group_by(pl.col("event_time").dt.date(), maintain_order=True):
        folder = root / "crypto_trades" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        part.write_parquet(folder / "part-0.parquet")
    return df


def test_backtest_command_prints_metrics_and_writes_parquet(tmp_path):
    stored = write_trades(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(backtest, [
        "--strategy", "sma_cross", "--symbol", "BTCUSDT", "--timeframe", "1h", "--from", "2026-03-01",
        "--to", "2026-03-03", "--root", str(tmp_path), "--fast", "3", "--slow", "8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "sharpe" in res.output and "max_drawdown" in res.output and "fee 0.1000% per side" in res.output
    equity = pl.read_parquet(out / "equity.parquet")
    trades = pl.read_parquet(out / "trades.parquet")
    bars = candles(stored, "1h")
    assert equity.height == bars.height == 72
    expected = run_backtest(bars, sma_cross_signal(bars["close"].to_numpy(), 3, 8), periods_per_year=8760)
    assert equity["equity"].to_list() == pytest.approx(expected.equity["equity"].to_list())
    assert trades.height == expected.trades.height > 0
    assert f"{expected.metrics['sharpe']:13.4f}" in res.output


def test_backtest_command_names_missing_data(tmp_path):
    write_trades(tmp_path, days=1)
    res = CliRunner().invoke(backtest, ["--symbol", "SOLUSDT", "--from", "2026-03-01", "--to", "2026-03-01",
                                        "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no rows for symbol 'SOLUSDT'" in res.output
    res = CliRunner().invoke(backtest, ["--symbol", "BTCUSDT", "--from", "2025-01-01", "--to", "2025-01-02",
                                        "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no crypto_trades Parquet files" in res.output
    assert not (tmp_path / "o" / "equity.parquet").exists()


def test_ob_imbalance_strategy_runs_on_one_second_features(tmp_path):
    rng = np.random.default_rng(5)
    n = 600  # ten minutes of snapshots, one a second
    mid = 100 + np.cumsum(rng.choice([-0.1, 0.0, 0.1], n))
    qb, qa = rng.uniform(0.1, 5, n), rng.uniform(0.1, 5, n)
    times = [T0 + timedelta(seconds=i, milliseconds=500) for i in range(n)]
    books = pl.DataFrame({
        "exchange": "sim", "symbol": "BTCUSDT", "event_time": times, "receive_time": times,
        "update_id": np.arange(n, dtype=np.int64), "prev_update_id": None,
        "bid_px": [[m - 0.05, m - 0.15] for m in mid], "bid_sz": [[b, 1.0] for b in qb],
        "ask_px": [[m + 0.05, m + 0.15] for m in mid], "ask_sz": [[a, 1.0] for a in qa],
        "source": "sim",
    }).with_columns(pl.col("event_time", "receive_time").cast(pl.Datetime("us", "UTC")))
    folder = tmp_path / "orderbook_l2" / "date=2026-03-01"
    folder.mkdir(parents=True)
    books.write_parquet(folder / "part-0.parquet")
    res = CliRunner().invoke(backtest, ["--strategy", "ob_imbalance", "--symbol", "BTCUSDT", "--from", "2026-03-01",
                                        "--to", "2026-03-01", "--root", str(tmp_path), "--threshold", "0.5",
                                        "--fee", "0", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    equity = pl.read_parquet(tmp_path / "o" / "equity.parquet")
    assert equity.height == n
    imb5 = (qb + 1 - qa - 1) / (qb + qa + 2)
    expected_pos = np.concatenate([[0.0], np.where(imb5 > 0.5, 1.0, np.where(imb5 < -0.5, -1.0, 0.0))[:-1]])
    assert equity["position"].to_list() == expected_pos.tolist()
    mids = (mid - 0.05 + mid + 0.05) / 2
    gross = np.concatenate([[0.0], expected_pos[1:] * 0 + expected_pos[:-1] * (mids[1:] / mids[:-1] - 1)])
    assert equity["return"].to_list() == pytest.approx(gross.tolist())
