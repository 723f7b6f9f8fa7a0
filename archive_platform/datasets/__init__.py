"""The dataset registry: one module per dataset, listed once here.

Adding a dataset = a module in this package exporting ``DATASET`` + its name in ``MODULES``
(see docs/adding-a-dataset.md). Order is the order assets, views and docs list them.
"""

from __future__ import annotations

import importlib

from archive_platform.datasets.base import Dataset, Rule

MODULES = ("uw_flow", "options", "gex", "stocks_1m", "iv_rank", "trades", "vix",
           "daily_bars", "daily_iv", "market_regime", "candles",
           "capture_gaps", "crypto_trades", "orderbook_l2",
           "crypto_daily_bars", "crypto_candles", "orderbook_features")

DATASETS: tuple[Dataset, ...] = tuple(
    importlib.import_module(f"archive_platform.datasets.{m}").DATASET for m in MODULES
)
BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}


class UnknownDataset(ValueError):
    """A dataset name that is not registered."""


def get(name: str | Dataset) -> Dataset:
    """The registered dataset named ``name`` (a ``Dataset`` passes through)."""
    if isinstance(name, Dataset):
        return name
    try:
        return BY_NAME[str(name)]
    except KeyError:
        raise UnknownDataset(
            f"unknown archive type {name!r}; expected one of: {', '.join(BY_NAME)}"
        ) from None


__all__ = ["BY_NAME", "DATASETS", "MODULES", "Dataset", "Rule", "UnknownDataset", "get"]
