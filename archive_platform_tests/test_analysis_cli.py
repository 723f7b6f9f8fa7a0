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
    res = CliRunner().invoke(backtest, ["--strategy", "ob_imbalance", "--symbol", "BTCUSDT", "--from", "2026-02-28",
                                        "--to", "2026-03-02", "--root", str(tmp_path), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 1 and ("orderbook_l2: no BTCUSDT order books archived on 2 of the 3 requested days "
                                   "(2026-02-28..2026-03-02): 2026-02-28, 2026-03-02.") in res.output, res.output
    assert not (tmp_path / "o2").exists()


# -- days without data are named, never filled; the range used is reported; --sim --------------
def run(args, **kw):
    return CliRunner().invoke(backtest, ["--symbol", "BTCUSDT", "--timeframe", "1h", "--fast", "3", "--slow", "8",
                                         *args], **kw)


def metric(output: str, name: str) -> float:
    (line,) = [ln for ln in output.splitlines() if ln.split()[:1] == [name]]
    return float(line.split()[1])


def test_a_range_past_the_archived_days_fails_and_names_the_missing_days(tmp_path):
    write_trades(tmp_path)  # 2026-03-01..2026-03-03
    out = tmp_path / "o"
    res = run(["--from", "2026-03-01", "--to", "2026-03-10", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert ("crypto_trades: no BTCUSDT trades archived on 7 of the 10 requested days (2026-03-01..2026-03-10): "
            "2026-03-04..2026-03-10.") in res.output
    assert f"Archived crypto_trades days under {tmp_path}: 2026-03-01..2026-03-03." in res.output
    assert not (out / "equity.parquet").exists()
    # before the first archived day (no candle was invented there, but the header lied)
    res = run(["--from", "2026-02-26", "--to", "2026-03-03", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 1 and "on 3 of the 6 requested days (2026-02-26..2026-03-03): 2026-02-26..2026-02-28." \
        in res.output, res.output
    # a hole inside, and a day whose files hold other symbols only
    eth = pl.read_parquet(tmp_path / "crypto_trades" / "date=2026-03-01" / "part-0.parquet").filter(
        pl.col("symbol") == "ETHUSDT").with_columns(pl.col("event_time", "receive_time").dt.offset_by("3d"))
    (tmp_path / "crypto_trades" / "date=2026-03-04").mkdir()
    eth.write_parquet(tmp_path / "crypto_trades" / "date=2026-03-04" / "part-0.parquet")
    for f in (tmp_path / "crypto_trades" / "date=2026-03-02").iterdir():
        f.unlink()
    res = run(["--from", "2026-03-01", "--to", "2026-03-04", "--root", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 1 and "on 2 of the 4 requested days (2026-03-01..2026-03-04): 2026-03-02, 2026-03-04." \
        in res.output, res.output
    assert "Archived crypto_trades days under" in res.output and "2026-03-01, 2026-03-03..2026-03-04." in res.output


def test_a_covered_range_reports_the_days_used_and_the_metrics_of_those_days_only(tmp_path):
    stored = write_trades(tmp_path, days=4)  # 2026-03-01..2026-03-04
    lo, hi = T0, T0 + timedelta(days=3)  # the candles of 03-01..03-03 (the 03-04 00:00 one included)
    bars = candles(stored, "1h", start=lo, end=hi)
    assert bars.height == 72 and not bars["is_empty"].any()
    expected = run_backtest(bars, sma_cross_signal(bars["close"].to_numpy(), 3, 8), periods_per_year=8760,
                            fee=0.001).metrics
    for extra in ([], ["--exchange", "binance"]):
        res = run(["--from", "2026-03-01", "--to", "2026-03-03", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
                   *extra])
        assert res.exit_code == 0, res.output
        header = res.output.splitlines()[0]
        assert header.startswith(f"backtest sma_cross BTCUSDT 1h 2026-03-01..2026-03-03 (3 UTC days under {tmp_path};")
        assert "period: bars closing 2026-03-01 01:00:00 .. 2026-03-04 00:00:00 UTC" in res.output
        assert metric(res.output, "bars") == 72
        for name in ("sharpe", "sortino", "trades", "final_equity"):
            assert metric(res.output, name) == pytest.approx(expected[name], abs=1e-4), name
        assert metric(res.output, "annual_return") == pytest.approx(expected["annual_return"] * 100, abs=1e-2)
    # without --from/--to: every archived day, 03-01..03-04
    res = run(["--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "BTCUSDT 1h 2026-03-01..2026-03-04 (4 UTC days" in res.output and metric(res.output, "bars") == 96
    res = run(["--from", "2026-03-03", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "2026-03-03..2026-03-04 (2 UTC days" in res.output and metric(res.output, "bars") == 48


def _sim_trades(day_count: int) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    n = day_count * 24 * 6
    times = [T0 + timedelta(minutes=10 * i + 3) for i in range(n)]
    return pl.DataFrame({
        "exchange": "sim", "symbol": "BTC", "trade_id": np.arange(n, dtype=np.int64), "event_time": times,
        "price": 90000 * np.cumprod(1 + rng.normal(0, 0.003, n)), "size": rng.uniform(0.01, 1, n),
        "side": rng.choice(["buy", "sell"], n), "receive_time": times, "source": "sim",
    }).with_columns(pl.col("event_time", "receive_time").cast(pl.Datetime("us", "UTC")))


def test_sim_reads_the_simulated_archive_the_demo_writes(tmp_path, monkeypatch):
    from archive_platform.crypto.schemas import CRYPTO_TRADES
    from archive_platform.store import ArchiveStore

    sim, live = tmp_path / "sim" / "archive", tmp_path / "live"
    monkeypatch.setenv("ARCHIVE_SIM_ROOT", str(sim))
    monkeypatch.setenv("ARCHIVE_ROOT", str(live))
    trades = _sim_trades(2)
    store = ArchiveStore(sim, kind="sim")
    for (day,), part in trades.group_by(pl.col("event_time").dt.date(), maintain_order=True):
        store.write_day("crypto_trades", day, part.to_arrow().cast(CRYPTO_TRADES))
    store.close()
    args = ["--symbol", "BTC", "--from", "2026-03-01", "--to", "2026-03-02", "--fast", "3", "--slow", "8",
            "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(backtest, args)
    assert res.exit_code == 1 and f"no crypto_trades Parquet files under {live / 'crypto_trades'}" in res.output
    assert "add --sim to read it" in res.output
    res = CliRunner().invoke(backtest, ["--sim", *args])
    assert res.exit_code == 0, res.output
    assert f"backtest sma_cross BTC 1h 2026-03-01..2026-03-02 (2 UTC days under {sim};" in res.output
    bars = candles(trades, "1h", start=T0, end=T0 + timedelta(days=2))
    expected = run_backtest(bars, sma_cross_signal(bars["close"].to_numpy(), 3, 8), periods_per_year=8760).metrics
    assert metric(res.output, "bars") == 48
    assert metric(res.output, "sharpe") == pytest.approx(expected["sharpe"], abs=1e-4)
    # --root wins over --sim, as in `sql`
    res = CliRunner().invoke(backtest, ["--sim", "--root", str(live), *args])
    assert res.exit_code == 1 and f"under {live / 'crypto_trades'}" in res.output and "add --sim" not in res.output


def _flip_books(root, n: int) -> None:
    """n one-second books at a constant mid of 100 whose best-level imbalance flips sign every
    second (+0.5, -0.5, ...): ob_imbalance flips between long and short each second."""
    times = [T0 + timedelta(seconds=i) for i in range(n)]
    big = np.where(np.arange(n) % 2 == 0, 3.0, 1.0)
    books = pl.DataFrame({
        "exchange": "sim", "symbol": "BTCUSDT", "event_time": times, "receive_time": times,
        "update_id": np.arange(n, dtype=np.int64), "prev_update_id": None,
        "bid_px": [[99.95]] * n, "bid_sz": [[b] for b in big], "ask_px": [[100.05]] * n,
        "ask_sz": [[4.0 - b] for b in big], "source": "sim",
    }).with_columns(pl.col("event_time", "receive_time").cast(pl.Datetime("us", "UTC")))
    folder = root / "orderbook_l2" / "date=2026-03-01"
    folder.mkdir(parents=True)
    books.write_parquet(folder / "part-0.parquet")


def test_a_strategy_ruined_by_its_costs_is_reported(tmp_path):
    n = 3000
    _flip_books(tmp_path, n)
    args = ["--strategy", "ob_imbalance", "--symbol", "BTCUSDT", "--root", str(tmp_path)]
    res = CliRunner().invoke(backtest, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    # one fill of 1 (flat -> long), then a flip (2 x the equity traded) every second at 0.1 %
    final = 0.999 * 0.998 ** (n - 2)
    assert final < 0.01
    assert metric(res.stdout, "final_equity") == pytest.approx(final, abs=1e-4)
    assert metric(res.stdout, "gross_return") == 0.0  # the mid never moves: no edge at all
    first = next(t for t in range(1, n) if 0.999 * 0.998 ** (t - 1) <= 0.01)
    warning = res.stderr
    assert warning.startswith(f"WARNING: the equity is ruined: it fell to {0.999 * 0.998 ** (first - 1) * 100:.4g}% "
                              f"of the start (at most 1%) at the bar closing "
                              f"{T0 + timedelta(seconds=first):%Y-%m-%d %H:%M:%S} UTC")
    assert f"ends at {final:.3g} (total return {final - 1:.2%})" in warning
    assert "Before costs the same positions return +0.00%" in warning
    assert f"costs of its {n - 1:,} fills (0.1000% per side + 0 bps of slippage" in warning
    assert "WARNING" not in res.stdout
    # without costs nothing is lost and nothing is reported
    res = CliRunner().invoke(backtest, [*args, "--fee", "0", "--out", str(tmp_path / "o0")])
    assert res.exit_code == 0 and metric(res.stdout, "final_equity") == 1.0 and res.stderr == ""


def test_a_missing_range_is_named_as_asked_not_with_the_extra_midnight_day(tmp_path):
    # sma_cross also reads the day after --to (a trade stamped exactly at midnight closes the
    # last candle); the error named that day as if it had been asked for ("..2025-01-03")
    write_trades(tmp_path, days=1)
    res = run(["--from", "2025-01-01", "--to", "2025-01-02", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert f"no crypto_trades Parquet files under {tmp_path / 'crypto_trades'} for 2025-01-01..2025-01-02." \
        in res.output, res.output
    res = run(["--symbol", "SOLUSDT", "--from", "2026-03-01", "--to", "2026-03-01", "--root", str(tmp_path),
               "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no rows for symbol 'SOLUSDT' in 2026-03-01..2026-03-01" in res.output, res.output


def test_an_sma_whose_slow_average_never_forms_is_warned_about(tmp_path):
    """72 hourly candles for SMA(100): no position is ever taken; the metrics alone (0 trades,
    0 % return) read like a strategy without an edge."""
    write_trades(tmp_path)
    args = ["--strategy", "sma_cross", "--symbol", "BTCUSDT", "--timeframe", "1h", "--from", "2026-03-01",
            "--to", "2026-03-03", "--root", str(tmp_path), "--fast", "3", "--out", str(tmp_path / "out")]
    res = CliRunner().invoke(backtest, [*args, "--slow", "100"])
    assert res.exit_code == 0, res.output
    assert "WARNING: only 72 1h candles for SMA(100): the slow average never forms" in res.stderr
    ok = CliRunner().invoke(backtest, [*args, "--slow", "8"])
    assert ok.exit_code == 0 and "never forms" not in ok.stderr
