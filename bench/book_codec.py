"""Benchmark of the physical encodings of ``orderbook_l2`` (issue 13: stored bytes per book
snapshot <= 0.25x the same snapshots as zstd-compressed JSON lines).

Baseline, measured in the same run: the snapshots as the exchange sends them (Binance
``depth20@100ms`` combined-stream messages; Hyperliquid ``l2Book`` with order counts), one JSON
message per line, compressed whole with zstd (default level, and levels 9 and 19). Candidates:
the contract layout (list<float64>) under several Parquet options, integer layouts, and
``crypto.book_codec`` (best level + list of gaps in ticks, list of sizes in lots).
Each row prints bytes per snapshot, the ratio to zstd JSON lines, the write time (codec
encode included) and the read time (codec decode included).

Books: the simulated venue (``crypto.sim_venue``, BTCUSDT at 100 ms). Its sizes stick to the
level index between snapshots; ``--attached`` adds a variant whose sizes stick to the price
(a level's size moves with it when the book shifts), as on a real venue. Captured data may
differ from both.

Usage: .venv/bin/python bench/book_codec.py [--hours 1] [--attached] [--day | --only-day]
(--day: also encode/decode times of one symbol-day, 864,000 snapshots)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from capture import T0, json_lines  # noqa: E402

from archive_platform.crypto import book_codec  # noqa: E402
from archive_platform.crypto.schemas import ORDERBOOK_L2, WRITER_OPTIONS  # noqa: E402
from archive_platform.crypto.sim_venue import LEVELS, _persistent, format_price, simulate, window_tables  # noqa: E402

OLD_TUNED = {"compression": "zstd", "compression_level": 9, "use_dictionary": ["exchange", "symbol", "source"]}
DELTA_IDS = {c: "DELTA_BINARY_PACKED" for c in ("event_time", "receive_time", "update_id", "prev_update_id")}


def books_of(w, *, counts: bool) -> pa.Table:
    _, books = window_tables(w, exchange="binance" if not counts else "hyperliquid",
                             source="binance" if not counts else "hyperliquid")
    if not counts:  # Binance sends no order counts: stored as null lists
        for c in ("bid_n", "ask_n"):
            books = books.set_column(books.schema.get_field_index(c), ORDERBOOK_L2.field(c),
                                     pa.nulls(books.num_rows, books[c].type))
    return books


def hyperliquid_lines(w) -> bytes:
    td, sd = w.inst.tick_decimals, w.inst.size_decimals

    def lv(ticks, lots, n, i):
        return [{"px": format_price(int(ticks[i, k]), td), "sz": format_price(int(lots[i, k]), sd), "n": int(n[i, k])}
                for k in range(LEVELS)]
    out = [json.dumps({"channel": "l2Book", "data": {"coin": "BTC", "time": int(w.book_time[i]) // 1000, "levels": [
        lv(w.bid_ticks, w.bid_lots, w.bid_n, i), lv(w.ask_ticks, w.ask_lots, w.ask_n, i)]}}, separators=(",", ":"))
        for i in range(len(w.book_time))]
    return ("\n".join(out) + "\n").encode()


def price_attached(w, seed: int = 5):
    """Sizes that belong to a price (a persistent size per price slot, tick mod 1024) instead of
    to a level index: when the touch moves, the sizes move with their prices."""
    r = np.random.default_rng(seed)
    n, slots = len(w.book_time), 1024
    rows = np.arange(n)[:, None]

    def field() -> np.ndarray:
        noise = _persistent(r, n, np.full(slots, 0.15), 1.0,
                            lambda sh: r.lognormal(0, 0.7, sh) * np.where(r.random(sh) < 0.02, 10.0, 1.0))
        return np.maximum(1, np.round(2 * w.inst.lot_base * noise)).astype(np.int64)
    w.bid_lots = field()[rows, w.bid_ticks % slots]
    w.ask_lots = field()[rows, w.ask_ticks % slots]
    w.bid_n = (1 + w.bid_lots * 2 // w.inst.lot_base).astype(np.int32)
    w.ask_n = (1 + w.ask_lots * 2 // w.inst.lot_base).astype(np.int32)
    return w


def wide_ints(books: pa.Table, w, prices: str, *, sparse: bool = False) -> pa.Table:
    """Experimental one-int64-column-per-level layouts from the simulator's tick arrays (bytes
    only, no decoder). ``sparse``: null where a level kept its value from the previous snapshot
    (decoding would need the previous row)."""
    cols = {c: books[c] for c in book_codec.PLAIN}
    bt, at = w.bid_ticks, w.ask_ticks
    if prices == "absolute":
        forms = {"bt": bt, "at": at}
    elif prices == "offsets":  # distance from the best level
        forms = {"b0": bt[:, :1], "a0": at[:, :1], "bo": bt[:, :1] - bt[:, 1:], "ao": at[:, 1:] - at[:, :1]}
    else:  # "gaps": best level + gap to the level before
        forms = {"b0": bt[:, :1], "a0": at[:, :1], "bg": -np.diff(bt, axis=1), "ag": np.diff(at, axis=1)}
    forms |= {"bs": w.bid_lots, "as": w.ask_lots}
    if books["bid_n"].null_count < books.num_rows:
        forms |= {"bn": w.bid_n.astype(np.int64), "an": w.ask_n.astype(np.int64)}
    for name, m in forms.items():
        for k in range(m.shape[1]):
            a = m[:, k]
            same = np.zeros(len(a), bool)
            if sparse:
                same[1:] = a[1:] == a[:-1]
            cols[f"{name}{k}"] = pa.array(a, mask=same if sparse else None)
    return pa.table(cols)


def int_lists(books: pa.Table, w) -> pa.Table:
    off = pa.array(np.arange(0, len(w.book_time) * LEVELS + 1, LEVELS, dtype=np.int32))
    cols = {c: books[c] for c in book_codec.PLAIN}
    for name, m in (("bt", w.bid_ticks), ("at", w.ask_ticks), ("bs", w.bid_lots), ("as", w.ask_lots)):
        cols[name] = pa.ListArray.from_arrays(off, pa.array(m.reshape(-1)))
    return pa.table(cols)


def run(table: pa.Table, options: dict, encode=None, decode=None) -> tuple[int, float, float]:
    t = time.perf_counter()
    phys = encode(table) if encode else table
    sink = pa.BufferOutputStream()
    pq.write_table(phys, sink, **options)
    buf = sink.getvalue()
    t_write = time.perf_counter() - t
    t = time.perf_counter()
    back = pq.read_table(pa.BufferReader(buf))
    if decode:
        back = decode(back)
    return buf.size, t_write, time.perf_counter() - t


def candidates(books: pa.Table, w) -> list[tuple[str, pa.Table, dict, object, object]]:
    enc, dec, opts = book_codec.encode, book_codec.decode, book_codec.PARQUET_OPTIONS
    nodict = {"compression": "zstd", "compression_level": 9, "use_dictionary": False}
    leaves = [f"{s}_{q}.list.element" for s in ("bid", "ask") for q in ("gaps", "lots")]
    return [
        ("contract list<float64>, Parquet zstd defaults", books, {"compression": "zstd"}, None, None),
        ("contract, zstd 9, no dictionary on levels (old WRITER_OPTIONS)", books, OLD_TUNED, None, None),
        ("contract, + delta time/id columns (WRITER_OPTIONS)", books, WRITER_OPTIONS["orderbook_l2"], None, None),
        ("contract, BYTE_STREAM_SPLIT on level floats", books, {**OLD_TUNED, "column_encoding": {  # the leaf path:
            f"{c}.list.element": "BYTE_STREAM_SPLIT" for c in ("bid_px", "bid_sz", "ask_px", "ask_sz")}}, None, None),
        ("list<int64> absolute ticks and lots, zstd 9 no dict", int_lists(books, w), nodict, None, None),
        ("int64 column per level: absolute ticks, lots", wide_ints(books, w, "absolute"), opts, None, None),
        ("int64 column per level: best + offsets from best, lots", wide_ints(books, w, "offsets"), opts, None, None),
        ("int64 column per level: best + gaps, lots", wide_ints(books, w, "gaps"), opts, None, None),
        ("same, changed levels only (null = as before)", wide_ints(books, w, "gaps", sparse=True), opts, None, None),
        ("codec, dictionary on every column", books, {**opts, "use_dictionary": [
            c for c in book_codec.PHYSICAL.names if c not in DELTA_IDS]}, enc, dec),
        ("codec, DELTA_BINARY_PACKED on gaps and lots", books, {**opts, "column_encoding": {
            **DELTA_IDS, **{c: "DELTA_BINARY_PACKED" for c in leaves}}}, enc, dec),
        ("codec, zstd 3", books, {**opts, "compression_level": 3}, enc, dec),
        ("codec, zstd 19", books, {**opts, "compression_level": 19}, enc, dec),
        ("codec, row groups of 8,192 rows", books, {**opts, "row_group_size": 8_192}, enc, dec),
        ("codec: best + gap lists in ticks, lot lists, zstd 9 (PARQUET_OPTIONS)", books, opts, enc, dec),
    ]


def report(title: str, books: pa.Table, w, lines: bytes, *, short: bool) -> None:
    n = books.num_rows
    zj = {lvl: len(pa.Codec("zstd", compression_level=lvl).compress(lines, asbytes=True)) / n for lvl in (1, 3, 9, 19)}
    base = zj[3]
    print(f"\n{title}: {n:,} snapshots, 20 levels a side; JSON lines {len(lines) / n:.0f} B/snapshot; "
          f"zstd JSON lines: level 1 (pyarrow's default) {zj[1]:.1f}, level 3 (the zstd tool's default, the "
          f"baseline) {zj[3]:.1f}, level 9 {zj[9]:.1f}, level 19 {zj[19]:.1f} B")
    print(f"{'layout':74s} {'B/snap':>7s} {'vs zstd JSON':>12s} {'vs JSON z19':>11s} {'write s':>8s} {'read s':>7s}")
    rows = candidates(books, w)
    if short:
        rows = [rows[1], rows[2], rows[7], rows[-1]]
    for name, table, options, enc, dec in rows:
        size, tw, tr = run(table, options, enc, dec)
        print(f"{name:74s} {size / n:7.1f} {size / n / base:11.3f}x {size / n / zj[19]:10.3f}x {tw:8.2f} {tr:7.2f}")


def day_times() -> None:
    w = simulate("BTCUSDT", T0, T0 + 86_400_000_000, seed=2, book_ms=100)
    books = books_of(w, counts=False)
    n = books.num_rows
    print(f"\none symbol-day ({n:,} snapshots), times in seconds:")
    t_enc = t_dec = float("inf")
    for _ in range(2):  # best of two: the machine is shared
        t = time.perf_counter()
        phys = book_codec.encode(books)
        t_enc = min(t_enc, time.perf_counter() - t)
        t = time.perf_counter()
        back = book_codec.decode(phys)
        t_dec = min(t_dec, time.perf_counter() - t)
    assert back.equals(books)
    for name, table, options, enc, dec in (
            ("contract, WRITER_OPTIONS", books, WRITER_OPTIONS["orderbook_l2"], None, None),
            ("codec, PARQUET_OPTIONS", books, book_codec.PARQUET_OPTIONS, book_codec.encode, book_codec.decode)):
        size, tw, tr = run(table, options, enc, dec)
        print(f"  {name:28s} {size / n:6.1f} B/snapshot  write {tw:6.2f}  read {tr:6.2f}")
    print(f"  codec alone (best of 2): encode {t_enc:.2f}, decode {t_dec:.2f}")
    import duckdb
    with __import__("tempfile").TemporaryDirectory() as tmp:
        pq.write_table(phys, f"{tmp}/p.parquet", **book_codec.PARQUET_OPTIONS)
        pq.write_table(books, f"{tmp}/l.parquet", **WRITER_OPTIONS["orderbook_l2"])
        con = duckdb.connect()
        for name, sql in (("DuckDB plain read of the contract file", f"SELECT * FROM read_parquet('{tmp}/l.parquet')"),
                          ("DuckDB view with decode_sql", f"SELECT {book_codec.decode_sql('p')} "
                                                          f"FROM read_parquet('{tmp}/p.parquet') p")):
            t = time.perf_counter()
            con.sql(f"SELECT sum(list_sum(bid_sz)), sum(ask_px[1]) FROM ({sql})").fetchall()
            print(f"  {name}: sum over all levels {time.perf_counter() - t:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1)
    ap.add_argument("--attached", action="store_true", help="also the price-attached sizes variant")
    ap.add_argument("--day", action="store_true", help="encode/decode times of one symbol-day")
    ap.add_argument("--only-day", action="store_true", help="only the symbol-day times")
    a = ap.parse_args()
    print(f"orderbook_l2 physical encodings ({os.cpu_count()} cores)")
    end = T0 + int(a.hours * 3600e6)
    if a.only_day:
        return day_times()
    w = simulate("BTCUSDT", T0, end, seed=2, book_ms=100)
    report("Binance BTCUSDT depth20@100ms (simulated venue)", books_of(w, counts=False), w, json_lines(w), short=False)
    report("Hyperliquid-style l2Book with order counts (simulated venue)", books_of(w, counts=True), w,
           hyperliquid_lines(w), short=True)
    if a.attached:
        w2 = price_attached(simulate("BTCUSDT", T0, end, seed=2, book_ms=100))
        report("Binance, sizes attached to prices (variant)", books_of(w2, counts=False), w2, json_lines(w2), short=True)
    if a.day:
        day_times()


if __name__ == "__main__":
    main()
