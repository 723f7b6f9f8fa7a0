"""What ``archive_platform.connect()`` adds to a lake connection: an empty typed view for each
registered dataset the lake has no table for yet, and the time-grid macros."""

from __future__ import annotations

import duckdb

from archive_platform.lake.catalog import ident
from archive_platform.lake.connect import table_names


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    from archive_platform import macros
    from archive_platform.datasets import DATASETS

    have = set(table_names(con))
    for ds in DATASETS:
        if ds.name in have:
            continue
        con.register("__empty", ds.schema.empty_table())
        try:
            con.execute(f"CREATE TABLE memory.main.{ident(ds.name)} AS SELECT *, "
                        "CAST(NULL AS DATE) AS date FROM __empty WITH NO DATA")
        finally:
            con.unregister("__empty")
    macros.install(con, create_missing=True)
