"""Barchart IV rank / IV percentile (iv_rank): OnDemand API when keyed, else CSV drops.

Facts used (vendor's API documentation): OnDemand ``getEquityOptionsOverviewHistory`` (paid, one symbol
a call, ``apikey`` query param) gives daily ``weightedImpliedVolatility`` and
``impliedVolatilityRank1y``, in OnDemand's JSON envelope ``{"status": {"code", "message"},
"results": [...]}`` (https://www.barchart.com/ondemand/api/getChart shows it), whose
``status.code`` can report a failure with HTTP 200 (429/5xx retried, ``_get_envelope``); the
IV-percentile field name is UNVERIFIED, so the percentile is optional, and both IV units are
documented assumptions below.
Without a key, the website's "IV Rank and IV Percentile" CSV downloads are read from
``csv_dir``: names contain ``iv-rank-and-iv-percentile`` and the ``MM-DD-YYYY`` download date;
columns ``Symbol``, ``Imp Vol``, ``IV Rank``, ``IV Pctl``; values like ``"45.00%"``/``"+0.39%"``;
a last row ``Downloaded from Barchart.com as of MM-DD-YYYY HH:MMam CDT``.

Every snapshot takes the newest value already known at its instant (an OnDemand daily row is
known at its session's close, so a morning snapshot gets the previous session's value). CSV
drops are manual, usually after the close: a snapshot with no earlier download of the day uses
the day's first download, and its ``timestamp`` (the footer's download time) says so.
A symbol with no usable value raises ``EmptySession``; a missing file a ``BarchartFileMissing``.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from archive_platform.calendar import et_offset_minutes, is_trading_day, session
from archive_platform.schemas import ArchiveType
from archive_platform.sources.base import EmptySession, MarketSource, SourceError
from archive_platform.symbols import normalise_us_ticker
from archive_platform.vendors.http import VendorHttpClient
from archive_platform.vendors.payload import (
    Date,
    Dec,
    PayloadReader,
    Row,
    percent_0_100,
    table_from_rows,
    validate_table,
)
from archive_platform.vendors.redact import truncate

log = logging.getLogger(__name__)
NAME = "barchart"
KEY_ENV_VAR = "BARCHART_API_KEY"
HISTORY_PATH = "/getEquityOptionsOverviewHistory.json"
FIELDS = "weightedImpliedVolatility,impliedVolatilityRank1y,impliedVolatilityPercentile1y"
FILE_MARK = "iv-rank-and-iv-percentile"
_FILE_DATE = re.compile(r"(\d{2})-(\d{2})-(\d{4})")
_FOOTER = re.compile(r"Downloaded from Barchart\.com as of (\d{2}-\d{2}-\d{4} \d{1,2}:\d{2}\s*[ap]m)", re.I)
CHICAGO = ZoneInfo("America/Chicago")  # the footer says CDT/CST: Barchart is in Chicago
_EMPTY_CELLS = {"", "N/A", "NA", "-", "--", "unch"}


class BarchartFileMissing(SourceError):
    """No IV-rank CSV for the day in the drop folder."""


def build_http(
    api_key: str, base_url: str = "https://ondemand.websol.barchart.com", **overrides: Any
) -> VendorHttpClient:
    """The OnDemand HTTP client: ``apikey`` query auth, redacted everywhere."""
    options: dict[str, Any] = {"secret_params": {"apikey": api_key}, "key_env_var": KEY_ENV_VAR,
                               "answer_status": envelope_status}
    return VendorHttpClient(NAME, base_url, **{**options, **overrides})


def envelope_status(response) -> tuple[int, str] | None:
    """``(status.code, status.message)`` of an OnDemand answer's envelope, None without one.

    OnDemand wraps every answer in ``{"status": {"code", "message"}, "results": [...]}``
    (https://www.barchart.com/ondemand/api/getChart shows ``"status": {"code": 200,
    "message": "Success."}``) and can report a failure there with HTTP 200: the HTTP client
    retries a 429/5xx code like the same HTTP status (``VendorHttpClient.answer_status``)."""
    try:
        status = response.json().get("status")
    except (ValueError, AttributeError):  # not JSON, or not an object: the reader says so
        return None
    code = status.get("code") if isinstance(status, Mapping) else None
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    message = status.get("message")
    return code, "" if message in (None, "") else str(message)


def parse_percent(text: str | None) -> float | None:
    """``"45.00%"`` -> 45.0, ``"+0.39%"`` -> 0.39, ``"1,234.5"`` -> 1234.5; blanks/N/A -> None."""
    if text is None:
        return None
    s = text.strip()
    if s in _EMPTY_CELLS:
        return None
    return float(s.replace(",", "").replace("%", "").replace("+", "", 1))


def _known_at_close(day: date) -> datetime:
    if is_trading_day(day):
        return session(day).close_utc
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo("America/New_York"))


def select_known(
    values: Sequence[tuple[datetime, float, float, float | None]],
    symbol: str,
    snapshot_times: Sequence[datetime],
    origin: str,
    *,
    allow_later: bool = False,
) -> list[dict[str, Any]]:
    """One iv_rank row per snapshot from ``(known_at, iv, rank, pctl)`` values (pure).

    Each snapshot takes the newest value known at its instant. ``allow_later`` (CSV drops of the
    day, typically downloaded after the close) falls back to the day's earliest download when
    none precedes the snapshot; the row's ``timestamp`` then shows the later download time.
    """
    ordered = sorted(values, key=lambda v: v[0])
    out = []
    for snap in snapshot_times:
        usable = [v for v in ordered if v[0] <= snap] or (ordered[:1] if allow_later else [])
        if not usable:
            raise EmptySession(
                f"{NAME}: no IV rank for {symbol} known at {snap.isoformat()} in {origin} "
                f"({len(ordered)} value(s), all later)"
            )
        at, iv, rank, pctl = usable[-1]
        out.append(
            {"timestamp": at, "snapshot_time": snap, "symbol": symbol, "iv": iv, "iv_rank": rank,
             "iv_percentile": pctl, "et_offset": et_offset_minutes(at), "source": NAME}
        )
    return out


class OverviewRow(Row):
    """A ``getEquityOptionsOverviewHistory`` result row (percentile name UNVERIFIED: optional)."""

    date: Date
    weightedImpliedVolatility: Dec  # noqa: N815 (the API's names)
    impliedVolatilityRank1y: Dec  # noqa: N815
    impliedVolatilityPercentile1y: Dec | None = None  # noqa: N815


def normalise_ondemand_rows(
    rows: Sequence[Mapping[str, Any]], day: date, reader: PayloadReader
) -> list[tuple[datetime, float, float, float | None]]:
    """OnDemand daily rows -> ``(known_at, iv, rank, pctl)``; rows after ``day`` dropped.

    ``weightedImpliedVolatility`` is taken to be in percent like the website (UNVERIFIED), so
    it is divided by 100 to the archive's fraction; rank and percentile stay 0..100.
    """
    out = []
    for i, m in enumerate(reader.models(rows, OverviewRow)):
        row_day = m.date
        if row_day > day:
            continue
        iv, rank, pctl = m.weightedImpliedVolatility, m.impliedVolatilityRank1y, m.impliedVolatilityPercentile1y
        where = f"{reader.endpoint} row {i} ({row_day})"
        percent_0_100(rank, "impliedVolatilityRank1y", where, NAME)
        percent_0_100(pctl, "impliedVolatilityPercentile1y", where, NAME)
        out.append((_known_at_close(row_day), iv / 100.0, rank, pctl))
    return out


CsvValues = dict[str, tuple[float, float, float | None]]  # symbol -> (iv, rank, percentile)


def parse_iv_rank_csv(text: str, origin: str) -> tuple[datetime | None, CsvValues]:
    """A Barchart IV-rank CSV -> (download instant from the footer or None, {symbol: (iv, rank, pctl)}).

    ``Imp Vol`` "45.00%" becomes 0.45; ``IV Rank``/``IV Pctl`` stay 0..100. A row whose
    ``Imp Vol`` or ``IV Rank`` is blank or N/A is left out (unknown, not an error). Errors name
    the file, the column and the data row (1-based, header excluded).
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    downloaded = None
    if lines and (m := _FOOTER.search(lines[-1])):
        text_stamp = re.sub(r"\s*([AP]M)$", r"\1", " ".join(m.group(1).upper().split()))
        stamp = datetime.strptime(text_stamp, "%m-%d-%Y %I:%M%p")
        downloaded = stamp.replace(tzinfo=CHICAGO)
        lines = lines[:-1]
    elif lines and lines[-1].lstrip('"').startswith("Downloaded from"):
        lines = lines[:-1]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("Symbol", "Imp Vol", "IV Rank") if c not in header]
    if missing:
        raise SourceError(f"{NAME}: {origin}: missing column(s) {missing}; header is {header}")
    out: dict[str, tuple[float, float, float | None]] = {}
    for n, raw in enumerate(reader, start=1):
        row = {(k or "").strip(): v for k, v in raw.items()}
        vals = {}
        for col in ("Imp Vol", "IV Rank", "IV Pctl"):
            try:
                vals[col] = parse_percent(row.get(col))
            except ValueError:
                raise SourceError(
                    f"{NAME}: {origin}: data row {n} ({row.get('Symbol')!r}): column {col!r} has "
                    f"{row.get(col)!r}, expected a percentage like '45.00%'"
                ) from None
        sym = (row.get("Symbol") or "").strip().upper()
        if not sym:
            raise SourceError(f"{NAME}: {origin}: data row {n}: column 'Symbol' is empty")
        if vals["Imp Vol"] is None or vals["IV Rank"] is None:
            # the site shows N/A for a symbol it has no IV for (a new listing, an index): that
            # row is unknown, the file's other rows stand; a caller asking for it gets EmptySession
            continue
        for col in ("IV Rank", "IV Pctl"):
            percent_0_100(vals[col], col, f"{origin} data row {n} ({sym})", NAME)
        out[sym] = (vals["Imp Vol"] / 100.0, vals["IV Rank"], vals["IV Pctl"])
    return downloaded, out


def find_csv_files(csv_dir: Path, day: date) -> list[Path]:
    """The IV-rank CSV drops of ``day`` in ``csv_dir`` (by the MM-DD-YYYY date in the name)."""
    stamp = day.strftime("%m-%d-%Y")
    found = sorted(
        p for p in csv_dir.glob(f"*{FILE_MARK}*.csv")
        if any("-".join(g) == stamp for g in _FILE_DATE.findall(p.name))
    )
    if not found:
        raise BarchartFileMissing(
            f"{NAME}: no IV-rank CSV for {day} in {csv_dir}: expected a file named like "
            f"'*{FILE_MARK}*{stamp}*.csv' (the site's 'IV Rank and IV Percentile' download)"
        )
    return found


class BarchartSource(MarketSource):
    """Barchart IV rank: OnDemand history when ``api_key`` is given, else CSV drops in ``csv_dir``."""

    name = NAME
    supported = frozenset({ArchiveType.IV_RANK})
    backfillable = frozenset({ArchiveType.IV_RANK})

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = "https://ondemand.websol.barchart.com",
        csv_dir: Path | None = None,
        *,
        http: VendorHttpClient | None = None,
        timeout: float = 15.0,
        deadline: float | None = None,
    ) -> None:
        if not api_key and csv_dir is None:
            raise ValueError(f"{NAME}: give an OnDemand key ({KEY_ENV_VAR}) or a csv_dir of CSV downloads")
        self.csv_dir = Path(csv_dir) if csv_dir is not None else None
        self.http = http or (
            build_http(api_key, base_url, timeout=timeout, deadline=deadline) if api_key else None
        )

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    def fetch_iv_rank(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """IV (fraction), IV rank and IV percentile (0..100) per symbol per snapshot."""
        symbols = [normalise_us_ticker(s) for s in symbols]
        if self.http is not None:
            rows = self._fetch_ondemand(day, symbols, snapshot_times)
        else:
            rows = self._read_csv(day, symbols, snapshot_times)
        rows.sort(key=lambda r: (r["symbol"], r["snapshot_time"]))
        return validate_table(table_from_rows(rows, ArchiveType.IV_RANK), "iv_rank", NAME)

    def _fetch_ondemand(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> list[dict[str, Any]]:
        assert self.http is not None
        out: list[dict[str, Any]] = []
        for sym in symbols:
            # two weeks back covers the previous session across holidays for morning snapshots
            params = {"symbol": sym, "fields": FIELDS, "startDate": (day - timedelta(days=14)).isoformat(),
                      "endDate": day.isoformat()}
            payload, reader = self._get_envelope(params)
            values = normalise_ondemand_rows(reader.rows(payload, "results"), day, reader)
            if not values:
                raise EmptySession(f"{NAME}: {HISTORY_PATH} returned no rows for {sym} up to {day}")
            out += select_known(values, sym, snapshot_times, HISTORY_PATH)
        return out

    def _get_envelope(self, params: Mapping[str, Any]) -> tuple[Any, PayloadReader]:
        """One OnDemand answer whose envelope says success, and its reader. A 429/5xx
        ``status.code`` was already retried by the HTTP client (``envelope_status``); any other
        code but 200/204 fails here, with Barchart's ``status.message`` (redacted)."""
        assert self.http is not None
        http = self.http
        reader = PayloadReader(NAME, http.endpoint(HISTORY_PATH, params), http.redact)
        payload = http.get_json(HISTORY_PATH, params)
        status = payload.get("status") if isinstance(payload, Mapping) else None
        code = status.get("code") if isinstance(status, Mapping) else None
        if code in (200, 204):
            return payload, reader
        message = status.get("message") if isinstance(status, Mapping) else None
        said = f" ({http.redact(truncate(str(message)))!r})" if message not in (None, "") else ""
        raise reader.fail(None, payload, f"field 'status.code' is {code!r}{said} (not retried), expected 200")

    def _read_csv(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> list[dict[str, Any]]:
        assert self.csv_dir is not None
        files = find_csv_files(self.csv_dir, day)
        parsed = []
        for path in files:
            downloaded, values = parse_iv_rank_csv(path.read_text(encoding="utf-8-sig"), str(path))
            parsed.append((downloaded or _known_at_close(day), values))
        out: list[dict[str, Any]] = []
        for sym in symbols:
            values = [(at, *vals[sym]) for at, vals in parsed if sym in vals]
            if not values:
                names = ", ".join(p.name for p in files)
                raise EmptySession(f"{NAME}: {sym} is not in {names} ({self.csv_dir}), or its IV or "
                                   "IV rank is N/A there")
            out += select_known(values, sym, snapshot_times, str(self.csv_dir), allow_later=True)
        return out
