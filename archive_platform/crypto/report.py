"""Coverage of one stored UTC day of the crypto datasets, per stream (pure; the daily checks).

A *stream* is one (exchange, dataset, symbol). Every stream is judged in 100 ms slots of the day
(864,000), or in the slots of the cadence its source declares:

* books: a slot is present when it holds at least one snapshot (``coverage.coverage``), at the
  exchange's cadence (``BOOK_CADENCE_MS``: Binance 100 ms; Hyperliquid sends a book on change,
  judged per 1 s; the simulated venue declares 1 s);
* trades: trades are not periodic, so a slot is present unless it lies inside a recorded capture
  gap of the stream (``capture_gaps``); where trade ids are consecutive (Binance aggregate ids,
  the simulated venue) the ratio of ids present is judged too, and the lower ratio counts.

``ratio`` below the threshold (``ARCHIVE_CRYPTO_COVERAGE_MIN``) fails the day's coverage check.
Configured streams without a single row are reported with ratio 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive_platform.crypto.coverage import coverage
from archive_platform.crypto.daily import SIM_BOOK_MS, day_bounds, distinct_count
from archive_platform.crypto.normalise import STREAMS

SLOT_MS = 100
SLOTS_PER_DAY = 86_400_000 // SLOT_MS
BOOK_CADENCE_MS = {"binance": 100, "hyperliquid": 1000, "sim": SIM_BOOK_MS}
#: exchanges whose trade ids are consecutive per symbol (a hole is a missed trade)
CONSECUTIVE_IDS = {"binance", "sim"}


#: empty runs of at least 1 s listed per book stream (the count is ``missing_runs``)
MAX_GAPS_LISTED = 10


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat()


def _us(ts) -> int:
    return int(ts.timestamp() * 1_000_000) if hasattr(ts, "timestamp") else int(ts)


def gap_slots(gaps: pa.Table, day: date, exchange: str, stream: str, symbol: str, cadence_ms: int = SLOT_MS) -> tuple[int, int]:
    """(slots of the day inside the stream's gaps, number of gaps), gaps merged when they overlap."""
    lo, hi = (_us(t) for t in day_bounds(day))
    rows = [r for r in gaps.select(["exchange", "stream", "symbol", "start", "end"]).to_pylist()
            if (r["exchange"], r["stream"], r["symbol"]) == (exchange, stream, symbol)]
    spans = sorted((max(_us(r["start"]), lo), min(_us(r["end"]), hi)) for r in rows)
    step = cadence_ms * 1000
    covered, cur_a, cur_b = 0, None, None
    for a, b in spans:
        if b <= a:
            continue
        if cur_b is not None and a <= cur_b:
            cur_b = max(cur_b, b)
            continue
        if cur_b is not None:
            covered += (cur_b - cur_a) // step
        cur_a, cur_b = a, b
    if cur_b is not None:
        covered += (cur_b - cur_a) // step
    return int(covered), len(rows)


def _keys(table: pa.Table) -> list[tuple[str, str]]:
    if table.num_rows == 0:
        return []
    got = table.select(["exchange", "symbol"]).group_by(["exchange", "symbol"]).aggregate([]).to_pylist()
    return sorted((r["exchange"], r["symbol"]) for r in got)


def book_streams(books: pa.Table, gaps: pa.Table, day: date, expected: Iterable[tuple[str, str]] = (),
                 cadence_ms: Mapping[str, int] = BOOK_CADENCE_MS) -> list[dict]:
    out = []
    present = set()
    for ex in sorted({k[0] for k in _keys(books)}):
        cad = cadence_ms.get(ex, SLOT_MS)
        for c in coverage(books.filter(pc.equal(books["exchange"], ex)), day, cadence_ms=cad):
            present.add((c.exchange, c.symbol))
            _, n_gaps = gap_slots(gaps, day, c.exchange, STREAMS.get((ex, "orderbook_l2"), ""), c.symbol)
            out.append({"stream": f"{c.exchange}:orderbook_l2:{c.symbol}", "cadence_ms": cad,
                        "expected_slots": c.expected_slots, "present_slots": c.present_slots,
                        "ratio": round(c.ratio, 6), "missing_runs": c.missing_runs,
                        "longest_gap_s": c.longest_gap_s, "recorded_gaps": n_gaps, "crossed": c.crossed,
                        "locked": c.locked, "out_of_order": c.out_of_order,
                        "gap_spans": [[_iso(a), _iso(b)] for a, b in c.gaps[:MAX_GAPS_LISTED]]})
    for ex, sym in sorted(set(expected) - present):
        cad = cadence_ms.get(ex, SLOT_MS)
        out.append({"stream": f"{ex}:orderbook_l2:{sym}", "cadence_ms": cad, "expected_slots": 86_400_000 // cad,
                    "present_slots": 0, "ratio": 0.0, "missing_runs": 1, "longest_gap_s": 86400.0,
                    "recorded_gaps": 0, "crossed": 0, "locked": 0, "out_of_order": 0,
                    "gap_spans": [[t.isoformat() for t in day_bounds(day)]]})
    return out


def trade_streams(trades: pa.Table, gaps: pa.Table, day: date, expected: Iterable[tuple[str, str]] = ()) -> list[dict]:
    out = []
    keys = _keys(trades)
    for ex, sym in sorted(set(keys) | set(expected)):
        t = trades.select(["exchange", "symbol", "event_time", "trade_id"])
        t = t.filter(pc.and_(pc.equal(t["exchange"], ex), pc.equal(t["symbol"], sym)))
        missing, n_gaps = gap_slots(gaps, day, ex, STREAMS.get((ex, "crypto_trades"), ""), sym)
        ratio = 1.0 - missing / SLOTS_PER_DAY if t.num_rows else 0.0
        ids_ratio, holes, out_of_order = None, 0, 0
        if t.num_rows:
            order = pc.sort_indices(t, [("event_time", "ascending"), ("trade_id", "ascending")])
            ids = t["trade_id"].take(order).to_numpy()
            if ex in CONSECUTIVE_IDS:  # other ids (Hyperliquid's tid: a hash) have no order
                out_of_order = int(np.sum(np.diff(ids) <= 0))
                distinct = distinct_count(ids)
                holes = int(ids.max() - ids.min() + 1 - distinct)
                ids_ratio = distinct / (distinct + holes)
                ratio = min(ratio, ids_ratio)
        out.append({"stream": f"{ex}:crypto_trades:{sym}", "cadence_ms": SLOT_MS, "trades": t.num_rows,
                    "expected_slots": SLOTS_PER_DAY, "present_slots": SLOTS_PER_DAY - missing if t.num_rows else 0,
                    "ratio": round(ratio, 6), "recorded_gaps": n_gaps, "id_holes": holes,
                    "ids_ratio": None if ids_ratio is None else round(ids_ratio, 6),
                    "out_of_order": out_of_order})
    return out


def gap_streams(gaps: pa.Table, day: date) -> list[dict]:
    out = {}
    for r in gaps.select(["exchange", "stream", "symbol"]).to_pylist():
        key = (r["exchange"], r["stream"], r["symbol"])
        if key not in out:
            slots, n = gap_slots(gaps, day, *key)
            out[key] = {"stream": ":".join(key), "gaps": n, "missing_slots": slots,
                        "ratio": round(1.0 - slots / SLOTS_PER_DAY, 6)}
    return [out[k] for k in sorted(out)]


def judge(streams: list[dict], minimum: float) -> tuple[bool, str]:
    """(passed, description): every stream's ratio at least ``minimum``."""
    if not streams:
        return True, "no streams to judge"
    low = [s for s in streams if s["ratio"] < minimum]
    worst = min(streams, key=lambda s: s["ratio"])
    if not low:
        return True, f"{len(streams)} streams covered >= {minimum:.2%} (lowest {worst['stream']} {worst['ratio']:.4%})"
    return False, (f"{len(low)} of {len(streams)} streams under {minimum:.2%}: "
                   + ", ".join(f"{s['stream']} {s['ratio']:.4%}" for s in low[:5]))
