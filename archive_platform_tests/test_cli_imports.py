"""The CLI imports a subcommand only when it runs: help is instant and `query` never loads Dagster.

Each case runs the real entry point in a fresh interpreter and inspects `sys.modules` after it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = r"""
import json, sys
from archive_platform.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
except Exception as exc:  # a usage error still counts: we only inspect imports
    print("error:", exc, file=sys.stderr)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("dagster", "duckdb", "polars"))))
"""


def _imported(*args: str, cwd=None) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         timeout=120, cwd=cwd, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["query", "--help"],
                                  ["capture", "--help"], ["backtest", "--help"]])
def test_help_imports_no_dagster(args):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         timeout=120, check=True)
    *help_lines, last = out.stdout.strip().splitlines()
    mods = set(json.loads(last))
    assert not any(m.startswith("dagster") for m in mods), sorted(mods)[:5]
    # the help really printed (the probe swallows exceptions: a crash would also import no Dagster)
    assert "error:" not in out.stderr, out.stderr
    help_text = "\n".join(help_lines)
    command = " ".join(a for a in args if a != "--help")
    usage = f"Usage: -c {command} ".replace("  ", " ")  # the probe runs as `python -c`
    assert help_text.startswith(usage), help_text[:300]
    assert "Show this message and exit." in help_text


def test_group_help_imports_no_subcommand_module():
    out = subprocess.run([sys.executable, "-c", PROBE.replace(
        'if m.split(".")[0] in ("dagster", "duckdb", "polars")', 'if m.startswith("archive_platform.")'), "--help"],
        capture_output=True, text=True, timeout=120, check=True)
    mods = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert mods <= {"archive_platform.cli"}, mods
    assert "demo" in out.stdout and "query" in out.stdout


def test_query_runs_without_dagster(tmp_path):
    """A real query through archive_platform.connect(): rows come back and Dagster was never imported."""
    from datetime import date

    from archive_platform.calendar import snapshot_times
    from archive_platform.sim.market import SimulatedMarket
    from archive_platform.store import ArchiveStore

    day = date(2025, 11, 26)
    store = ArchiveStore(tmp_path / "archive", kind="sim")
    market = SimulatedMarket()
    store.write_day("options", day, market.fetch_options(day, ["SPY"], snapshot_times(day)))
    store.close()
    probe = PROBE.replace('print(json.dumps', 'sys.stdout.flush(); print(json.dumps')
    out = subprocess.run([sys.executable, "-c", probe, "query", "latest_chain", "--symbol", "SPY",
                          "--at", "2025-11-26T20:00:00+00:00", "--root", str(store.root)],
                         capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.strip().splitlines()
    mods = set(json.loads(lines[-1]))
    assert not any(m.startswith("dagster") for m in mods)
    assert "duckdb" in mods
    body = [line for line in lines[:-1] if "SPY" in line or line.strip()[:1].isdigit()]
    assert len(body) > 10, out.stdout[:2000]


def test_commands_that_load_the_definitions_print_no_dagster_beta_warnings(tmp_path):
    """Bug: `./run demo` printed a BetaWarning/PreviewWarning per asset while the definitions loaded."""
    import os
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(repo / "deploy" / "instance" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "PYTHONWARNINGS"))}
    env.update(DAGSTER_HOME=str(home), ARCHIVE_SIM_ROOT=str(tmp_path / "sim"),
               ARCHIVE_SIM_DUCKDB=str(tmp_path / "sim.duckdb"), ARCHIVE_ROOT=str(tmp_path / "live"),
               ARCHIVE_DUCKDB=str(tmp_path / "live.duckdb"))
    out = subprocess.run([sys.executable, "-c", "from archive_platform.cli import main; main()", "views"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BetaWarning" not in out.stderr and "PreviewWarning" not in out.stderr, out.stderr[:1500]
