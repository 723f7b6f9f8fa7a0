"""Benchmark: vendor payload coercion, the project's ``PayloadReader`` vs pydantic v2.

One Polygon option-chain page of 250 rows (the endpoint's maximum ``limit``), shaped like the
fake in ``archive_platform_tests/fakes/polygon.py`` (nested ``details``, ``last_quote``,
``last_trade``, ``day``, ``greeks``, ``underlying_asset``). Both sides produce the same
canonical ``options`` row dicts (checked before timing):

* baseline: the hand-written coercion the project used before, ``PayloadReader.get`` per
  field of each row (kept in this file);
* pydantic: the production path, ``PayloadReader.models`` (one cached
  ``TypeAdapter(list[OptionSnapshot])`` pass over the page with the project's field kinds),
  then ``vendors.polygon.normalise_option_snapshot``.

Prints the median time per page of each and the ratio pydantic / baseline.

Usage: .venv/bin/python bench/payload.py [--rows 250] [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive_platform.calendar import et_offset_minutes  # noqa: E402
from archive_platform.vendors.payload import PayloadReader  # noqa: E402
from archive_platform.vendors.polygon import OptionSnapshot, normalise_option_snapshot  # noqa: E402
from archive_platform_tests.fakes.polygon import option_snapshot  # noqa: E402

UTC = timezone.utc
SNAP = datetime(2025, 1, 15, 15, 0, tzinfo=UTC)


def pydantic_rows(page: list[dict], symbol: str, now: datetime) -> list[dict]:
    """The production path: one pydantic pass over the page, then the mapping."""
    reader = PayloadReader("polygon", "/v3/snapshot/options/SPY?limit=250")
    parsed = reader.models(page, OptionSnapshot)
    return [normalise_option_snapshot(r, i, symbol, SNAP, now, reader, m)
            for i, (r, m) in enumerate(zip(page, parsed))]


def _ns(v: int | None) -> datetime | None:
    return None if v is None else datetime.fromtimestamp(v / 1e9, tz=UTC)


def baseline_rows(page: list[dict], symbol: str, now: datetime) -> list[dict]:
    """The hand-written path it replaced: ``PayloadReader.get`` per field (kept for this bench)."""
    reader = PayloadReader("polygon", "/v3/snapshot/options/SPY?limit=250")
    out = []
    for index, row in enumerate(page):
        g = reader.get
        details = reader.nested(row, index, "details")
        quote = reader.nested(row, index, "last_quote", required=False)
        trade = reader.nested(row, index, "last_trade", required=False)
        day = reader.nested(row, index, "day", required=False)
        greeks = reader.nested(row, index, "greeks", required=False)
        under = reader.nested(row, index, "underlying_asset")
        kind = g(details, index, "contract_type", "str")
        if kind not in ("call", "put"):
            raise reader.fail(index, row, f"field 'details.contract_type' is {kind!r}")
        price = g(under, index, "price", "decimal", required=False)
        if price is None:
            price = g(under, index, "value", "decimal", required=False)
        times = [t for t in (_ns(g(quote, index, "last_updated", "int", required=False)),
                             _ns(g(trade, index, "sip_timestamp", "int", required=False))) if t is not None]
        ts = max(times) if times else now
        out.append({
            "timestamp": ts, "snapshot_time": SNAP, "symbol": symbol,
            "expiry": g(details, index, "expiration_date", "date"),
            "strike": g(details, index, "strike_price", "decimal"),
            "right": "C" if kind == "call" else "P",
            "bid": g(quote, index, "bid", "decimal", required=False),
            "ask": g(quote, index, "ask", "decimal", required=False),
            "last": g(trade, index, "price", "decimal", required=False),
            "volume": g(day, index, "volume", "count", required=False),
            "open_interest": g(row, index, "open_interest", "count", required=False),
            "iv": g(row, index, "implied_volatility", "decimal", required=False),
            "delta": g(greeks, index, "delta", "decimal", required=False),
            "gamma": g(greeks, index, "gamma", "decimal", required=False),
            "theta": g(greeks, index, "theta", "decimal", required=False),
            "vega": g(greeks, index, "vega", "decimal", required=False),
            "underlying_price": price, "et_offset": et_offset_minutes(ts), "source": "polygon",
        })
    return out


def build_page(n: int) -> list[dict]:
    page = []
    for i in range(n):
        strike = 500.0 + 5 * (i // 2)
        page.append(option_snapshot(
            "SPY", date(2025, 1, 17) + timedelta(days=7 * (i % 3)), "C" if i % 2 == 0 else "P", strike,
            underlying_price=585.25, bid=1.0 + i / 100, ask=1.1 + i / 100, last=1.05 + i / 100,
            volume=10 + i, open_interest=100 + i, iv=0.2 + i / 10000,
            greeks={"delta": 0.5, "gamma": 0.01, "theta": -0.2, "vega": 0.3},
            quote_ns=1736953200000000000 + i, trade_ns=1736953100000000000 + i,
        ))
    return page


def timed(fns, page, repeat: int) -> list[float]:
    """Median seconds per page of each of ``fns``, interleaved so machine load hits both alike."""
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, runs):
            t0 = time.perf_counter()
            fn(page, "SPY", SNAP)
            out.append(time.perf_counter() - t0)
    return [statistics.median(r) for r in runs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=250)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    page = build_page(args.rows)
    assert baseline_rows(page, "SPY", SNAP) == pydantic_rows(page, "SPY", SNAP), "outputs differ"
    base, pyd = timed([baseline_rows, pydantic_rows], page, args.repeat)
    print(f"page of {args.rows} Polygon option-chain rows, median of {args.repeat} runs")
    print(f"  baseline PayloadReader : {base * 1e3:8.3f} ms/page")
    print(f"  pydantic TypeAdapter   : {pyd * 1e3:8.3f} ms/page")
    print(f"  ratio pydantic/baseline: {pyd / base:8.2f}x")


if __name__ == "__main__":
    main()
