"""Backfill ``crypto_trades`` of a past UTC day from Binance's public daily aggTrades files.

Binance publishes one zip per USD-M futures symbol and day at
``<base>/data/futures/um/daily/aggTrades/<SYMBOL>/<SYMBOL>-aggTrades-YYYY-MM-DD.zip`` (base
``https://data.binance.vision``, setting ``BINANCE_DATA_URL``), with a ``.CHECKSUM`` file beside
it (``<sha256>  <file name>``). The zip holds one CSV with the columns agg_trade_id, price,
quantity, first_trade_id, last_trade_id, transact_time (ms), is_buyer_maker; newer files start
with that header row, older ones have none: both are read. ``orderbook_l2`` has no public
history and cannot be backfilled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from datetime import date

import httpx
import numpy as np
import pyarrow as pa

from archive_platform.crypto.schemas import CRYPTO_TRADES, TS
from archive_platform.crypto.symbols import SymbolError, parse_symbol

COLUMNS = ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker")


class BackfillError(RuntimeError):
    pass


def aggtrades_path(symbol: str, day: date) -> str:
    return f"/data/futures/um/daily/aggTrades/{symbol}/{symbol}-aggTrades-{day.isoformat()}.zip"


def normalise_aggtrades_csv(data: bytes, symbol: str, *, receive_us: int) -> pa.Table:
    """CSV text of one aggTrades file -> crypto_trades rows (exchange and source "binance")."""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, if a file has one, is not a column
    except UnicodeDecodeError as exc:
        raise BackfillError(f"{symbol}: aggTrades file is not UTF-8 text ({exc})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if rows and rows[0] and not rows[0][0].strip().lstrip("-").isdigit():
        header = [c.strip() for c in rows[0]]
        if tuple(header[:7]) != COLUMNS:
            raise BackfillError(f"{symbol}: unexpected aggTrades header {header}")
        rows = rows[1:]
    rows = [r for r in rows if r]
    for i, r in enumerate(rows):
        if len(r) < 7:
            raise BackfillError(f"{symbol}: aggTrades line {i + 1} has {len(r)} fields, expected 7")
    try:
        ids = np.array([int(r[0]) for r in rows], dtype=np.int64)
        price = np.array([float(r[1]) for r in rows])
        qty = np.array([float(r[2]) for r in rows])
        t = np.array([int(r[5]) for r in rows], dtype=np.int64)
        maker = np.array([r[6].strip().lower() == "true" for r in rows], dtype=bool)
    except ValueError as exc:
        raise BackfillError(f"{symbol}: bad aggTrades value: {exc}") from None
    # transact_time is in milliseconds; tolerate microseconds (Binance moved spot files to us in 2025)
    t_us = np.where(t > 10**14, t, t * 1000)
    n = len(rows)
    return pa.Table.from_arrays([
        pa.array(["binance"] * n, pa.string()), pa.array([symbol] * n, pa.string()), pa.array(ids),
        pa.array(t_us).cast(TS), pa.array(price), pa.array(qty),
        pa.array(np.where(maker, "sell", "buy")),  # buyer is maker -> the aggressor sold
        pa.array(np.full(n, receive_us, dtype=np.int64)).cast(TS), pa.array(["binance"] * n, pa.string()),
    ], schema=CRYPTO_TRADES)


def fetch_aggtrades_day(symbol: str, day: date, *, base_url: str, client: httpx.Client | None = None,
                        receive_us: int | None = None) -> pa.Table:
    """Download, verify (sha256 against .CHECKSUM when published) and normalise one day."""
    try:
        sym = parse_symbol(symbol, "symbol")
    except SymbolError as exc:
        raise BackfillError(str(exc)) from None
    if sym.exchange != "binance":
        raise BackfillError(f"{symbol}: only Binance USD-M futures have public daily aggTrades files")
    url = base_url.rstrip("/") + aggtrades_path(sym.symbol, day)
    own = client is None
    client = client or httpx.Client(timeout=60, follow_redirects=True)
    try:
        resp = client.get(url)
        if resp.status_code == 404:
            raise BackfillError(f"{sym.symbol} {day}: no aggTrades file published at {url}")
        resp.raise_for_status()
        check = client.get(url + ".CHECKSUM")
        if check.status_code == 200:
            expected = (check.text.split() or [""])[0].lower()
            actual = hashlib.sha256(resp.content).hexdigest()
            if expected != actual:
                raise BackfillError(f"{sym.symbol} {day}: checksum mismatch ({actual} != {expected})")
    except httpx.HTTPError as exc:  # 403/5xx, refused connection, timeout: the caller keeps what it has
        raise BackfillError(f"{sym.symbol} {day}: download of {url} failed: {exc}") from None
    finally:
        if own:
            client.close()
    try:
        with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
            names = [n for n in zf.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise BackfillError(f"{sym.symbol} {day}: expected one CSV in the zip, found {names}")
            data = zf.read(names[0])
    except zipfile.BadZipFile as exc:
        raise BackfillError(f"{sym.symbol} {day}: {url} is not a zip file ({exc})") from None
    import time

    return normalise_aggtrades_csv(data, sym.symbol, receive_us=receive_us or time.time_ns() // 1000)
