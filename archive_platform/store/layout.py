"""The archive's path and file-name grammar, in one pure module every writer and reader uses.

    <root>/<dataset.directory>/date=YYYY-MM-DD/<dataset.file_stem>_YYYYMMDD.parquet       daily file
    <root>/<dataset.directory>/date=YYYY-MM-DD/<stem>_YYYYMMDD.part-NNNNNN-<hash8>.parquet  intraday part

``date`` is the partition's market date in its dataset's calendar (the ET session date for
NYSE datasets, the UTC date for 24/7 ones). Hidden names (leading dot) are temp files and locks.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

PARTITION_PREFIX = "date="
_PART_RE = re.compile(r"\.part-(\d{6,})-([0-9a-f]{8})\.parquet$")


def dataset_dir(root: Path, directory: str) -> Path:
    return Path(root) / directory


def partition_dir(root: Path, directory: str, day: date) -> Path:
    return Path(root) / directory / f"{PARTITION_PREFIX}{day.isoformat()}"


def partition_day(folder_name: str) -> date | None:
    """The day of a ``date=YYYY-MM-DD`` folder name, None for anything else."""
    if not folder_name.startswith(PARTITION_PREFIX):
        return None
    try:
        return date.fromisoformat(folder_name[len(PARTITION_PREFIX):])
    except ValueError:
        return None


def daily_name(stem: str, day: date) -> str:
    return f"{stem}_{day:%Y%m%d}.parquet"


def part_name(stem: str, day: date, seq: int, digest: str) -> str:
    return f"{stem}_{day:%Y%m%d}.part-{seq:06d}-{digest}.parquet"


def part_seq(name: str) -> int | None:
    """Sequence number of a part file name, None for anything else."""
    m = _PART_RE.search(name)
    return int(m.group(1)) if m else None


def part_digest(name: str) -> str | None:
    m = _PART_RE.search(name)
    return m.group(2) if m else None


def is_data_file(name: str) -> bool:
    """A visible Parquet file (daily or part), not a temp file or lock."""
    return name.endswith(".parquet") and not name.startswith(".")


def glob_literal(path: Path | str) -> str:
    """``path`` as a glob that matches only itself: each glob metacharacter becomes a one-character
    class (``arch*`` -> ``arch[*]``, ``a[1]`` -> ``a[[]1]``), so a root never matches a sibling."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in str(path))


def parquet_glob(root: Path, directory: str) -> str:
    """Glob of every file of a dataset: daily files and not-yet-compacted parts."""
    base = glob_literal(Path(root).absolute() / directory)
    return f"{base}/{PARTITION_PREFIX}*/*.parquet"
