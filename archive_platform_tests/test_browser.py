"""The Dagster UI in a real browser: what a person sees after archiving three trading days.

Three sessions of the simulated market (SPY, QQQ) are materialized into a throwaway Dagster
instance; ``dagster-webserver`` serves that instance with the repository's code location, and
headless Chromium (driven over the DevTools protocol) opens the asset catalog and the partitions
tab of ``options``. The assertions read the rendered text, not the GraphQL API: the archive
assets (every registered dataset) are listed with 3 materialized partitions each, ``duckdb_views`` (not run here) is never
materialized, and filtering the partitions tab to materialized ones lists exactly the three days;
one day's metadata equals its files; a check's Partitions tab shows 3 passed days and none
failed; the overview plots rows (``dagster/row_count``) and bytes (``dagster/size_bytes``); no
warning banner shows. Screenshots go to test-output/browser/.

The expected numbers come from what the test did (three days, none failed) and from the
partitions definition itself (how many trading-day keys exist now), not from the UI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from archive_platform.defs import build_definitions
from archive_platform.datasets import DATASETS
from archive_platform.defs.assets import CHECKS
from archive_platform_tests.browser_helpers import (
    fetch_http,
    fetch_location_assets,
    find_free_port,
    start_chromium,
    start_process,
    stop_process,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "test-output" / "browser"
DAYS = ["2025-11-24", "2025-11-25", "2025-11-26"]
ARCHIVE_ASSETS = [d.name for d in DATASETS if d.calendar_name == "nyse"]  # what archive_all materializes
#: listed in the catalog too, not materialized here: the 24/7 datasets, the ledger, the backtests
OTHER_ASSETS = [d.name for d in DATASETS if d.calendar_name != "nyse"] + ["coverage", "backtests"]
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
#: a catalog row's status column: materialized, missing, failed, materializing, then the total
STATUS_TAIL = re.compile(r"\n(\d+)\n(\d+)\n(\d+)\n(\d+)\n(\d+) partitions$")

#: the nearest element around an asset's catalog link whose text has the status column (its row)
CATALOG_ROW_JS = """(name => {
  const link = document.querySelector(`a[href="/assets/${name}"]`);
  let el = link;
  while (el && !/\d+ partitions\s*$|Never materialized\s*$/.test(el.innerText)) el = el.parentElement;
  return el ? el.innerText : null;
})"""
#: Dagster's first-visit "Join the Dagster community" dialog hides the page; a person skips it
SKIP_DIALOG_JS = """(() => {
  if (!document.body.innerText.includes('Join the Dagster community')) return false;
  const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Skip');
  if (b) b.click();
  return !!b;
})()"""
#: toggle a partition-status filter checkbox by its label ("Missing (263)" -> "Missing")
TOGGLE_STATUS_JS = """(status => {
  const label = [...document.querySelectorAll('label')]
    .find(l => l.textContent.trim().startsWith(status + ' ('));
  if (!label) return null;
  const box = label.querySelector('input[type=checkbox]');
  box.click();
  return box.checked;
})"""
#: click a partition key in the partitions list (its entry carries the key as its title)
OPEN_PARTITION_JS = """(() => {
  const entry = document.querySelector(`[title=${JSON.stringify(%s)}]`);
  if (entry) entry.click();
  return !!entry;
})()"""
META_KEYS = ("symbol_list", "snapshots", "path")
#: click the last clickable element whose text ends with the label (a check's inner "Partitions"
#: tab comes after the asset's own)
CLICK_LAST_JS = """(label => {
  const els = [...document.querySelectorAll('button, a, [role=tab]')]
    .filter(e => e.innerText.trim().endsWith(label));
  const el = els[els.length - 1];
  if (el) el.click();
  return !!el;
})"""
#: bring the element showing a text into view (for the screenshot)
SCROLL_TO_JS = """(() => {
  const el = [...document.querySelectorAll('div, span')].reverse()
    .find(e => e.childElementCount === 0 && e.innerText.trim() === %s);
  if (el) el.scrollIntoView({block: 'start'});
  return !!el;
})()"""
#: texts of alert/banner elements on the page (Dagster's warning and error callouts)
BANNERS_JS = """[...document.querySelectorAll('[role=alert], [class*=Alert_warning], [class*=Alert_error], [class*=Banner]')]
  .map(e => e.innerText.trim()).filter(t => t)"""


@pytest.fixture
def chromium_path() -> str:
    """Debian's Chromium; skip locally without it, but CI must have installed it."""
    path = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("CI is set but Chromium is not installed (/usr/bin/chromium missing); "
                    ".ci/run must `apt-get install chromium` before the tests")
    pytest.skip("headless Chromium not installed (/usr/bin/chromium); "
                "`apt-get install chromium` to run the browser test")


@pytest.fixture
def archive_env(tmp_path: Path) -> dict[str, str]:
    """ARCHIVE_* settings shared by the in-process runs and the webserver's code location."""
    return {
        "ARCHIVE_SIM_ROOT": str(tmp_path / "sim" / "archive"),
        "ARCHIVE_SIM_DUCKDB": str(tmp_path / "sim" / "archive.duckdb"),
        "ARCHIVE_ROOT": str(tmp_path / "live" / "archive"),
        "ARCHIVE_DUCKDB": str(tmp_path / "live" / "archive.duckdb"),
        "ARCHIVE_SYMBOLS": "SPY,QQQ",
        "ARCHIVE_START_DATE": "2025-11-03",
    }


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "instance" / "dagster.yaml", home / "dagster.yaml")
    # create the instance's storage before the webserver and the runs open it at once (two
    # processes migrating a fresh SQLite schema together can leave two alembic heads)
    with dg.DagsterInstance.from_config(str(home)):
        pass
    return home


@pytest.fixture
def webserver(tmp_path: Path, dagster_home: Path, archive_env: dict[str, str]):
    """``dagster-webserver`` on a free loopback port over ``dagster_home``; yields (url, proc, log).

    Started before the runs so its ~15 s start-up overlaps them; it reads the same SQLite
    instance, so it sees the materializations whenever they land.
    """
    exe = Path(sys.executable).with_name("dagster-webserver")
    assert exe.exists(), f"dagster-webserver not found next to {sys.executable}"
    # inherited ARCHIVE_*/DAGSTER_* settings (a vendor source, another home) must not leak in
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_", "DAGSTER_"))}
    env.update(archive_env, DAGSTER_HOME=str(dagster_home))
    port = find_free_port()
    log = tmp_path / "webserver.log"
    proc = start_process([str(exe), "-h", "127.0.0.1", "-p", str(port),
                          "-m", "archive_platform.definitions"], env, log)
    try:
        yield f"http://127.0.0.1:{port}", proc, log
    finally:
        stop_process(proc)


@pytest.fixture
def page(tmp_path: Path, chromium_path: str):
    """A headless Chromium page on a throwaway profile, torn down with its process group."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    proc, cdp = start_chromium(chromium_path, profile, tmp_path / "chromium.log")
    try:
        yield cdp
    finally:
        cdp.close()
        stop_process(proc)


def materialize_days(home: Path, env: dict[str, str]) -> dg.PartitionsDefinition:
    """Run ``archive_all`` for each of DAYS into the instance at ``home``.

    Returns the assets' partitions definition, the independent source of the key count.
    """
    defs = build_definitions(env)
    job = defs.resolve_job_def("archive_all")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in DAYS:
            result = job.execute_in_process(partition_key=day, instance=instance,
                                            run_config=QUIET_LOGS, raise_on_error=False)
            assert result.success, f"archive_all failed for {day}"
        assert instance.get_materialized_partitions(dg.AssetKey("options")) == set(DAYS)
    return defs.resolve_assets_def("options").partitions_def


def dismiss_community_dialog(page, timeout: float) -> None:
    """Skip the first-visit dialog if it shows within ``timeout`` (it is not always shown)."""
    try:
        wait_until("the community dialog", lambda: page.evaluate(SKIP_DIALOG_JS), timeout,
                   interval=0.5)
    except AssertionError:
        return
    page.wait_for_text("the community dialog to close",
                       lambda t: "Join the Dagster community" not in t, 10)


def screenshot_clean(page, path: Path) -> Path:
    """Screenshot ``path`` after making sure the community dialog does not cover the page."""
    if page.evaluate(SKIP_DIALOG_JS):
        page.wait_for_text("the community dialog to close",
                           lambda t: "Join the Dagster community" not in t, 10)
    return page.screenshot(path)


def test_dagster_ui_shows_archived_partitions(chromium_path, webserver, dagster_home, archive_env,
                                              page):
    base, server, server_log = webserver
    OUTPUT.mkdir(parents=True, exist_ok=True)
    partitions_def = materialize_days(dagster_home, archive_env)
    # the key count moves at ET midnight; the UI may have read it on either side of that
    totals = {partitions_def.get_num_partitions()}
    bounds = {partitions_def.get_first_partition_key(), partitions_def.get_last_partition_key()}

    wait_until("the webserver's /server_info", lambda: fetch_http(f"{base}/server_info"), 90,
               proc=server, log=server_log)
    assets = wait_until("the code location to load", lambda: fetch_location_assets(base), 60,
                        proc=server, log=server_log)
    assert assets == sorted([*ARCHIVE_ASSETS, *OTHER_ASSETS, "duckdb_views"])

    # --- the asset catalog -------------------------------------------------------------------
    page.navigate(f"{base}/assets")
    page.wait_for_text("every archive asset in the catalog",
                       lambda t: all(n in t for n in ARCHIVE_ASSETS), 60)
    dismiss_community_dialog(page, 10)

    # rows render first with "—" placeholders; statuses fill in as their queries return
    def settled_rows():
        rows = {n: page.evaluate(f"{CATALOG_ROW_JS}({json.dumps(n)})")
                for n in [*ARCHIVE_ASSETS, "duckdb_views"]}
        statuses = {n: STATUS_TAIL.search(rows[n] or "") for n in ARCHIVE_ASSETS}
        if all(statuses.values()) and "—" not in (rows["duckdb_views"] or "—"):
            return rows, statuses
        return None

    rows, statuses = wait_until("every catalog row's status to render", settled_rows, 60)
    totals.add(partitions_def.get_num_partitions())
    bounds.add(partitions_def.get_last_partition_key())
    for name in ARCHIVE_ASSETS:
        row = rows[name]
        assert row.startswith(f"{name}\n"), f"catalog row of {name} is {row!r}"
        done, missing, failed, running, total = map(int, statuses[name].groups())
        assert total in totals, f"{name}: UI shows {total} partitions, definition has {totals}"
        assert (done, missing, failed, running) == (3, total - 3, 0, 0), row
        assert "sim" in row.split("\n")[:3], f"{name} should be labelled with its source: {row!r}"
    assert rows["duckdb_views"] and rows["duckdb_views"].endswith("Never materialized"), \
        rows["duckdb_views"]
    catalog_png = screenshot_clean(page, OUTPUT / "catalog.png")

    # --- the partitions tab of options ---------------------------------------------------------
    page.navigate(f"{base}/assets/options?view=partitions")
    text = page.wait_for_text("the status filter of the options partitions tab",
                              lambda t: "Missing (" in t and "Partitions Selected" in t, 60)
    dismiss_community_dialog(page, 2)
    text = page.visible_text()
    total = int(re.search(r"(\d+) Partitions Selected", text).group(1))
    assert total in totals, f"partitions tab shows {total} partitions, definition has {totals}"
    for label in ("Failed (0)", "Materialized (3)", "Materializing (0)", f"Missing ({total - 3})"):
        assert label in text, f"{label!r} not on the options partitions tab:\n{text[:3000]}"

    # untick "Missing": the list then holds the materialized partitions only
    assert page.evaluate(f"{TOGGLE_STATUS_JS}('Missing')") is False, "no Missing filter box"
    # what remains besides the range bounds (shown in the range bar) are the listed keys
    text = page.wait_for_text(
        "only the materialized partitions listed",
        lambda t: set(ISO_DATE.findall(t)) - bounds == set(DAYS), 30)
    assert "3 Partitions Selected" in text and f"Missing ({total - 3})" in text

    # open one partition: its latest materialization and metadata, as the archive wrote it
    day = DAYS[1]
    assert page.evaluate(OPEN_PARTITION_JS % json.dumps(day)), f"no {day} entry in the list"
    text = page.wait_for_text(f"the materialization metadata of options {day}",
                              lambda t: "No partition selected" not in t
                              and re.search(r"\ndagster/row_count\s+[\d,]+\s", t), 30)
    shown = {key: re.search(rf"\n{key}\s+(\S[^\n]*)\n", text) for key in META_KEYS}
    assert all(shown.values()), f"metadata {META_KEYS} not all shown:\n{text[-3000:]}"
    shown = {key: m.group(1).strip() for key, m in shown.items()}
    row_count = re.search(r"\ndagster/row_count\s+([\d,]+)\s", text).group(1)
    partition_dir = Path(archive_env["ARCHIVE_SIM_ROOT"]) / "options" / f"date={day}"
    files = sorted(partition_dir.rglob("*.parquet"))
    assert files, f"no Parquet under {partition_dir}"
    assert int(row_count.replace(",", "")) == sum(pq.read_metadata(f).num_rows for f in files)
    assert shown["symbol_list"] == "QQQ, SPY"
    # 09:30..16:00 ET every 15 minutes inclusive on a full session (the day before Thanksgiving)
    assert shown["snapshots"] == "27"
    assert shown["path"] == str(partition_dir)
    partitions_png = screenshot_clean(page, OUTPUT / "options_partitions.png")


    # --- each day's check results: a check's own Partitions tab ---------------------------------
    page.navigate(f"{base}/assets/options?view=checks")
    page.wait_for_text("the checks of options", lambda t: all(c in t for c in CHECKS), 60)
    assert page.evaluate(f"{CLICK_LAST_JS}('Partitions')"), "no Partitions tab on the check"
    text = page.wait_for_text("the check's per-partition results",
                              lambda t: "Passed (" in t and "Execution Failed (" in t, 30)
    # the three archived days passed; no day failed; the rest were never checked
    for label in ("Passed (3)", "Failed (0)", "Execution Failed (0)", f"Missing ({total - 3})"):
        assert label in text, f"{label!r} not on the check's partitions tab:\n{text[:3000]}"
    checks_png = screenshot_clean(page, OUTPUT / "options_check_partitions.png")

    # --- the per-partition plots of rows and bytes -------------------------------------------
    page.navigate(f"{base}/assets/options?view=overview")
    page.wait_for_text("the metadata section of the overview", lambda t: "\nPlots\n" in t, 60)
    assert page.evaluate(f"{CLICK_LAST_JS}('Plots')"), "no Plots button"
    # one point per materialization, i.e. per day (one materialization per partition). The
    # "Partitions" x-axis of this view shows its empty state in Dagster 1.13.27 here; the
    # "Events" x-axis plots the same per-day values.
    assert page.evaluate(f"{CLICK_LAST_JS}('Events')"), "no Events x-axis toggle"
    text = page.wait_for_text("the per-partition plots",
                              lambda t: "dagster/row_count" in t.split("\nPlots\n", 1)[-1]
                              and "dagster/size_bytes" in t.split("\nPlots\n", 1)[-1], 60)
    assert "Asset plots are automatically generated" not in text  # the empty state
    page.evaluate(SCROLL_TO_JS % json.dumps("dagster/row_count"))
    plots_png = screenshot_clean(page, OUTPUT / "options_plots.png")

    # --- no warning banner anywhere a user looked -----------------------------------------------
    for url in (f"{base}/assets", f"{base}/locations"):
        page.navigate(url)
        text = page.wait_for_text(f"{url} to render", lambda t: "archive_platform" in t or "options" in t, 60)
        banners = page.evaluate(BANNERS_JS)
        assert not banners, f"warning banner on {url}: {banners}"
        assert not re.search(r"will not be used|BetaWarning|PreviewWarning", text), text[:2000]

    for png in (catalog_png, partitions_png, checks_png, plots_png):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
        assert len(data) > 20_000, f"{png} is only {len(data)} bytes: a blank page?"
