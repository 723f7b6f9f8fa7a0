"""Audit of the README and docs/*.md against the CLI, followed literally by a new user: the
commands' failures are one clear line with the right exit code, their hints fit the archive
asked for, and every setting ``Settings.from_env`` reads is documented with its default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from archive_platform.cli import main
from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import FULL_DAY, make_table

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))
CLI = str(Path(sys.executable).parent / "archive-platform")


def _archive(root: Path) -> Path:
    store = ArchiveStore(root, kind="sim")
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 6))
    store.close()
    return root


@pytest.mark.slow
def test_sql_as_of_before_the_first_write_is_one_line_and_leaves_no_temp_folder(tmp_path):
    """`sql --as-of` with an instant the archive does not hold (README "Time travel": "refused
    with a message saying so") was the DuckDB CLI's raw error, exit 1, and its init folder
    was left in the temp folder (the script failed before its cleanup line)."""
    root = _archive(tmp_path / "sim")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    out = subprocess.run([CLI, "sql", "--root", str(root), "--as-of", "2001-01-02T00:00:00Z",
                          "-c", "SELECT count(*) FROM gex"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "no snapshot at or before 2001-01-02T00:00:00+00:00" in out.stderr
    assert "before its first write" in out.stderr and "--as-of" in out.stderr
    assert "Invalid Input Error" not in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""
    assert not list(scratch.glob("archive-sql-*"))
    # an instant the archive does hold still travels (and sees the day written before it)
    now = datetime.now(timezone.utc).isoformat()
    ok = subprocess.run([CLI, "sql", "--root", str(root), "--as-of", now, "-c",
                         "SELECT count(*) AS n FROM gex"],
                        capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"│\s+6\s+│", ok.stdout), ok.stdout
    assert not list(scratch.glob("archive-sql-*"))


def test_query_live_on_an_empty_live_archive_does_not_send_the_user_to_the_demo(tmp_path):
    """`./run demo` writes the simulated archive only: "run `./run demo` first" is no remedy for
    `query --live` on a live root with nothing in it."""
    empty = tmp_path / "live"
    empty.mkdir()
    out = CliRunner().invoke(main, ["query", "latest_chain", "--live", "--root", str(empty)])
    assert out.exit_code == 2, out.output
    assert f"no lake catalog at {empty}" in out.output
    assert "./run demo` first" not in out.output
    assert "drop --live" in out.output
    # the simulated archive keeps its hint
    sim = CliRunner().invoke(main, ["query", "latest_chain", "--root", str(empty)])
    assert sim.exit_code == 2 and "run `./run demo` first" in sim.output


@pytest.mark.slow
def test_migrate_does_not_warn_about_the_coverage_ledger(tmp_path):
    """Every archive the demo writes has `coverage/` (the ledger, plain files by design):
    `migrate --sim` on it warned "coverage/ is not a dataset of this version: not migrated"."""
    from archive_platform.coverage import LEDGER_SCHEMA

    root = _archive(tmp_path / "sim")
    folder = root / "coverage" / f"date={FULL_DAY.isoformat()}"
    folder.mkdir(parents=True)
    row = {f.name: None for f in LEDGER_SCHEMA}
    row.update(dataset="gex", day=FULL_DAY, state="complete", reconcilable=False, rows=6, bytes=1,
               files=1, fingerprint="f")
    ledger = folder / f"coverage_{FULL_DAY:%Y%m%d}.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=LEDGER_SCHEMA), ledger)
    (root / "junk").mkdir()
    before = ledger.read_bytes()
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert "coverage/" not in out.stderr
    assert "warning: junk/ is not a dataset of this version: not migrated" in out.stderr
    assert "0 partition(s) migrated, 1 already done" in out.stdout
    assert ledger.read_bytes() == before


def test_group_help_describes_backtest_as_the_command_does():
    """The group's one-line help said "on archived candles"; the command backtests crypto data
    (candles, or 1 s order-book features for ob_imbalance) and saves its curve and trades."""
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    line = next(x for x in out.output.splitlines() if x.strip().startswith("backtest"))
    assert "crypto" in line, line


def test_every_setting_read_by_settings_is_documented_with_its_default(tmp_path):
    """README: "All settings are environment variables read once ... by settings.py". Each
    variable settings.py names is in the README or docs, and the README's defaults are the
    code's."""
    from archive_platform import settings as mod

    source = Path(mod.__file__).read_text()
    names = set(re.findall(r'"(ARCHIVE_[A-Z0-9_]*[A-Z0-9])"', source)) | set(mod.PATHS)
    assert {"ARCHIVE_SIM_SEED", "ARCHIVE_SNAPSHOT_MINUTES", "ARCHIVE_START_DATE"} <= names
    missing = sorted(n for n in names if f"`{n}`" not in DOCS)
    assert not missing, f"read by archive_platform/settings.py, documented nowhere: {missing}"
    env = {"ARCHIVE_ROOT": str(tmp_path / "live"), "ARCHIVE_SIM_ROOT": str(tmp_path / "sim")}
    s = mod.Settings.from_env(env)

    def readme_default(var: str) -> str:
        m = re.search(rf"^\| `{var}` \| ([^|]+) \|", README, flags=re.M)
        assert m, f"README has no settings row for {var}"
        return m.group(1).strip().strip("`")

    assert readme_default("ARCHIVE_START_DATE") == s.start.isoformat()
    assert readme_default("ARCHIVE_SNAPSHOT_MINUTES") == str(s.snapshot_minutes)
    assert readme_default("ARCHIVE_IV_RANK_TIMES") == ",".join(t.strftime("%H:%M") for t in s.iv_rank_times)
    assert readme_default("ARCHIVE_RECOVERY_LOOKBACK") == str(s.recovery_lookback)
    assert readme_default("ARCHIVE_SIM_SEED") == str(s.sim_seed)
    allowed = re.search(r"^\| `ARCHIVE_SNAPSHOT_MINUTES` \|[^|]+\| [^|]*?([\d, or]+)\(", README, flags=re.M)
    assert allowed and tuple(int(x) for x in re.findall(r"\d+", allowed.group(1))) == mod.ALLOWED_SNAPSHOT_MINUTES


def test_coverage_doc_states_the_instance_start_timeout():
    """docs/coverage.md gave Dagster's 180 s as the start timeout; the instance sets its own."""
    import yaml

    cfg = yaml.safe_load((REPO / "deploy" / "instance" / "dagster.yaml").read_text())
    timeout = cfg["run_monitoring"]["start_timeout_seconds"]
    text = " ".join((REPO / "docs" / "coverage.md").read_text().split())
    assert f"`run_monitoring.start_timeout_seconds`: {timeout} s in `deploy/instance/dagster.yaml`" in text
