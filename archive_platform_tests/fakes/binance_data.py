"""Loopback fake of Binance's public data portal (daily zipped CSV files and their .CHECKSUM).

``FakeBinanceData`` serves ``/data/futures/um/daily/aggTrades/<SYMBOL>/<SYMBOL>-aggTrades-<day>.zip``
(and ``.CHECKSUM``: ``<sha256>  <file name>``) from files registered with ``add_aggtrades``;
anything else is a 404, as the portal answers for a day it has not published. ``statuses`` maps
a path to another HTTP status to answer with (a 403 or 503 of the CDN).
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"


def aggtrades_zip(symbol: str, day: date, lines: list[str], *, header: bool) -> bytes:
    name = f"{symbol}-aggTrades-{day.isoformat()}.csv"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, "\n".join(([HEADER] if header else []) + lines) + "\n")
    return buf.getvalue()


class FakeBinanceData:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.statuses: dict[str, int] = {}
        files, requests, statuses = self.files, self.requests, self.statuses

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                requests.append(self.path)
                body = files.get(self.path)
                status = statuses.get(self.path, 200 if body is not None else 404)
                self.send_response(status)
                body = body if status == 200 and body is not None else b"<Error><Code>NoSuchKey</Code></Error>"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add_aggtrades(self, symbol: str, day: date, data: bytes, *, checksum: str | None = None) -> None:
        path = f"/data/futures/um/daily/aggTrades/{symbol}/{symbol}-aggTrades-{day.isoformat()}.zip"
        self.files[path] = data
        digest = checksum or hashlib.sha256(data).hexdigest()
        self.files[path + ".CHECKSUM"] = f"{digest}  {symbol}-aggTrades-{day.isoformat()}.zip\n".encode()

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
