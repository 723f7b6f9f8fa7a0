"""gex.compute_gex and gex.gamma_flip against independent recomputation and hand-made chains."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_platform import calendar as cal
from archive_platform.gex import compute_gex, gamma_flip
from archive_platform.schemas import GEX_SCHEMA, OPTIONS_SCHEMA
from archive_platform.sim import SimulatedMarket

T0 = datetime(2025, 11, 26, 15, 0, tzinfo=timezone.utc)
T1 = datetime(2025, 11, 26, 15, 15, tzinfo=timezone.utc)


def option_rows(rows: list[dict]) -> pa.Table:
    base = {f.name: None for f in OPTIONS_SCHEMA}
    base.update(timestamp=T0, snapshot_time=T0, symbol="SPY", expiry=date(2025, 12, 5), et_offset=-300,
                source="test", underlying_price=100.0, bid=1.0, ask=1.1)
    return pa.Table.from_pylist([{**base, **r} for r in rows], schema=OPTIONS_SCHEMA)


def test_hand_computed_example():
    t = option_rows([
        {"strike": 100.0, "right": "C", "gamma": 0.05, "open_interest": 1000},
        {"strike": 100.0, "right": "P", "gamma": 0.04, "open_interest": 2000},
        {"strike": 100.0, "right": "C", "gamma": 0.01, "open_interest": 500, "expiry": date(2025, 12, 19)},
        {"strike": 105.0, "right": "C", "gamma": None, "open_interest": 700},
        {"strike": 105.0, "right": "P", "gamma": 0.02, "open_interest": None},
    ])
    out = compute_gex(t).to_pylist()
    assert [r["strike"] for r in out] == [100.0, 105.0]
    # 0.05*1000*100*100*100*0.01 = 500,000 ; 0.01*500*... = 50,000 ; puts 0.04*2000*... = 800,000
    assert out[0]["call_gex"] == pytest.approx(550_000.0)
    assert out[0]["put_gex"] == pytest.approx(-800_000.0)
    assert out[0]["net_gex"] == pytest.approx(-250_000.0)
    assert (out[0]["call_open_interest"], out[0]["put_open_interest"]) == (1500, 2000)
    # null gamma and null OI count as zero
    assert out[1]["call_gex"] == 0.0 and out[1]["put_gex"] == 0.0
    assert (out[1]["call_open_interest"], out[1]["put_open_interest"]) == (700, 0)
    assert out[0]["source"] == "test" and out[0]["et_offset"] == -300
    assert out[0]["underlying_price"] == 100.0 and out[0]["timestamp"] == T0


def test_schema_and_empty_input():
    assert compute_gex(OPTIONS_SCHEMA.empty_table()).schema.equals(GEX_SCHEMA)
    with pytest.raises(ValueError, match="gamma"):
        compute_gex(option_rows([{"strike": 1.0, "right": "C"}]).drop_columns(["gamma"]))


def test_gex_of_the_simulated_chain_recomputed_independently():
    m = SimulatedMarket()
    day = date(2025, 11, 26)
    snaps = cal.snapshot_times(day)[::9]
    options = m.fetch_options(day, ["SPY", "NVDA"], snaps)
    gex = m.fetch_gex(day, ["SPY", "NVDA"], snaps)
    assert gex.schema.equals(GEX_SCHEMA, check_metadata=False)
    expected = defaultdict(lambda: [0.0, 0.0, 0, 0, None])
    for r in options.to_pylist():
        key = (r["snapshot_time"], r["symbol"], r["strike"])
        dollar = r["gamma"] * r["open_interest"] * 100 * r["underlying_price"] ** 2 * 0.01
        e = expected[key]
        if r["right"] == "C":
            e[0] += dollar
            e[2] += r["open_interest"]
        else:
            e[1] -= dollar
            e[3] += r["open_interest"]
        e[4] = r["underlying_price"]
    rows = gex.to_pylist()
    assert len(rows) == len(expected)
    for g in rows:
        c, p, coi, poi, s = expected[(g["snapshot_time"], g["symbol"], g["strike"])]
        assert g["call_gex"] == pytest.approx(c, rel=1e-9)
        assert g["put_gex"] == pytest.approx(p, rel=1e-9)
        assert g["net_gex"] == pytest.approx(c + p, rel=1e-9, abs=1e-6)
        assert (g["call_open_interest"], g["put_open_interest"]) == (coi, poi)
        assert g["underlying_price"] == s and g["timestamp"] == g["snapshot_time"]


@settings(max_examples=40, deadline=None)
@given(st.lists(
    st.tuples(st.sampled_from([T0, T1]), st.sampled_from(["SPY", "QQQ"]), st.sampled_from([95.0, 100.0, 105.0]),
              st.sampled_from(["C", "P"]), st.one_of(st.none(), st.floats(0, 0.2)),
              st.one_of(st.none(), st.integers(0, 50_000))),
    min_size=1, max_size=30,
))
def test_signs_sums_and_one_row_per_key(rows):
    t = option_rows([
        {"snapshot_time": s, "timestamp": s, "symbol": sym, "strike": k, "right": r, "gamma": g, "open_interest": oi}
        for s, sym, k, r, g, oi in rows
    ])
    out = compute_gex(t).to_pylist()
    keys = [(r["snapshot_time"], r["symbol"], r["strike"]) for r in out]
    assert len(keys) == len(set(keys)) == len({(s, sym, k) for s, sym, k, *_ in rows})
    for r in out:
        assert r["call_gex"] >= 0 and r["put_gex"] <= 0
        assert r["net_gex"] == pytest.approx(r["call_gex"] + r["put_gex"])
    total_oi = sum(oi or 0 for *_, oi in rows)
    assert sum(r["call_open_interest"] + r["put_open_interest"] for r in out) == total_oi


def gex_rows(strike_net: list[tuple[float, float]], spot: float, symbol: str = "SPY") -> pa.Table:
    return pa.Table.from_pylist([
        {"timestamp": T0, "snapshot_time": T0, "symbol": symbol, "strike": k, "underlying_price": spot,
         "call_gex": max(n, 0.0), "put_gex": min(n, 0.0), "net_gex": n, "call_open_interest": 0,
         "put_open_interest": 0, "et_offset": -300, "source": "test"}
        for k, n in strike_net
    ], schema=GEX_SCHEMA)


def test_gamma_flip_interpolates_the_cumulative_crossing_nearest_spot():
    # cumulative: -10, -4, +6, +1, -3  -> crossings between 100/105 and 110/115
    rows = gex_rows([(95, -10), (100, 6), (105, 10), (110, -5), (115, -4)], spot=103)
    # between 100 (cum -4) and 105 (cum +6): 100 + 5 * 4/10 = 102
    assert gamma_flip(rows) == pytest.approx(102.0)
    far = gex_rows([(95, -10), (100, 6), (105, 10), (110, -5), (115, -4)], spot=114)
    # between 110 (cum +1) and 115 (cum -3): 110 + 5 * 1/4 = 111.25
    assert gamma_flip(far) == pytest.approx(111.25)


def test_gamma_flip_none_without_crossing_and_one_snapshot_only():
    assert gamma_flip(gex_rows([(95, 1), (100, 2)], spot=99)) is None
    assert gamma_flip(GEX_SCHEMA.empty_table()) is None
    two = pa.concat_tables([gex_rows([(95, 1)], 99), gex_rows([(95, -1)], 99, symbol="QQQ")])
    with pytest.raises(ValueError, match="one symbol at one snapshot"):
        gamma_flip(two)
