"""What ``archive_platform.connect()`` adds to a lake connection: an empty typed view for each
registered dataset the lake has no table for yet, the coverage ledger (plain files), and the
time-grid macros."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from archive_platform.lake.catalog import ALIAS, ident
from archive_platform.calendar import CALENDAR_END
from archive_platform.lake.connect import table_names


def plain_views(root: Path | None, have) -> list[str]:
    """``CREATE VIEW`` statements for what lives in the plain layout only, not in the lake: the
    coverage ledger (``coverage``), as the views file shows it (typed and empty until written)."""
    from archive_platform.datasets.coverage import DATASET as COVERAGE
    from archive_platform.views import _has_files, view_sql

    if root is None or COVERAGE.name in have:
        return []
    sql = view_sql(Path(root), COVERAGE, has_files=_has_files(Path(root), COVERAGE))
    return [sql.replace("CREATE VIEW ", "CREATE VIEW memory.main.", 1)]


def prepare(con: duckdb.DuckDBPyConnection, root: Path | None = None) -> None:
    from archive_platform import macros
    from archive_platform.datasets import DATASETS

    have = set(table_names(con))
    viewed = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE database_name = "
                                        "'memory' AND schema_name = 'main' AND NOT internal").fetchall()}
    for name in sorted(have - viewed):  # first written since lake.connect listed the tables
        con.execute(f"CREATE VIEW memory.main.{ident(name)} AS SELECT * FROM {ALIAS}.main.{ident(name)}")
    for sql in plain_views(root, have):
        con.execute(sql)
    for ds in DATASETS:
        if ds.name not in have:
            con.execute(_empty_view(ds))
    macros.install(con, create_missing=True)


def _empty_view(ds) -> str:
    """A typed view with no rows for a dataset not written yet: queries work and answer
    nothing. A view, not a table: an INSERT into a table here succeeded on a read-only
    connection and stored nothing, where the user must be told it cannot write."""
    from archive_platform.views import duckdb_type

    cols = ", ".join(f"CAST(NULL AS {duckdb_type(f.type)}) AS {ident(f.name)}" for f in ds.schema)
    return f"CREATE VIEW memory.main.{ident(ds.name)} AS SELECT {cols}, CAST(NULL AS DATE) AS date WHERE false"


def cli_statements(have: list[str], trading_days_file: Path, root: Path | None = None) -> list[str]:
    """What ``prepare`` does, as SQL for the DuckDB CLI's init script (``archive-platform sql``):
    an empty typed view for each registered dataset not in ``have``, ``trading_days`` read from
    ``trading_days_file`` (written here), and the helper macros."""
    import pyarrow.parquet as pq

    from archive_platform import macros
    from archive_platform.datasets import DATASETS
    from archive_platform.views import quote_literal

    out = plain_views(root, have)
    for ds in DATASETS:
        if ds.name not in have:
            out.append(_empty_view(ds))
    pq.write_table(macros.trading_days_table(date(2000, 1, 3), CALENDAR_END), trading_days_file)
    out.append("CREATE OR REPLACE TABLE trading_days AS SELECT * FROM "
               f"read_parquet({quote_literal(str(trading_days_file))}) ORDER BY idx")
    return out + macros.helper_blocks()
