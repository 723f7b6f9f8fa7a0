"""crypto/book_codec: the physical form of orderbook_l2 round-trips bit for bit (Python and DuckDB)."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive_platform.crypto import book_codec as bc
from archive_platform.crypto.schemas import ORDERBOOK_L2, WRITER_OPTIONS
from archive_platform.crypto.sim_venue import simulate, window_tables

T0 = 1_795_824_000_000_000  # 2026-11-28T00:00Z
LISTS = ("bid_px", "bid_sz", "ask_px", "ask_sz", "bid_n", "ask_n")


def _bits(col) -> tuple:
    """A list column as (null lists, lengths, null elements, element bit patterns): equal iff bit-exact."""
    a = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = pc.list_flatten(a)
    vals = pc.fill_null(flat, 0).to_numpy(zero_copy_only=False)
    if vals.dtype == np.float64:
        vals = vals.view(np.int64)
    return (a.is_null().to_numpy(zero_copy_only=False), pc.fill_null(pc.list_value_length(a), -1).to_numpy(),
            flat.is_null().to_numpy(zero_copy_only=False), vals)


def assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema.names == want.schema.names
    assert [f.type for f in got.schema] == [f.type for f in want.schema]
    assert got.num_rows == want.num_rows
    for name in want.column_names:
        if name in LISTS:
            g, w = _bits(got[name]), _bits(want[name])
            for part, (x, y) in zip(("null lists", "lengths", "null elements", "bits"), zip(g, w)):
                assert np.array_equal(x, y), f"{name}: {part} differ"
        else:
            assert got[name].equals(want[name]), name


def via_duckdb(physical: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.register("phys", physical)
    out = con.sql(f"SELECT {bc.decode_sql('b')} FROM phys AS b").to_arrow_table()
    nullable = pa.schema([f.with_nullable(True) for f in ORDERBOOK_L2])
    return out.cast(nullable)


def sim_books(seconds: int = 600, *, exchange: str = "binance", counts: bool = False) -> tuple:
    w = simulate("BTCUSDT", T0, T0 + seconds * 1_000_000, seed=2, book_ms=100)
    _, books = window_tables(w, exchange=exchange, source=exchange)
    if not counts:  # Binance sends no order counts: the normaliser stores null lists
        for c in ("bid_n", "ask_n"):
            books = books.set_column(books.schema.get_field_index(c), ORDERBOOK_L2.field(c), pa.nulls(books.num_rows,
                                                                                                    books[c].type))
    return w, books


def test_simulated_books_encode_to_integer_ticks_and_lots_and_round_trip():
    w, books = sim_books(counts=True)
    phys = bc.encode(books)
    assert pc.sum(phys["raw"]).as_py() == 0  # every row on the grid
    assert set(phys["px_div"].to_pylist()) == {10.0} and set(phys["sz_div"].to_pylist()) == {1000.0}
    def matrix(name: str, width: int) -> np.ndarray:
        return pc.list_flatten(phys[name]).to_numpy().reshape(-1, width)
    assert np.array_equal(phys["bid_p0"].to_numpy(), w.bid_ticks[:, 0])
    assert np.array_equal(matrix("ask_gaps", 19), np.diff(w.ask_ticks, axis=1))
    assert np.array_equal(matrix("bid_gaps", 19), -np.diff(w.bid_ticks, axis=1))
    assert np.array_equal(matrix("ask_lots", 20), w.ask_lots) and np.array_equal(matrix("bid_cnt", 20), w.bid_n)
    assert phys["raw_bid_px"].null_count == books.num_rows
    back = bc.decode(phys)
    assert_same(back, books)
    assert_same(via_duckdb(phys), books)


def test_parquet_file_with_the_codec_options_round_trips_and_is_smaller(tmp_path):
    _, books = sim_books()
    pq.write_table(books, tmp_path / "logical.parquet", **WRITER_OPTIONS["orderbook_l2"])
    pq.write_table(bc.encode(books), tmp_path / "physical.parquet", **bc.PARQUET_OPTIONS)
    assert_same(bc.decode(pq.read_table(tmp_path / "physical.parquet")), books)
    logical, physical = ((tmp_path / f).stat().st_size for f in ("logical.parquet", "physical.parquet"))
    assert physical < 0.5 * logical, (physical, logical)
    # a DuckDB view over the files presents the logical table; filters apply to it
    con = duckdb.connect()
    con.sql(f"CREATE VIEW orderbook_l2 AS SELECT {bc.decode_sql('p')} "
            f"FROM read_parquet('{tmp_path}/physical.parquet') AS p")
    view = con.sql("SELECT * FROM orderbook_l2 ORDER BY event_time").to_arrow_table().cast(books.schema)
    assert_same(view, books)
    best = con.sql("SELECT bid_px[1], ask_sz[20] FROM orderbook_l2 WHERE update_id = "
                   f"{books['update_id'][17].as_py()}").fetchall()
    assert best == [(books["bid_px"][17].as_py()[0], books["ask_sz"][17].as_py()[19])]


def _row(**sides) -> dict:
    base = {"exchange": "hyperliquid", "symbol": "BTC", "event_time": T0, "receive_time": T0 + 5,
            "update_id": None, "prev_update_id": None, "bid_px": [], "bid_sz": [], "ask_px": [], "ask_sz": [],
            "bid_n": None, "ask_n": None, "source": "hyperliquid"}
    return {**base, **sides}


EDGE_ROWS = [
    _row(bid_px=[100.5, 100.4], bid_sz=[1.0, 2.5], ask_px=[100.3], ask_sz=[0.1], bid_n=[1, 2], ask_n=[3]),  # crossed
    _row(),  # empty book
    _row(bid_px=[7.0], bid_sz=[0.0], ask_px=[], ask_sz=[]),  # one side empty, zero size
    _row(bid_px=[math.pi], bid_sz=[1.0]),  # off every decimal grid
    _row(ask_px=[1.5, float("nan")], ask_sz=[1.0, 1.0]),
    _row(ask_px=[float("inf")], ask_sz=[-0.0]),
    _row(bid_px=[1.0, None], bid_sz=[1.0, 2.0]),  # null level
    _row(bid_px=[1.0], bid_sz=[1.0], bid_n=[None]),
    _row(bid_px=[1.0, 2.0], bid_sz=[1.0]),  # lengths differ
    _row(bid_px=[1.0], bid_sz=[1.0], bid_n=[1, 2]),
    _row(bid_px=[float(p) for p in range(1, 23)], bid_sz=[1.0] * 22),  # more than 20 levels
    _row(bid_px=None, bid_sz=[1.0]),  # null list
    _row(bid_px=[65000.1, 1e-12], bid_sz=[1.0, 1.0]),  # ticks beyond 2**53 at the row's grid
    _row(bid_px=[-3.25], bid_sz=[1e-12], ask_n=[]),
    _row(bid_px=[1.0], bid_sz=[-0.0]),  # a negative zero is no integer tick
    _row(bid_px=[1.0], bid_sz=[1e-8], ask_px=[2.0], ask_sz=[90071993.0]),  # both sides' sizes share a grid: too fine
]
EXPECT_RAW = [False, False, False, True, True, True, True, True, True, True, True, True, True, False, True, True]


def test_edge_rows_fall_back_per_row_and_round_trip():
    books = pa.Table.from_pylist(EDGE_ROWS, schema=ORDERBOOK_L2)
    phys = bc.encode(books)
    assert phys["raw"].to_pylist() == EXPECT_RAW
    assert phys["px_div"].to_pylist()[:3] == [10.0, 1.0, 1.0] and phys["sz_div"][13].as_py() == 1e12
    assert_same(bc.decode(phys), books)
    assert_same(via_duckdb(phys), books)
    # a chunked, sliced input (list offsets not starting at 0) gives the same rows
    part = pa.concat_tables([books.slice(0, 5), books.slice(5)]).slice(2, 9)
    again = bc.encode(part)
    assert again["raw"].to_pylist() == EXPECT_RAW[2:11]
    same = ["bid_p0", "bid_gaps", "bid_lots", "ask_cnt"]
    assert again.select(same).equals(phys.slice(2, 9).select(same))
    assert_same(bc.decode(again), books.slice(2, 9))


def test_a_table_off_every_grid_is_stored_whole_in_the_raw_columns():
    rng = np.random.default_rng(1)
    rows = [_row(bid_px=list(rng.random(20) * 1e4), bid_sz=list(rng.random(20)), ask_px=list(rng.random(3)),
                 ask_sz=list(rng.random(3))) for _ in range(50)]
    books = pa.Table.from_pylist(rows, schema=ORDERBOOK_L2)
    phys = bc.encode(books)
    assert all(phys["raw"].to_pylist()) and phys["bid_p0"].null_count == phys["ask_lots"].null_count == 50
    assert_same(bc.decode(phys), books)
    assert_same(via_duckdb(phys), books)


def test_empty_table_round_trips():
    empty = ORDERBOOK_L2.empty_table()
    phys = bc.encode(empty)
    assert phys.num_rows == 0 and phys.schema == bc.PHYSICAL
    assert_same(bc.decode(phys), empty)


def test_bad_input_is_refused_naming_the_problem():
    _, books = sim_books(seconds=1)
    with pytest.raises(ValueError, match="bid_sz"):
        bc.encode(books.drop_columns(["bid_sz"]))
    with pytest.raises(ValueError, match="ask_px"):
        bc.encode(books.set_column(books.schema.get_field_index("ask_px"), "ask_px",
                                   books["ask_px"].cast(pa.list_(pa.float32()))))
    with pytest.raises(ValueError, match="px_div"):
        bc.decode(books)
    with pytest.raises(ValueError, match="alias"):
        bc.decode_sql("b; DROP TABLE x")


# --- property test: any book round-trips; rows on a grid are stored as integers -----------------
ON_GRID = st.tuples(st.integers(-10**9, 10**9), st.integers(0, 8))  # ticks, decimals
ANY = st.one_of(st.floats(width=64), st.sampled_from([-0.0, float("nan"), float("inf"), 5e-324, None]))


@st.composite
def side(draw) -> tuple[list, list, list | None, bool | None, list, list]:
    """(prices, sizes, counts, on a grid: True / must fall back: False / either: None, price ticks, size ticks)."""
    k = draw(st.integers(0, 22))
    px_t, sz_t, state = [], [], None
    if draw(st.booleans()):
        px_t, sz_t = (draw(st.lists(ON_GRID, min_size=k, max_size=k)) for _ in range(2))
        px, sz, state = [t / 10.0**d for t, d in px_t], [t / 10.0**d for t, d in sz_t], True
    else:
        px, sz = (draw(st.lists(ANY, min_size=k, max_size=k)) for _ in range(2))
    counts = draw(st.one_of(st.none(), st.lists(st.integers(0, 2**31 - 1), min_size=k, max_size=k)))
    if draw(st.integers(0, 9)) == 0:  # a broken row: sizes of another length
        sz = sz + [1.0]
        state = False
    if k > 20 or any(v is None for v in px + sz):
        state = False
    return px, sz, counts, state, px_t, sz_t


def _fits(ticks: list[tuple[int, int]]) -> bool:
    """On the finest grid of the values sharing a divisor, each is an integer well inside float64's exact range."""
    d = max((dd for _, dd in ticks), default=0)
    return all(abs(t) * 10 ** (d - dd) < 2**50 for t, dd in ticks)


@st.composite
def books(draw) -> tuple[pa.Table, list[bool | None]]:
    rows, expect = [], []
    for i in range(draw(st.integers(0, 8))):
        (bp, bs, bn, bstate, bpt, bst), (ap, as_, an, astate, apt, ast) = draw(side()), draw(side())
        rows.append(_row(bid_px=bp, bid_sz=bs, bid_n=bn, ask_px=ap, ask_sz=as_, ask_n=an, event_time=T0 + i))
        if False in (bstate, astate):
            expect.append(False)
        else:  # prices of both sides share one divisor, sizes another; a finer grid than needed may not fit
            expect.append(True if bstate and astate and _fits(bpt + apt) and _fits(bst + ast) else None)
    return pa.Table.from_pylist(rows, schema=ORDERBOOK_L2), expect


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books())
def test_property_any_book_round_trips_bit_exact_in_python_and_duckdb(case):
    table, expect = case
    phys = bc.encode(table)
    raw = phys["raw"].to_pylist()
    for i, e in enumerate(expect):
        if e is not None:
            assert raw[i] is (not e), (i, e)
    assert_same(bc.decode(phys), table)
    assert_same(via_duckdb(phys), table)
