"""The archive as a DuckLake: snapshot-isolated day partitions, time travel, plain Parquet layout.

Pure (no Dagster). ``Lake`` writes and reads; ``connect`` opens the archive for analysts;
``migrate`` converts an archive of the older file layout. See docs/storage.md.
"""

from archive_platform.lake.connect import connect
from archive_platform.lake.engine import DEFAULT_RETENTION, Lake
from archive_platform.lake.migrate import Migrated, migrate
from archive_platform.lake.tables import STEPS, LakeWrite, TableDef

__all__ = ["DEFAULT_RETENTION", "STEPS", "Lake", "LakeWrite", "Migrated", "TableDef", "connect", "migrate"]
