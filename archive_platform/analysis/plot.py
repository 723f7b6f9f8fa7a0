"""The equity-curve image of a backtest (pure: no Dagster), rendered with matplotlib's Agg
canvas: a figure object with its own canvas, so no global pyplot state and no display.

``equity_png`` draws the equity (top) and the drawdown in % of the running peak (bottom) against
the bar number, with the bars' UTC times as tick labels (so nights and weekends take no room), and
returns the PNG bytes. ``markdown_image`` wraps them in a base64 data URI, which the Dagster UI
renders inline in a Markdown metadata value; ``png_size`` reads the width and height back from
the PNG header (for tests and checks).
"""

from __future__ import annotations

import base64
import io
import struct

import numpy as np
import polars as pl

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH_PX, HEIGHT_PX, DPI = 800, 400, 100


def equity_png(equity: pl.DataFrame, title: str, *, width_px: int = WIDTH_PX,
               height_px: int = HEIGHT_PX) -> bytes:
    """A PNG of ``equity`` (columns timestamp, equity, drawdown, as ``run_backtest`` returns)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    missing = [c for c in ("timestamp", "equity", "drawdown") if c not in equity.columns]
    if missing or equity.height == 0:
        raise ValueError(f"equity_png: needs rows with timestamp, equity and drawdown; "
                         f"missing columns {missing}, {equity.height} rows")
    x = np.arange(equity.height)
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(x, equity["equity"].to_numpy(), color="#1f77b4", linewidth=1.2)
    top.axhline(1.0, color="#999999", linewidth=0.6, linestyle="--")
    top.set_ylabel("equity")
    top.set_title(title, fontsize=9)
    top.grid(alpha=0.3)
    dd = equity["drawdown"].to_numpy() * 100.0
    bottom.fill_between(x, dd, 0.0, color="#d62728", alpha=0.5, linewidth=0)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    ticks = np.unique(np.linspace(0, equity.height - 1, min(6, equity.height)).round().astype(int))
    stamps = equity["timestamp"].gather(ticks).dt.strftime("%Y-%m-%d\n%H:%M").to_list()
    bottom.set_xticks(ticks, stamps, fontsize=7)
    bottom.set_xlabel("bar (UTC time of its close)", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError when ``data`` is not a PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG: the signature or the IHDR chunk is missing")
    return struct.unpack(">II", data[16:24])


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown showing ``png`` inline (a base64 data URI, no file server needed)."""
    png_size(png)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
