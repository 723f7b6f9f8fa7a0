"""``archive-platform status`` with the capture service configured (docs/coverage.md): the crypto
datasets are listed on their UTC-day calendar, the capture heartbeat is shown, and a stale or
missing heartbeat makes status exit 1 (a dead capture service used to look healthy)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from archive_platform.cli import main
from archive_platform.crypto.spool import heartbeat_path
from archive_platform.datasets import DATASETS
from archive_platform.defs import automation
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import sim_env

pytestmark = pytest.mark.slow
UTC = timezone.utc
CAPTURED = ["capture_gaps", "crypto_trades", "orderbook_l2"]
UTC_NAMES = [d.name for d in DATASETS if d.calendar_name == "utc"]
NYSE_NAMES = [d.name for d in DATASETS if d.calendar_name == "nyse"]
#: Saturday noon: every NYSE session (11-26, 11-28) and UTC day (11-26..11-28) stored is due
NOW = datetime(2025, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Every dataset stored (empty days: the ledger judges files, not rows) from 11-26 on."""
    tmp = tmp_path_factory.mktemp("status_capture")
    (tmp / "home").mkdir()
    live, sim = ArchiveStore(tmp / "live", kind="live"), ArchiveStore(tmp / "sim", kind="sim")
    for ds in DATASETS:
        store = live if ds.calendar_name == "utc" else sim
        for day in ds.calendar.sessions(date(2025, 11, 26), date(2025, 11, 28)):
            store.write_day(ds, day, ds.schema.empty_table())
    env = sim_env(tmp, ARCHIVE_SYMBOLS="SPY", ARCHIVE_START_DATE="2025-11-26", ARCHIVE_RECOVERY_LOOKBACK="3",
                  DAGSTER_HOME=str(tmp / "home"), ARCHIVE_CRYPTO_CAPTURE="1")
    return tmp, env


def _beat(tmp, written_at: datetime | None) -> None:
    path = heartbeat_path(tmp / "live")
    if written_at is None:
        path.unlink(missing_ok=True)
        return
    stamp = written_at.isoformat().replace("+00:00", "Z")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 4242, "written_at": stamp, "streams": {
        "binance:BTCUSDT:trades": {"last_event": stamp, "last_receive": stamp}}}))


def _status(archive, monkeypatch, now, *args, **env):
    _, base = archive
    for k, v in {**base, **env}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(automation, "utcnow", lambda: now)
    res = CliRunner().invoke(main, ["status", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res


def _json(res) -> tuple[dict, dict]:
    report = json.loads(res.output)
    return report, {x["dataset"]: x for x in report["datasets"]}


def test_a_stale_heartbeat_makes_status_unhealthy(archive, monkeypatch):
    tmp, _ = archive
    _beat(tmp, NOW - timedelta(seconds=310))
    res = _status(archive, monkeypatch, NOW)
    assert res.exit_code == 1, res.output
    assert res.output.rstrip().endswith("UNHEALTHY")
    assert "capture heartbeat is 310 s old (pid 4242): the service is not running" in res.output
    assert f"capture heartbeat ({heartbeat_path(tmp / 'live')}): capture heartbeat is 310 s old" in res.output

    res = _status(archive, monkeypatch, NOW, "--json")
    assert res.exit_code == 1, res.output
    report, lines = _json(res)
    assert report["healthy"] is False
    assert list(lines) == NYSE_NAMES + UTC_NAMES
    for name in CAPTURED:
        assert lines[name]["healthy"] is False, name
        assert lines[name]["heartbeat"].startswith("capture heartbeat is 310 s old (pid 4242)"), name
        assert "stream binance:BTCUSDT:trades: no message for 310 s" in lines[name]["problems"], name
    # everything else is stored and due: only the heartbeat is wrong
    assert all(lines[n]["healthy"] and lines[n]["heartbeat"] is None for n in NYSE_NAMES)
    assert all(lines[n]["healthy"] and lines[n]["heartbeat"] is None for n in UTC_NAMES if n not in CAPTURED)
    assert report["capture"]["pid"] == 4242 and report["capture"]["written_at"] == "2025-11-29T11:54:50Z"
    assert report["capture"]["problems"][0].startswith("capture heartbeat is 310 s old")


def test_a_fresh_heartbeat_and_a_stored_archive_are_healthy(archive, monkeypatch):
    tmp, _ = archive
    _beat(tmp, NOW - timedelta(seconds=5))
    res = _status(archive, monkeypatch, NOW)
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith("healthy")
    assert "capture heartbeat (" in res.output and "ok (written 2025-11-29T11:59:55Z, pid 4242, 1 streams)" in res.output
    res = _status(archive, monkeypatch, NOW, "--json")
    report, lines = _json(res)
    assert res.exit_code == 0 and report["healthy"] is True, res.output
    assert {n: lines[n]["heartbeat"] for n in CAPTURED} == dict.fromkeys(CAPTURED, "ok")
    for name in UTC_NAMES:
        x = lines[name]
        assert (x["days_stored"], x["first_day"], x["last_day"], x["due_day"], x["fresh"]) == (
            3, "2025-11-26", "2025-11-28", "2025-11-28", True), name
    assert report["capture"]["problems"] == []


def test_no_heartbeat_with_capture_on_is_unhealthy(archive, monkeypatch):
    tmp, _ = archive
    _beat(tmp, None)
    res = _status(archive, monkeypatch, NOW, "--json")
    assert res.exit_code == 1, res.output
    report, lines = _json(res)
    assert report["capture"]["problems"] == [
        "no capture heartbeat: the capture service has never run under this root"]
    assert all(lines[n]["heartbeat"].startswith("no capture heartbeat") for n in CAPTURED)


def test_a_utc_day_is_due_at_03_utc_the_day_after(archive, monkeypatch):
    tmp, _ = archive
    # 11-29 closed at 00:00 UTC but is due by 03:00: not stale, not missing at 02:00
    early = datetime(2025, 11, 30, 2, 0, tzinfo=UTC)
    _beat(tmp, early)
    res = _status(archive, monkeypatch, early, "--json")
    report, lines = _json(res)
    assert res.exit_code == 0 and report["healthy"] is True, res.output
    assert all(lines[n]["due_day"] == "2025-11-28" and lines[n]["missing"] == [] for n in UTC_NAMES)
    late = datetime(2025, 11, 30, 4, 0, tzinfo=UTC)
    _beat(tmp, late)
    res = _status(archive, monkeypatch, late, "--json")
    report, lines = _json(res)
    assert res.exit_code == 1, res.output
    for name in UTC_NAMES:
        assert lines[name]["due_day"] == "2025-11-29" and lines[name]["fresh"] is False, name
        assert lines[name]["problems"][0] == "stale: 2025-11-29 was due by its deadline and is not stored"
        assert lines[name]["missing"] == ["2025-11-29"]
    assert all(lines[n]["healthy"] for n in NYSE_NAMES)  # no NYSE session since 11-28


def test_with_capture_off_status_leaves_the_crypto_datasets_out(archive, monkeypatch):
    tmp, _ = archive
    _beat(tmp, NOW - timedelta(hours=1))
    res = _status(archive, monkeypatch, NOW, "--json", ARCHIVE_CRYPTO_CAPTURE="0")
    report, lines = _json(res)
    assert res.exit_code == 0 and report["healthy"] is True, res.output
    assert list(lines) == NYSE_NAMES and report["capture"] is None
    assert "capture heartbeat" not in _status(archive, monkeypatch, NOW, ARCHIVE_CRYPTO_CAPTURE="0").output
