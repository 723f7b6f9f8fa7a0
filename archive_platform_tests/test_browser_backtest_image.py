"""The equity-curve image in the real Dagster UI: the ``backtests`` asset materialized from
hand-made candles, its page opened in headless Chromium, the Markdown metadata's image rendered
(decoded by the browser, 800 x 400 pixels)."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from archive_platform.analysis.equity_candles import day_candles, to_rows
from archive_platform.datasets.candles import SCHEMA as CANDLES
from archive_platform.defs import build_definitions
from archive_platform.store import ArchiveStore
from archive_platform_tests.browser_helpers import fetch_http, fetch_location_assets, wait_until
from archive_platform_tests.test_backtest_image import FULL, HALF, _minute_bars
from archive_platform_tests.test_browser import (  # noqa: F401 - fixtures
    OUTPUT, QUIET_LOGS, archive_env, chromium_path, dagster_home, dismiss_community_dialog, page,
    screenshot_clean, webserver,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

#: every <img> on the page: (source prefix, decoded width, decoded height, complete)
IMAGES_JS = """[...document.querySelectorAll('img')].map(i => [i.src.slice(0, 22), i.naturalWidth,
  i.naturalHeight, i.complete])"""
#: click the control that opens a Markdown metadata value, in the row of ``key``
OPEN_MARKDOWN_JS = """(key => {
  const cells = [...document.querySelectorAll('td, div, span')].filter(e => e.innerText && e.innerText.trim() === key);
  for (const cell of cells) {
    let row = cell;
    for (let i = 0; i < 4 && row; i++) {
      const b = [...row.querySelectorAll('button, a')].find(b => /markdown|show|view/i.test(b.innerText));
      if (b) { b.click(); return b.innerText; }
      row = row.parentElement;
    }
  }
  return null;
})"""


def test_backtests_page_renders_the_equity_png(archive_env, dagster_home, webserver, page):
    base, server, server_log = webserver
    store = ArchiveStore(archive_env["ARCHIVE_SIM_ROOT"], kind="sim")
    for day in (FULL, HALF):
        store.write_day("candles", day, to_rows(day_candles(_minute_bars(day, "SPY", 600.0), day), CANDLES, "sim"))
    defs = build_definitions(archive_env)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = defs.resolve_job_def("archive_all").execute_in_process(
            partition_key=HALF.isoformat(), instance=instance, run_config=QUIET_LOGS,
            asset_selection=[dg.AssetKey("backtests")])
        assert result.success

    wait_until("the webserver's /server_info", lambda: fetch_http(f"{base}/server_info"), 90,
               proc=server, log=server_log)
    wait_until("the code location to load", lambda: fetch_location_assets(base), 60, proc=server, log=server_log)
    page.navigate(f"{base}/assets/backtests?view=overview")
    page.wait_for_text("the backtests metadata", lambda t: "equity_chart" in t, 60)
    dismiss_community_dialog(page, 5)
    OUTPUT.mkdir(parents=True, exist_ok=True)

    def rendered():
        imgs = [i for i in page.evaluate(IMAGES_JS) if i[0].startswith("data:image/png;base64")]
        if imgs:
            return imgs
        page.evaluate(f"{OPEN_MARKDOWN_JS}({json.dumps('equity_chart')})")
        return None

    try:
        imgs = wait_until("the equity image to render", rendered, 30)
    finally:
        screenshot_clean(page, OUTPUT / "backtests_equity_chart.png")
    assert [i[1:] for i in imgs] == [[800, 400, True]], imgs
