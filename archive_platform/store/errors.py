"""Exceptions of the archive store: one family for bad input, one for opening the wrong root."""

from __future__ import annotations

from archive_platform.calendar import NotATradingDay


class ArchiveValidationError(ValueError):
    """A batch (or a day) was refused before anything was written; the message names why."""


class EmptyReplacementRefused(ArchiveValidationError):
    """An empty result would have replaced stored rows; refused, nothing changed."""

    def __init__(self, message: str, *, stored_rows: int = 0) -> None:
        super().__init__(message)
        self.stored_rows = stored_rows


class NotATradingDayError(ArchiveValidationError, NotATradingDay):
    """A write was asked for a day that is not an NYSE session."""


class ArchiveKindError(ValueError):
    """A sim store was pointed at a live root or the other way round."""


class ArchiveWriteError(OSError):
    """A write failed on I/O (disk full, read-only file system...) or in the catalog; the
    message names the dataset, the partition and the file or folder. It has had no effect."""


class ArchivePublishError(ArchiveWriteError):
    """A whole-day write or compaction committed its rows, but the day's plain-Parquet copy
    (``<root>/<type>/date=.../<type>_YYYYMMDD.parquet``) could not be refreshed. Unlike its
    parent, it HAS had an effect: the lake holds the new rows; publishing again repairs the copy."""
