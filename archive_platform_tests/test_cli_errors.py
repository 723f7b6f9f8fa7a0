"""A bad setting gives one line naming it and exit 2 from every command, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archive_platform.cli import main


@pytest.mark.parametrize("command, env, said", [
    (["status"], {"ARCHIVE_RECOVERY_LOOKBACK": "abc"}, "ARCHIVE_RECOVERY_LOOKBACK='abc' is not an integer"),
    (["views"], {"ARCHIVE_START_DATE": "2025-13-01"},
     "ARCHIVE_START_DATE '2025-13-01' is not an ISO date (YYYY-MM-DD)"),
    (["demo", "--days", "1"], {"ARCHIVE_START_DATE": "2025-11-29"},
     "ARCHIVE_START_DATE 2025-11-29 is not an NYSE trading day (the next one is 2025-12-01)"),
])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, command, env, said):
    env = {"ARCHIVE_ROOT": str(tmp_path / "live"), "ARCHIVE_SIM_ROOT": str(tmp_path / "sim"),
           "DAGSTER_HOME": str(tmp_path / "home"), **env}
    result = CliRunner().invoke(main, command, env=env)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].endswith(said) and result.output.startswith("error: ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "sim").exists() and not (tmp_path / "live").exists()  # nothing written
