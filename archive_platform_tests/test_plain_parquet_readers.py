"""The one-liners in docs/reading-parquet.md give `date` as a real date in pandas, pyarrow and polars.

A hive reader left to guess types `date=2025-11-26` as a string, which conflicts with the files'
own DATE column; the documented calls name the partition type instead. Each test reads two closed days written by the
store and checks the partition column's type, its values and the row counts per day.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from archive_platform.sim.market import SimulatedMarket
from archive_platform.store import ArchiveStore

DAYS = (date(2025, 11, 26), date(2025, 11, 28))  # a full day (390 bars) and a 13:00 close (210)
SYMBOLS = ["SPY", "QQQ"]
DOC = Path(__file__).resolve().parents[1] / "docs" / "reading-parquet.md"


@pytest.fixture(scope="module")
def stocks_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    store = ArchiveStore(root, kind="sim")
    market = SimulatedMarket()
    for day in DAYS:
        store.write_day("stocks_1m", day, market.fetch_stocks_1m(day, SYMBOLS))
    return root / "stocks"


def _snippet(name: str) -> str:
    """The code block that follows the heading `name` in the doc, so the test runs what it shows."""
    text = DOC.read_text()
    match = re.search(rf"### {re.escape(name)}\n+```python\n(.*?)```", text, re.S)
    assert match, f"docs/reading-parquet.md has no python block under '### {name}'"
    return match.group(1)


def _run(name: str, path: Path):
    scope: dict = {"path": str(path)}
    exec(_snippet(name), scope)  # noqa: S102 - the doc's own example, on a temp archive
    return scope["df"]


EXPECTED = {DAYS[0]: 390 * len(SYMBOLS), DAYS[1]: 210 * len(SYMBOLS)}


def test_pyarrow(stocks_dir):
    table = _run("pyarrow", stocks_dir)
    assert isinstance(table, pa.Table)
    assert table.schema.field("date").type == pa.date32()
    counts = table.group_by("date").aggregate([("symbol", "count")]).to_pylist()
    assert {r["date"]: r["symbol_count"] for r in counts} == EXPECTED


def test_pandas(stocks_dir):
    df = _run("pandas", stocks_dir)
    assert isinstance(df, pd.DataFrame)
    assert not isinstance(df["date"].dtype, pd.CategoricalDtype)
    assert df["date"].map(type).eq(date).all()
    assert df.groupby("date").size().to_dict() == EXPECTED


def test_polars(stocks_dir):
    df = _run("polars", stocks_dir)
    assert isinstance(df, pl.DataFrame)
    assert df.schema["date"] == pl.Date
    counts = df.group_by("date").len().sort("date")
    assert dict(zip(counts["date"].to_list(), counts["len"].to_list())) == EXPECTED


def test_a_guessing_hive_reader_refuses_and_a_plain_reader_gets_the_files_date(stocks_dir):
    """Why the doc exists: a hive reader left to guess types the folder value as a string,
    which conflicts with the files' own DATE column; without hive partitioning the files'
    ``date`` is a real date."""
    with pytest.raises(pa.ArrowTypeError, match="date"):
        ds.dataset(stocks_dir, format="parquet", partitioning="hive").to_table()
    table = ds.dataset(stocks_dir, format="parquet").to_table()
    assert table.schema.field("date").type == pa.date32()
    counts = table.group_by("date").aggregate([("symbol", "count")]).to_pylist()
    assert {r["date"]: r["symbol_count"] for r in counts} == EXPECTED
