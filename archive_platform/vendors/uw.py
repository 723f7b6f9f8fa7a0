"""Unusual Whales REST client: options-flow alerts (uw_flow) and IV rank (iv_rank).

Facts used (VENDORS.md section 1): bearer auth; ``{"data": [...]}`` envelope; decimals as JSON
strings, counts as ints; flow alerts come newest first, at most 200 a page, and are walked back
with ``older_than`` (the API is reported to ignore ``newer_than``, so the window is enforced
here). ``fetch_*`` does the I/O; ``normalise_*`` are pure and can be tested on plain dicts.

Empty results: a symbol with no flow alerts in the window is legitimate (quiet names have
none), so ``fetch_uw_flow`` returns an empty table. IV rank is expected for every symbol every
day, so a symbol without a usable row raises ``EmptySession``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from archive_platform.calendar import et_offset_minutes, is_trading_day, session, window_bounds
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.sources.base import EmptySession, MarketSource
from archive_platform.symbols import normalise_us_ticker
from archive_platform.vendors.http import VendorHttpClient, limiter_for, path_segment
from archive_platform.vendors.occ import parse_occ
from archive_platform.vendors.payload import (
    Bool,
    Date,
    Dec,
    Int,
    PayloadReader,
    Row,
    Str,
    Timestamp,
    table_from_rows,
    validate_table,
)

NAME = "unusual_whales"
KEY_ENV_VAR = "UW_API_KEY"
FLOW_PATH = "/api/option-trades/flow-alerts"
MAX_PAGE = 200
#: ``iv_rank_1y`` multiplier to the archive's 0-100 scale, per unit. UW's own API reference
#: documents a fraction (its IV Rank example sends ``"iv_rank_1y": "0.65"``), so ``fraction``
#: is the default; ``percent`` is there in case a plan's live answers turn out to differ.
IV_RANK_UNITS = {"fraction": 100.0, "percent": 1.0}


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


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
    volume: Int
    total_size: Int
    type: Str | None = None
    strike: Dec | None = None
    expiry: Date | None = None
    total_ask_side_prem: Dec | None = None
    total_bid_side_prem: Dec | None = None
    id: Str | None = None
    price: Dec | None = None
    underlying_price: Dec | None = None
    open_interest: Int | None = None
    volume_oi_ratio: Dec | None = None
    trade_count: Int | None = None
    iv_end: Dec | None = None
    has_sweep: Bool | None = None
    has_floor: Bool | None = None
    alert_rule: Str | None = None


class IvRankRow(Row):
    """A row of ``/api/stock/{ticker}/iv-rank`` (the spec's "IV Rank")."""

    date: Date
    volatility: Dec
    iv_rank_1y: Dec
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
    with ``volatility`` <= 0: UW is reported [3P] to append an unfilled 0 for the current day
    before computing it. ``volatility`` is a fraction (0.1478); ``iv_rank_1y`` is in
    ``iv_rank_unit`` (UW documents a fraction, 0.65) and is stored on the 0-100 scale (65.0);
    a value outside 0..100 after that is a ``PayloadError`` naming the field and the row.
    UW has no IV percentile: the column is null.
    """
    scale = IV_RANK_UNITS[iv_rank_unit]
    known: list[tuple[datetime, float, float]] = []
    for i, (row, m) in enumerate(zip(rows, reader.models(rows, IvRankRow))):
        row_day, iv = m.date, m.volatility
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


def build_http(
    api_key: str, base_url: str = "https://api.unusualwhales.com", **overrides: Any
) -> VendorHttpClient:
    """The UW HTTP client: bearer auth, key redacted, shared per-process breaker and limiter.

    ``overrides`` go to ``VendorHttpClient`` (tests inject ``breaker``, ``sleep``, ``timeout``).
    The default limiter is 2 req/s (burst 5): the 120 req/min of UW's own usage example; plans
    allow more (500-1000/min), so raise it through ``limiter=limiter_for(...)`` if entitled.
    """
    options: dict[str, Any] = {
        "headers": {"Authorization": f"Bearer {api_key}", "UW-CLIENT-API-ID": "100001"},
        "secrets": (api_key,),
        "key_env_var": KEY_ENV_VAR,
    }
    if "limiter" not in overrides:
        options["limiter"] = limiter_for(NAME, 2.0, burst=5)
    return VendorHttpClient(NAME, base_url, **{**options, **overrides})


class UnusualWhalesSource(MarketSource):
    """Unusual Whales: uw_flow (backfillable within the plan's lookback) and iv_rank."""

    name = NAME
    supported = frozenset({ArchiveType.UW_FLOW, ArchiveType.IV_RANK})
    backfillable = frozenset({ArchiveType.UW_FLOW, ArchiveType.IV_RANK})

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.unusualwhales.com",
        *,
        http: VendorHttpClient | None = None,
        page_limit: int = MAX_PAGE,
        timeout: float = 15.0,
        deadline: float | None = None,
        iv_rank_unit: str = "fraction",
    ) -> None:
        if not api_key:
            raise ValueError(f"{NAME}: an API key is required (set {KEY_ENV_VAR})")
        if iv_rank_unit not in IV_RANK_UNITS:
            raise ValueError(f"{NAME}: iv_rank_unit must be one of {sorted(IV_RANK_UNITS)}, got {iv_rank_unit!r}")
        self.iv_rank_unit = iv_rank_unit
        if not 1 <= page_limit <= MAX_PAGE:
            raise ValueError(f"{NAME}: page_limit must be 1..{MAX_PAGE}, got {page_limit}")
        self.page_limit = page_limit
        self.http = http or build_http(api_key, base_url, timeout=timeout, deadline=deadline)

    def close(self) -> None:
        self.http.close()

    # -- uw_flow --------------------------------------------------------------------------
    def fetch_uw_flow(
        self,
        day: date,
        symbols: Sequence[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pa.Table:
        """Flow alerts of ``day`` for ``symbols``; one row per alert, deduplicated by alert_id."""
        # the declaration's window (the whole market date: alerts after 16:00 ET are kept)
        lo, hi = window_bounds(day, spec_for(ArchiveType.UW_FLOW).window)
        hi = min(hi, until) if until else hi

        def in_window(ts: datetime) -> bool:
            return (ts > since if since else ts >= lo) and ts <= hi

        wanted = {normalise_us_ticker(s) for s in symbols}
        fetched = self.fetch_flow_alert_rows(sorted(wanted), max(lo, since) if since else lo, hi)
        rows = [r for r in fetched if r["symbol"] in wanted]
        rows = [r for r in rows if in_window(r["timestamp"])]
        rows.sort(key=lambda r: (r["symbol"], r["timestamp"], r["alert_id"]))
        return validate_table(table_from_rows(rows, ArchiveType.UW_FLOW), "uw_flow", NAME)

    def fetch_flow_alert_rows(
        self, symbols: Sequence[str], lo: datetime, hi: datetime
    ) -> list[dict[str, Any]]:
        """Walk the flow-alert pages back from ``hi`` to before ``lo``; rows normalised and
        deduplicated (not yet filtered to the window)."""
        if not symbols:
            return []
        seen: dict[str, dict[str, Any]] = {}
        # +1 ms: if older_than is strict, alerts stamped exactly at the bound are still included
        cursor = _ms(hi) + 1
        while True:
            params = {"ticker_symbol": ",".join(symbols), "limit": self.page_limit, "older_than": cursor}
            payload = self.http.get_json(FLOW_PATH, params)
            reader = PayloadReader(NAME, self.http.endpoint(FLOW_PATH, params), self.http.redact)
            page = reader.rows(payload, "data")
            if not page:
                break
            new = 0
            oldest = None
            for i, raw in enumerate(page):
                row = normalise_flow_alert(raw, i, reader)
                oldest = row["timestamp"] if oldest is None else min(oldest, row["timestamp"])
                if row["alert_id"] not in seen:
                    seen[row["alert_id"]] = row
                    new += 1
            assert oldest is not None
            if oldest < lo or len(page) < self.page_limit:
                break
            # Overlap by 1 ms so alerts sharing the oldest instant across a page boundary are not
            # lost; if a page brought nothing new, step strictly past it so the walk always ends.
            nxt = _ms(oldest) + 1 if new else _ms(oldest)
            if nxt >= cursor:
                nxt = cursor - 1
            cursor = nxt
        return list(seen.values())

    # -- iv_rank --------------------------------------------------------------------------
    def fetch_iv_rank(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """IV and 1-year IV rank per symbol per snapshot (UW gives no IV percentile)."""
        rows: list[dict[str, Any]] = []
        for sym in [normalise_us_ticker(s) for s in symbols]:
            path = f"/api/stock/{path_segment(sym)}/iv-rank"
            params = {"date": day.isoformat(), "timespan": "1m"}
            payload = self.http.get_json(path, params)
            reader = PayloadReader(NAME, self.http.endpoint(path, params), self.http.redact)
            data = reader.rows(payload, "data")
            if not data:
                raise EmptySession(f"{NAME}: {path} returned no IV-rank rows for {sym} up to {day}")
            rows += normalise_iv_rank_rows(data, sym, day, snapshot_times, reader, self.iv_rank_unit)
        rows.sort(key=lambda r: (r["symbol"], r["snapshot_time"]))
        return validate_table(table_from_rows(rows, ArchiveType.IV_RANK), "iv_rank", NAME)
