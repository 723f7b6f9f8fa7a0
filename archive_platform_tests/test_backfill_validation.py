"""``archive-platform backfill`` checks its input before it talks to the webserver: an unknown
asset, days before the archive's start date or in the future stop it with exit status 2 and a
message naming the bound (they used to come back as ``HTTP 500 ... Multiple initial assets not
yet supported`` or a ``KeyError``), and a crypto dataset gets every UTC day of the range, not the
NYSE sessions. No webserver runs here: the GraphQL call is replaced by a recorder."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from archive_platform import backfill as bf
from archive_platform.datasets import DATASETS

NOW = datetime(2025, 12, 1, 12, 0, tzinfo=timezone.utc)  # Monday 07:00 ET
NYSE = [d.name for d in DATASETS if d.calendar_name == "nyse"]


@pytest.fixture
def sent(monkeypatch):
    """Every GraphQL request the command makes; each launch succeeds with ids b1, b2, ..."""
    calls = []

    def graphql(url, query, variables, client):
        calls.append(variables["params"])
        return {"launchPartitionBackfill": {"__typename": "LaunchBackfillSuccess", "backfillId": f"b{len(calls)}"}}

    monkeypatch.setattr(bf, "_graphql", graphql)
    monkeypatch.setattr(bf, "utcnow", lambda: NOW, raising=False)
    monkeypatch.delenv("ARCHIVE_START_DATE", raising=False)
    return calls


def _run(*args):
    return CliRunner().invoke(bf.backfill, [*args, "--no-wait", "--url", "http://127.0.0.1:9"])


def _refused(res, sent, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "HTTP" not in res.output
    flat = " ".join(res.output.split())  # click wraps long messages
    for n in needles:
        assert n in flat, res.output
    assert sent == []  # nothing reached the webserver


def test_an_unknown_asset_is_refused_with_the_valid_names(sent):
    res = _run("--from", "2025-11-20", "--to", "2025-11-21", "--asset", "optionz")
    _refused(res, sent, "Invalid value for '--asset': unknown asset 'optionz' (did you mean 'options'?)",
             "Valid assets: NYSE trading days: uw_flow, options,", "UTC days: capture_gaps, crypto_trades,")
    res = _run("--from", "2025-11-20", "--to", "2025-11-21", "--asset", "options", "--asset", "nope")
    _refused(res, sent, "unknown asset 'nope'")


def test_days_in_the_future_are_refused_naming_the_last_day(sent):
    res = _run("--from", "2025-12-01", "--to", "2025-12-05")
    _refused(res, sent, "Invalid value for '--to': --to 2025-12-05 is in the future",
             "the last day that can be backfilled is 2025-12-01 (today in America/New_York)")
    # a UTC day is archived once it has closed: today's is not
    res = _run("--from", "2025-11-29", "--to", "2025-12-01", "--asset", "crypto_trades")
    _refused(res, sent, "--to 2025-12-01 has not closed yet for crypto_trades",
             "the last day that can be backfilled is 2025-11-30")
    res = _run("--from", "2030-01-02", "--to", "2030-01-03", "--asset", "orderbook_l2")
    _refused(res, sent, "--to 2030-01-03 is in the future for orderbook_l2")


def test_days_before_the_start_date_are_refused_naming_it(sent, monkeypatch):
    res = _run("--from", "2023-12-01", "--to", "2024-01-05")
    _refused(res, sent, "Invalid value for '--from': --from 2023-12-01 is before the archive's start date "
             "2024-01-02 (ARCHIVE_START_DATE", "use --from 2024-01-02 or later")
    monkeypatch.setenv("ARCHIVE_START_DATE", "2025-06-02")
    res = _run("--from", "2025-05-01", "--to", "2025-06-03", "--asset", "crypto_trades")
    _refused(res, sent, "before the archive's start date 2025-06-02", "use --from 2025-06-02 or later")
    monkeypatch.setenv("ARCHIVE_START_DATE", "2025-06-01")  # a Sunday: not a valid start
    res = _run("--from", "2025-06-02", "--to", "2025-06-03")
    _refused(res, sent, "ARCHIVE_START_DATE 2025-06-01 is not an NYSE trading day")


def test_a_range_without_a_session_and_a_reversed_range_are_refused(sent):
    res = _run("--from", "2025-11-22", "--to", "2025-11-23", "--asset", "options")
    _refused(res, sent, "no NYSE trading day between 2025-11-22 and 2025-11-23 for options")
    res = _run("--from", "2025-11-21", "--to", "2025-11-20")
    _refused(res, sent, "--to 2025-11-20 is before --from 2025-11-21")


def test_a_crypto_dataset_gets_every_utc_day_of_the_range(sent):
    res = _run("--from", "2025-11-20", "--to", "2025-11-23", "--asset", "crypto_trades")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("backfill b1: 4 UTC days x 1 assets (crypto_trades); http://127.0.0.1:9/runs/b/b1")
    assert sent[0]["partitionNames"] == ["2025-11-20", "2025-11-21", "2025-11-22", "2025-11-23"]
    assert sent[0]["assetSelection"] == [{"path": ["crypto_trades"]}]
    sent.clear()
    res = _run("--from", "2025-11-22", "--to", "2025-11-23", "--asset", "crypto_trades")  # a weekend
    assert res.exit_code == 0 and "2 UTC days x 1 assets" in res.output, res.output
    assert sent[0]["partitionNames"] == ["2025-11-22", "2025-11-23"]


def test_nyse_and_crypto_datasets_get_one_backfill_per_calendar(sent):
    res = _run("--from", "2025-11-26", "--to", "2025-11-30", "--asset", "options", "--asset", "crypto_trades",
               "--asset", "orderbook_l2", "--asset", "options")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("backfill b1: 2 sessions x 1 assets (options)")  # Thanksgiving, weekend
    assert lines[1].startswith("backfill b2: 5 UTC days x 2 assets (crypto_trades, orderbook_l2)")
    assert sent[0]["partitionNames"] == ["2025-11-26", "2025-11-28"]
    assert sent[1]["partitionNames"] == ["2025-11-26", "2025-11-27", "2025-11-28", "2025-11-29", "2025-11-30"]
    assert sent[1]["title"] == "archive 2025-11-26..2025-11-30 (UTC days)"


def test_the_default_is_every_nyse_dataset_over_the_sessions(sent):
    res = _run("--from", "2025-11-24", "--to", "2025-11-26")
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"backfill b1: 3 sessions x {len(NYSE)} assets ({', '.join(NYSE)})")
    assert [a["path"] for a in sent[0]["assetSelection"]] == [[n] for n in NYSE] and len(sent) == 1
    # today's session (its ET date) is the last day allowed
    res = _run("--from", "2025-12-01", "--to", "2025-12-01", "--asset", "options")
    assert res.exit_code == 0 and sent[1]["partitionNames"] == ["2025-12-01"], res.output
