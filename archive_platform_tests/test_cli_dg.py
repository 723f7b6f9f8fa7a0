"""`dg` (Dagster's project CLI) works in this repository: `dg check defs` and `dg list defs`
load the same code location as workspace.yaml, from the [tool.dg] tables in pyproject.toml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archive_platform.datasets import DATASETS
from archive_platform.defs.assets import CHECKS

REPO = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"


def _dg(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ARCHIVE_SIM_ROOT": str(tmp_path / "sim"),
           "ARCHIVE_SIM_DUCKDB": str(tmp_path / "sim.duckdb")}
    (tmp_path / "dagster.yaml").write_text((REPO / "deploy" / "instance" / "dagster.yaml").read_text())
    return subprocess.run([str(DG), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_dg_check_defs_passes(tmp_path):
    out = _dg("check", "defs", tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All definitions loaded successfully." in out.stdout
    assert "does not match the virtual environment" not in out.stdout + out.stderr


@pytest.mark.slow
def test_dg_list_defs_lists_every_dataset_and_its_checks(tmp_path):
    out = _dg("list", "defs", "--json", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assets = {a["asset_key"]: a for a in listed["assets"]}
    nyse = [d.name for d in DATASETS if d.calendar_name == "nyse"]
    for name in nyse:
        assert name in assets, sorted(assets)
        assert {f"{name}:{c}" for c in CHECKS} <= {c["key"] for c in listed["asset_checks"]}
    assert "duckdb_views" in assets and set(nyse) <= set(assets["duckdb_views"]["dependency_keys"])
    assert "archive_all" in {j["name"] for j in listed["jobs"]}
