"""The archive's path and file-name grammar, in one pure module every writer and reader uses.

    <root>/<dataset.directory>/date=YYYY-MM-DD/<dataset.file_stem>_YYYYMMDD.parquet   compacted day

(the plain layout the lake publishes, see docs/storage.md; intraday data lives in the lake).

``date`` is the partition's market date in its dataset's calendar (the ET session date for
NYSE datasets, the UTC date for 24/7 ones).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

PARTITION_PREFIX = "date="


def dataset_dir(root: Path, directory: str) -> Path:
    return Path(root) / directory


def partition_dir(root: Path, directory: str, day: date) -> Path:
    return dataset_dir(root, directory) / f"{PARTITION_PREFIX}{day.isoformat()}"


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


def glob_escape(path: str) -> str:
    """``path`` with DuckDB/fnmatch glob characters made literal (``*`` -> ``[*]``, ``?`` ->
    ``[?]``, ``[`` -> ``[[]``), so a root such as ``/data/arch*`` or ``/data/a[1]`` matches
    only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def plain_glob(root: Path, directory: str) -> str:
    """Glob of a dataset's compacted days in the plain layout, the root escaped."""
    return f"{glob_escape(str(Path(root).absolute() / directory))}/{PARTITION_PREFIX}*/*.parquet"


def is_data_file(name: str) -> bool:
    """A visible Parquet file, not a temp file (``.<name>...tmp``) or a lock."""
    return name.endswith(".parquet") and not name.startswith(".")
