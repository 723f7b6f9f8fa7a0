"""The equity-curve image of the daily backtests: a real PNG (header, size, drawn pixels), and the
``backtests`` asset attaching it through Dagster as an inline Markdown image and a file path."""

from __future__ import annotations

import base64
import io
import re
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from archive_platform import calendar
from archive_platform.analysis.backtest import run_backtest
from archive_platform.analysis.equity_candles import day_candles, to_rows
from archive_platform.analysis.plot import PNG_SIGNATURE, equity_png, markdown_image, png_size
from archive_platform.datasets.candles import SCHEMA as CANDLES
from archive_platform.defs import build_definitions
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, materializations, sim_env

FULL, HALF = date(2025, 11, 26), date(2025, 11, 28)


def _curve(n: int = 300) -> pl.DataFrame:
    t = np.arange(n)
    close = 100 + 5 * np.sin(t / 20.0)
    start = datetime(2025, 11, 3, 14, 30, tzinfo=timezone.utc)
    ts = pl.Series([start + timedelta(minutes=5 * int(i)) for i in t]).dt.cast_time_unit("us")
    bars = pl.DataFrame({"timestamp": ts, "open": close, "high": close, "low": close, "close": close})
    signal = np.where(np.sin(t / 20.0) < 0, 1.0, 0.0)
    return run_backtest(bars, signal, periods_per_year=252 * 78).equity


def test_equity_png_is_a_decodable_image_with_the_curve_drawn():
    equity = _curve()
    png = equity_png(equity, "test curve")
    assert png[:8] == PNG_SIGNATURE
    assert png_size(png) == (800, 400)
    pixels = imread(io.BytesIO(png))
    assert pixels.shape[:2] == (400, 800)
    rgb = (pixels[..., :3] * 255).round().astype(int)
    blue = np.all(np.abs(rgb - [0x1F, 0x77, 0xB4]) <= 8, axis=-1)  # the equity line's colour
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 180) & (rgb[..., 2] < 180)  # the drawdown fill
    assert blue.sum() > 300 and red.sum() > 300
    md = markdown_image(png, "alt")
    assert base64.b64decode(md.removeprefix("![alt](data:image/png;base64,").removesuffix(")")) == png


def test_png_size_refuses_bytes_that_are_not_a_png():
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(30))
    with pytest.raises(ValueError, match="missing columns"):
        equity_png(pl.DataFrame({"timestamp": [], "equity": []}), "x")


def _minute_bars(day: date, symbol: str, base: float) -> pl.DataFrame:
    s = calendar.session(day)
    n = s.minutes
    t = np.arange(n)
    close = base + 3 * np.sin((t + (0 if day == FULL else 390)) / 25.0)
    ts = [s.open_utc + timedelta(minutes=int(i)) for i in t]
    return pl.DataFrame({"timestamp": ts, "symbol": symbol, "open": close, "high": close + 0.05,
                         "low": close - 0.05, "close": close, "volume": 100.0, "vwap": close,
                         "trade_count": 10}).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))


def test_backtests_asset_attaches_the_equity_image(tmp_path):
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    for day in (FULL, HALF):
        store.write_day("candles", day, to_rows(day_candles(_minute_bars(day, "SPY", 600.0), day), CANDLES, "sim"))
    defs = build_definitions(sim_env(tmp_path))
    result = defs.resolve_job_def("archive_all").execute_in_process(
        partition_key=HALF.isoformat(), instance=dg.DagsterInstance.ephemeral(), run_config=QUIET,
        asset_selection=[dg.AssetKey("backtests")])
    meta = materializations(result)["backtests"]
    md = meta["equity_chart"]
    found = re.fullmatch(r"!\[sma_cross_spy_5m equity curve\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert found, md[:80]
    png = base64.b64decode(found.group(1))
    assert png_size(png) == (800, 400)
    path = meta["equity_png"]
    assert path.endswith("sma_cross_spy_5m/date=2025-11-28/equity.png")
    with open(path, "rb") as f:
        assert f.read() == png
    assert meta["rows"] == 78 + 42  # one curve row per 5-minute candle of the two sessions
