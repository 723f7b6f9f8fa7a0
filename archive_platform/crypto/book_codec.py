"""Physical (on-disk) form of ``orderbook_l2``: integer ticks and lots in fixed level columns.

The logical table (``crypto.schemas.ORDERBOOK_L2``: float64 list columns per side) is what
readers get. On disk each book is stored as integers, one column per level, so that Parquet's
per-column zstd sees each level's value repeated from the previous snapshot as a run:

* prices: ``px_div`` = 10**d (d <= 12), a grid that holds every price of the row exactly (the
  one most rows of a sample need; a row off it gets the finest its values need);
  ``bid_p0``/``ask_p0`` = the best level in ticks (price * px_div);
  ``bid_g1..19`` / ``ask_g1..19`` = the tick gap to the level before (bids: previous - this,
  asks: this - previous), which stays put while the touch moves;
* sizes: ``sz_div`` likewise, ``bid_s0..19`` / ``ask_s0..19`` = size * sz_div (integer lots);
* order counts: ``bid_n0..19`` / ``ask_n0..19``; ``bid_has_n`` false when the list is null;
* ``bid_len`` / ``ask_len`` = levels in the row (level columns past it are null).

Decoding is ``float64(ticks) / px_div``: IEEE division of two exact doubles is correctly
rounded, so it returns the very double that was stored whenever the encoder checked (bit for
bit) that the row's values survive the trip. A row that does not (a price off every decimal
grid up to 12 places, NaN, inf, -0.0, a null level or list, more than 20 levels, sizes and
prices of different lengths, counts of another length, ticks beyond 2**53) is stored as is in
the ``raw_*`` list columns with ``raw`` true: the fallback is per row, and a table with no grid
at all is stored whole in the raw columns. Rows are never reordered.

Pure: pyarrow and numpy only. ``decode_sql`` gives the same decoding as a DuckDB SELECT list.
Measured choices (bench/book_codec.py, docs/performance.md): plain encoding + zstd 9 beats
dictionary, DELTA_BINARY_PACKED and BYTE_STREAM_SPLIT on the level columns; gaps beat
offsets from the best level; delta encoding makes the time and id columns almost free.
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
MARK = {b"book_codec": b"1"}


def _names(side: str) -> list[str]:
    return ([f"{side}_p0"] + [f"{side}_g{k}" for k in range(1, LEVELS)] + [f"{side}_s{k}" for k in range(LEVELS)]
            + [f"{side}_n{k}" for k in range(LEVELS)])


PHYSICAL = pa.schema(
    [ORDERBOOK_L2.field(c) for c in PLAIN]
    + [pa.field("raw", pa.bool_(), nullable=False), pa.field("px_div", pa.float64()), pa.field("sz_div", pa.float64())]
    + [pa.field(f"{s}_len", pa.int8()) for s in SIDES] + [pa.field(f"{s}_has_n", pa.bool_()) for s in SIDES]
    + [pa.field(c, pa.int32() if "_n" in c else pa.int64()) for s in SIDES for c in _names(s)]
    + [pa.field(f"raw_{c}", ORDERBOOK_L2.field(c).type) for c in LIST_COLUMNS],
    metadata=MARK,
)

#: pyarrow.parquet.write_table keyword arguments for the physical table (by measurement): no
#: dictionary on the level columns (a run of one value costs zstd a few bytes; a dictionary's
#: bit-packed indices hide the runs), delta encoding on the time and id columns
PARQUET_OPTIONS: dict = {
    "compression": "zstd",
    "compression_level": 9,
    "use_dictionary": ["exchange", "symbol", "source", "px_div", "sz_div"],
    "column_encoding": {c: "DELTA_BINARY_PACKED" for c in ("event_time", "receive_time", "update_id", "prev_update_id")},
}


class _Levels:
    """One list column as a padded (rows, LEVELS) matrix plus what makes a row unencodable."""

    def __init__(self, arr: pa.ListArray, n: int):
        offsets = arr.offsets.to_numpy().astype(np.int64)
        child = arr.values
        if n and not arr.null_count and (np.diff(offsets) == LEVELS).all():
            full = child.slice(offsets[0], n * LEVELS)
            if not full.null_count:  # the usual day: 20 levels everywhere (no copy, no gather)
                self.valid, self.ok = np.ones(n, bool), np.ones(n, bool)
                self.len, self.mask = np.full(n, LEVELS), np.ones((n, LEVELS), bool)
                self.matrix = full.to_numpy().reshape(n, LEVELS)
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


def _col(values: np.ndarray, valid: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.array(values, typ, mask=None if valid.all() else ~valid)


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
    lv = {c: _Levels(table[c].combine_chunks() if table[c].num_chunks else pa.array([], table[c].type), n)
          for c in LIST_COLUMNS}
    ok = np.logical_and.reduce([lv[c].ok for c in LIST_COLUMNS[:4]])
    for s in SIDES:
        px, sz, cnt = lv[f"{s}_px"], lv[f"{s}_sz"], lv[f"{s}_n"]
        ok &= (px.len == sz.len) & (~cnt.valid | (cnt.ok & (cnt.len == px.len)))
    px_div, px_ok, (bp, ap) = _grid([lv["bid_px"], lv["ask_px"]], n)
    sz_div, sz_ok, (bs, as_) = _grid([lv["bid_sz"], lv["ask_sz"]], n)
    ok &= px_ok & sz_ok
    cols = {c: table[c] for c in PLAIN}
    cols["raw"] = pa.array(~ok, pa.bool_())
    cols["px_div"], cols["sz_div"] = _col(px_div, ok, pa.float64()), _col(sz_div, ok, pa.float64())
    for s in SIDES:
        cols[f"{s}_len"] = _col(lv[f"{s}_px"].len.astype(np.int8), ok, pa.int8())
    for s in SIDES:
        cols[f"{s}_has_n"] = _col(lv[f"{s}_n"].valid, ok, pa.bool_())
    for s, ticks, lots in (("bid", bp, bs), ("ask", ap, as_)):
        here = lv[f"{s}_px"].mask & ok[:, None]
        gaps = (ticks[:, :-1] - ticks[:, 1:]) if s == "bid" else (ticks[:, 1:] - ticks[:, :-1])
        cols[f"{s}_p0"] = _col(ticks[:, 0], here[:, 0], pa.int64())
        for k in range(1, LEVELS):
            cols[f"{s}_g{k}"] = _col(gaps[:, k - 1], here[:, k], pa.int64())
        for k in range(LEVELS):
            cols[f"{s}_s{k}"] = _col(lots[:, k], here[:, k], pa.int64())
        cnt = lv[f"{s}_n"]
        has = here & cnt.valid[:, None]
        for k in range(LEVELS):
            cols[f"{s}_n{k}"] = _col(cnt.matrix[:, k].astype(np.int32), has[:, k], pa.int32())
    for c in LIST_COLUMNS:
        src = table[c].combine_chunks() if table[c].num_chunks else pa.array([], table[c].type)
        cols[f"raw_{c}"] = pc.if_else(pa.array(ok, pa.bool_()), pa.nulls(n, src.type), src)
    return pa.Table.from_arrays([cols[f.name] for f in PHYSICAL], schema=PHYSICAL)


def _ints(table: pa.Table, names: list[str], dtype) -> np.ndarray:
    n = table.num_rows
    out = np.zeros((n, len(names)), dtype)
    for k, c in enumerate(names):
        out[:, k] = pc.fill_null(table[c], 0).to_numpy()
    return out


def decode(table: pa.Table) -> pa.Table:
    """The logical ``orderbook_l2`` table (``crypto.schemas.ORDERBOOK_L2``) of a physical one."""
    missing = [c for c in PHYSICAL.names if c not in table.column_names]
    if missing:
        raise ValueError(f"orderbook_l2 decode: not a book_codec table, lacks column(s) {missing}")
    n = table.num_rows
    raw = pc.fill_null(table["raw"], True).to_numpy(zero_copy_only=False).astype(bool)
    keep = pa.array(~raw, pa.bool_())
    div = {q: pc.fill_null(table[f"{q}_div"], 1.0).to_numpy() for q in ("px", "sz")}
    out = {c: table[c] for c in PLAIN}
    for s in SIDES:
        length = np.where(raw, 0, pc.fill_null(table[f"{s}_len"], 0).to_numpy().astype(np.int64))
        mask = np.arange(LEVELS) < length[:, None]
        full = bool((length == LEVELS).all())  # every row full: flatten, no gather

        def pick(m: np.ndarray, mask=mask, full=full) -> np.ndarray:
            return m.reshape(-1) if full else m[mask]
        offsets = pa.array(np.concatenate([[0], np.cumsum(length)]).astype(np.int32))
        steps = _ints(table, [f"{s}_p0"] + [f"{s}_g{k}" for k in range(1, LEVELS)], np.int64)
        steps[:, 1:] *= -1 if s == "bid" else 1
        ticks = np.cumsum(steps, axis=1)
        lots = _ints(table, [f"{s}_s{k}" for k in range(LEVELS)], np.int64)
        counts = _ints(table, [f"{s}_n{k}" for k in range(LEVELS)], np.int32)
        has_n = pc.fill_null(table[f"{s}_has_n"], False).to_numpy(zero_copy_only=False).astype(bool) & ~raw
        built = {
            "px": pa.ListArray.from_arrays(offsets, pa.array(pick(ticks / div["px"][:, None]))),
            "sz": pa.ListArray.from_arrays(offsets, pa.array(pick(lots / div["sz"][:, None]))),
            "n": pa.ListArray.from_arrays(offsets, pa.array(pick(counts), pa.int32()), mask=pa.array(~has_n)),
        }
        for q, arr in built.items():
            rawc = table[f"raw_{s}_{q}"].combine_chunks() if table.num_rows else arr
            out[f"{s}_{q}"] = pc.if_else(keep, arr, rawc) if raw.any() else arr
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
        acc, px = f"{a}.{s}_p0", []
        for k in range(LEVELS):
            if k:
                acc = f"{acc} {sign} {a}.{s}_g{k}"
            px.append(f"CAST({acc} AS DOUBLE) / {a}.px_div")
        sz = [f"CAST({a}.{s}_s{k} AS DOUBLE) / {a}.sz_div" for k in range(LEVELS)]
        for q, items in (("px", px), ("sz", sz)):
            parts.append(f"CASE WHEN {a}.raw THEN {a}.raw_{s}_{q} "
                         f"ELSE list_slice(list_value({', '.join(items)}), 1, {a}.{s}_len) END AS {s}_{q}")
    for s in SIDES:
        items = ", ".join(f"{a}.{s}_n{k}" for k in range(LEVELS))
        parts.append(f"CASE WHEN {a}.raw THEN {a}.raw_{s}_n WHEN {a}.{s}_has_n "
                     f"THEN list_slice(list_value({items}), 1, {a}.{s}_len) END AS {s}_n")
    parts.append(f"{a}.source")
    return ",\n  ".join(parts)
