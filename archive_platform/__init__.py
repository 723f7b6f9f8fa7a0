"""archive_platform: a market-data archive on Dagster (NYSE trading-day partitioned Parquet).

``archive_platform.connect()`` is the analysts' entry point (imports DuckDB lazily, so
``import archive_platform`` stays light).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    import duckdb

__version__ = "0.1.0"


def connect(read_only: bool = True, as_of: "datetime | None" = None, *, kind: str | None = None,
            root=None) -> "duckdb.DuckDBPyConnection":
    """A DuckDB connection to the archive: every registered dataset is a view of its name
    (``options``, ``uw_flow``, ...; empty and typed until its first write) with ``date`` as
    DATE, and the time-grid macros are installed (see docs/timegrid.md).

    ``kind``: ``"live"`` (``$ARCHIVE_ROOT``, the default) or ``"sim"`` (``$ARCHIVE_SIM_ROOT``);
    ``root`` overrides both, and then the root's own marker decides unless ``kind`` is given.
    A root whose marker names the other kind than the one asked for is refused
    (``ArchiveKindError``), as a store refuses it: live and simulated rows never mix.
    ``as_of``: the archive as it stood at that instant (time travel; a timezone-aware
    datetime). Readers never block writers. See docs/storage.md.
    The catalog and data path (PostgreSQL, S3) come from the same variables the writers read
    (``ARCHIVE_LAKE_CATALOG``, ``ARCHIVE_S3_URL``, ...; docs/deployment.md).
    """
    from archive_platform.lake import connect as lake_connect
    from archive_platform.serving import prepare
    from archive_platform.settings import lake_config
    from archive_platform.store.marker import resolve_kind

    if kind not in (None, "live", "sim"):  # before the environment is read for it
        raise ValueError(f"kind must be 'live' or 'sim', got {kind!r}")
    if root is None:
        from archive_platform.store import default_root

        kind = kind or "live"
        root = default_root(kind)
    kind = resolve_kind(Path(root), kind)
    con = lake_connect(root, read_only, as_of, config=lake_config(kind))
    prepare(con, root)
    return con
