"""The README stays true: its set-up commands are what CI runs, its SQL runs on real archive data."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

import archive_platform
from archive_platform import queries
from archive_platform_tests.dagster_helpers import defs_for, run_job

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
DAY = date(2025, 11, 26)


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_setup_commands_open_the_readme_and_ci_runs_the_test_command():
    first = _blocks("bash")[0].strip().splitlines()
    assert first == ["./run demo", "./run test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^\./run test 2>&1", ci, flags=re.M), "CI must run the README's test command verbatim"


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    defs = defs_for(tmp, ARCHIVE_SYMBOLS="SPY,QQQ")
    with dg.instance_for_test() as instance:
        run_job(defs, "archive_all", instance, partition_key=DAY.isoformat())
    return tmp / "sim"  # the archive root: queries go through archive_platform.connect()


PARAMS = {
    "symbol": "SPY",
    "at": datetime(2025, 11, 26, 17, 7, tzinfo=timezone.utc),  # 12:07 ET: snapshot 12:00 ET
    "day": DAY,
}


def _run(root: Path, sql: str):
    con = archive_platform.connect(root=root)
    try:
        names = set(re.findall(r"\$(\w+)", sql))
        cur = con.execute(sql, {k: PARAMS[k] for k in names})
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        con.close()


def test_readme_sql_examples_run_on_archived_data(archive_root):
    sqls = _blocks("sql")
    assert len(sqls) == 3
    latest, atm, flow = (_run(archive_root, s) for s in sqls)
    # latest chain: one snapshot, the 12:00 ET one, no look-ahead
    cols, rows = latest
    snaps = {r[cols.index("snapshot_time")] for r in rows}
    assert snaps == {datetime(2025, 11, 26, 17, 0, tzinfo=timezone.utc)} and len(rows) > 50
    # ATM IV through the day: one row per snapshot, 27 on a full day, plausible IVs
    cols, rows = atm
    assert len(rows) == 27 and all(0.03 < r[cols.index("atm_iv")] < 2 for r in rows)
    # flow joined to the chain at or before each alert
    cols, rows = flow
    assert rows
    for r in rows:
        alert, snap = r[cols.index("alert_time")], r[cols.index("snapshot_time")]
        assert snap is not None and snap <= alert


def test_readme_sql_matches_queries_module():
    """The README shows (a trimmed copy of) the tested query module; the key clauses agree."""
    for needle in ("ASOF LEFT JOIN options AS o", "snapshot_time <= $at", "expiry >= $day + 7"):
        assert needle in README
        assert any(needle in q for q in queries.EXAMPLES.values())


def test_straddle_backtest_query(archive_root):
    cols, rows = _run(archive_root, queries.STRADDLE_BACKTEST)
    assert len(rows) == 1
    r = dict(zip(cols, rows[0]))
    assert r["date"] == DAY and r["entry_cost"] > 0 and r["exit_value"] >= 0
    assert r["pnl"] == pytest.approx(r["exit_value"] - r["entry_cost"], abs=0.011)


def test_schema_docs_list_every_column():
    from archive_platform.schemas import SPECS

    doc = (REPO / "docs" / "schemas.md").read_text()
    for spec in SPECS.values():
        section = doc.split(f"## `{spec.name}`")[1].split("\n## ")[0]
        for f in spec.schema:
            assert f"| `{f.name}` | `{f.type}` |" in section, (spec.name, f.name)
        assert ", ".join(spec.dedup_key) in section


def test_schema_docs_are_generated_from_the_declarations():
    from archive_platform.datasets.docs import render

    assert (REPO / "docs" / "schemas.md").read_text() == render(), (
        "docs/schemas.md is stale: ./run python -m archive_platform.datasets.docs > docs/schemas.md")


# -- time-zone independence (issue 11, item 6) --------------------------------------------------
ZONES = ("UTC", "America/New_York", "Asia/Tokyo")


def _all_queries() -> list[str]:
    return [*_blocks("sql"), queries.ATM_IV_THROUGH_DAY, queries.STRADDLE_BACKTEST]


def _plain(rows) -> list[tuple]:
    """Rows with instants as UTC ISO strings, so two sessions' answers compare exactly."""
    def norm(v):
        if isinstance(v, datetime) and v.tzinfo is not None:
            return v.astimezone(timezone.utc).isoformat()
        return v.isoformat() if hasattr(v, "isoformat") else v
    return [tuple(norm(v) for v in r) for r in rows]


def _answers(root: Path, session_tz: str | None) -> list:
    con = archive_platform.connect(root=root)
    try:
        if session_tz:
            con.execute(f"SET TimeZone = '{session_tz}'")
        out = []
        for sql in _all_queries():
            names = set(re.findall(r"\$(\w+)", sql))
            out.append(_plain(con.execute(sql, {k: PARAMS[k] for k in names}).fetchall()))
        return out
    finally:
        con.close()


def test_queries_give_the_same_answer_in_every_session_time_zone(archive_root):
    base = _answers(archive_root, "UTC")
    atm, straddle = base[-2], base[-1]
    # the entry is the 10:00 ET snapshot and the ATM series starts at the 09:30 ET open
    assert len(straddle) == 1 and atm[0][0] == "09:30:00" and len(atm) == 27
    for tz in ZONES[1:]:
        assert _answers(archive_root, tz) == base, tz


@pytest.mark.slow
@pytest.mark.parametrize("tz", ZONES)
def test_queries_give_the_same_answer_whatever_the_TZ_variable(archive_root, tz):
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys; from archive_platform_tests import test_readme as t; "
        "print(json.dumps(t._answers(__import__('pathlib').Path(sys.argv[1]), None), default=str))"
    )
    env = {**os.environ, "TZ": tz}
    out = subprocess.run([sys.executable, "-c", code, str(archive_root)], env=env, cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    want = json.loads(json.dumps(_answers(archive_root, "UTC"), default=str))
    assert got == want
