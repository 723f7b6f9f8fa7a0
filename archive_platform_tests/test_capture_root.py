"""``archive-platform capture`` validates its archive root before anything connects
(docs/crypto.md): a root it cannot write stops the command with exit status 2 and a message naming
the root and the option or variable, and nothing is written. It used to print ``capturing ...``
and die with a traceback (``OSError: [Errno 30] Read-only file system: '.../_spool'``)."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner

from archive_platform.crypto import service
from archive_platform.crypto.cli import capture
from archive_platform_tests.mounts import tmpfs


class FakeService:
    """Stands in for the capture service: records that it was started, connects nowhere."""

    started: list = []

    def __init__(self, settings, publisher=None):
        FakeService.started.append(settings.root)

    async def run(self, seconds):
        return {"rows_written": 0, "reconnects": 0, "malformed": 0, "exchange_errors": 0,
                "last_exchange_error": None}


@pytest.fixture(autouse=True)
def fake_service(monkeypatch):
    FakeService.started = []
    monkeypatch.setattr(service, "CaptureService", FakeService)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("ARCHIVE_ROOT", raising=False)
    return FakeService


def _refused(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "capturing" not in res.output
    for n in needles:
        assert n in res.output, res.output
    assert FakeService.started == []


def test_a_root_through_a_file_is_refused_naming_the_option_or_variable(tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    res = CliRunner().invoke(capture, ["--root", str(f / "archive"), "--seconds", "1"])
    _refused(res, f"--root='{f / 'archive'}'", "is a file, not a folder")
    monkeypatch.setenv("ARCHIVE_ROOT", str(f))
    res = CliRunner().invoke(capture, ["--seconds", "1"])
    _refused(res, f"ARCHIVE_ROOT='{f}'", "is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_root_whose_spool_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "_spool").write_text("not a folder")
    res = CliRunner().invoke(capture, ["--root", str(tmp_path), "--seconds", "1"])
    _refused(res, f"--root='{tmp_path}'", f"cannot write its spool folder {tmp_path / '_spool'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_spool"]


def test_a_failed_write_check_leaves_no_folder_behind(tmp_path, monkeypatch):
    import tempfile

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)
    res = CliRunner().invoke(capture, ["--root", str(tmp_path / "a" / "b"), "--seconds", "1"])
    _refused(res, f"--root='{tmp_path / 'a' / 'b'}'", "No space left on device")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only file system (tmpfs mounted ro), as the hostile test used; root writes through
    permission bits, so only a real read-only mount shows the failure."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        yield ro


def test_a_root_on_a_read_only_file_system_is_refused(read_only_dir, monkeypatch):
    res = CliRunner().invoke(capture, ["--root", str(read_only_dir), "--seconds", "1"])
    _refused(res, f"--root='{read_only_dir}'", "is not writable by this process")
    monkeypatch.setenv("ARCHIVE_ROOT", str(read_only_dir / "live"))
    res = CliRunner().invoke(capture, ["--seconds", "1"])
    _refused(res, f"ARCHIVE_ROOT='{read_only_dir / 'live'}'", "is not writable by this process")
    assert list(read_only_dir.iterdir()) == []


def test_a_new_root_is_created_like_any_archive_root_and_said_so(tmp_path):
    root = tmp_path / "deep" / "er" / "archive"
    res = CliRunner().invoke(capture, ["--root", str(root), "--seconds", "1"])
    assert res.exit_code == 0, res.output
    assert f"into {root} (created: the folder did not exist)" in res.output
    assert FakeService.started == [root] and sorted(p.name for p in root.iterdir()) == ["_spool"]
    assert list((root / "_spool").iterdir()) == []  # the write check leaves no file
    res = CliRunner().invoke(capture, ["--root", str(root), "--seconds", "1"])
    assert res.exit_code == 0 and f"into {root} (flush every" in res.output, res.output
