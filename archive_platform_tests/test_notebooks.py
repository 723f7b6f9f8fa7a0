"""docs/notebooks/backtest_questions.ipynb runs top to bottom against a freshly archived sim day
and its answers agree with the stored files."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import defs_for, run_job

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "backtest_questions.ipynb"
DAY = date(2025, 11, 26)


@pytest.mark.slow
def test_backtest_notebook_answers_from_the_archive(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY")
    with dg.instance_for_test() as instance:
        assert run_job(defs, "archive_all", instance, partition_key=DAY.isoformat()).success
        assert run_job(defs, "refresh_views", instance).success
    monkeypatch.setenv("ARCHIVE_SIM_DUCKDB", str(tmp_path / "sim.duckdb"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot was not drawn"
    answers = json.loads(nb.cells[-1].outputs[-1].text.strip().splitlines()[-1])
    assert answers["days"] == [DAY.isoformat()]

    store = ArchiveStore(tmp_path / "sim", kind="sim")
    # 1. one straddle, bought and marked on the day; P&L is exit minus entry
    (s,) = answers["straddle"]
    assert s["date"] == DAY.isoformat() and s["entry_cost"] > 0
    assert s["pnl"] == pytest.approx(s["exit_value"] - s["entry_cost"], abs=0.011)
    # 2. realized move equals the stored bars' |close/open - 1|
    bars = store.read_day("stocks_1m", DAY).sort_by("timestamp")
    spy = bars.filter(pc.equal(bars["symbol"], "SPY"))
    want = abs(spy["close"][-1].as_py() / spy["open"][0].as_py() - 1)
    (m,) = answers["moves"]
    assert m["realized_move"] == pytest.approx(want, abs=1e-5)
    assert m["covered"] == (m["realized_move"] <= m["implied_move"] + 1e-5)
    # 3. every counted alert is a stored SPY alert at least 30 minutes before the last bar
    flow = store.read_day("uw_flow", DAY)
    last_bar = spy["timestamp"][-1].as_py()
    eligible = sum(1 for r in flow.to_pylist() if r["symbol"] == "SPY"
                   and (last_bar - r["timestamp"]).total_seconds() >= 29 * 60)
    assert sum(f["alerts"] for f in answers["flow"]) == eligible > 0
    # the plot's points: one per snapshot of the day (27 on a full session)
    assert answers["iv_points"] == 27
