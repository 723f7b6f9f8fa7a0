"""Processes and a minimal Chrome DevTools Protocol client for the real-browser test.

No new dependency: the webserver and Chromium are subprocesses in their own process groups, and
CDP is spoken over the ``websockets`` package Dagster already installs. Every wait is bounded and
names what it was waiting for when it gives up, with the tail of the process log.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1440,1600", "--remote-debugging-port=0",
]


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(cmd: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so teardown reaches its children), output to a log."""
    log = open(log_path, "wb")  # noqa: SIM115 - the child keeps its own copy of the descriptor
    try:
        return subprocess.Popen(cmd, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()


def stop_process(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; children in its group may linger, so signal the group once more
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a process log, for failure messages."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def wait_until(what: str, check: Callable[[], object], timeout: float, *,
               proc: subprocess.Popen | None = None, log: Path | None = None,
               interval: float = 0.5) -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``.

    Fails early when ``proc`` has exited, since nothing will then change.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode} while waiting"
                                 + (f"\n--- log tail ---\n{log_tail(log)}" if log else ""))
        try:
            last = check()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}"
                         + (f"\n--- log tail ---\n{log_tail(log)}" if log else ""))


#: loopback only: an HTTP(S)_PROXY in the environment must not capture 127.0.0.1
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_http(url: str, body: dict | None = None, timeout: float = 5.0) -> bytes:
    """GET ``url`` (or POST ``body`` as JSON) on loopback and return the response body."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _DIRECT.open(req, timeout=timeout) as resp:
        return resp.read()


LOCATION_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename
    ... on RepositoryLocation { repositories { assetNodes { assetKey { path } } } }
    ... on PythonError { message } } } } } }"""


def fetch_location_assets(base_url: str) -> list[str] | None:
    """Asset keys of the loaded code location, ``None`` while loading; raises on a load error."""
    reply = json.loads(fetch_http(f"{base_url}/graphql", {"query": LOCATION_QUERY}))
    entries = reply["data"]["workspaceOrError"]["locationEntries"]
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return None
    keys = []
    for entry in entries:
        loc = entry["locationOrLoadError"]
        if loc["__typename"] == "PythonError":
            raise AssertionError(f"code location {entry['name']} failed to load: {loc['message']}")
        for repo in loc["repositories"]:
            keys += ["/".join(n["assetKey"]["path"]) for n in repo["assetNodes"]]
    return sorted(keys)


class CdpPage:
    """One Chromium page driven over the DevTools websocket (navigate, evaluate, screenshot)."""

    def __init__(self, ws_url: str, timeout: float = 30.0):
        self._stack = ExitStack()
        # proxy=None: never route the loopback DevTools socket through an environment proxy
        self._ws = self._stack.enter_context(
            connect(ws_url, max_size=64 * 2**20, open_timeout=timeout, proxy=None))
        self._ids = itertools.count(1)
        self._timeout = timeout

    def call(self, method: str, **params) -> dict:
        """Send one CDP command and return its result, skipping events that arrive meanwhile."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self._timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"CDP {method}: no reply within {self._timeout:.0f} s")
            reply = json.loads(self._ws.recv(timeout=left))
            if reply.get("id") != msg_id:
                continue
            if "error" in reply:
                raise AssertionError(f"CDP {method} failed: {reply['error']}")
            return reply.get("result", {})

    def navigate(self, url: str) -> None:
        """Load ``url``; the app renders afterwards, so callers wait for text, not for load."""
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise AssertionError(f"navigating to {url} failed: {result['errorText']}")

    def evaluate(self, expression: str) -> object:
        """The JSON value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script {expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def visible_text(self) -> str:
        """What a person can read on the page now (``document.body.innerText``)."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, what: str, ready: Callable[[str], bool], timeout: float) -> str:
        """Poll the visible text until ``ready(text)``; fail with the last text seen."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.visible_text()
            if ready(text):
                return text
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the page "
                             f"showed:\n{text[:4000]}")

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to ``path``."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self._stack.close()


def start_chromium(chromium: str, profile_dir: Path, log_path: Path,
                   timeout: float = 30.0) -> tuple[subprocess.Popen, CdpPage]:
    """Launch headless Chromium on a throwaway profile and attach to its first page.

    With ``--remote-debugging-port=0`` Chromium picks the port and writes it to
    ``DevToolsActivePort`` in the profile, so no port can be raced for.
    """
    proc = start_process([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
                          "about:blank"], os.environ, log_path)
    try:
        port_file = profile_dir / "DevToolsActivePort"
        wait_until("Chromium's DevToolsActivePort file",
                   lambda: port_file.exists() and port_file.read_text().split("\n")[0].strip(),
                   timeout, proc=proc, log=log_path)
        port = int(port_file.read_text().split("\n")[0])

        def page_target():
            targets = json.loads(fetch_http(f"http://127.0.0.1:{port}/json/list"))
            return next((t for t in targets if t.get("type") == "page"), None)

        target = wait_until("a Chromium page target", page_target, timeout, proc=proc,
                            log=log_path)
        page = CdpPage(target["webSocketDebuggerUrl"], timeout=timeout)
        return proc, page
    except BaseException:
        stop_process(proc)
        raise
