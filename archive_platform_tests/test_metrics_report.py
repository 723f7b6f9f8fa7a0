"""How backtest metrics are printed (``backtest`` CLI and the end of ``demo``): a value that is
not a number says why, and an infinite profit factor survives the trip through the instance
(whose metadata table stores non-finite values as null)."""

from __future__ import annotations

import math
from datetime import date

import dagster as dg

from archive_platform.analysis.cli import format_metrics
from archive_platform.analysis.metrics import metrics
from archive_platform.cli.demo_report import backtest_metrics
from archive_platform.defs.derived_assets import _finite


def _line(text: str, key: str) -> str:
    return next(line for line in text.splitlines() if line.split()[0] == key)


def test_a_profit_factor_without_losing_trades_reads_as_infinite_not_as_a_fault():
    m = metrics([0.0, 0.1, 0.05], periods_per_year=252, trade_pnl=[0.1, 0.1])
    assert m["profit_factor"] == math.inf
    line = _line(format_metrics(m), "profit_factor")
    assert line.split()[1:] == ["inf", "(no", "losing", "trade)"]


def test_without_trades_the_per_trade_metrics_say_so():
    m = metrics([0.0, 0.0, 0.0], periods_per_year=252, trade_pnl=[])
    out = format_metrics(m)
    assert _line(out, "trades").split()[1] == "0.0000"
    for key in ("win_rate", "profit_factor"):
        assert _line(out, key).split()[1:] == ["n/a", "(no", "trades)"]
    assert "nan" not in out


def test_an_infinite_profit_factor_stored_in_the_instance_prints_as_infinite():
    m = metrics([0.0, 0.1, 0.05], periods_per_year=252, trade_pnl=[0.1, 0.2])
    cols = [dg.TableColumn(c, t) for c, t in
            (("backtest", "string"), ("symbol", "string"), ("metric", "string"), ("value", "float"))]
    records = [dg.TableRecord({"backtest": "b", "symbol": "SPY", "metric": k, "value": _finite(v)})
               for k, v in m.items()]
    assert {r.data["metric"]: r.data["value"] for r in records}["profit_factor"] is None
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key="backtests", partition="2025-11-28",
            metadata={"metrics": dg.MetadataValue.table(records, schema=dg.TableSchema(columns=cols))}))
        _, per = backtest_metrics(instance, date(2025, 11, 28))
    assert per["b"]["profit_factor"] == math.inf
    assert per["b"]["trades"] == 2
    assert "inf (no losing trade)" in format_metrics(per["b"])
