"""The README's main job, `archive-platform demo`, through the real command-line entry point."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from archive_platform.cli import main
from archive_platform.datasets import DATASETS
from archive_platform.defs.derived_assets import RECONCILE
from archive_platform.store import ArchiveStore

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
    # every dataset x 5 checks, the derived datasets' reconcile check and the backtests' own
    assert text.count(f"{5 * len(NAMES) + len(RECONCILE) + 1} checks passed") == 2
    summary = text.split("Archive summary")[1].split("Example backtest query")[0]
    store = ArchiveStore(demo_env / "sim", kind="sim")
    for t in NAMES:  # one summary row per dataset: its stored rows over both days, size by humanize
        row = re.search(rf"^\s*{t}\s+([\d,]+)\s+([\d.]+ (?:Bytes|KiB|MiB|GiB))\s+[\d.]+x\s*$", summary, re.M)
        assert row, (t, summary)
        stored = sum(store.read_day(t, d).num_rows for d in (date(2025, 11, 26), date(2025, 11, 28)))
        assert int(row.group(1).replace(",", "")) == stored
    assert "UI's partitions start at 2024-01-02" in text and "ARCHIVE_START_DATE=2025-11-26 ./run dev" in text
    assert "Example backtest query" in text and "2025-11-28" in text.split("Example backtest query")[1]
    # the half day's files in the seed layout, and the views file
    assert (demo_env / "sim" / "stocks" / "date=2025-11-28" / "stocks_1m_20251128.parquet").exists()
    assert (demo_env / "sim.duckdb").exists()
    # recorded in the instance, so `dagster dev` shows the partitions as materialized
    instance = dg.DagsterInstance.get()
    for t in NAMES:
        assert instance.get_materialized_partitions(dg.AssetKey(t)) == {"2025-11-26", "2025-11-28"}
    # the crypto days around them (Wednesday to the Sunday before the next session), with the
    # datasets derived from them
    crypto_days = {"2025-11-26", "2025-11-27", "2025-11-28", "2025-11-29", "2025-11-30"}
    assert "with crypto_candles, orderbook_features, crypto_daily_bars derived from them" in text
    for t in ("crypto_trades", "orderbook_l2", "crypto_daily_bars", "crypto_candles", "orderbook_features"):
        assert instance.get_materialized_partitions(dg.AssetKey(t)) == crypto_days, t
    assert store.read_day("orderbook_features", date(2025, 11, 29)).num_rows == 2 * 86_400


def test_demo_refuses_live_sources_before_doing_anything(demo_env, monkeypatch):
    monkeypatch.setenv("ARCHIVE_SOURCE_STOCKS_1M", "polygon")
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    out = CliRunner().invoke(main, ["demo", "--days", "1"])
    assert out.exit_code == 2
    assert "unset ARCHIVE_SOURCE_STOCKS_1M (it is 'polygon')" in out.output
    assert not (demo_env / "sim").exists()


@pytest.mark.parametrize("args, named, says", [
    (["demo", "--as-of", "garbage"], "--as-of", "'garbage' is not a calendar date as YYYY-MM-DD"),
    (["demo", "--as-of", "2999-01-04"], "--as-of", "2999-01-04 is in the future"),
    (["query", "latest_chain", "--at", "garbage"], "--at", "'garbage' is not an ISO 8601 instant"),
    (["query", "latest_chain", "--at", "2025-11-26T15:30:00"], "--at",
     "'2025-11-26T15:30:00' has no UTC offset; add one, e.g. 2025-11-26T15:30:00-05:00"),
    (["query", "atm_iv_through_day", "--day", "2025-13-40"], "--day",
     "'2025-13-40' is not a calendar date as YYYY-MM-DD"),
    (["query", "atm_iv_through_day", "--day", "2025-11-29"], "--day",
     "2025-11-29 is not an NYSE session (the previous one is 2025-11-28)"),
    (["query", "latest_chain", "--symbol", "../etc"], "--symbol", "'../etc' is not a ticker symbol"),
])
def test_bad_input_is_a_usage_error_not_a_traceback(args, named, says, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHIVE_SIM_ROOT", str(tmp_path / "sim"))
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2, out.output  # click's usage-error exit code
    assert out.exception is None or isinstance(out.exception, SystemExit)
    assert "Traceback" not in out.output
    assert f"Invalid value for '{named}'" in out.output and says in out.output
    assert not (tmp_path / "sim").exists()  # nothing ran


def test_query_accepts_an_instant_with_offset_or_z():
    from archive_platform.cli.common import AwareInstant

    t = AwareInstant()
    want = datetime(2025, 11, 26, 20, 30, tzinfo=timezone.utc)
    offset, zulu = t.convert("2025-11-26T15:30:00-05:00", None, None), t.convert("2025-11-26T20:30:00Z", None, None)
    assert offset == zulu == want  # the same instant, not merely equal to each other
    assert offset.utcoffset() == timedelta(hours=-5) and zulu.utcoffset() == timedelta(0)


def test_progress_bar_on_a_terminal_and_plain_lines_off_it():
    import io

    from rich.console import Console

    from archive_platform.cli.common import progress

    plain = io.StringIO()
    with progress(2, "sessions", Console(file=plain, force_terminal=False, width=120)) as step:
        step("[1/2] 2025-11-26 done")
        step("[2/2] 2025-11-28 done")
    assert plain.getvalue().splitlines() == ["[1/2] 2025-11-26 done", "[2/2] 2025-11-28 done"]
    tty = io.StringIO()
    with progress(2, "sessions", Console(file=tty, force_terminal=True, width=120)) as step:
        step("[1/2] 2025-11-26 done")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", tty.getvalue())  # drop the terminal codes
    assert "[1/2] 2025-11-26 done" in shown and "sessions" in shown and "1/2" in shown  # the bar's M/N
