"""The multi-process Dagster topology as plain processes, for tests and the backfill bench:
a code server (``dagster api grpc``), ``dagster-daemon run`` and ``dagster-webserver`` sharing one
instance (SQLite or PostgreSQL) through a workspace file that points at the code server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from archive_platform_tests.pg_helpers import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "archive_platform"


def install_instance(home: Path, storage: str, overrides: Mapping | None = None) -> dict:
    """Install the repository's instance template into ``home`` exactly as ``./run`` does, then
    apply ``overrides`` (nested keys); returns the resulting config."""
    subprocess.run([str(REPO / "deploy" / "instance" / "install-config"), str(home), storage], check=True)
    path = home / "dagster.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


@dataclass
class Topology:
    home: Path
    grpc_port: int
    web_port: int
    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def log_tail(self, name: str, n: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        resp = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=120)
        resp.raise_for_status()
        body = resp.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


def _wait(what: str, ok, timeout: float, procs: Mapping[str, subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {p.returncode} while waiting for {what}:\n{tail}")
        with contextlib.suppress(Exception):
            if ok():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout} s")


def _stop(procs: Mapping[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


AUTOMATION = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { id status } } schedules { name scheduleState { id status } } } } } }
"""
STOP_SENSOR = "mutation($id: String!) { stopSensor(id: $id) { __typename } }"
STOP_SCHEDULE = "mutation($id: String!) { stopRunningSchedule(id: $id) { __typename } }"


def stop_automation(url: str) -> list[str]:
    """Switch off every schedule and sensor (they default to running and follow the real clock,
    which would add runs to a test or a bench); returns the names stopped."""
    def gql(query, variables=None):
        resp = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=120)
        resp.raise_for_status()
        return resp.json()["data"]

    stopped = []
    for repo in gql(AUTOMATION)["repositoriesOrError"]["nodes"]:
        for s in repo["sensors"]:
            if s["sensorState"]["status"] == "RUNNING":
                gql(STOP_SENSOR, {"id": s["sensorState"]["id"]})
                stopped.append(s["name"])
        for s in repo["schedules"]:
            if s["scheduleState"]["status"] == "RUNNING":
                gql(STOP_SCHEDULE, {"id": s["scheduleState"]["id"]})
                stopped.append(s["name"])
    return stopped


@contextlib.contextmanager
def topology(home: Path, env: Mapping[str, str], *, module: str = "archive_platform.definitions",
             ready_timeout: float = 300, automation: bool = False) -> Iterator[Topology]:
    """Start code server, webserver and daemon on the instance in ``home`` (already installed)
    with ``env`` added to this process's environment; stop all three (and their children).
    Unless ``automation``, every schedule and sensor is switched off before the daemon starts."""
    logs = home.parent / f"{home.name}-process-logs"  # not $DAGSTER_HOME/logs: Dagster owns it
    logs.mkdir(parents=True, exist_ok=True)
    grpc_port, web_port = free_port(), free_port()
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home),
                "DAGSTER_GRPC_TIMEOUT_SECONDS": env.get("DAGSTER_GRPC_TIMEOUT_SECONDS", "180"),
                "PYTHONUNBUFFERED": "1"}
    workspace = home / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
        "host": "127.0.0.1", "port": grpc_port, "location_name": LOCATION}}]}))
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, cmd: list[str]) -> None:
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        procs[name] = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=home, start_new_session=True)

    try:
        start("code_server", [str(BIN / "dagster"), "api", "grpc", "-m", module, "-h", "127.0.0.1",
                              "-p", str(grpc_port), "--location-name", LOCATION])
        _wait("code server", lambda: subprocess.run(
            [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(grpc_port)],
            capture_output=True, env=full_env, timeout=60).returncode == 0, ready_timeout, procs, logs)
        start("webserver", [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1",
                            "-p", str(web_port)])
        _wait("webserver", lambda: httpx.get(f"http://127.0.0.1:{web_port}/server_info", timeout=5)
              .status_code == 200, ready_timeout, procs, logs)
        if not automation:
            stop_automation(f"http://127.0.0.1:{web_port}")
        start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)])
        yield Topology(home, grpc_port, web_port, full_env, logs, procs)
    finally:
        _stop(procs)
