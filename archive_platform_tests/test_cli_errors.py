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


def _pg_home(tmp_path, env):
    """A DAGSTER_HOME configured for PostgreSQL from DAGSTER_PG_URL, as install-config writes it."""
    import subprocess
    from pathlib import Path

    home = tmp_path / "pghome"
    script = Path(__file__).resolve().parents[1] / "deploy" / "instance" / "install-config"
    subprocess.run([str(script), str(home), "postgres-url"], check=True, env={"PATH": "/usr/bin:/bin", **env},
                   capture_output=True)
    return home


def test_an_unreachable_postgresql_instance_is_one_line_naming_the_cause_without_the_password(tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg2://archive:s3cr3t-pw@127.0.0.1:{port}/dagster"
    home = _pg_home(tmp_path, {"DAGSTER_PG_URL": url})
    env = {"ARCHIVE_ROOT": str(tmp_path / "live"), "ARCHIVE_SIM_ROOT": str(tmp_path / "sim"),
           "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": url}
    result = CliRunner().invoke(main, ["status"], env=env)
    assert result.exit_code == 2, result.output  # not a verdict: status's "unhealthy" is 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot load the Dagster instance in {home} (dagster.yaml): ")
    assert f'port {port} failed: Connection refused' in last and "Is the PostgreSQL server up" in last
    assert "Traceback" not in result.output and "s3cr3t-pw" not in result.output


def test_an_instance_needing_an_unset_variable_names_it(tmp_path):
    home = _pg_home(tmp_path, {})
    env = {"ARCHIVE_ROOT": str(tmp_path / "live"), "ARCHIVE_SIM_ROOT": str(tmp_path / "sim"),
           "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": None}
    result = CliRunner().invoke(main, ["status"], env=env)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert 'the environment variable "DAGSTER_PG_URL" which is not set' in last
    assert last.endswith("Set it as for the other processes of this deployment (docs/deployment.md).")
    assert "Traceback" not in result.output and "Stack Trace" not in result.output
