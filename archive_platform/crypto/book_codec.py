"""Physical (on-disk) form of ``orderbook_l2``: integer ticks and lots instead of floats.

The logical table (``crypto.schemas.ORDERBOOK_L2``: float64 list columns per side) is what
readers get. On disk each book is stored as integers that repeat from one snapshot to the next
wherever the book did not change, which Parquet's per-column zstd then finds:

* prices: ``px_div`` = 10**d (d <= 12), a grid that holds every price of the row exactly (the
  one most rows of a sample need; a row off it gets the finest its values need);
  ``bid_p0``/``ask_p0`` = the best level in ticks (price * px_div); ``bid_gaps``/``ask_gaps``
  = the tick gap from each level to the next (bids: this - next, asks: next - this; one fewer
  than the levels), which stays put while the touch moves;
* sizes: ``sz_div`` likewise, ``bid_lots``/``ask_lots`` = size * sz_div (integer lots);
* order counts: ``bid_cnt``/``ask_cnt`` (null where the list is null).

Lists rather than one column per level: when the touch moves and every level shifts by one
place, a row's sizes are the previous row's shifted by 8 bytes, which zstd still matches.

Decoding is ``float64(ticks) / px_div``: IEEE division of two exact doubles is correctly
rounded, so it returns the very double that was stored whenever the encoder checked (bit for
bit) that the row's values survive the trip. A row that does not (a price off every decimal
grid up to 12 places, NaN, inf, -0.0, a null level or list, more than 20 levels, sizes and
prices of different lengths, counts of another length, ticks beyond 2**53) is stored as is in
the ``raw_*`` list columns with ``raw`` true: the fallback is per row, and a table with no grid
at all is stored whole in the raw columns. Rows are never reordered.

Pure: pyarrow and numpy only. ``decode_sql`` gives the same decoding as a DuckDB SELECT list.
Measured choices (bench/book_codec.py, docs/performance.md): plain encoding + zstd 9 beats
dictionary, DELTA_BINARY_PACKED and BYTE_STREAM_SPLIT; gaps beat absolute prices and offsets
from the best level; delta encoding makes the time and id columns almost free.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive_platform.crypto.schemas import ORDERBOOK_L2

LEVELS = 20
MAX_DECIMALS = 12
_POW10 = np.array([float(10**d) for d in range(MAX_DECIMALS + 1)])  # exact doubles
_EXACT = 2**53  # integers up to here convert to float64 exactly
SIDES = ("bid", "ask")
PLAIN = ("exchange", "symbol", "event_time", "receive_time", "update_id", "prev_update_id", "source")
LIST_COLUMNS = ("bid_px", "bid_sz", "ask_px", "ask_sz", "bid_n", "ask_n")
MARK = {b"book_codec": b"1"}  # schema metadata of a physical table (layout version 1)
I64_LIST, I32_LIST = pa.list_(pa.int64()), pa.list_(pa.int32())

#: the physical table: plain columns as in the contract, then the integer form, then the fallback
PHYSICAL = pa.schema(
    [ORDERBOOK_L2.field(c) for c in PLAIN]
    + [pa.field("raw", pa.bool_(), nullable=False), pa.field("px_div", pa.float64()), pa.field("sz_div", pa.float64())]
    + [pa.field(f"{s}_p0", pa.int64()) for s in SIDES]
    + [pa.field(f"{s}_{q}", I32_LIST if q == "cnt" else I64_LIST) for s in SIDES for q in ("gaps", "lots", "cnt")]
    + [pa.field(f"raw_{c}", ORDERBOOK_L2.field(c).type) for c in LIST_COLUMNS],
    metadata=MARK,
)

#: pyarrow.parquet.write_table keyword arguments for the physical table (by measurement): plain
#: level lists, so zstd 9 finds the previous snapshot's values a row (160 bytes) back, which a
#: dictionary's bit-packed indices would hide; delta encoding on the time and id columns
PARQUET_OPTIONS: dict = {
    "compression": "zstd",
    "compression_level": 9,
    "use_dictionary": ["exchange", "symbol", "source", "px_div", "sz_div"],
    "column_encoding": {c: "DELTA_BINARY_PACKED" for c in ("event_time", "receive_time", "update_id", "prev_update_id")},
}


class _Levels:
    """One list column as a padded (rows, LEVELS) matrix plus what makes a row unencodable."""

    def __init__(self, arr: pa.ListArray, n: int, width: int = LEVELS):
        offsets = arr.offsets.to_numpy().astype(np.int64)
        child = arr.values
        if n and not arr.null_count and (np.diff(offsets) == width).all():
            full = child.slice(offsets[0], n * width)
            if not full.null_count:  # the usual day: every row full (no gather)
                self.valid, self.ok = np.ones(n, bool), np.ones(n, bool)
                self.len, self.mask = np.full(n, width), np.arange(LEVELS) < np.full((n, 1), width)
                self.matrix = np.zeros((n, LEVELS), full.type.to_pandas_dtype())
                self.matrix[:, :width] = full.to_numpy().reshape(n, width)
                return
        self.valid = ~arr.is_null().to_numpy(zero_copy_only=False)
        self.len = np.where(self.valid, np.diff(offsets), 0)
        fits = self.len <= LEVELS
        self.mask = (np.arange(LEVELS) < self.len[:, None]) & fits[:, None]
        idx = (offsets[:-1, None] + np.arange(LEVELS))[self.mask]
        nulls = child.is_null().to_numpy(zero_copy_only=False)[idx] if len(child) else np.zeros(0, bool)
        values = pc.fill_null(child, 0).to_numpy(zero_copy_only=False) if len(child) else np.zeros(0)
        self.matrix = np.zeros((n, LEVELS), values.dtype if len(child) else np.float64)
        self.matrix[self.mask] = values[idx]
        bad = np.zeros((n, LEVELS), bool)
        bad[self.mask] = nulls
        self.ok = self.valid & fits & ~bad.any(1)


def _same(t: np.ndarray, div, v: np.ndarray) -> np.ndarray:
    """Where the integer t decodes (float64(t) / div) to v bit for bit (so never to -0.0 or NaN)."""
    fits = np.abs(t) < _EXACT
    back = np.where(fits, t, 0).astype(np.int64) / div
    return fits & (back.view(np.int64) == v.view(np.int64))


def _decimals(v: np.ndarray) -> np.ndarray:
    """Smallest d <= MAX_DECIMALS with v == rint(v * 10**d) / 10**d bit for bit, else -1."""
    need = np.full(v.size, -1, np.int8)
    todo = np.flatnonzero(np.isfinite(v))
    for d in range(MAX_DECIMALS + 1):
        if not todo.size:
            break
        x = v[todo]
        with np.errstate(over="ignore"):  # huge values overflow to inf: never on a grid
            t = np.rint(x * _POW10[d])
        ok = _same(t, _POW10[d], x)
        need[todo[ok]] = d
        todo = todo[~ok]
    return need


def _row_decimals(cols: list[_Levels], rows: np.ndarray) -> np.ndarray:
    """Per row: the most decimals any of its values needs, -1 if one is on no grid."""
    d, bad = np.zeros(len(rows), np.int8), np.zeros(len(rows), bool)
    for c in cols:
        m = c.mask[rows]
        dm = np.zeros(m.shape, np.int8)
        dm[m] = _decimals(c.matrix[rows][m])
        d, bad = np.maximum(d, dm.max(1, initial=0)), bad | (dm < 0).any(1)
    return np.where(bad, -1, d)


def _check(cols: list[_Levels], rows, d: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(rows whose values all sit exactly on the 10**-d grid, their integer matrices)."""
    div = _POW10[d][:, None]
    ok, ints = np.ones(len(d), bool), []
    for c in cols:
        m, mask = c.matrix[rows], c.mask[rows]
        with np.errstate(over="ignore", invalid="ignore"):
            t = np.rint(m * div)
        exact = _same(t, div, m)
        ok &= (exact | ~mask).all(1)
        ints.append(np.where(mask & exact, t, 0).astype(np.int64))
    return ok, ints


def _grid(cols: list[_Levels], n: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(per-row divisor, ok rows, integer matrices) for the float columns sharing one grid.

    Every row is tried on the grid most rows of a sample need (one pass: finding each value's
    own decimals costs a pass per decimal place, 1 s per 10 M values here); rows that do not fit
    it get their own grid, the finest their values need."""
    sample = _row_decimals(cols, np.arange(0, n, max(1, n // 2048)))
    guess = np.bincount(sample[sample >= 0]).argmax() if (sample >= 0).any() else 0
    d = np.full(n, guess, np.int8)
    ok, ints = _check(cols, slice(None), d)
    redo = np.flatnonzero(~ok)
    if redo.size:
        own = _row_decimals(cols, redo)
        d[redo] = np.maximum(own, 0)
        ok[redo], part = _check(cols, redo, d[redo])
        ok[redo] &= own >= 0
        for whole, rows in zip(ints, part):
            whole[redo] = rows
    return _POW10[d], ok, ints


def _list(matrix: np.ndarray, length: np.ndarray, valid: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A list column of the first ``length`` entries of each row (null where not ``valid``)."""
    length = np.where(valid, length, 0)
    mask = np.arange(matrix.shape[1]) < length[:, None]
    offsets = pa.array(np.concatenate([[0], np.cumsum(length)]).astype(np.int32))
    values = matrix.reshape(-1) if mask.all() else matrix[mask]
    return pa.ListArray.from_arrays(offsets, pa.array(values, typ.value_type),
                                    mask=None if valid.all() else pa.array(~valid))


def encode(table: pa.Table) -> pa.Table:
    """The physical form of a logical ``orderbook_l2`` table (same rows, same order)."""
    missing = [c for c in ORDERBOOK_L2.names if c not in table.column_names]
    if missing:
        raise ValueError(f"orderbook_l2 encode: table lacks column(s) {missing}")
    wrong = [c for c in LIST_COLUMNS if table.schema.field(c).type != ORDERBOOK_L2.field(c).type]
    if wrong:
        raise ValueError(f"orderbook_l2 encode: column(s) {wrong} are not of the declared types "
                         f"{[str(ORDERBOOK_L2.field(c).type) for c in wrong]}")
    n = table.num_rows
    src = {c: table[c].combine_chunks() if table[c].num_chunks else pa.array([], table[c].type) for c in LIST_COLUMNS}
    lv = {c: _Levels(src[c], n) for c in LIST_COLUMNS}
    ok = np.logical_and.reduce([lv[c].ok for c in LIST_COLUMNS[:4]])
    for s in SIDES:
        px, sz, cnt = lv[f"{s}_px"], lv[f"{s}_sz"], lv[f"{s}_n"]
        ok &= (px.len == sz.len) & (~cnt.valid | (cnt.ok & (cnt.len == px.len)))
    px_div, px_ok, (bp, ap) = _grid([lv["bid_px"], lv["ask_px"]], n)
    sz_div, sz_ok, (bs, as_) = _grid([lv["bid_sz"], lv["ask_sz"]], n)
    ok &= px_ok & sz_ok
    cols = {c: table[c] for c in PLAIN}
    cols["raw"] = pa.array(~ok, pa.bool_())
    cols["px_div"] = pa.array(px_div, mask=None if ok.all() else ~ok)
    cols["sz_div"] = pa.array(sz_div, mask=None if ok.all() else ~ok)
    for s, ticks in (("bid", bp), ("ask", ap)):
        has = ok & (lv[f"{s}_px"].len > 0)
        cols[f"{s}_p0"] = pa.array(ticks[:, 0], mask=None if has.all() else ~has)
    for s, ticks, lots in (("bid", bp, bs), ("ask", ap, as_)):
        length, cnt = lv[f"{s}_px"].len, lv[f"{s}_n"]
        gaps = (ticks[:, :-1] - ticks[:, 1:]) if s == "bid" else (ticks[:, 1:] - ticks[:, :-1])
        cols[f"{s}_gaps"] = _list(gaps, np.maximum(length - 1, 0), ok, I64_LIST)
        cols[f"{s}_lots"] = _list(lots, length, ok, I64_LIST)
        cols[f"{s}_cnt"] = _list(cnt.matrix.astype(np.int32), length, ok & cnt.valid, I32_LIST)
    keep = pa.array(ok, pa.bool_())
    for c in LIST_COLUMNS:
        cols[f"raw_{c}"] = pc.if_else(keep, pa.nulls(n, src[c].type), src[c])
    return pa.Table.from_arrays([cols[f.name] for f in PHYSICAL], schema=PHYSICAL)


def decode(table: pa.Table) -> pa.Table:
    """The logical ``orderbook_l2`` table (``crypto.schemas.ORDERBOOK_L2``) of a physical one."""
    missing = [c for c in PHYSICAL.names if c not in table.column_names]
    if missing:
        raise ValueError(f"orderbook_l2 decode: not a book_codec table, lacks column(s) {missing}")
    n = table.num_rows

    def col(name: str) -> pa.Array:
        return table[name].combine_chunks() if table[name].num_chunks else pa.array([], table.schema.field(name).type)
    raw = pc.fill_null(col("raw"), True).to_numpy(zero_copy_only=False).astype(bool)
    div = {q: pc.fill_null(col(f"{q}_div"), 1.0).to_numpy() for q in ("px", "sz")}
    out = {c: table[c] for c in PLAIN}
    for s in SIDES:
        lots = _Levels(col(f"{s}_lots"), n)
        gaps = _Levels(col(f"{s}_gaps"), n, LEVELS - 1)
        cnt = _Levels(col(f"{s}_cnt"), n)
        steps = np.empty((n, LEVELS), np.int64)
        steps[:, 0] = pc.fill_null(col(f"{s}_p0"), 0).to_numpy()
        steps[:, 1:] = gaps.matrix[:, : LEVELS - 1] * (-1 if s == "bid" else 1)
        ticks = np.cumsum(steps, axis=1)
        length = lots.len
        has_n = cnt.valid
        built = {
            "px": _list(ticks / div["px"][:, None], length, ~raw, ORDERBOOK_L2.field("bid_px").type),
            "sz": _list(lots.matrix / div["sz"][:, None], length, ~raw, ORDERBOOK_L2.field("bid_sz").type),
            "n": _list(cnt.matrix, length, has_n, ORDERBOOK_L2.field("bid_n").type),
        }
        for q, arr in built.items():
            out[f"{s}_{q}"] = pc.if_else(pa.array(~raw), arr, col(f"raw_{s}_{q}")) if raw.any() else arr
    return pa.Table.from_arrays([out[f.name] for f in ORDERBOOK_L2], schema=ORDERBOOK_L2)


def decode_sql(alias: str) -> str:
    """A DuckDB SELECT list turning physical rows of ``alias`` into the logical columns, in order:
    ``SELECT {decode_sql('b')} FROM read_parquet('...') AS b``. Same values, bit for bit, as decode."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", alias):
        raise ValueError(f"decode_sql: alias {alias!r} is not a plain SQL identifier")
    a = alias
    parts = [f"{a}.{c}" for c in PLAIN[:6]]
    for s in SIDES:
        sign = "-" if s == "bid" else "+"
        acc, ticks = f"{a}.{s}_p0", [f"{a}.{s}_p0"]
        for k in range(1, LEVELS):  # level k's ticks; past the row's levels null, then cut off
            acc = f"{acc} {sign} {a}.{s}_gaps[{k}]"
            ticks.append(acc)
        px = (f"list_transform(list_slice(list_value({', '.join(ticks)}), 1, len({a}.{s}_lots)), "
              f"lambda t: CAST(t AS DOUBLE) / {a}.px_div)")
        sz = f"list_transform({a}.{s}_lots, lambda t: CAST(t AS DOUBLE) / {a}.sz_div)"
        for q, expr in (("px", px), ("sz", sz)):
            parts.append(f"CASE WHEN {a}.raw THEN {a}.raw_{s}_{q} ELSE {expr} END AS {s}_{q}")
    for s in SIDES:
        parts.append(f"CASE WHEN {a}.raw THEN {a}.raw_{s}_n ELSE {a}.{s}_cnt END AS {s}_n")
    parts.append(f"{a}.source")
    return ",\n  ".join(parts)
