"""A loopback HTTP server for vendor-client tests: routes, a request log, scripted failures.

``FakeVendorServer`` runs ``http.server.ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a
daemon thread. Routes map a regular expression over the path to a handler taking a
``FakeRequest`` and returning ``(status, headers, body)`` (body: bytes, str, or anything JSON
serialisable) or just a JSON-serialisable body (status 200). Every request is logged, including
the ones answered by scripted failures, so tests can assert on retries and on the key sent.

    with FakeVendorServer() as srv:
        srv.route(r"/api/thing", lambda req: {"data": []})
        srv.throttle_next(1, retry_after="2")   # one 429 with Retry-After: 2
        srv.fail_next(2, status=503)            # then two 503
        srv.delay_next(1, seconds=0.5)          # then one response held past the client timeout
        ... client.get(srv.url + "/api/thing") ...
        assert len(srv.requests) == 5
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class FakeRequest:
    """One request as the server saw it. ``query`` keeps the last value of each name;
    ``query_lists`` keeps all of them (``rule_name[]=a&rule_name[]=b``). Header names lowercase."""

    method: str
    path: str
    query: dict[str, str]
    query_lists: dict[str, list[str]]
    headers: dict[str, str]
    raw_path: str
    match: re.Match | None = field(default=None, compare=False)


Response = tuple[int, dict[str, str], Any]
Handler = Callable[[FakeRequest], Any]


@dataclass
class _Scripted:
    status: int | None  # None: answer with the route after the delay
    headers: dict[str, str]
    body: Any
    delay: float = 0.0


def _encode(body: Any) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


class FakeVendorServer:
    """Threaded loopback HTTP server with regex routes, a request log and scripted failures."""

    def __init__(self, routes: dict[str, Handler] | None = None) -> None:
        self._routes: list[tuple[re.Pattern, Handler]] = []
        self._script: list[_Scripted] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.requests: list[FakeRequest] = []
        for pattern, handler in (routes or {}).items():
            self.route(pattern, handler)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeVendorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # wake handlers parked in a scripted delay
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeVendorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration --------------------------------------------------------------------
    def route(self, pattern: str, handler: Handler, *, override: bool = False) -> None:
        """Answer paths fully matching ``pattern`` with ``handler``; the first match wins.

        ``override=True`` puts the route in front of those already added, so a test can replace
        one path of an installed vendor fake (e.g. to serve a malformed payload).
        """
        with self._lock:
            if override:
                self._routes.insert(0, (re.compile(pattern), handler))
            else:
                self._routes.append((re.compile(pattern), handler))

    def fail_next(self, n: int, status: int = 500, body: Any = None, headers=None) -> None:
        """The next ``n`` requests (after those already scripted) get ``status``."""
        body = {"error": f"scripted failure {status}"} if body is None else body
        with self._lock:
            self._script += [_Scripted(status, dict(headers or {}), body) for _ in range(n)]

    def throttle_next(self, n: int, retry_after: str | None = "1", body: Any = None) -> None:
        """The next ``n`` requests get 429, with ``Retry-After: retry_after`` unless None."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.fail_next(n, 429, body or {"status": "ERROR", "error": "rate limited"}, headers)

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold the next ``n`` responses for ``seconds`` (longer than the client timeout)."""
        with self._lock:
            self._script += [_Scripted(None, {}, None, seconds) for _ in range(n)]

    # -- inspection -----------------------------------------------------------------------
    def requests_to(self, pattern: str) -> list[FakeRequest]:
        """Logged requests whose path fully matches ``pattern``."""
        rx = re.compile(pattern)
        with self._lock:
            return [r for r in self.requests if rx.fullmatch(r.path)]

    # -- serving --------------------------------------------------------------------------
    def _dispatch(self, req: FakeRequest) -> tuple[Response, float]:
        with self._lock:
            self.requests.append(req)
            scripted = self._script.pop(0) if self._script else None
            routes = list(self._routes)
        delay = 0.0
        if scripted is not None:
            if scripted.status is not None:
                return (scripted.status, scripted.headers, scripted.body), 0.0
            delay = scripted.delay
        for rx, handler in routes:
            m = rx.fullmatch(req.path)
            if m:
                out = handler(replace(req, match=m))
                if isinstance(out, tuple) and len(out) == 3 and isinstance(out[0], int):
                    return out, delay
                return (200, {}, out), delay
        return (404, {}, {"error": f"no fake route for {req.path}"}), delay

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                parts = urlsplit(self.path)
                lists = parse_qs(parts.query, keep_blank_values=True)
                req = FakeRequest(
                    method="GET",
                    path=parts.path,
                    query={k: v[-1] for k, v in lists.items()},
                    query_lists=lists,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    raw_path=self.path,
                )
                try:
                    (status, headers, body), delay = server._dispatch(req)
                except Exception as exc:  # a broken fake must show up as a 500, not a hang
                    status, headers, body, delay = 500, {}, f"fake handler error: {exc!r}", 0.0
                if delay and server._released.wait(delay):
                    return
                payload, ctype = _encode(body)
                try:
                    self.send_response(status)
                    hdrs = {"Content-Type": ctype, **headers}
                    for k, v in hdrs.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a scripted delay beyond its timeout)

            def log_message(self, *args: object) -> None:
                pass

        return _Handler
