"""The README's main job, `archive-platform demo`, through the real command-line entry point."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from archive_platform.cli import main
from archive_platform.datasets import DATASETS

#: every registered NYSE dataset (the original six and vix)
NAMES = [d.name for d in DATASETS if d.calendar_name == "nyse"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "instance" / "dagster.yaml").read_text())
    for var in ("ARCHIVE_SOURCE_UW_FLOW", "ARCHIVE_SOURCE_OPTIONS", "ARCHIVE_SOURCE_GEX",
                "ARCHIVE_SOURCE_STOCKS_1M", "ARCHIVE_SOURCE_IV_RANK", "ARCHIVE_SOURCE_TRADES",
                "ARCHIVE_START_DATE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ARCHIVE_SIM_ROOT", str(tmp_path / "sim"))
    monkeypatch.setenv("ARCHIVE_SIM_DUCKDB", str(tmp_path / "sim.duckdb"))
    monkeypatch.setenv("ARCHIVE_SYMBOLS", "SPY,QQQ")
    return tmp_path


def test_demo_archives_through_dagster_and_prints_a_summary(demo_env):
    # as of the Saturday after Thanksgiving week: the last two closed sessions are 11-26 and 11-28
    out = CliRunner().invoke(main, ["demo", "--days", "2", "--as-of", "2025-11-29"])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "Archiving 2 NYSE sessions (2025-11-26 .. 2025-11-28)" in text
    assert "[1/2] 2025-11-26" in text and "[2/2] 2025-11-28" in text
    assert text.count(f"{5 * len(NAMES)} checks passed") == 2  # every dataset x 5 checks
    for t in NAMES:
        assert f"\n{t.rjust(9)}  " in text  # one summary row per type
    assert "Example backtest query" in text and "2025-11-28" in text.split("Example backtest query")[1]
    # the half day's files in the seed layout, and the views file
    assert (demo_env / "sim" / "stocks" / "date=2025-11-28" / "stocks_1m_20251128.parquet").exists()
    assert (demo_env / "sim.duckdb").exists()
    # recorded in the instance, so `dagster dev` shows the partitions as materialized
    instance = dg.DagsterInstance.get()
    for t in NAMES:
        assert instance.get_materialized_partitions(dg.AssetKey(t)) == {"2025-11-26", "2025-11-28"}


def test_demo_refuses_live_sources_before_doing_anything(demo_env, monkeypatch):
    monkeypatch.setenv("ARCHIVE_SOURCE_STOCKS_1M", "polygon")
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    out = CliRunner().invoke(main, ["demo", "--days", "1"])
    assert out.exit_code == 2
    assert "unset ARCHIVE_SOURCE_STOCKS_1M (it is 'polygon')" in out.output
    assert not (demo_env / "sim").exists()
