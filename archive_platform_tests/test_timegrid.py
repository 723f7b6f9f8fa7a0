"""Time-grid helpers (macros.py in SQL, timegrid.py in Python) against values computed
independently in the test, under the DuckDB session time zones UTC, New York and Tokyo."""

from __future__ import annotations

import math
import time
from datetime import date, datetime, timedelta, timezone
from statistics import NormalDist
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from archive_platform import calendar as cal
from archive_platform import macros, timegrid
from archive_platform_tests.timegrid_helpers import START, derived, history

NY = ZoneInfo("America/New_York")
UTC = timezone.utc
ZONES = ["UTC", "America/New_York", "Asia/Tokyo"]


@pytest.fixture(scope="module", params=ZONES)
def con(request):
    c = duckdb.connect()
    c.execute(f"SET TimeZone = '{request.param}'")
    d, h = derived(), history()
    c.register("daily_bars", d["daily_bars"])
    c.register("daily_iv", d["daily_iv"])
    c.register("options", h["options"])
    macros.install(c, start=date(2015, 1, 2), end=date(2030, 12, 31))
    yield c
    c.close()


def one(con, sql, *params):
    return con.execute(sql, list(params)).fetchone()[0]


def df(con, sql, *params) -> pd.DataFrame:
    return con.execute(sql, list(params)).fetch_df()


def _sessions_by_walking(a: date, b: date) -> list[date]:
    """Sessions in [a, b] found day by day (no bisect, no index): the independent reference."""
    out, d = [], a
    while d <= b:
        if cal.is_trading_day(d):
            out.append(d)
        d += timedelta(days=1)
    return out


def _closes(symbol="SPY") -> pd.Series:
    b = derived()["daily_bars"].to_pandas()
    return b[b["symbol"] == symbol].set_index("date")["close"].sort_index()


def test_seed_example_28_sessions_after_2020_10_20(con):
    assert one(con, "SELECT trading_day_add(DATE '2020-10-20', 28)") == date(2020, 11, 30)
    assert one(con, "SELECT trading_days_between(DATE '2020-10-20', DATE '2020-11-30')") == 28
    assert timegrid.trading_day_add(date(2020, 10, 20), 28) == date(2020, 11, 30)
    assert timegrid.trading_days_between(date(2020, 10, 20), date(2020, 11, 30)) == 28
    # 41 calendar days, Thanksgiving (2020-11-26) not counted, the 13:00 close of 11-27 counted
    assert (date(2020, 11, 30) - date(2020, 10, 20)).days == 41


def test_trading_day_add_and_between_agree_with_a_day_by_day_walk(con):
    grid = _sessions_by_walking(date(2025, 6, 20), date(2026, 2, 27))
    starts = [date(2025, 7, 3), date(2025, 7, 4), date(2025, 7, 5), date(2025, 11, 26),
              date(2025, 11, 27), date(2025, 11, 28), date(2025, 11, 1)]
    cases = []  # (day, n, expected session)
    for d in starts:
        nxt = [s for s in grid if s > d]
        prev = [s for s in grid if s < d]
        cases += [(d, n, nxt[n - 1]) for n in (1, 2, 5, 20, 28)]
        cases += [(d, -n, prev[-n]) for n in (1, 3)]
    frame = pd.DataFrame(cases, columns=["d", "n", "expected"])
    got = con.execute(  # one query over a column of days: the macros work per row
        "SELECT trading_day_add(CAST(d AS DATE), n) AS added, "
        "trading_days_between(CAST(d AS DATE), CAST(expected AS DATE)) AS between FROM frame").fetch_df()
    assert list(got["added"].dt.date) == list(frame["expected"])
    assert list(got["between"]) == list(frame["n"])
    for d, n, expected in cases:
        assert timegrid.trading_day_add(d, n) == expected
        assert timegrid.trading_days_between(d, expected) == n
    assert one(con, "SELECT trading_day_add(DATE '2025-11-28', 0)") == date(2025, 11, 28)


def test_bars_forward_is_the_seeds_vector(con):
    bars = derived()["daily_bars"].to_pandas().query("symbol == 'SPY'").set_index("date")
    day = date(2025, 11, 20)
    sessions = _sessions_by_walking(day, date(2025, 12, 31))
    got = df(con, "SELECT * FROM bars_forward('SPY', DATE '2025-11-20', 8)")
    assert list(got["offset"]) == list(range(8))
    assert list(got["date"].dt.date) == sessions[:8]  # 11-27 (holiday) absent, 11-28 (half day) there
    np.testing.assert_array_equal(got["close"], bars.loc[sessions[:8], "close"])
    np.testing.assert_array_equal(got["vwap"], bars.loc[sessions[:8], "vwap"])
    assert got["note"].isna().all()
    # vector(29, start_at: 28): only the bar 28 sessions on
    got = df(con, "SELECT * FROM bars_forward('SPY', DATE '2025-10-20', 29, start_at := 28)")
    assert len(got) == 1 and got["offset"][0] == 28
    assert got["date"].dt.date[0] == _sessions_by_walking(date(2025, 10, 21), date(2025, 12, 31))[27]
    one_bar = df(con, "SELECT * FROM bar_of_day('SPY', DATE '2025-11-28')")
    assert one_bar["close"][0] == bars.loc[date(2025, 11, 28), "close"] and one_bar["bars"][0] == 210
    # past the stored history: rows say there is no bar, no number is made up
    tail = df(con, "SELECT * FROM bars_forward('SPY', DATE '2025-12-04', 3)")
    assert list(tail["date"].dt.date) == [date(2025, 12, 4), date(2025, 12, 5), date(2025, 12, 8)]
    assert tail["close"].isna().tolist() == [False, False, True]
    assert tail["note"][2] == "no daily_bars row stored for SPY on 2025-12-08"


def test_iv_bars_forward_over_daily_iv(con):
    iv = derived()["daily_iv"].to_pandas().query("symbol == 'SPY'").set_index("date")
    got = df(con, "SELECT * FROM iv_bars_forward('SPY', DATE '2025-07-02', 3)")
    days = [date(2025, 7, 2), date(2025, 7, 3), date(2025, 7, 7)]
    assert list(got["date"].dt.date) == days
    np.testing.assert_array_equal(got["iv30_close"], iv.loc[days, "iv30_close"])
    assert df(con, "SELECT * FROM iv_bar_of_day('SPY', DATE '2025-07-03')")["snapshots"][0] == 3


def test_close_after_matches_positions_in_the_session_list(con):
    closes = _closes()
    days = list(closes.index)
    for d, n in [(date(2025, 3, 7), 1), (date(2025, 3, 7), 20), (date(2025, 11, 21), 5),
                 (date(2025, 7, 3), 1), (date(2025, 10, 31), 2), (date(2025, 6, 2), 0)]:
        expected = closes.iloc[days.index(d) + n]
        assert one(con, "SELECT close_after('SPY', ?, ?)", d, n) == expected


def test_change_after_weekday_every_friday_20_sessions_later(con):
    closes = _closes()
    days = list(closes.index)
    got = df(con, "SELECT * FROM change_after_weekday('SPY', 5, 20)")
    fridays = [d for d in pd.date_range(days[0], days[-1]).date if d.weekday() == 4]
    assert list(got["day"].dt.date) == fridays
    by = got.set_index(got["day"].dt.date)
    for f in fridays:
        row = by.loc[f]
        if f not in closes.index:
            assert row["skipped"] and row["note"] == f"skipped: {f} is not an NYSE session"
        elif days.index(f) + 20 >= len(days):
            assert row["skipped"] and row["note"].startswith("skipped: no bar stored 20 sessions later")
        else:
            assert not row["skipped"] and pd.isna(row["note"])
            assert row["change"] == pytest.approx(closes.iloc[days.index(f) + 20] - closes[f], abs=1e-12)
            assert row["target_day"].date() == days[days.index(f) + 20]
    # Good Friday and Independence Day 2025 are Fridays without a session
    assert by.loc[date(2025, 4, 18), "skipped"] and by.loc[date(2025, 7, 4), "skipped"]
    # the half day 2025-11-28 is a session: skipped only because 20 sessions later is not stored
    assert by.loc[date(2025, 11, 28), "note"] == "skipped: no bar stored 20 sessions later (2025-12-29)"
    assert not by.loc[date(2025, 10, 31), "skipped"]


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.975)
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return c - h, c + h


def test_finish_probability_empirical_and_risk_neutral(con):
    c = _closes().to_numpy()
    h, m = 20, 1.02
    ratio = c[h:] / c[:-h]
    at = datetime(2025, 10, 1, 16, 0, tzinfo=UTC)
    got = df(con, "SELECT * FROM finish_probability('SPY', 20, 1.02, snapshot_at := ?)", at).set_index("side")
    for side, k in (("above", int((ratio > m).sum())), ("below", int((ratio < m).sum()))):
        row = got.loc[side]
        assert row["sample_size"] == len(ratio) and row["hits"] == k
        assert row["probability"] == pytest.approx(k / len(ratio))
        lo, hi = _wilson(k, len(ratio))
        assert row["wilson_lo"] == pytest.approx(lo, abs=1e-12) and row["wilson_hi"] == pytest.approx(hi, abs=1e-12)
    assert got.loc["above", "first_start"].date() == START
    # risk neutral: call/put mids of the two strikes around 1.02 x spot at the 11:15 ET snapshot
    o = history()["options"].to_pandas()
    snap = o[(o["symbol"] == "SPY") & (o["snapshot_time"] <= pd.Timestamp(at))]["snapshot_time"].max()
    ch = o[(o["symbol"] == "SPY") & (o["snapshot_time"] == snap)].copy()
    ch["mid"] = (ch["bid"] + ch["ask"]) / 2
    spot = ch["underlying_price"].iloc[0]
    target = cal.add_trading_days(date(2025, 10, 1), 20)
    expiry = min(sorted(set(ch["expiry"]), reverse=True), key=lambda e: abs((e - target).days))
    e = ch[ch["expiry"] == expiry].pivot(index="strike", columns="right", values="mid")
    k1 = e.index[e.index <= m * spot].max()
    k2 = e.index[e.index > m * spot].min()
    p_above = (e.loc[k1, "C"] - e.loc[k2, "C"]) / ((e.loc[k1, "C"] - e.loc[k1, "P"]) - (e.loc[k2, "C"] - e.loc[k2, "P"]))
    row = got.loc["above"]
    assert row["rn_snapshot"] == snap and row["rn_expiry"].date() == expiry
    assert (row["rn_strike_lo"], row["rn_strike_hi"]) == (k1, k2)
    assert row["rn_probability"] == pytest.approx(p_above, abs=1e-12)
    assert got.loc["below", "rn_probability"] == pytest.approx(1 - p_above, abs=1e-12)
    assert 0.0 < p_above < 1.0
    lo_k = one(con, "SELECT rn_probability FROM finish_probability('SPY', 20, 0.95, snapshot_at := ?) WHERE side = 'above'", at)
    hi_k = one(con, "SELECT rn_probability FROM finish_probability('SPY', 20, 1.05, snapshot_at := ?) WHERE side = 'above'", at)
    assert lo_k > p_above > hi_k  # a higher strike finishes above less often
    none = df(con, "SELECT * FROM finish_probability('SPY', 20, 1.02)")
    assert none["rn_probability"].isna().all() and (none["rn_note"] == "no snapshot instant given (snapshot_at)").all()


def test_latest_chain_is_point_in_time_whatever_the_time_zone(con, monkeypatch):
    o = history()["options"].to_pandas()
    spy = o[o["symbol"] == "SPY"]
    snaps = sorted(spy["snapshot_time"].unique())
    s = snaps[40]
    for tz in ("UTC", "Asia/Tokyo"):  # the process time zone must not matter either
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        at = s.to_pydatetime()
        exact = df(con, "SELECT * FROM latest_chain('SPY', ?)", at)
        before = df(con, "SELECT * FROM latest_chain('SPY', ?)", at - timedelta(microseconds=1))
        assert (exact["snapshot_time"] == s).all() and len(exact) == (spy["snapshot_time"] == s).sum()
        assert (before["snapshot_time"] == snaps[39]).all()
        np.testing.assert_array_equal(exact["iv"], spy[spy["snapshot_time"] == s].sort_values(["expiry", "strike", "right"])["iv"])
        tokyo = df(con, "SELECT * FROM latest_chain('SPY', TIMESTAMPTZ '" + at.astimezone(ZoneInfo("Asia/Tokyo")).isoformat() + "')")
        assert (tokyo["snapshot_time"] == s).all()
    monkeypatch.delenv("TZ")
    time.tzset()


def test_iv_history_last_n_sessions(con):
    iv = derived()["daily_iv"].to_pandas().query("symbol == 'SPY'").tail(5)
    got = df(con, "SELECT * FROM iv_history('SPY', 5)")
    assert list(got["date"]) == list(pd.to_datetime(iv["date"]))
    for a, b in (("iv_min", "front_low"), ("iv_max", "front_high"), ("iv_mean", "front_mean"), ("iv_close", "front_close")):
        np.testing.assert_array_equal(got[a], iv[b])


@pytest.mark.parametrize("sql, message", [
    ("SELECT * FROM bar_of_day('NOPE', DATE '2025-11-28')", "bar_of_day: unknown symbol NOPE"),
    ("SELECT * FROM bar_of_day('SPY', DATE '2025-11-27')", "bar_of_day: 2025-11-27 is not an NYSE session"),
    ("SELECT * FROM bar_of_day('SPY', NULL)", "bar_of_day: day is NULL"),
    ("SELECT * FROM bars_forward('SPY', DATE '2025-11-28', -1)", "bars_forward: n must be >= 0, got -1"),
    ("SELECT * FROM bars_forward('SPY', DATE '2025-11-28', 3, start_at := 3)", "start_at \\(3\\) must be < n \\(3\\)"),
    ("SELECT close_after('SPY', DATE '2025-11-28', -5)", "close_after: n must be >= 0, got -5"),
    ("SELECT close_after('SPY', DATE '2025-12-05', 1)", "close_after: no daily_bars close stored for SPY on 2025-12-08"),
    ("SELECT close_after(NULL, DATE '2025-12-05', 1)", "close_after: symbol is NULL"),
    ("SELECT trading_day_add(DATE '2025-11-27', 0)", "2025-11-27 is not an NYSE session"),
    ("SELECT trading_day_add(DATE '2025-11-27', NULL)", "trading_day_add: NULL argument"),
    ("SELECT trading_day_add(DATE '1990-01-02', 1)", "outside the installed calendar"),
    ("SELECT * FROM change_after_weekday('SPY', 8, 20)", "weekday must be an ISO day number 1..7"),
    ("SELECT * FROM change_after_weekday('SPY', 5, -1)", "change_after_weekday: n must be >= 0"),
    ("SELECT * FROM finish_probability('SPY', -3, 1.0)", "horizon must be >= 1 session, got -3"),
    ("SELECT * FROM finish_probability('SPY', 5, NULL)", "moneyness must be > 0, got NULL"),
    ("SELECT * FROM latest_chain('SPY', TIMESTAMP '2025-11-28 15:00:00')", "at must be a TIMESTAMPTZ"),
    ("SELECT * FROM latest_chain('SPY', NULL)", "latest_chain: at is NULL"),
    ("SELECT * FROM latest_chain('SPY', TIMESTAMPTZ '2025-02-24 14:29:59+00')", "no options snapshot of SPY at or before 2025-02-24 14:29:59 UTC"),
    ("SELECT * FROM iv_history('SPY', 0)", "iv_history: days must be >= 1, got 0"),
    ("SELECT * FROM iv_history('QQQ', 5)", "iv_history: unknown symbol QQQ"),
])
def test_bad_input_is_a_clear_error(con, sql, message):
    with pytest.raises(duckdb.InvalidInputException, match=message):
        con.execute(sql).fetchall()


def test_python_helpers_return_what_the_sql_returns():
    d, h = derived(), history()
    with timegrid.TimeGrid(d["daily_bars"], d["daily_iv"], h["options"]) as tg:
        closes = _closes()
        assert tg.close_after("SPY", date(2025, 11, 21), 5) == closes[date(2025, 12, 1)]
        assert tg.bars_forward("SPY", date(2025, 10, 20), 29, start_at=28).column("date").to_pylist() == [date(2025, 11, 28)]
        assert tg.bar_of_day("SPY", date(2025, 7, 3)).column("bars").to_pylist() == [210]
        assert tg.iv_history("SPY", 3).num_rows == 3
        fr = tg.change_after_weekday("SPY", 5, 20)
        rows = {r["day"]: r for r in fr.to_pylist()}
        assert rows[date(2025, 7, 4)]["skipped"] and not rows[date(2025, 10, 31)]["skipped"]
        at = datetime(2025, 10, 1, 12, 0, tzinfo=NY)
        chain = tg.latest_chain("SPY", at)
        assert set(chain["snapshot_time"].to_pylist()) == {datetime(2025, 10, 1, 15, 15, tzinfo=UTC)}
        fp = tg.finish_probability("SPY", 20, 1.0, at=at).to_pylist()
        assert [r["side"] for r in fp] == ["above", "below"] and fp[0]["rn_probability"] is not None
        for call, msg in [(lambda: tg.close_after("SPY", date(2025, 11, 27), 1), "not an NYSE session"),
                          (lambda: tg.finish_probability("SPY", -1, 1.0), "horizon must be >= 1"),
                          (lambda: tg.latest_chain("SPY", datetime(2025, 10, 1, 12)), "naive datetime"),
                          (lambda: tg.bar_of_day("ZZZ", date(2025, 11, 28)), "unknown symbol ZZZ")]:
            with pytest.raises(timegrid.TimeGridError, match=msg):
                call()
    with pytest.raises(timegrid.TimeGridError, match="n is None"):
        timegrid.trading_day_add(date(2025, 1, 2), None)


def test_time_grid_takes_a_record_batch_reader_and_names_what_it_cannot_take():
    """DuckDB 1.5's ``.arrow()`` returns a RecordBatchReader: it crashed deep inside
    pyarrow's pandas conversion (AttributeError: no attribute 'columns')."""
    d = derived()
    reader = d["daily_bars"].to_reader()
    assert isinstance(reader, pa.RecordBatchReader)
    with timegrid.TimeGrid(reader, None, None) as tg:
        assert tg.bars_forward("SPY", date(2025, 10, 20), 29, start_at=28).column("date").to_pylist() == [date(2025, 11, 28)]
    with pytest.raises(timegrid.TimeGridError, match="got list"):
        timegrid.TimeGrid([1, 2], None, None)


def test_install_refuses_a_connection_without_the_tables():
    c = duckdb.connect()
    with pytest.raises(ValueError, match="no table or view named daily_bars, daily_iv, options"):
        macros.install(c)
    macros.install(c, create_missing=True, start=date(2020, 1, 2), end=date(2020, 12, 31))
    assert one(c, "SELECT trading_day_add(DATE '2020-10-20', 28)") == date(2020, 11, 30)
    assert one(c, "SELECT count(*) FROM trading_days") == len(cal.trading_days(date(2020, 1, 2), date(2020, 12, 31)))


def test_every_table_in_the_docs_is_what_its_query_returns():
    import re
    from pathlib import Path

    from archive_platform_tests.timegrid_helpers import doc_connection, markdown_table

    text = (Path(__file__).resolve().parents[1] / "docs" / "timegrid.md").read_text()
    pairs = re.findall(r"```sql\n(.*?)\n```\n\n(\|.*?)(?:\n\n|\n?$)", text, flags=re.S)
    assert len(pairs) == text.count("```sql") >= 10
    for zone in ("UTC", "Asia/Tokyo"):
        con = doc_connection(zone)
        for sql, table in pairs:
            assert markdown_table(con, sql) == table.strip(), sql
        con.close()
