"""Derived daily datasets: daily bars, daily IV, daily VIX and the per-symbol market regime.

A pure module (polars on Arrow; no Dagster, no I/O). Every function takes Arrow tables (or polars
frames) in the archive's canonical schemas and returns an Arrow table in the schema declared
in ``regime_schemas``; ``UNITS[dataset][column]`` gives each column's unit and meaning (docs/timegrid.md has the
same definitions in prose).

Dates are NYSE session dates (America/New_York), computed from each row's UTC instant plus its
``et_offset``, so no time-zone database or session time zone is involved. Rows whose ET date is
not an NYSE session are dropped. Crypto bars use the UTC date of ``event_time``.

Definitions (the time-grid note wants daily OHLC of trades and of implied volatility, the IB option-snapshot collector IV rank,
VIX and an SMA trend):

* front ATM IV of a snapshot: the nearest expiry at least 7 calendar days after the session date,
  the strike(s) nearest the underlying on that expiry, mean IV of those calls and puts (the same
  rule as the README's ATM-IV query).
* 30-day constant-maturity ATM IV (``iv30``) of a snapshot: per expiry the ATM IV as above
  (nearest strike, calls and puts averaged), ``tau`` = expiry minus session date in calendar
  days (expiries with tau >= 1 only). With ``tau1`` the largest tau <= 30 and ``tau2`` the
  smallest tau >= 30, total variance ``w = iv**2 * tau`` is interpolated linearly in tau:
  ``iv30 = sqrt((w1 + (w2 - w1) * (30 - tau1) / (tau2 - tau1)) / 30)``; an expiry exactly 30
  days out is used as is. No extrapolation: when no listed expiry lies on one side of 30 days,
  iv30 is null for that snapshot.
* IV rank and percentile use the day's closing iv30 over the window of the 60 NYSE sessions
  ending on the day (inclusive). Rank = (iv - min) / (max - min) * 100; percentile = share of the
  window's sessions with iv strictly below today's, in %. Both are 50 when fewer than 30 sessions
  of the window have an iv30 or when max == min (the IB option-snapshot collector), and ``iv_rank_note`` says which.
* SMA20/SMA50: mean close of the 20/50 sessions ending on the day; null unless every one of those
  sessions has a bar. Trend: uptrend close > SMA20 > SMA50, downtrend close < SMA20 < SMA50, else
  neutral; null when an SMA is null.
* rv20: sample standard deviation (ddof 1) of the 20 log close-to-close returns ending on the day,
  times sqrt(252); needs the 21 sessions' closes, all positive, else null.
"""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pyarrow as pa

from archive_platform import calendar
from archive_platform.crypto.schemas import TRADE_KEY
from archive_platform.regime_schemas import (  # noqa: F401  (re-exported)
    DAILY_BARS_CRYPTO_SCHEMA,
    DAILY_BARS_SCHEMA,
    DAILY_IV_SCHEMA,
    MARKET_REGIME_SCHEMA,
    SCHEMAS,
    TS,
    UNITS,
    VIX_DAILY_SCHEMA,
)

FRONT_MIN_DAYS = 7
CM_DAYS = 30
IV_WINDOW = 60
IV_MIN_HISTORY = 30
SMA_SHORT, SMA_LONG, RV_WINDOW = 20, 50, 20
ANNUALISE = math.sqrt(252.0)

_OHLC = ["open", "high", "low", "close"]


def _frame(data) -> pl.DataFrame:
    return data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)


def _require(df: pl.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: input lacks column(s) {', '.join(missing)}")


def _out(df: pl.DataFrame, name: str) -> pa.Table:
    schema = SCHEMAS[name]
    if df.height == 0:
        return schema.empty_table()
    return df.select(schema.names).to_arrow().cast(schema)


def _et_date(col: str) -> pl.Expr:
    """ET date of a UTC instant column using the row's own et_offset (minutes)."""
    naive = pl.col(col).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return (naive + pl.duration(minutes=pl.col("et_offset"))).dt.date().alias("date")


def _sessions(days: pl.Series) -> pl.DataFrame:
    """date, session open/close (UTC) and minutes for the NYSE sessions among ``days``."""
    if days.len() == 0:
        return pl.DataFrame(schema={"date": pl.Date, "_open": pl.Datetime("us", "UTC"),
                                    "_close": pl.Datetime("us", "UTC"), "session_minutes": pl.Int32})
    ss = [calendar.session(d) for d in calendar.trading_days(days.min(), days.max())]
    return pl.DataFrame({
        "date": [s.day for s in ss], "_open": [s.open_utc for s in ss],
        "_close": [s.close_utc for s in ss], "session_minutes": [s.minutes for s in ss],
    }, schema_overrides={"_open": pl.Datetime("us", "UTC"), "_close": pl.Datetime("us", "UTC"),
                         "session_minutes": pl.Int32})


def daily_bars(stocks_1m) -> pa.Table:
    """Per symbol per session: OHLC, volume, VWAP, trade count of the session's minute bars.

    Bars starting before the open or at/after the close (extended hours) are left out; a 13:00
    close simply has 210 bars. Rows on non-session dates are dropped.
    """
    df = _frame(stocks_1m)
    _require(df, ["timestamp", "symbol", *_OHLC, "volume", "vwap", "trade_count", "et_offset"],
             "daily_bars")
    df = df.with_columns(_et_date("timestamp"))
    df = df.join(_sessions(df["date"].unique()), on="date", how="inner")
    df = df.filter((pl.col("timestamp") >= pl.col("_open")) & (pl.col("timestamp") < pl.col("_close")))
    has_vwap = pl.col("vwap").is_not_null()
    out = df.sort("symbol", "timestamp").group_by("symbol", "date").agg(
        pl.col("open").first(), pl.col("high").max(), pl.col("low").min(),
        pl.col("close").last(), pl.col("volume").sum(),
        pl.when(pl.col("volume").filter(has_vwap).sum() > 0).then(
            (pl.col("vwap") * pl.col("volume")).filter(has_vwap).sum()
            / pl.col("volume").filter(has_vwap).sum()).alias("vwap"),  # no VWAP: null, not NaN
        pl.when(pl.col("trade_count").count() > 0).then(pl.col("trade_count").sum())
        .alias("trade_count"),
        pl.len().alias("bars"), pl.col("session_minutes").first(),
        pl.col("timestamp").min().alias("first_bar"), pl.col("timestamp").max().alias("last_bar"),
    )
    return _out(out.sort("symbol", "date"), "daily_bars")


def daily_bars_crypto(crypto_trades) -> pa.Table:
    """Per exchange and symbol per UTC day: OHLC, volume, VWAP, trade count (deduplicated)."""
    df = _frame(crypto_trades)
    _require(df, ["exchange", "symbol", "trade_id", "event_time", "price", "size"],
             "daily_bars_crypto")
    df = df.unique(subset=list(TRADE_KEY), keep="first", maintain_order=True)
    df = df.with_columns(
        pl.col("event_time").dt.convert_time_zone("UTC").dt.date().alias("date"))
    out = df.sort("exchange", "symbol", "event_time", "trade_id").group_by(
        "exchange", "symbol", "date").agg(
        pl.col("price").first().alias("open"), pl.col("price").max().alias("high"),
        pl.col("price").min().alias("low"), pl.col("price").last().alias("close"),
        pl.col("size").sum().alias("volume"),
        pl.when(pl.col("size").sum() > 0)  # a day of zero-size trades only has no VWAP
        .then((pl.col("price") * pl.col("size")).sum() / pl.col("size").sum()).alias("vwap"),
        pl.len().alias("trade_count"),
        pl.col("event_time").min().alias("first_trade"),
        pl.col("event_time").max().alias("last_trade"),
    )
    return _out(out.sort("exchange", "symbol", "date"), "daily_bars_crypto")


def snapshot_iv(options) -> pl.DataFrame:
    """Per symbol per snapshot: front ATM IV (and its expiry) and iv30 (see the module doc)."""
    df = _frame(options)
    _require(df, ["snapshot_time", "symbol", "expiry", "strike", "iv", "underlying_price",
                  "et_offset"], "daily_iv")
    df = df.filter(pl.col("iv").is_not_null() & (pl.col("iv") > 0)).with_columns(
        _et_date("snapshot_time"))
    df = df.join(_sessions(df["date"].unique()).select("date"), on="date", how="semi")
    df = df.with_columns(
        tau=(pl.col("expiry") - pl.col("date")).dt.total_days(),
        dist=(pl.col("strike") - pl.col("underlying_price")).abs(),
    ).filter(pl.col("tau") >= 1)
    key = ["symbol", "date", "snapshot_time"]
    per_exp = (
        df.filter(pl.col("dist") == pl.col("dist").min().over(*key, "expiry"))
        .group_by(*key, "expiry", "tau").agg(pl.col("iv").mean().alias("atm"))
    )
    front = (
        per_exp.filter(pl.col("tau") >= FRONT_MIN_DAYS)
        .filter(pl.col("tau") == pl.col("tau").min().over(key))
        .select(*key, pl.col("atm").alias("front_iv"), pl.col("expiry").alias("front_expiry"))
    )
    lo = (per_exp.filter(pl.col("tau") <= CM_DAYS)
          .filter(pl.col("tau") == pl.col("tau").max().over(key))
          .select(*key, pl.col("tau").alias("t1"), pl.col("atm").alias("v1")))
    hi = (per_exp.filter(pl.col("tau") >= CM_DAYS)
          .filter(pl.col("tau") == pl.col("tau").min().over(key))
          .select(*key, pl.col("tau").alias("t2"), pl.col("atm").alias("v2")))
    w1, w2 = pl.col("v1") ** 2 * pl.col("t1"), pl.col("v2") ** 2 * pl.col("t2")
    cm = lo.join(hi, on=key, how="inner").with_columns(
        iv30=pl.when(pl.col("t1") == pl.col("t2")).then(pl.col("v1")).otherwise(
            ((w1 + (w2 - w1) * (CM_DAYS - pl.col("t1")) / (pl.col("t2") - pl.col("t1")))
             / CM_DAYS).sqrt())
    ).select(*key, "iv30")
    snaps = per_exp.select(key).unique()
    return (snaps.join(front, on=key, how="left").join(cm, on=key, how="left")
            .sort("symbol", "snapshot_time"))


def _ohlc(col: str, prefix: str) -> list[pl.Expr]:
    v = pl.col(col).drop_nulls()
    return [v.first().alias(f"{prefix}_open"), v.max().alias(f"{prefix}_high"),
            v.min().alias(f"{prefix}_low"), v.last().alias(f"{prefix}_close"),
            v.mean().alias(f"{prefix}_mean"),
            pl.col(col).count().cast(pl.Int32).alias(f"{prefix}_snapshots")]


def daily_iv(options) -> pa.Table:
    """Per symbol per session: OHLC (over snapshots, in time order) of front ATM IV and iv30."""
    snap = snapshot_iv(options)
    out = snap.group_by("symbol", "date").agg(
        *_ohlc("front_iv", "front"), pl.col("front_expiry").drop_nulls().last(),
        *_ohlc("iv30", "iv30"), pl.len().cast(pl.Int32).alias("snapshots"),
        pl.col("snapshot_time").min().alias("first_snapshot"),
        pl.col("snapshot_time").max().alias("last_snapshot"),
    )
    return _out(out.sort("symbol", "date"), "daily_iv")


def vix_daily(vix) -> pa.Table:
    """Per session: first/max/min/last VIX level by snapshot_time, and the snapshot count."""
    df = _frame(vix)
    _require(df, ["snapshot_time", "symbol", "level", "et_offset"], "vix_daily")
    df = df.filter(pl.col("level").is_not_null()).with_columns(_et_date("snapshot_time"))
    df = df.join(_sessions(df["date"].unique()).select("date"), on="date", how="semi")
    out = df.sort("symbol", "snapshot_time").group_by("symbol", "date").agg(
        pl.col("level").first().alias("open"), pl.col("level").max().alias("high"),
        pl.col("level").min().alias("low"), pl.col("level").last().alias("close"),
        pl.len().cast(pl.Int32).alias("snapshots"),
        pl.col("snapshot_time").min().alias("first_snapshot"),
        pl.col("snapshot_time").max().alias("last_snapshot"),
    )
    return _out(out.sort("symbol", "date"), "vix_daily")


def _grid(first: date, last: date) -> pl.DataFrame:
    """Every NYSE session from ``IV_WINDOW`` sessions before ``first`` to ``last``, indexed."""
    start = calendar.add_trading_days(first, -IV_WINDOW) if first > calendar.CALENDAR_START else first
    days = calendar.trading_days(start, last)
    return pl.DataFrame({"date": days, "_i": range(len(days))},
                        schema={"date": pl.Date, "_i": pl.Int64})


def market_regime(daily_bars_t, daily_iv_t, vix_daily_t) -> pa.Table:
    """Per symbol per session with a bar or an IV: SMA trend, rv20, IV rank/percentile, VIX."""
    bars = _frame(daily_bars_t).select("symbol", "date", "close")
    ivs = _frame(daily_iv_t).select("symbol", "date", pl.col("iv30_close").alias("iv"))
    # the VIX index only: another symbol in the vix dataset (its "symbol is VIX" rule is soft)
    # would duplicate every row of its date, two rows on one (symbol, timestamp) key
    vix = (_frame(vix_daily_t).filter(pl.col("symbol") == "VIX")
           .select("date", pl.col("close").alias("vix_close")))
    have = pl.concat([bars.select("symbol", "date"), ivs.select("symbol", "date")]).unique()
    if have.height == 0:
        return MARKET_REGIME_SCHEMA.empty_table()
    grid = _grid(have["date"].min(), have["date"].max())
    span = have.group_by("symbol").agg(pl.col("date").min().alias("_a"),
                                       pl.col("date").max().alias("_b"))
    # one row per symbol per session of its span: missing data stays null, never skipped
    g = (span.join(grid, how="cross").filter(pl.col("date").is_between("_a", "_b"))
         .join(bars, on=["symbol", "date"], how="left").join(ivs, on=["symbol", "date"], how="left")
         .sort("symbol", "date"))
    lag = lambda e, k: e.shift(k).over("symbol")  # noqa: E731
    first_of = lambda n: grid["date"].gather(  # noqa: E731
        (g["_i"] - (n - 1)).clip(0, None)).alias(f"_first{n}")
    g = g.with_columns(first_of(SMA_SHORT), first_of(SMA_LONG), first_of(RV_WINDOW + 1),
                       first_of(IV_WINDOW))
    close, iv = pl.col("close"), pl.col("iv")
    # a non-positive close (a zero print daily_bars stores with a warning) has no log return:
    # null, so rv20 is null over it rather than -inf/NaN, which would refuse the whole day
    prev = lag(close, 1)
    ret = pl.when((close > 0) & (prev > 0)).then((close / prev).log())
    lags = [lag(iv, k) for k in range(IV_WINDOW)]
    dlags = [lag(pl.when(iv.is_not_null()).then(pl.col("date")), k) for k in range(IV_WINDOW)]
    g = g.with_columns(
        sma20=close.rolling_mean(SMA_SHORT, min_samples=SMA_SHORT).over("symbol"),
        sma50=close.rolling_mean(SMA_LONG, min_samples=SMA_LONG).over("symbol"),
        rv20=ret.rolling_std(RV_WINDOW, min_samples=RV_WINDOW, ddof=1).over("symbol") * ANNUALISE,
        iv_sessions=pl.sum_horizontal([x.is_not_null() for x in lags]).cast(pl.Int32),
        _below=pl.sum_horizontal([(x < iv).fill_null(False) for x in lags]),
        _max=pl.max_horizontal(lags), _min=pl.min_horizontal(lags),
        iv_first=pl.min_horizontal(dlags),
    )
    s20, s50 = pl.col("sma20"), pl.col("sma50")
    short = pl.col("iv_sessions") < IV_MIN_HISTORY
    flat = pl.col("_max") == pl.col("_min")
    g = g.with_columns(
        trend=pl.when(s20.is_null() | s50.is_null() | close.is_null()).then(None)
        .when((close > s20) & (s20 > s50)).then(pl.lit("uptrend"))
        .when((close < s20) & (s20 < s50)).then(pl.lit("downtrend")).otherwise(pl.lit("neutral")),
        iv_rank_note=pl.when(iv.is_null()).then(pl.lit("no iv30 for this session"))
        .when(short).then(pl.format("fewer than {} sessions of iv history ({}): 50",
                                    pl.lit(IV_MIN_HISTORY), pl.col("iv_sessions")))
        .when(flat).then(pl.lit("flat history (max == min): 50")),
        iv_rank=pl.when(iv.is_null()).then(None).when(short | flat).then(50.0)
        .otherwise((iv - pl.col("_min")) / (pl.col("_max") - pl.col("_min")) * 100.0),
        iv_percentile=pl.when(iv.is_null()).then(None).when(short | flat).then(50.0)
        .otherwise(100.0 * pl.col("_below") / pl.col("iv_sessions")),
        sma20_first=pl.when(s20.is_not_null()).then(pl.col(f"_first{SMA_SHORT}")),
        sma50_first=pl.when(s50.is_not_null()).then(pl.col(f"_first{SMA_LONG}")),
        rv20_first=pl.when(pl.col("rv20").is_not_null()).then(pl.col(f"_first{RV_WINDOW + 1}")),
        iv_window_start=pl.col(f"_first{IV_WINDOW}"),
    )
    g = g.join(have, on=["symbol", "date"], how="semi").join(vix, on="date", how="left")
    g = g.with_columns(vix_date=pl.when(pl.col("vix_close").is_not_null()).then(pl.col("date")))
    return _out(g.sort("symbol", "date"), "market_regime")
