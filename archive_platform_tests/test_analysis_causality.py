"""No look-ahead in the stored order-book features: VPIN at t must not depend on trades after t
once the previous day is stored (its bucket size AND its bulk-volume classification scale come
from that day)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from archive_platform.analysis import crypto_days as cd
from archive_platform.analysis.features import orderbook_features, vpin
from archive_platform.crypto.sim_venue import simulate, window_tables

D = date(2026, 3, 2)
US = 1_000_000


class DictStore:
    """The read side of the ``Storage`` protocol over in-memory tables per (dataset, day)."""

    def __init__(self, tables: dict[tuple[str, date], pa.Table]):
        self.tables = tables
        self.kind = "sim"

    def read_day(self, dataset, day, columns=None) -> pa.Table:
        t = self.tables.get((dataset, day))
        if t is None:
            t = next(v for (name, _), v in self.tables.items() if name == dataset).slice(0, 0)
        return t.select(columns) if columns else t


def _window(start: datetime, hours: float, seed: int):
    lo = int(start.timestamp()) * US
    return window_tables(simulate("BTC", lo, lo + int(hours * 3600) * US, seed=seed))


def _stores():
    """Two archives equal but for the trades of D in (01:30:00, 01:30:01], 3 % higher in the second."""
    prev_trades, prev_books = _window(datetime(2026, 3, 1, 22, tzinfo=timezone.utc), 2, seed=1)
    trades, books = _window(datetime(2026, 3, 2, tzinfo=timezone.utc), 2, seed=2)
    base = {("orderbook_l2", D - timedelta(days=1)): prev_books, ("crypto_trades", D - timedelta(days=1)): prev_trades,
            ("orderbook_l2", D): books, ("crypto_trades", D): trades}
    df = pl.from_arrow(trades)
    late = datetime(2026, 3, 2, 1, 30, tzinfo=timezone.utc)
    hit = (pl.col("event_time") > late) & (pl.col("event_time") <= late + timedelta(seconds=1))
    assert df.filter(hit).height > 0
    moved = df.with_columns(pl.when(hit).then(pl.col("price") * 1.03).otherwise(pl.col("price")).alias("price"))
    return DictStore(base), DictStore({**base, ("crypto_trades", D): moved.to_arrow().cast(trades.schema)}), late


def test_stored_vpin_before_t_ignores_trades_after_t():
    a, b, late = _stores()
    fa = cd.day_features(*cd.feature_inputs(a, D)[:2], D, cd.feature_inputs(a, D)[2])
    fb = cd.day_features(*cd.feature_inputs(b, D)[:2], D, cd.feature_inputs(b, D)[2])
    before = pl.col("timestamp") <= late  # the grid second 01:30:00 holds (01:29:59, 01:30:00]
    va, vb = fa.filter(before)["vpin"], fb.filter(before)["vpin"]
    assert va.drop_nulls().len() > 3000  # VPIN is defined over most of the first 90 minutes
    # the trades of 01:30:01 used to change sigma, hence every VPIN value of the day before them
    x, y = va.to_numpy(), vb.to_numpy()
    differ = np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y))))
    assert differ.size == 0, f"{differ.size} VPIN values before t differ, first at {differ[:1]}: {x[differ[:1]]} != {y[differ[:1]]}"
    # after it, the feature does see the new price
    assert not np.array_equal(fa.filter(~before)["vpin"].to_numpy(), fb.filter(~before)["vpin"].to_numpy(), equal_nan=True)


def test_the_previous_days_volume_is_exact_whatever_the_summation_order():
    """The bucket size came from a polars group_by sum, whose float order depends on its threads:
    the same stored day gave sizes differing in the 14th digit between runs (and so every VPIN
    value of the next day, which made the test above fail one run in two)."""
    import math

    a, _, _ = _stores()
    prev_trades = a.read_day("crypto_trades", D - timedelta(days=1))
    exact = math.fsum(prev_trades["size"].to_pylist())
    for _ in range(5):
        volume = cd.feature_inputs(a, D)[2]
        assert volume["prev_volume"].to_list() == [exact]


def test_the_previous_days_sigma_scales_the_bulk_classification():
    from archive_platform.analysis.features import trade_bar_stats

    a, _, _ = _stores()
    books, trades, prev = cd.feature_inputs(a, D)
    prev_trades = pl.from_arrow(a.read_day("crypto_trades", D - timedelta(days=1)))
    # an independent sigma: 1 s bars (t-1 s, t], last price, change from the previous bar
    t = prev_trades["event_time"].dt.epoch("us").to_numpy()
    sec = (t - 1) // US + 1
    last = {s: p for s, p in zip(sec, prev_trades["price"].to_numpy())}  # sorted: the last one wins
    px = np.array([last[s] for s in sorted(last)])
    sigma = float(np.std(np.concatenate([[0.0], np.diff(px)]), ddof=1))
    assert prev["prev_dp_sigma"].to_list() == [pytest.approx(sigma)]
    assert trade_bar_stats(prev_trades)["volume"].to_list() == [pytest.approx(prev_trades["size"].sum())]
    # day_features equals orderbook_features given the previous day's bucket and sigma
    got = cd.day_features(books, trades, D, prev).filter(pl.col("mid").is_not_null())
    direct = orderbook_features(books, trades, vpin_bucket_volume=prev_trades["size"].sum() / cd.VPIN_DIVISOR,
                                vpin_sigma=sigma)
    direct = direct.filter(pl.col("timestamp") >= datetime(2026, 3, 2, tzinfo=timezone.utc))
    assert got["vpin"].to_list() == pytest.approx(direct["vpin"].to_list(), nan_ok=True)
    # vpin() with an explicit sigma: Phi(dP / sigma) per bar
    dp = np.array([1.0, -1.0, 0.0, 2.0])
    _, v = vpin(np.arange(4), np.ones(4), dp, 1.0, n_buckets=1, sigma=2.0)
    from statistics import NormalDist
    assert v == pytest.approx([abs(2 * NormalDist().cdf(x / 2.0) - 1) for x in dp])
