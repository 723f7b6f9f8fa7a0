"""Benchmark of the crypto capture path (issue 13). Prints figures and ratios against baselines
measured in the same run:

1. CPU share of one core of the capture service (a real ``capture`` process) while it captures
   N symbols of Binance books at 100 ms plus their aggTrades from the loopback fake, in steady
   state (process CPU time over wall time, read from /proc between two instants after start-up).
   Baseline: a bare websockets client on the same streams that only ``json.loads`` each message.
2. Bytes per book snapshot (20 levels a side): the contract layout (list<float64> columns,
   Parquet zstd, default and tuned writer options) vs the same snapshots as zstd-compressed JSON
   lines (the messages as received), and vs a wide fixed-column layout (bid_px_0..19, ...); plus
   the time to read the needed columns and compute micro-price and 5-level depth imbalance;
   and the physical form of ``crypto.book_codec`` (bench/book_codec.py compares encodings).
3. Time to compact one symbol-day of books (864,000 snapshots at 100 ms) from spool files written
   every 10 s (8,640 files) and write the day file (tuned options), vs DuckDB doing the same
   read + dedup + sort + write over the glob.

Usage: .venv/bin/python bench/capture.py [--symbols 10] [--cpu-seconds 20] [--hours 1] [--files 8640]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive_platform.crypto import book_codec, spool  # noqa: E402
from archive_platform.crypto.schemas import WRITER_OPTIONS  # noqa: E402
from archive_platform.crypto.sim_venue import LEVELS, format_price, simulate, window_tables  # noqa: E402
from archive_platform_tests.fakes.binance_ws import FakeBinanceFutures  # noqa: E402

T0 = 1_795_824_000_000_000  # 2026-11-28T00:00Z
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "BNBUSDT", "LINKUSDT", "AVAXUSDT",
           "LTCUSDT", "DOTUSDT", "TRXUSDT"]
CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def bare_client(url: str, seconds: float, ready: Path) -> None:
    """The baseline: receive and json.loads every message, nothing else."""
    from websockets.sync.client import connect

    paths = [url]
    import threading

    def one(u):
        with connect(u) as ws:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    json.loads(ws.recv(timeout=1))
                except TimeoutError:
                    pass

    ts = [threading.Thread(target=one, args=(u,)) for u in paths[0].split("|")]
    ready.write_text("1")
    [t.start() for t in ts]
    [t.join() for t in ts]


def measure_cpu(symbols: list[str], seconds: float) -> tuple[float, float]:
    with FakeBinanceFutures(symbols, seed=1) as server, tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "BINANCE_FUTURES_WS_URL": server.url, "ARCHIVE_CRYPTO_SYMBOLS": ",".join(symbols)}
        env.pop("REDIS_URL", None)
        proc = subprocess.Popen([sys.executable, "-c", "from archive_platform.crypto.cli import capture; capture()",
                                 "--root", root, "--seconds", str(seconds + 30)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        beat = spool.heartbeat_path(root)
        while not beat.exists():
            time.sleep(0.2)
        time.sleep(3)  # past start-up
        c0, w0, m0 = cpu_seconds(proc.pid), time.monotonic(), _messages(beat)
        time.sleep(seconds)
        ours = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
        rate = (_messages(beat) - m0) / (time.monotonic() - w0)
        proc.terminate()
        proc.wait(60)
        names = "/".join(f"{s.lower()}@depth20@100ms" for s in symbols)
        trades = "/".join(f"{s.lower()}@aggTrade" for s in symbols)
        urls = f"{server.url}/public/stream?streams={names}|{server.url}/market/stream?streams={trades}"
        ready = Path(root) / "ready"
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import capture as c; " \
               f"c.bare_client({urls!r}, {seconds + 5}, __import__('pathlib').Path({str(ready)!r}))"
        base = subprocess.Popen([sys.executable, "-c", code], env=env)
        while not ready.exists():
            time.sleep(0.1)
        time.sleep(2)
        c0, w0 = cpu_seconds(base.pid), time.monotonic()
        time.sleep(seconds)
        bare = (cpu_seconds(base.pid) - c0) / (time.monotonic() - w0)
        base.wait(60)
    return ours, bare, rate


def _messages(beat: Path) -> int:
    return json.loads(beat.read_text())["messages"]


def json_lines(w) -> bytes:
    td, sd = w.inst.tick_decimals, w.inst.size_decimals
    out = []
    for i in range(len(w.book_time)):
        e = int(w.book_time[i]) // 1000
        out.append(json.dumps({"stream": "btcusdt@depth20@100ms", "data": {
            "e": "depthUpdate", "E": e, "T": e - 1, "s": "BTCUSDT", "U": e - 4, "u": e, "pu": e - 5,
            "b": [[format_price(int(w.bid_ticks[i, k]), td), format_price(int(w.bid_lots[i, k]), sd)] for k in range(LEVELS)],
            "a": [[format_price(int(w.ask_ticks[i, k]), td), format_price(int(w.ask_lots[i, k]), sd)] for k in range(LEVELS)]}},
            separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


def wide(books: pa.Table) -> pa.Table:
    cols = {n: books[n] for n in ("exchange", "symbol", "event_time", "receive_time", "update_id", "prev_update_id")}
    for name in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        flat = books[name].combine_chunks().values.to_numpy().reshape(-1, LEVELS)
        for k in range(LEVELS):
            cols[f"{name}_{k}"] = pa.array(flat[:, k])
    cols["source"] = books["source"]
    return pa.table(cols)


TUNED = WRITER_OPTIONS["orderbook_l2"]


def parquet_bytes(table: pa.Table, **options) -> int:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **(options or {"compression": "zstd"}))
    return sink.getvalue().size


def features_list(t: pa.Table) -> np.ndarray:
    m = {n: t[n].combine_chunks().values.to_numpy().reshape(-1, LEVELS) for n in ("bid_px", "bid_sz", "ask_px", "ask_sz")}
    return _features(m["bid_px"][:, :5], m["bid_sz"][:, :5], m["ask_px"][:, :5], m["ask_sz"][:, :5])


def features_wide(t: pa.Table) -> np.ndarray:
    g = {n: np.column_stack([t[f"{n}_{k}"].to_numpy() for k in range(5)]) for n in ("bid_px", "bid_sz", "ask_px", "ask_sz")}
    return _features(g["bid_px"], g["bid_sz"], g["ask_px"], g["ask_sz"])


def _features(bp, bs, ap, as_) -> np.ndarray:
    micro = (bp[:, 0] * as_[:, 0] + ap[:, 0] * bs[:, 0]) / (bs[:, 0] + as_[:, 0])
    imb = (bs.sum(1) - as_.sum(1)) / (bs.sum(1) + as_.sum(1))
    return micro + imb


def measure_bytes(hours: float) -> dict:
    w = simulate("BTCUSDT", T0, T0 + int(hours * 3600e6), seed=2, book_ms=100)
    _, books = window_tables(w, exchange="binance", source="binance")
    n = books.num_rows
    for c in ("bid_n", "ask_n"):  # Binance sends no order counts (nor do the JSON lines): null lists
        books = books.set_column(books.schema.get_field_index(c), c, pa.nulls(n, books[c].type))
    raw = json_lines(w)
    zjson = len(pa.compress(raw, "zstd", asbytes=True))
    lists, wides = parquet_bytes(books), parquet_bytes(wide(books))
    tuned, wide_tuned = parquet_bytes(books, **TUNED), parquet_bytes(wide(books), **TUNED)
    codec = parquet_bytes(book_codec.encode(books), **book_codec.PARQUET_OPTIONS)
    # read back from the stored bytes, then compute features: what an analysis pass pays
    lb, wb = _encode(books), _encode(wide(books))
    need_w = [f"{c}_{k}" for c in ("bid_px", "bid_sz", "ask_px", "ask_sz") for k in range(5)]
    t_list = _timed(lambda: features_list(pq.read_table(pa.BufferReader(lb), columns=["bid_px", "bid_sz", "ask_px",
                                                                                      "ask_sz"])))
    t_wide = _timed(lambda: features_wide(pq.read_table(pa.BufferReader(wb), columns=need_w)))
    return {"snapshots": n, "json": len(raw) / n, "zjson": zjson / n, "list": lists / n, "wide": wides / n,
            "tuned": tuned / n, "codec": codec / n, "wide_tuned": wide_tuned / n, "t_list": t_list, "t_wide": t_wide}


def _encode(t: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink, compression="zstd")
    return sink.getvalue()


def _timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure_compaction(files: int) -> tuple[int, int, float, float, float]:
    from datetime import date

    import duckdb

    day = date(2026, 11, 28)
    per = 864_000 // files
    with tempfile.TemporaryDirectory() as root:
        folder = spool.spool_dir(root, "orderbook_l2", day)
        folder.mkdir(parents=True)
        for h in range(24):
            _, books = window_tables(simulate("BTCUSDT", T0 + h * 3_600_000_000, T0 + (h + 1) * 3_600_000_000, seed=3,
                                              book_ms=100), exchange="binance", source="binance")
            for k in range(0, books.num_rows, per):
                pq.write_table(books.slice(k, per), folder / f"part-{h:02d}{k:07d}-1-000000.parquet", compression="zstd")
        written = len(list(folder.glob("part-*.parquet")))  # at least one per hour: --files < 24 writes 24
        t = time.perf_counter()
        table = spool.compact_spool(root, "orderbook_l2", day)
        t_compact = time.perf_counter() - t
        t = time.perf_counter()
        pq.write_table(table, Path(root) / "day.parquet", **TUNED)
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        duckdb.sql(f"""
            COPY (SELECT * EXCLUDE (rn) FROM (
                    SELECT *, row_number() OVER (PARTITION BY exchange, symbol, event_time, update_id
                                                 ORDER BY filename DESC) AS rn
                    FROM read_parquet('{folder}/part-*.parquet', filename = true)) WHERE rn = 1
                  ORDER BY exchange, symbol, event_time, update_id)
            TO '{root}/duck.parquet' (FORMAT parquet, COMPRESSION zstd)""")
        t_duck = time.perf_counter() - t
        return table.num_rows, written, t_compact, t_write, t_duck


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--cpu-seconds", type=float, default=20)
    ap.add_argument("--hours", type=float, default=1)
    ap.add_argument("--files", type=int, default=8640)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: cpu,bytes,compact")
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    print(f"crypto capture bench ({os.cpu_count()} cores)")
    if "cpu" not in skip:
        ours, bare, rate = measure_cpu(SYMBOLS[: a.symbols], a.cpu_seconds)
        print(f"CPU, {a.symbols} symbols books@100ms + aggTrades ({rate:.0f} messages/s): capture service "
              f"{ours:.1%} of one core (target <= 10%); bare json.loads client {bare:.1%}; ratio {ours / bare:.2f}x")
    if "bytes" not in skip:
        b = measure_bytes(a.hours)
        print(f"bytes per snapshot ({b['snapshots']:,} snapshots, 20 levels/side): JSON lines {b['json']:.0f}, "
              f"zstd JSON lines {b['zjson']:.1f}, Parquet zstd list columns {b['list']:.1f} "
              f"({b['list'] / b['zjson']:.2f}x zstd JSON; target <= 0.25x), wide 80 columns {b['wide']:.1f} "
              f"({b['wide'] / b['list']:.2f}x list)")
        print(f"tuned writer (WRITER_OPTIONS: zstd 9, no dictionary on levels, delta time/ids): "
              f"list {b['tuned']:.1f} ({b['tuned'] / b['zjson']:.2f}x "
              f"zstd JSON), wide {b['wide_tuned']:.1f} ({b['wide_tuned'] / b['tuned']:.2f}x list)")
        print(f"physical form (crypto.book_codec: best level + lists of tick gaps and lots, PARQUET_OPTIONS): "
              f"{b['codec']:.1f} ({b['codec'] / b['zjson']:.2f}x zstd JSON; bench/book_codec.py compares encodings)")
        print(f"read the needed columns + features (micro-price, 5-level imbalance): list {b['t_list'] * 1e3:.0f} ms, "
              f"wide {b['t_wide'] * 1e3:.0f} ms ({b['t_wide'] / b['t_list']:.2f}x list)")
    if "compact" not in skip:
        rows, written, tc, tw, td = measure_compaction(a.files)
        print(f"compact one symbol-day ({rows:,} snapshots from {written:,} spool files): compact_spool {tc:.1f} s "
              f"+ write {tw:.1f} s = {tc + tw:.1f} s; DuckDB read+dedup+sort+write {td:.1f} s "
              f"({(tc + tw) / td:.2f}x DuckDB)")


if __name__ == "__main__":
    main()
