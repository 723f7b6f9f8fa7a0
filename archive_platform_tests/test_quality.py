"""Each data-quality check passes on clean simulated data and fails, naming the problem, on bad data."""

from __future__ import annotations

from datetime import date, time, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from archive_platform import calendar, quality
from archive_platform.archiving import iv_rank_instants
from archive_platform.gex import compute_gex
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.sim import SimulatedMarket

DAY = date(2025, 11, 26)
HALF = date(2025, 11, 28)
SYMS = ["SPY", "AAPL"]


@pytest.fixture(scope="module")
def sim():
    return SimulatedMarket()


@pytest.fixture(scope="module")
def options(sim):
    return sim.fetch_options(DAY, SYMS, calendar.snapshot_times(DAY))


@pytest.fixture(scope="module")
def bars(sim):
    return sim.fetch_stocks_1m(DAY, SYMS)


def _set(table: pa.Table, col: str, row: int, value) -> pa.Table:
    values = table[col].to_pylist()
    values[row] = value
    i = table.schema.get_field_index(col)
    return table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))


def test_clean_day_passes_everything(sim, options, bars):
    tables = {
        ArchiveType.OPTIONS: options,
        ArchiveType.GEX: compute_gex(options),
        ArchiveType.STOCKS_1M: bars,
        ArchiveType.UW_FLOW: sim.fetch_uw_flow(DAY, SYMS),
        ArchiveType.TRADES: sim.fetch_trades(DAY, []),
        ArchiveType.IV_RANK: sim.fetch_iv_rank(DAY, SYMS, iv_rank_instants(DAY, [time(7), time(19)])),
    }
    # what each check counted on the clean day, not only that it passed
    complete = {
        ArchiveType.OPTIONS: {"symbols_expected": 2, "symbols_missing": [], "expected_snapshots": 27, "snapshots": 27},
        ArchiveType.GEX: {"symbols_expected": 2, "symbols_missing": [], "expected_snapshots": 27, "snapshots": 27},
        ArchiveType.STOCKS_1M: {"symbols_expected": 2, "symbols_missing": [], "expected_bars_per_symbol": 390},
        ArchiveType.UW_FLOW: {"note": "no expected count"},
        ArchiveType.TRADES: {"note": "no expected count"},
        ArchiveType.IV_RANK: {"symbols_expected": 2, "symbols_missing": [], "expected_snapshots": 2, "snapshots": 2},
    }
    assert tables[ArchiveType.STOCKS_1M].num_rows == 2 * 390
    for t, table in tables.items():
        spec = spec_for(t)
        assert table.num_rows > 0, t  # a check over no rows would pass vacuously
        schema = quality.check_schema(table, spec)
        unique = quality.check_unique_key(table, spec)
        window = quality.check_in_window(table, spec, DAY)
        full = quality.check_completeness(table, spec, DAY, SYMS)
        values = quality.check_values(table, spec)
        for outcome in (schema, unique, window, full, values):
            assert outcome.passed, (t, outcome.description, outcome.metadata)
        assert schema.metadata == {"missing": [], "extra": [], "wrong_types": {}}, t
        assert schema.description == "schema matches the canonical schema"
        assert unique.metadata["duplicate_rows"] == 0, t
        assert window.metadata["outside_rows"] == 0, t
        assert full.metadata == {"rows": table.num_rows, **complete[t]}, t
        assert values.metadata["violations"] == {} and values.metadata["hard_violations"] == [], t


def test_schema_check_fails_on_wrong_type_and_missing_column(bars):
    spec = spec_for("stocks_1m")
    wrong = bars.set_column(bars.schema.get_field_index("volume"), "volume", pc.cast(bars["volume"], pa.float64()))
    o = quality.check_schema(wrong, spec)
    assert not o.passed and o.metadata["wrong_types"] == {"volume": "double (expected int64)"}
    o = quality.check_schema(bars.drop_columns(["vwap"]), spec)
    assert not o.passed and o.metadata["missing"] == ["vwap"]


def test_unique_key_check_counts_duplicates(bars):
    dup = pa.concat_tables([bars, bars.slice(0, 3)])
    o = quality.check_unique_key(dup, spec_for("stocks_1m"))
    assert not o.passed and o.metadata["duplicate_rows"] == 6 and "3 rows" not in o.description


def test_window_check_flags_events_outside_the_session(bars):
    late = _set(bars, "timestamp", 0, calendar.session(DAY).close_utc + timedelta(minutes=5))
    o = quality.check_in_window(late, spec_for("stocks_1m"), DAY)
    assert not o.passed and o.metadata["outside_rows"] == 1
    # the same instant is inside the extended window trades use
    o = quality.check_in_window(late, spec_for("trades"), DAY)
    assert o.passed


def test_completeness_counts_bars_snapshots_and_symbols(sim, bars, options):
    spec = spec_for("stocks_1m")
    o = quality.check_completeness(bars.slice(1), spec, DAY, SYMS)
    assert not o.passed and "without exactly 390 one-minute bars" in o.description
    o = quality.check_completeness(bars, spec, DAY, SYMS + ["MSFT"])
    assert not o.passed and o.metadata["symbols_missing"] == ["MSFT"]
    half = sim.fetch_stocks_1m(HALF, SYMS)
    assert quality.check_completeness(half, spec, HALF, SYMS).metadata["expected_bars_per_symbol"] == 210
    first_26 = options.filter(pc.less(options["snapshot_time"], calendar.session(DAY).close_utc))
    o = quality.check_completeness(first_26, spec_for("options"), DAY, SYMS)
    assert not o.passed and "without exactly 27 snapshots" in o.description
    assert quality.check_completeness(first_26, spec_for("options"), DAY, SYMS, expected_snapshots=26).passed


@pytest.mark.parametrize(
    "col, value, rule",
    [
        ("high", 1.0, "low <= open,close <= high"),
        ("volume", -5, "volume >= 0"),
        ("vwap", 1e9, "vwap within [low, high]"),
    ],
)
def test_value_rules_on_bars(bars, col, value, rule):
    o = quality.check_values(_set(bars, col, 7, value), spec_for("stocks_1m"))
    assert not o.passed and o.metadata["violations"][rule] == 1


@pytest.mark.parametrize(
    "col, value, rule",
    [
        ("bid", 1e6, "bid <= ask"),
        ("open_interest", -1, "open_interest >= 0"),
        ("iv", 9.0, "0 < iv < 5"),
        ("delta", 1.5, "call delta in [0,1], put delta in [-1,0]"),
        ("gamma", -0.1, "gamma >= 0"),
    ],
)
def test_value_rules_on_options(options, col, value, rule):
    row = options["right"].to_pylist().index("C")
    o = quality.check_values(_set(options, col, row, value), spec_for("options"))
    assert not o.passed and o.metadata["violations"] == {rule: 1}  # the one bad row, no other rule
    assert o.metadata["hard_violations"] == ([rule] if rule == "open_interest >= 0" else [])


def test_value_rules_on_gex(options):
    gex = compute_gex(options)
    o = quality.check_values(_set(gex, "put_gex", 0, 5.0), spec_for("gex"))
    assert not o.passed
    assert o.metadata["violations"] == {"put_gex <= 0": 1, "net_gex = call_gex + put_gex": 1}
