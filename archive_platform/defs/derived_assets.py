"""The Dagster side of the derived datasets: checks against their inputs, and the daily backtests.

The derived datasets (``daily_bars``, ``daily_iv``, ``market_regime``, ``candles``) are ordinary
declarations, so ``build_archive_asset`` already makes each a partitioned asset downstream of
what it reads, with the five checks every dataset has (their hard rules are the pure functions'
invariants). This module adds, per derived dataset, one partitioned check ``matches_inputs``
that recomputes the partition from its stored inputs another way (``regime_checks``,
``analysis.equity_candles``), and the ``backtests`` asset: after each session the configured
backtests (``analysis.daily_backtests.BACKTESTS``) over the stored candles, their metrics as a
table, the equity curve as a table, as a rendered image (a PNG, shown inline) and as a text plot,
and per-partition floats (``equity_final``, ``sharpe``...) which the UI plots across partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
# not re-exported at the top level in 1.13; an evaluation names the materialization it checks
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from archive_platform.config import SourceSelection
from archive_platform.datasets import Dataset
from archive_platform.defs.assets import backfill_chunk
from archive_platform.defs.resources import ArchiveResource, SourcesResource

BACKTESTS_KEY = dg.AssetKey("backtests")
CHECK = "matches_inputs"


def _daily_bars(stores, day):
    from archive_platform.regime_checks import reconcile_daily_bars

    return reconcile_daily_bars(stores("daily_bars").read_day("daily_bars", day),
                                stores("stocks_1m").read_day("stocks_1m", day), day)


def _daily_iv(stores, day):
    from archive_platform.regime_checks import reconcile_daily_iv

    return reconcile_daily_iv(stores("daily_iv").read_day("daily_iv", day),
                              stores("options").read_day("options", day), day)


def _market_regime(stores, day):
    from archive_platform.regime_checks import reconcile_market_regime
    from archive_platform.regime_derive import history_start, with_date

    start = history_start(day)
    bars = with_date(stores("daily_bars").read_range("daily_bars", start, day))
    ivs = with_date(stores("daily_iv").read_range("daily_iv", start, day))
    return reconcile_market_regime(stores("market_regime").read_day("market_regime", day), bars,
                                   ivs, stores("vix").read_day("vix", day), day)


def _candles(stores, day):
    from archive_platform.analysis.equity_candles import reconcile_candles

    return reconcile_candles(stores("candles").read_day("candles", day),
                             stores("stocks_1m").read_day("stocks_1m", day), day)


#: dataset -> (what the check compares, reconcile(stores, day) -> (problems, metadata))
RECONCILE: dict[str, tuple[str, Callable]] = {
    "daily_bars": ("OHLC, volume (= the sum of the session's minute volumes), trade count and bar "
                   "count per symbol equal those of the stored stocks_1m.", _daily_bars),
    "daily_iv": ("Snapshot count and the closing front ATM IV per symbol equal those computed from "
                 "the stored options.", _daily_iv),
    "market_regime": ("Close, IV, VIX close, SMA20, IV rank and IV percentile (50 under 30 sessions "
                      "of history or on a flat history) equal a plain recomputation from the stored "
                      "daily_bars, daily_iv and vix of the 60-session window.", _market_regime),
    "candles": ("No duplicate, no gap, OHLC order, empty candles carry the previous close, and each "
                "candle's volume and trade count equal those of the one-minute bars matched to it "
                "by time.", _candles),
}


def _meta(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else str(v)


def _target(context, key: dg.AssetKey, partition: str):
    """The materialization of ``partition`` an evaluation checks (None before the first)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    if not records:
        return None
    r = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=r.event_log_entry.run_id, storage_id=r.storage_id, timestamp=r.timestamp)


def build_reconcile_check(ds: Dataset, partitions_def, selection: SourceSelection,
                          blocking: bool) -> dg.AssetChecksDefinition:
    description, reconcile = RECONCILE[ds.name]
    key = dg.AssetKey(ds.name)

    @dg.asset_check(asset=key, name=CHECK, description=description,
                    partitions_def=partitions_def, blocking=blocking,
                    required_resource_keys={"archive"})
    def _check(context):
        """One evaluation per partition of the run, each naming its day: a backfill chunk runs
        this check over a range of days, and in Dagster 1.13 an ``AssetCheckResult`` of a range
        run has no partition (the days' results would stay planned forever)."""
        archive: ArchiveResource = context.resources.archive

        def stores(name: str):
            return archive.store(selection.store_kind(name))

        for k in context.partition_keys:
            problems, meta = reconcile(stores, date.fromisoformat(k))
            meta = dict(meta)
            if problems:
                meta["problems"] = list(problems)[:20]
            meta["partition"] = k
            yield dg.AssetCheckEvaluation(
                asset_key=key, check_name=CHECK, passed=not problems,
                severity=dg.AssetCheckSeverity.ERROR, blocking=blocking, partition=k,
                description=("agrees with its inputs" if not problems
                             else f"differs from its inputs on {k}: " + "; ".join(problems))[:1000],
                metadata={m: _meta(v) for m, v in meta.items()},
                target_materialization_data=_target(context, key, k),
            )
        yield dg.Output(None)

    return _check


def build_backtests_asset(partitions_def, selection: SourceSelection) -> dg.AssetsDefinition:
    from archive_platform.analysis.daily_backtests import BACKTESTS

    listed = "\n".join(f"- `{c.name}`: {c.describe()}" for c in BACKTESTS)

    @dg.asset(
        key=BACKTESTS_KEY, partitions_def=partitions_def, group_name="analysis", kinds={"python"},
        deps=[dg.AssetKey("candles")], required_resource_keys={"archive", "sources"},
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=backfill_chunk(selection)),
        description="The configured backtests, run after each session over the stored candles "
        "ending on it (fills at the next candle's open, no look-ahead):\n" + listed,
        check_specs=[dg.AssetCheckSpec("consistent", asset=BACKTESTS_KEY, partitions_def=partitions_def, description=(
            "No look-ahead (the position in bar t is the signal of bar t-1), final equity = "
            "prod(1 + r), max drawdown and trade count agree with the equity curve."))],
    )
    def backtests(context):
        """Each day of the run backtested as of itself (a backfill chunk too): its own outputs,
        its own metadata and its own ``consistent`` result, as an EOD run of that day gives."""
        archive: ArchiveResource = context.resources.archive
        sources: SourcesResource = context.resources.sources
        kind = selection.store_kind("candles")
        store = archive.store(kind)
        results = {}
        for k in context.partition_keys:
            day = date.fromisoformat(k)
            runs = run_backtests(store, archive.root(kind) / "_backtests", day,
                                 sources.symbol_list(), BACKTESTS)
            for name, bt, _, _, _ in runs:
                context.log.info(f"{name} {bt.symbol} as of {day}: final equity "
                                 f"{bt.result.metrics['final_equity']:.4f}")
            context.add_asset_metadata(backtest_metadata(runs, day), partition_key=k)
            results[k] = consistency_result(runs)
        yield dg.MaterializeResult()
        check_key = dg.AssetCheckKey(BACKTESTS_KEY, "consistent")
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key))
        for k, r in results.items():
            yield dg.AssetCheckEvaluation(
                asset_key=BACKTESTS_KEY, check_name="consistent", passed=r.passed,
                severity=dg.AssetCheckSeverity.ERROR, description=r.description, metadata=r.metadata,
                partition=k, target_materialization_data=_target(context, BACKTESTS_KEY, k))

    return backtests


def run_backtests(store, out_root, day: date, symbols: Sequence[str], configs):
    """Run and write each backtest: equity.parquet, trades.parquet and equity.png (the curve's
    image, ``png_path``) in its folder."""
    from archive_platform.analysis.daily_backtests import consistency, run_configured, write_outputs
    from archive_platform.analysis.plot import equity_png

    out = []
    for cfg in configs:
        bt = run_configured(store, day, cfg, symbols)
        equity, trades = write_outputs(bt, out_root)
        png_path(equity).write_bytes(equity_png(bt.result.equity, _title(cfg.name, bt)))
        out.append((cfg.name, bt, equity, trades, consistency(bt.result)))
    return out


def png_path(equity_path):
    """The image written next to a backtest's equity.parquet."""
    return equity_path.with_name("equity.png")


def _title(name: str, bt) -> str:
    m = bt.result.metrics
    return (f"{name}: {bt.symbol} {bt.config.timeframe} candles, {bt.first_day} .. {bt.day}\n"
            f"total return {m['total_return']:+.2%}, max drawdown {m['max_drawdown']:.2%}, "
            f"{int(m['trades'])} trades")


def backtest_metadata(runs, day: date) -> dict:
    """Metrics (a table), the first backtest's curve (a table, an image and a text plot) and floats."""
    from archive_platform.analysis.daily_backtests import curve_points, sparkline
    from archive_platform.analysis.plot import markdown_image

    cols = [dg.TableColumn("backtest", "string"), dg.TableColumn("symbol", "string"),
            dg.TableColumn("metric", "string"), dg.TableColumn("value", "float")]
    records = [dg.TableRecord({"backtest": name, "symbol": bt.symbol, "metric": k, "value": _finite(v)})
               for name, bt, _, _, _ in runs for k, v in bt.result.metrics.items()]
    name, bt, equity, trades, _ = runs[0]
    pts = curve_points(bt.result.equity)
    curve = [dg.TableRecord({"timestamp": t.isoformat(), "equity": e, "drawdown": d, "position": p})
             for t, e, d, p in pts.iter_rows()]
    m = bt.result.metrics
    png = png_path(equity)
    return {
        "as_of": day.isoformat(),
        "rows": int(m["bars"]),  # equity-curve rows written (one per candle)
        "history": f"{bt.first_day}..{day} ({bt.sessions} sessions, {int(m['bars'])} candles)",
        "metrics": dg.MetadataValue.table(records, schema=dg.TableSchema(columns=cols)),
        "equity_curve": dg.MetadataValue.table(curve, schema=dg.TableSchema(columns=[
            dg.TableColumn("timestamp", "string"), dg.TableColumn("equity", "float"),
            dg.TableColumn("drawdown", "float"), dg.TableColumn("position", "float")])),
        "equity_plot": dg.MetadataValue.md(
            f"`{sparkline(bt.result.equity['equity'].to_numpy())}`\n\n{name} equity "
            f"{bt.result.equity['equity'].min():.4f} .. {bt.result.equity['equity'].max():.4f}"),
        # the UI renders a base64 data-URI image inside Markdown metadata
        "equity_chart": dg.MetadataValue.md(markdown_image(png.read_bytes(), f"{name} equity curve")),
        "equity_png": dg.MetadataValue.path(str(png)),
        "equity_final": float(m["final_equity"]), "total_return": float(m["total_return"]),
        "sharpe": _finite(m["sharpe"]), "max_drawdown": float(m["max_drawdown"]),
        "trades": int(m["trades"]),
        "equity_path": dg.MetadataValue.path(str(equity)),
        "trades_path": dg.MetadataValue.path(str(trades)),
    }


def _finite(x: float) -> float | None:
    return float(x) if x == x and abs(x) != float("inf") else None


def consistency_result(runs) -> dg.AssetCheckResult:
    problems = [f"{name}: {p}" for name, _, _, _, ps in runs for p in ps]
    return dg.AssetCheckResult(
        check_name="consistent", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        description="metrics agree with the equity curve" if not problems else "; ".join(problems),
        metadata={"backtests": len(runs), "problems": dg.MetadataValue.json(problems)},
    )


@dataclass(frozen=True)
class DerivedExtras:
    assets: list
    checks: list
    keys: list[dg.AssetKey]  # assets to run with each session's datasets (archive_all)


def build_derived_extras(partitions_def, selection: SourceSelection,
                         datasets: Sequence[Dataset]) -> DerivedExtras:
    """The reconcile checks of the registered derived datasets and the backtests asset (when
    ``candles`` is registered)."""
    names = {d.name for d in datasets}
    checks = []
    for d in datasets:
        if d.name in RECONCILE:
            feeds = any(d.name in o.derived_from for o in datasets) or (d.name == "candles")
            checks.append(build_reconcile_check(d, partitions_def, selection, blocking=feeds))
    assets = [build_backtests_asset(partitions_def, selection)] if "candles" in names else []
    return DerivedExtras(assets, checks, [BACKTESTS_KEY] if assets else [])
