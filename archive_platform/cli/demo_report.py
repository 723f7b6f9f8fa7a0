"""The end of ``archive-platform demo``: the metrics of the backtest run after the last session.

The ``backtests`` asset runs with every session's datasets (``archive_all``); this reads what it
recorded for the demo's last session from the Dagster instance (the same table the UI shows)
and prints it, so the numbers on screen are the ones stored.
"""

from __future__ import annotations

import math
from datetime import date

import click


def backtest_metrics(instance, day: date) -> tuple[dict, dict[str, dict[str, float]]]:
    """(metadata, {backtest: {metric: value}}) of the ``backtests`` materialization of ``day``."""
    import dagster as dg

    recs = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("backtests"), asset_partitions=[day.isoformat()]),
        limit=1,
    ).records
    if not recs:
        return {}, {}
    meta = recs[0].asset_materialization.metadata
    out: dict[str, dict[str, float]] = {}
    for r in meta["metrics"].value.records:
        v = r.data["value"]
        out.setdefault(r.data["backtest"], {})[r.data["metric"]] = float("nan") if v is None else v
    for m in out.values():
        # the table stores non-finite values as null (JSON has no inf); a null profit factor
        # with winning trades can only be +inf: some trades won and none lost
        if math.isnan(m.get("profit_factor", 0.0)) and m.get("win_rate", 0.0) > 0:
            m["profit_factor"] = math.inf
    return {k: v.value for k, v in meta.items()}, out


def print_backtest_report(instance, day: date) -> None:
    """Print the first configured backtest's metrics as of ``day`` (or say why there are none)."""
    from archive_platform.analysis.cli import format_metrics
    from archive_platform.analysis.daily_backtests import BACKTESTS

    meta, per = backtest_metrics(instance, day)
    if not per:
        click.echo(f"\nNo backtest was recorded for {day} (is `candles` registered?).")
        return
    cfg = next((c for c in BACKTESTS if c.name in per), None)
    name = cfg.name if cfg else next(iter(per))
    click.echo(f"\nBacktest {name} as of {day}: {cfg.describe() if cfg else ''}")
    click.echo(f"  candles: {meta.get('history', '?')}")
    click.echo(format_metrics(per[name]))
    click.echo(f"  equity curve: {meta.get('equity_path', '?')}")
