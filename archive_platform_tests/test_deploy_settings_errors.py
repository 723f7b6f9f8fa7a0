"""Half-set PostgreSQL settings (the instance's DAGSTER_PG_*, the archive's lake catalog) give one
line naming the setting and exit 2 from the command line, and a ConfigError naming it when
`dagster` loads the definitions, never a page of tracebacks, and never a password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archive_platform_tests.dagster_helpers import sim_env
from archive_platform_tests.deploy_helpers import REPO

BIN = Path(sys.executable).parent
PW = "s3cr3t-pw-never-shown"
#: every variable these tests vary, removed from the inherited environment first
VARIES = ("DAGSTER_PG_", "ARCHIVE_", "AWS_", "DAGSTER_HOME")


def _env(tmp_path: Path, storage: str, **extra: str) -> dict[str, str]:
    """A DAGSTER_HOME of one's own whose config (installed as the docs say) names ``storage``,
    so `./run` would not rewrite it: the variables below are what every process then reads."""
    home = tmp_path / "home"
    subprocess.run([str(REPO / "deploy" / "instance" / "install-config"), str(home), storage],
                   env={k: v for k, v in os.environ.items() if not k.startswith(VARIES)},
                   check=True, capture_output=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(VARIES)}
    return {**base, **sim_env(tmp_path), "DAGSTER_HOME": str(home), **extra}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "archive-platform"), *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=env["DAGSTER_HOME"])


HALF_PG = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PASSWORD": PW}
BAD_URL = {"DAGSTER_PG_URL": f"postgresql://dagster:{PW}@127.0.0.1:5432/dagster"}
#: the lake catalog on the instance's server, but the user and database not given: without the
#: check, libpq's defaults (user and database "postgres"/the OS user) would be used
HALF_CATALOG = {"ARCHIVE_SIM_LAKE_CATALOG": "postgres", "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": "1", "ARCHIVE_LAKE_PG_PASSWORD": PW}


@pytest.mark.parametrize(("storage", "env", "args", "said"), [
    # status and demo load the Dagster instance: Dagster itself would print five tracebacks
    ("postgres", HALF_PG, ["status"],
     "DAGSTER_PG_HOST is set but DAGSTER_PG_PORT, DAGSTER_PG_USER and DAGSTER_PG_DB are not"),
    ("postgres-url", BAD_URL, ["status"], "DAGSTER_PG_URL has the scheme 'postgresql'"),
    ("postgres-url", BAD_URL, ["demo", "--days", "1"], "DAGSTER_PG_URL has the scheme 'postgresql'"),
    # sql/query open the lake: the catalog's half-set settings are named before any connection
    ("sqlite", HALF_CATALOG, ["sql", "--sim", "-c", "SELECT 1"],
     "ARCHIVE_SIM_LAKE_CATALOG=postgres uses the server of DAGSTER_PG_HOST but DAGSTER_PG_USER and "
     "ARCHIVE_LAKE_PG_DB (or DAGSTER_PG_DB) are not set"),
    ("sqlite", {"ARCHIVE_LAKE_PG_DB": "lake", "ARCHIVE_LAKE_PG_PASSWORD": PW}, ["query", "latest_chain"],
     "ARCHIVE_LAKE_PG_DB is set but neither ARCHIVE_LAKE_CATALOG nor ARCHIVE_SIM_LAKE_CATALOG is 'postgres'"),
    ("sqlite", {"ARCHIVE_SIM_LAKE_CATALOG": "postgres:host=127.0.0.1 port=54x2 dbname=lake user=u"},
     ["sql", "--sim", "-c", "SELECT 1"], "ARCHIVE_SIM_LAKE_CATALOG: port='54x2' is not a port number"),
])
def test_the_cli_names_a_half_set_postgres_setting_in_one_line(tmp_path, storage, env, args, said):
    result = _cli(_env(tmp_path, storage, **env), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("error: ") and said in lines[-1], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert PW not in result.stderr + result.stdout
    assert not (tmp_path / "sim").exists()  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize(("env", "said"), [
    (HALF_PG, "DAGSTER_PG_HOST is set but DAGSTER_PG_PORT, DAGSTER_PG_USER and DAGSTER_PG_DB are not"),
    ({"ARCHIVE_SIM_LAKE_CATALOG": "postgres:host=127.0.0.1 port=54x2 dbname=lake user=u",
      "ARCHIVE_LAKE_PG_PASSWORD": PW}, "ARCHIVE_SIM_LAKE_CATALOG: port='54x2' is not a port number"),
    ({"ARCHIVE_S3_ENDPOINT": "http://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY": PW},
     "ARCHIVE_S3_ENDPOINT is set but neither ARCHIVE_S3_URL nor ARCHIVE_SIM_S3_URL is"),
])
def test_dagster_loading_the_definitions_names_the_setting(tmp_path, env, said):
    """What the code server does first (`dagster definitions validate` loads the same way)."""
    full = _env(tmp_path, "sqlite", **env)
    result = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-m", "archive_platform.definitions"],
                            env=full, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert f"archive_platform.config.ConfigError: {said}" in out, out[-3000:]
    assert PW not in out


def test_an_unreachable_instance_server_is_one_line_without_the_retry_warnings(tmp_path):
    """dagster-postgres retries a failed connection 5 times and logs each retry on the root
    logger: `status` printed those lines before its one `error:` line (seen in a real process
    only: in-process, pytest's log capture swallows them)."""
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(tmp_path, "postgres", DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=str(port),
               DAGSTER_PG_USER="dagster", DAGSTER_PG_PASSWORD=PW, DAGSTER_PG_DB="dagster")
    result = _cli(env, "status")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot load the Dagster instance"), result.stderr
    assert f"port {port} failed" in lines[0] and PW not in result.stderr + result.stdout
