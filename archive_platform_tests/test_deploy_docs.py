"""docs/deployment.md, followed literally: the commands of "Several processes or machines" name
programs that exist, a workspace file that reaches the code server the commands start, and the
backup commands name the server's port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time

import httpx
import pytest
import yaml

from archive_platform_tests.deploy_helpers import REPO
from archive_platform_tests.pg_helpers import postgres_server

DOC = REPO / "docs" / "deployment.md"


def section_commands(heading: str) -> list[str]:
    """The commands of the first bash block after ``heading`` (continuations joined)."""
    part = DOC.read_text().split(heading, 1)[1]
    block = part.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


COMMANDS = section_commands("## Several processes or machines")
GRPC = next(c for c in COMMANDS if " api grpc " in c)


def test_the_documented_commands_exist_in_a_fresh_checkout():
    """`dagster ...` alone is "command not found" until the environment is activated."""
    for command in COMMANDS:
        if command.startswith("export "):
            continue
        program = REPO / command.split()[0]
        assert program.is_file() and os.access(program, os.X_OK), command


def test_the_documented_workspace_reaches_the_documented_code_server():
    """The webserver and the daemon load the code through the workspace file the docs give
    them: its host must resolve here (not only inside compose) and name the code server's port
    and location."""
    port = int(re.search(r" -p (\d+)", GRPC).group(1))
    location = re.search(r"--location-name (\S+)", GRPC).group(1)
    workspaces = {w for c in COMMANDS for w in re.findall(r" -w (\S+)", c)}
    assert len(workspaces) == 1
    for w in workspaces:
        (entry,) = yaml.safe_load((REPO / w).read_text())["load_from"]
        server = entry["grpc_server"]
        socket.getaddrinfo(server["host"], server["port"])  # resolvable on this machine
        assert (server["port"], server["location_name"]) == (port, location)
    # the compose file keeps its own, naming the container
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    assert "/opt/archive_platform/deploy/workspace.yaml" in compose["services"]["webserver"]["command"]
    (entry,) = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())["load_from"]
    assert entry["grpc_server"]["host"] == "code_server"


def test_the_documented_pg_dump_names_the_port():
    backup = DOC.read_text().split("## Backup", 1)[1]
    commands = re.findall(r"`(pg_dump [^`]*)`", backup.replace("\n  ", " "))
    # the instance's database and the lake catalog: an empty list used to pass without a check
    assert [c.split(" -h ")[0] for c in commands] == [
        "pg_dump --format=custom", "pg_dump --format=custom -n archive_live -n archive_sim"], commands
    for command in commands:
        assert re.search(r" -p ", command), command
    assert '-p "$DAGSTER_PG_PORT"' in commands[0]


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_the_documented_code_server_and_webserver_run_as_written(tmp_path):
    """The install step and the first two processes exactly as documented (their ports are the
    documented ones, so the test is skipped when something else holds them): the webserver
    loads the code location from the code server."""
    web = next(c for c in COMMANDS if "dagster-webserver" in c)
    ports = [int(re.search(r" -p (\d+)", c).group(1)) for c in (GRPC, web)]
    if not all(_free(p) for p in ports):
        pytest.skip(f"ports {ports} are in use on this machine")
    install = next(c for c in COMMANDS if c.startswith("deploy/instance/install-config"))
    procs = []
    with postgres_server() as pg:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "ARCHIVE_"))}
        env.update(pg.env(), DAGSTER_HOME=str(tmp_path / "home"), DAGSTER_GRPC_TIMEOUT_SECONDS="180",
                   ARCHIVE_ROOT=str(tmp_path / "live"), ARCHIVE_SIM_ROOT=str(tmp_path / "sim"),
                   ARCHIVE_DUCKDB=str(tmp_path / "live.duckdb"), ARCHIVE_SIM_DUCKDB=str(tmp_path / "sim.duckdb"))
        subprocess.run(["bash", "-c", install], cwd=REPO, env=env, check=True, capture_output=True)
        try:
            for i, command in enumerate((GRPC, web)):
                log = open(tmp_path / f"{i}.log", "wb")  # noqa: SIM115 - closed with the process
                procs.append(subprocess.Popen(["bash", "-c", command], cwd=REPO, env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
            query = ("{ workspaceOrError { ... on Workspace { locationEntries { name "
                     "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
            deadline, entries = time.monotonic() + 600, None
            while time.monotonic() < deadline:
                assert all(p.poll() is None for p in procs), [(tmp_path / f"{i}.log").read_text()[-2000:] for i in range(2)]
                with contextlib.suppress(httpx.HTTPError):
                    entries = httpx.post(f"http://127.0.0.1:{ports[1]}/graphql", json={"query": query},
                                         timeout=30).json()["data"]["workspaceOrError"]["locationEntries"]
                    if entries and entries[0]["locationOrLoadError"] and \
                            entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                        break
                time.sleep(2)
            assert entries and entries[0]["name"] == "archive_platform", entries
            assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
