"""An archive root that cannot hold an archive is refused when the definitions load (issue 11)."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from archive_platform.config import ConfigError
from archive_platform.defs import build_definitions
from archive_platform_tests.dagster_helpers import sim_env
from archive_platform_tests.mounts import tmpfs


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


def test_a_root_under_a_read_only_folder_is_refused(tmp_path):
    # root writes through permission bits (it used to be skipped as root, i.e. always in CI's
    # container): there a real read-only mount is the folder this process cannot write
    if os.geteuid() == 0:
        with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
            with pytest.raises(ConfigError, match=r"ARCHIVE_SIM_ROOT=.*ro/sim'?: .*ro is not writable by this process"):
                build_definitions(sim_env(tmp_path, ARCHIVE_SIM_ROOT=str(ro / "sim")))
            assert not (ro / "sim").exists()
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=r"ARCHIVE_SIM_ROOT=.*ro/sim'?: .*ro is not writable by this process"):
            build_definitions(sim_env(tmp_path, ARCHIVE_SIM_ROOT=str(ro / "sim")))
    finally:
        ro.chmod(0o700)


def test_a_new_folder_under_a_writable_one_is_accepted(tmp_path):
    defs = build_definitions(sim_env(tmp_path, ARCHIVE_SIM_ROOT=str(tmp_path / "a" / "b" / "sim")))
    archive = defs.resources["archive"]
    assert archive.root("sim") == tmp_path / "a" / "b" / "sim"  # the new folder is the one used
    assert archive.root("live") == tmp_path / "live"
    assert dg.AssetKey("options") in defs.resolve_asset_graph().get_all_asset_keys()
    assert not (tmp_path / "a").exists()  # loading creates nothing
