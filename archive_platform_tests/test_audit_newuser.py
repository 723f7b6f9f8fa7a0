"""A new user's walk through README.md and docs/: what they ran, and where it disagreed."""

from __future__ import annotations

import inspect
import io
import re
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
COVERAGE_DOC = (REPO / "docs" / "coverage.md").read_text()
ANALYSIS_DOC = (REPO / "docs" / "analysis.md").read_text()


def test_demo_progress_lines_stay_one_line_each_off_a_terminal():
    """README: `./run demo` "prints one line per session"; a session's line is ~160 characters
    and rich folded it at the console width in a log."""
    from rich.console import Console

    from archive_platform.cli.common import progress

    buf = io.StringIO()
    out = Console(file=buf, width=80, force_terminal=False, no_color=True)
    line = "[1/5] 2026-11-24 7.3 s  (" + ", ".join(f"dataset_{i} {i * 1000:,}" for i in range(20)) + " rows)"
    assert len(line) > 160
    with progress(1, "sessions", out) as step:
        step(line)
    assert buf.getvalue() == line + "\n"


def _materialization(name: str, metadata: dict):
    import dagster as dg

    meta = {k: SimpleNamespace(value=v) for k, v in metadata.items()}
    m = SimpleNamespace(asset_key=dg.AssetKey(name), metadata=meta)
    return SimpleNamespace(event_specific_data=SimpleNamespace(materialization=m))


def test_demo_summary_counts_datasets_not_the_backtests_asset():
    """The `backtests` asset records metrics and files, no dataset rows: the demo printed
    `backtests 0` on every session line and a `backtests 0 / 0 Bytes` row in its summary."""
    from archive_platform.cli.demo import _session_line

    result = SimpleNamespace(
        get_asset_materialization_events=lambda: [
            _materialization("options", {"dagster/row_count": 10, "dagster/size_bytes": 100,
                                         "compression_ratio": 4.0}),
            _materialization("backtests", {"rows": 354, "sharpe": 0.5}),
        ],
        get_asset_check_evaluations=lambda: [SimpleNamespace(passed=True)],
    )
    totals: dict = {}
    line = _session_line(result, totals)
    assert line == "options 10 rows; 1 checks passed"
    assert set(totals) == {"options"}


def test_coverage_doc_lists_every_column_of_the_ledger():
    from archive_platform.coverage import LEDGER_SCHEMA

    listed = COVERAGE_DOC.split("Columns: ", 1)[1].split("\n\n", 1)[0]
    for name in LEDGER_SCHEMA.names:
        assert f"`{name}`" in listed, f"docs/coverage.md: column {name} of the coverage table is not listed"


def test_coverage_doc_says_the_ledger_holds_the_nyse_datasets_only():
    """After `./run demo` the `coverage` table has no crypto rows: the ledger asset is built over
    the NYSE datasets (defs/__init__.py); the doc said the UTC-day datasets' entries were written
    under the root ARCHIVE_CRYPTO_CAPTURE picks."""
    src = (REPO / "archive_platform" / "defs" / "__init__.py").read_text()
    assert "build_coverage_asset(settings, nyse, parts)" in src
    assert "UTC-day datasets\nfollow `ARCHIVE_CRYPTO_CAPTURE`" not in COVERAGE_DOC
    assert "holds the NYSE datasets\nonly" in COVERAGE_DOC
    assert "one\nrow per NYSE dataset and day" in README


def test_analysis_doc_signatures_name_the_real_parameters():
    import importlib

    candles = importlib.import_module("archive_platform.analysis.candles")  # the package exports a function too
    params = list(inspect.signature(candles.session_ends).parameters)
    assert f"`session_ends({', '.join(params)})`" in ANALYSIS_DOC


def test_readme_warns_that_the_binding_example_instant_must_lie_in_the_archive():
    """README's `datetime(2026, 11, 20, ...)` precedes a fresh demo's sessions: the chain came
    back empty without a word; and the `AT (TIMESTAMP => ...)` example fails on such an archive."""
    assert re.search(r"inside the archived sessions: before the first one the chain is empty", README)
    assert "No snapshot found at timestamp" in README


def test_readme_says_how_long_the_time_grid_demo_takes():
    """`./run demo --days 32 --as-of 2025-12-05` also archives 47 crypto days (about 15 s each):
    a new user waited a quarter of an hour with no estimate in the README."""
    assert "expect about 17 minutes on 2\ncores" in README
    assert "47 UTC days from\n2025-10-22 to 2025-12-07" in README
