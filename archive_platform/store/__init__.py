"""Partition store of the archive: atomic Parquet day files, intraday parts, compaction.

``from archive_platform.store import ArchiveStore`` is the entry point; validation lives in
``store.validate`` (pure), file mechanics in ``store.files``, the class in ``store.archive``.
"""

from archive_platform.store.archive import ArchiveStore, WriteResult, default_root
from archive_platform.store.errors import (
    ArchiveKindError, ArchiveValidationError, EmptyReplacementRefused, NotATradingDayError,
)

__all__ = [
    "ArchiveKindError",
    "ArchiveStore",
    "ArchiveValidationError",
    "EmptyReplacementRefused",
    "NotATradingDayError",
    "WriteResult",
    "default_root",
]
