"""Compacted day files and the seed's plain layout.

The catalog registers each compacted day under a unique name in the data path
(``<data>/main/<table>/date=D/<stem>_YYYYMMDD-<uuid>.parquet``) so that earlier versions stay
readable for time travel until expiry. The plain layout ``<root>/<dir>/date=D/<stem>_YYYYMMDD.parquet``
is a hard link to the current version, swapped in with a rename: a plain glob sees the old or
the new file, never both, and never a partial one. Temp files live in ``<root>/_lake/tmp``
because DuckDB's glob also matches hidden files beside the data.

On S3 (``LakeLocation.s3``) the same names are object keys under ``s3://bucket/prefix``: a file is
written to the local temp folder, uploaded, and registered only after the upload returned and
the object's size matched; the plain-layout object is a server-side copy (S3 has no hard links;
a PUT or COPY replaces an object atomically, so a reader gets the old or the new object whole).
"""

from __future__ import annotations

import errno
import os
import re
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from archive_platform.durable import fsync_dir, fsync_file
from archive_platform.lake import parquet
from archive_platform.lake.catalog import ALIAS, LakeLocation, ident
from archive_platform.lake.remote import RemoteFile, filesystem
from archive_platform.lake.tables import TableDef



def new_file(loc: LakeLocation, td: TableDef, day: date, *, compacted: bool,
             tag: str = "") -> Path | RemoteFile:
    """A fresh name in the day's folder of the data path: ``<stem>_YYYYMMDD-<hex>.parquet`` for
    a whole (compacted) day, ``part-<tag>-<hex>.parquet`` for an appended batch whose
    ``parquet.batch_tag`` is ``tag`` (``part-<hex>.parquet`` without one)."""
    token = uuid.uuid4().hex[:16]
    if compacted:
        name = f"{td.file_stem}_{day:%Y%m%d}-{token}.parquet"
    else:
        name = f"part-{tag}-{token}.parquet" if tag else f"part-{token}.parquet"
    if loc.s3 is not None:
        return RemoteFile(f"{loc.data_path}main/{td.name}/date={day.isoformat()}/{name}", loc.s3)
    folder = _day_folder(loc, td, day)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _day_folder(loc: LakeLocation, td: TableDef, day: date) -> Path:
    """The day's folder of a local data path, where DuckLake's hive layout puts its files."""
    return Path(loc.data_path) / "main" / td.name / f"date={day.isoformat()}"


def tagged_parts(loc: LakeLocation, td: TableDef, day: date, tag: str) -> list[Path]:
    """The appended parts on the local data path whose batch had ``tag`` (``new_file``): live
    or superseded, the catalog says which. One listing of the day's folder (tens of names:
    about 30 us); [] on S3, where a listing is a request."""
    if loc.s3 is not None or not tag:
        return []
    folder = _day_folder(loc, td, day)
    prefix = f"part-{tag}-"
    try:
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it if e.name.startswith(prefix) and e.name.endswith(".parquet"))
    except FileNotFoundError:
        return []


def plain_days(loc: LakeLocation, td: TableDef) -> list[date]:
    """Days whose plain-layout object exists in the bucket (one listing of the dataset's prefix)."""
    from pyarrow import fs

    assert loc.s3 is not None
    base = loc.s3.key(f"{loc.s3.url}/{td.directory}")
    pattern = re.compile(rf"/date=(\d{{4}}-\d{{2}}-\d{{2}})/{re.escape(td.file_stem)}_\d{{8}}\.parquet$")
    infos = filesystem(loc.s3).get_file_info(fs.FileSelector(base, allow_not_found=True, recursive=True))
    return sorted(date.fromisoformat(m.group(1)) for i in infos
                  if i.type == fs.FileType.File and (m := pattern.search(i.path)))


def as_file(loc: LakeLocation, path: str) -> Path | RemoteFile:
    """A catalog file name as a ``Path`` (local data path) or ``RemoteFile`` (S3)."""
    return RemoteFile(path, loc.s3) if loc.s3 is not None else Path(path)


def plain_file(loc: LakeLocation, td: TableDef, day: date) -> Path | RemoteFile:
    """The plain-layout file of a day: under the root, or under the S3 prefix."""
    if loc.s3 is not None:
        return RemoteFile(f"{loc.s3.url}/{td.directory}/date={day.isoformat()}/"
                          f"{td.file_stem}_{day:%Y%m%d}.parquet", loc.s3)
    return td.plain_path(loc.root, day)


def _is_ours(td: TableDef, day: date, path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return re.fullmatch(rf"{re.escape(td.file_stem)}_{day:%Y%m%d}-[0-9a-f]{{16}}\.parquet", name) is not None


def day_files(con: duckdb.DuckDBPyConnection, td: TableDef, day: date) -> list[tuple[str, str | None, int]]:
    """(data file, delete file, rows of the day visible now) for each live file of the day."""
    part = f"/date={day.isoformat()}/"
    rows = con.execute("SELECT data_file, delete_file FROM ducklake_list_files(?, ?) "
                       "WHERE contains(data_file, ?)", [ALIAS, td.name, part]).fetchall()
    if not rows:
        return []
    visible = con.execute(f"SELECT count(*) FROM {ALIAS}.{ident(td.name)} WHERE date = ?",
                          [day]).fetchone()[0]
    return [(d, x, visible) for d, x in rows]


def is_compacted(td: TableDef, day: date, files: list[tuple[str, str | None, int]],
                 loc: LakeLocation | None = None) -> bool:
    """One file of ours, no deletes against it (inlined deletes included: counts match)."""
    if len(files) != 1:
        return False
    path, deletes, visible = files[0]
    if not _is_ours(td, day, path) or deletes is not None:
        return False
    if loc is not None and loc.s3 is not None:
        rows = pq.ParquetFile(loc.s3.key(path), filesystem=filesystem(loc.s3)).metadata.num_rows
    else:
        rows = pq.ParquetFile(path).metadata.num_rows
    return rows == visible


def write_file(td: TableDef, table, day: date, tmp: Path, final: Path | RemoteFile,
               *, compacted: bool = True, durable: bool = True) -> int:
    """Write ``table`` (a pyarrow table or a polars frame) plus its ``date`` column to
    ``final`` (temp file, rename; or upload for a ``RemoteFile``); returns the bytes written.
    ``compacted``: a whole day's file (kept), else an appended part (folded at day end).
    ``durable``: fsync the file and its folder before returning; with False the caller must
    call ``make_durable(final)`` before anything refers to the file (the engine overlaps it
    with the catalog statements). An upload needs neither: the bucket stores it."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    remote = isinstance(final, RemoteFile)
    try:
        parquet.encode(td, table, day, tmp, compacted=compacted, remote=remote,
                       sync=durable and not remote)
        size = tmp.stat().st_size
        if remote:
            upload(tmp, final, size)
            tmp.unlink()
            return size
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(final.parent)
    return size


def make_durable(path: Path, drop_cache: bool = False) -> None:
    """fsync a file written with ``durable=False`` and the folder that names it
    (``drop_cache``: and drop its pages from the page cache, ``durable.drop_cached``)."""
    fsync_file(path, drop_cache=drop_cache)
    fsync_dir(path.parent)


def upload(local: Path, remote: RemoteFile, size: int) -> None:
    """Upload a finished local file. Why pyarrow's S3 file system and a local temp file rather
    than DuckDB's ``COPY ... TO 's3://...'``: measured in bench/lake_s3.py (docs/performance.md),
    local write + upload is 1.6x faster than COPY for one snapshot (112k rows) and on par
    (0.8-1.05x) for 4-8 snapshots; it keeps one Parquet writer for local and S3 (the same file
    bytes and schema), a failure while encoding never reaches the bucket, and the size of the
    finished file is known, so the upload can be checked. A failed upload raises
    before anything is registered; the object is then removed (or, if the bucket is
    unreachable, left as an unregistered orphan that ``Lake.expire`` deletes). The size check
    refuses an object the server completed short."""
    from pyarrow import fs

    s3 = remote._s3
    fs.copy_files(str(local), s3.key(remote), source_filesystem=fs.LocalFileSystem(),
                  destination_filesystem=filesystem(s3))
    got = remote.stat().st_size
    if got != size:
        raise OSError(f"upload of {remote} stored {got} bytes, expected {size}")


def delete_file(path: Path | RemoteFile) -> None:
    """Remove a data file (local or in the bucket); missing is fine. (pyarrow then leaves an
    empty ``folder/`` marker object when the folder became empty; no ``*.parquet`` glob matches it.)"""
    if isinstance(path, RemoteFile):
        if path.exists():
            filesystem(path._s3).delete_file(path._s3.key(path))
        return
    path.unlink(missing_ok=True)


class LostDataFiles(FileNotFoundError):
    """Data files the lake catalog lists as live for a day are gone from storage (deleted by
    hand, a disk or bucket lifecycle rule): the day's rows in them cannot be read, and the day
    cannot be replaced either, because DuckLake reads a file to delete its rows. Nothing was
    changed. Restoring the files from a backup (same paths) makes the day whole again."""

    def __init__(self, td: TableDef, day: date, lost: list[tuple[str, int]], *, writing: bool = True) -> None:
        names = ", ".join(p for p, _ in lost)
        super().__init__(errno.ENOENT, (
            f"{td.name} {day.isoformat()}: the lake catalog lists {len(lost)} data file(s) of this day "
            f"that storage no longer holds ({names}); the day can be neither read nor replaced until "
            "they are restored from a backup at the same path (docs/storage.md, \"Lost data files\")"
            + ("; nothing was changed" if writing else "")))
        self.lost = [p for p, _ in lost]


def lost_files(loc: LakeLocation, con: duckdb.DuckDBPyConnection, td: TableDef,
               day: date) -> list[tuple[str, int]]:
    """(path, bytes the catalog records) of each live data file of the day that storage no
    longer holds. Asks only the catalog and the file system (never reads a file's rows)."""
    part = f"/date={day.isoformat()}/"
    rows = con.execute("SELECT data_file, data_file_size_bytes FROM ducklake_list_files(?, ?) "
                       "WHERE contains(data_file, ?)", [ALIAS, td.name, part]).fetchall()
    return [(f, int(size)) for f, size in rows if not as_file(loc, f).exists()]


def restore_from_plain(loc: LakeLocation, td: TableDef, day: date,
                       lost: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Put back a compacted day file that is gone from the data path while its plain-layout
    file, a hard link to it (on S3 a copy), still holds it: same name pattern, and the size the
    catalog records. Returns the files still lost (appended parts have no second copy)."""
    plain = plain_file(loc, td, day)
    left = []
    for path, size in lost:
        try:
            same = _is_ours(td, day, path) and plain.stat().st_size == size
        except FileNotFoundError:
            same = False
        if not same:
            left.append((path, size))
            continue
        if loc.s3 is not None:
            filesystem(loc.s3).copy_file(loc.s3.key(plain), loc.s3.key(path))
            continue
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(plain, target)
        fsync_dir(target.parent)
    return left


class PublishFailed(OSError):
    """The day's rows are committed to the lake (every lake reader sees them), but its plain-layout
    file could not be refreshed: it is missing or still the previous content. Publishing again
    (``compact_day``, or the day's next whole write) repairs it; nothing else is needed."""

    def __init__(self, cause: OSError, target: object) -> None:
        # the plain-layout path in the message: "[Errno 13] Permission denied: '<path>'"
        super().__init__(cause.errno, cause.strerror or str(cause), str(target))
        self.target = target


def publish(loc: LakeLocation, td: TableDef, day: date, versioned: str) -> Path | RemoteFile:
    """Make the plain-layout path a hard link to ``versioned`` (idempotent, atomic); on S3 a
    server-side copy of it (CopyObject replaces the target whole)."""
    if loc.s3 is not None:
        target = plain_file(loc, td, day)
        filesystem(loc.s3).copy_file(loc.s3.key(versioned), loc.s3.key(target))
        return target
    target = td.plain_path(loc.root, day)
    target.parent.mkdir(parents=True, exist_ok=True)
    src = Path(versioned)
    try:
        if os.path.samefile(src, target):
            return target
    except FileNotFoundError:
        pass
    tmp = loc.tmp_dir / f"{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.link"
    loc.tmp_dir.mkdir(parents=True, exist_ok=True)
    os.link(src, tmp)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return target


def unpublish(loc: LakeLocation, td: TableDef, day: date) -> None:
    if loc.s3 is not None:
        delete_file(plain_file(loc, td, day))
        return
    target = td.plain_path(loc.root, day)
    if target.exists():
        target.unlink()
        fsync_dir(target.parent)


def remove_stale_temps(loc: LakeLocation, older_than: timedelta) -> None:
    """Delete temp files of ``_lake/tmp`` untouched for ``older_than`` (left by dead writers).

    A file's age is its last change of content *or* of links (``st_ctime``): a publish links
    the day's data file here as ``*.link`` before renaming it over the plain file, and that link
    carries the data file's mtime, which is days old when a day compacted long ago is published
    again; by mtime alone a concurrent expire deleted it and the publish failed. A temp file that
    a writer renames away (or that another expire deletes) while this scans is skipped."""
    cutoff = time.time() - older_than.total_seconds()
    if not loc.tmp_dir.is_dir():
        return
    for e in os.scandir(loc.tmp_dir):
        try:
            st = e.stat(follow_symlinks=False)
        except FileNotFoundError:  # renamed into _lake/data (or removed) since the listing
            continue
        if max(st.st_mtime, st.st_ctime) < cutoff:
            Path(e.path).unlink(missing_ok=True)
