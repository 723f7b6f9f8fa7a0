"""An archive root that cannot hold an archive is refused when the definitions load (issue 11)."""

from __future__ import annotations

import os

import pytest

from archive_platform.config import ConfigError
from archive_platform.defs import build_definitions
from archive_platform_tests.dagster_helpers import sim_env


@pytest.mark.parametrize("var", ["ARCHIVE_SIM_ROOT", "ARCHIVE_ROOT"])
def test_the_file_system_root_is_refused_at_load(tmp_path, var):
    with pytest.raises(ConfigError, match=rf"{var}='/' is the file system's root"):
        build_definitions(sim_env(tmp_path, **{var: "/"}))


def test_a_root_that_is_a_file_or_runs_through_one_is_refused(tmp_path):
    f = tmp_path / "afile"
    f.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"ARCHIVE_SIM_ROOT=.*afile is a file, not a folder"):
        build_definitions(sim_env(tmp_path, ARCHIVE_SIM_ROOT=str(f)))
    with pytest.raises(ConfigError, match=r"ARCHIVE_ROOT=.*afile is a file, not a folder"):
        build_definitions(sim_env(tmp_path, ARCHIVE_ROOT=str(f / "archive")))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_root_under_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=r"ARCHIVE_SIM_ROOT=.*ro is not writable"):
            build_definitions(sim_env(tmp_path, ARCHIVE_SIM_ROOT=str(ro / "sim")))
    finally:
        ro.chmod(0o700)


def test_a_new_folder_under_a_writable_one_is_accepted(tmp_path):
    defs = build_definitions(sim_env(tmp_path, ARCHIVE_SIM_ROOT=str(tmp_path / "a" / "b" / "sim")))
    assert defs.resolve_asset_graph() is not None
    assert not (tmp_path / "a").exists()  # loading creates nothing
