"""Partition store of the archive: validated day partitions kept in a DuckLake.

``from archive_platform.store import ArchiveStore`` is the entry point; validation lives in
``store.validate`` (pure), the engine in ``archive_platform.lake``, the class in ``store.archive``.
"""

from archive_platform.store.archive import ArchiveStore, WriteResult, default_root
from archive_platform.store.errors import (
    ArchiveKindError,
    ArchivePublishError,
    ArchiveValidationError,
    ArchiveWriteError,
    EmptyReplacementRefused,
    NotATradingDayError,
)

__all__ = [
    "ArchiveKindError",
    "ArchivePublishError",
    "ArchiveStore",
    "ArchiveValidationError",
    "ArchiveWriteError",
    "EmptyReplacementRefused",
    "NotATradingDayError",
    "WriteResult",
    "default_root",
]
