"""Unusual Whales payload parsing: flow alerts and IV-rank rows -> canonical rows.

Pure: plain dicts in (read through ``PayloadReader``, so a bad field is a ``PayloadError``
naming it and the row), canonical dicts out. ``uw.py`` does the I/O and re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

from archive_platform.calendar import et_offset_minutes, is_trading_day, session
from archive_platform.sources.base import EmptySession
from archive_platform.vendors.occ import parse_occ
from archive_platform.vendors.payload import Bool, Count, Date, Dec, PayloadReader, Row, Str, Timestamp

NAME = "unusual_whales"
#: ``iv_rank_1y`` multiplier to the archive's 0-100 scale, per unit. UW's own API reference
#: documents a fraction (its IV Rank example sends ``"iv_rank_1y": "0.65"``), so ``fraction``
#: is the default; ``percent`` is there in case a plan's live answers turn out to differ.
IV_RANK_UNITS = {"fraction": 100.0, "percent": 1.0}


def _sentiment(option_type: str, ask_prem: float | None, bid_prem: float | None) -> str:
    # Premium paid at the ask means buyers lifted offers: bullish for calls, bearish for puts;
    # premium at the bid the reverse. Missing or equal sides say nothing.
    if ask_prem is None or bid_prem is None or ask_prem == bid_prem:
        return "NEUTRAL"
    buyer_driven = ask_prem > bid_prem
    return "BULLISH" if buyer_driven == (option_type == "CALL") else "BEARISH"


class FlowAlert(Row):
    """A REST flow alert (the spec's "Flow Alert"); ``id`` and ``iv_end`` are only in real
    payloads and the detail example (UNVERIFIED), so optional like everything undocumented."""

    created_at: Timestamp
    option_chain: Str
    ticker: Str
    total_premium: Dec
    # counts: JSON ints in UW's examples, but the spec leaves their type open ("ToBeDone"),
    # so integral floats and digit strings are read too
    volume: Count
    total_size: Count
    type: Str | None = None
    strike: Dec | None = None
    expiry: Date | None = None
    total_ask_side_prem: Dec | None = None
    total_bid_side_prem: Dec | None = None
    id: Str | None = None
    price: Dec | None = None
    underlying_price: Dec | None = None
    open_interest: Count | None = None
    volume_oi_ratio: Dec | None = None
    trade_count: Count | None = None
    iv_end: Dec | None = None
    has_sweep: Bool | None = None
    has_floor: Bool | None = None
    alert_rule: Str | None = None


class IvRankRow(Row):
    """A row of ``/api/stock/{ticker}/iv-rank`` (the spec's "IV Rank")."""

    date: Date
    volatility: Dec | None = None  # null on a day UW has not computed: the row is skipped
    iv_rank_1y: Dec | None = None
    updated_at: Timestamp | None = None


def normalise_flow_alert(row: Mapping[str, Any], index: int, reader: PayloadReader) -> dict[str, Any]:
    """One REST flow alert -> one canonical uw_flow row (a dict keyed by schema column)."""
    a = reader.model(row, index, FlowAlert)
    ts, chain = a.created_at, a.option_chain
    try:
        occ = parse_occ(chain)
    except ValueError as exc:
        raise reader.fail(index, row, f"field 'option_chain': {exc}") from None
    kind = a.type
    if kind is None:
        option_type = "CALL" if occ.right == "C" else "PUT"
    elif kind.lower() in ("call", "put"):
        option_type = kind.upper()
    else:
        raise reader.fail(index, row, f"field 'type' is {kind!r}, expected 'call' or 'put'")
    strike, expiry, alert_id = a.strike, a.expiry, a.id
    ask_prem, bid_prem = a.total_ask_side_prem, a.total_bid_side_prem
    return {
        "timestamp": ts,
        # id is only in the detail example of the spec; fall back to the documented dedup pair
        "alert_id": alert_id or f"{chain}@{ts.isoformat()}",
        "symbol": a.ticker.upper(),
        "option_chain": chain,
        "strike": strike if strike is not None else occ.strike,
        "expiration": expiry if expiry is not None else occ.expiry,
        "option_type": option_type,
        "sentiment": _sentiment(option_type, ask_prem, bid_prem),
        "premium": a.total_premium,
        "ask_side_premium": ask_prem,
        "bid_side_premium": bid_prem,
        "price": a.price,
        "underlying_price": a.underlying_price,
        "volume": a.volume,
        "size": a.total_size,
        "open_interest": a.open_interest,
        "volume_oi_ratio": a.volume_oi_ratio,
        "trade_count": a.trade_count,
        # iv_start/iv_end are in real payloads but not in the spec's list schema (UNVERIFIED)
        "iv": a.iv_end,
        "delta": None,  # REST flow alerts carry no greeks
        "has_sweep": a.has_sweep,
        "has_floor": a.has_floor,
        "alert_rule": a.alert_rule,
        "is_unusual": True,
        "et_offset": et_offset_minutes(ts),
        "source": NAME,
    }


def normalise_iv_rank_rows(
    rows: Sequence[Mapping[str, Any]],
    symbol: str,
    day: date,
    snapshot_times: Sequence[datetime],
    reader: PayloadReader,
    iv_rank_unit: str = "fraction",
) -> list[dict[str, Any]]:
    """Daily UW IV-rank rows -> one iv_rank row per snapshot instant.

    Each snapshot takes the newest row already known at that instant (``updated_at``, or the
    close of the row's date when absent), so a backfilled morning snapshot never sees the
    day's later value. Rows dated after ``day`` are look-ahead and skipped, and so are rows
    with ``volatility`` <= 0 or null, or a null ``iv_rank_1y``: UW is reported [3P] to append
    an unfilled 0 for the current day before computing it. ``volatility`` is a fraction (0.1478); ``iv_rank_1y`` is in
    ``iv_rank_unit`` (UW documents a fraction, 0.65) and is stored on the 0-100 scale (65.0);
    a value outside 0..100 after that is a ``PayloadError`` naming the field and the row.
    UW has no IV percentile: the column is null.
    """
    scale = IV_RANK_UNITS[iv_rank_unit]
    known: list[tuple[datetime, float, float]] = []
    for i, (row, m) in enumerate(zip(rows, reader.models(rows, IvRankRow))):
        row_day, iv = m.date, m.volatility
        if iv is None or m.iv_rank_1y is None:  # not computed (yet): unusable, not an error
            continue
        # rounded so "0.202449" becomes 20.2449, not 20.244899999999998 (binary float noise)
        rank = round(m.iv_rank_1y * scale, 10)
        if iv > 0 and not 0.0 <= rank <= 100.0:
            raise reader.fail(i, row, f"field 'iv_rank_1y' is {rank:g} after normalisation to percent "
                              f"(x{scale:g} from {iv_rank_unit}), outside 0..100 (check iv_rank_unit)")
        at = m.updated_at
        if row_day > day or iv <= 0:
            continue
        if at is None:
            at = session(row_day).close_utc if is_trading_day(row_day) else datetime.combine(
                row_day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc
            )
        known.append((at, iv, rank))
    known.sort(key=lambda k: k[0])
    out = []
    for snap in snapshot_times:
        usable = [k for k in known if k[0] <= snap]
        if not usable:
            raise EmptySession(
                f"{NAME}: no IV-rank row for {symbol} known at {snap.isoformat()} "
                f"({len(rows)} row(s) returned, {len(known)} usable, none known by then)"
            )
        at, iv, rank = usable[-1]
        out.append(
            {
                "timestamp": at,
                "snapshot_time": snap,
                "symbol": symbol,
                "iv": iv,
                "iv_rank": rank,
                "iv_percentile": None,
                "et_offset": et_offset_minutes(at),
                "source": NAME,
            }
        )
    return out
