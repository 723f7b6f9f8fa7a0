"""The root marker ``_archive.json`` that keeps simulated and live archives apart."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from archive_platform.durable import fsync_dir
from archive_platform.store.errors import ArchiveKindError

MARKER_NAME = "_archive.json"
KINDS = ("live", "sim")


def resolve_kind(root: Path, kind: str | None, default: str = "live") -> str:
    """The kind to open ``root`` as (a store, ``connect()``, the CLI's readers): ``kind`` when
    the caller named one, refusing a root whose marker names the other kind
    (``ArchiveKindError``: a backtest that asked for live data must never be handed simulated
    rows, nor the other way round); else the marker's kind, or ``default`` for a root without
    a marker."""
    found = read_marker_kind(Path(root))
    if kind is None:
        return found or default
    if found is not None and found != kind:
        raise ArchiveKindError(f"{root} is a {found} archive; refusing to open it as {kind}")
    return kind


def read_marker_kind(root: Path) -> str | None:
    """The kind recorded at ``root`` (None when no marker exists yet)."""
    marker = root / MARKER_NAME
    try:
        raw = marker.read_text()
    except FileNotFoundError:
        return None
    try:
        kind = json.loads(raw)["kind"]
    except (ValueError, KeyError, TypeError):
        raise ArchiveKindError(f"{marker} is not a valid archive marker: {raw[:80]!r}") from None
    if kind not in KINDS:
        raise ArchiveKindError(f"{marker} names an unknown archive kind {kind!r}")
    return kind


def ensure_marker(root: Path, kind: str) -> None:
    """Write the marker on first write, or refuse if the root belongs to the other kind.

    ``os.link`` fails when the name exists, so two first writers of different kinds cannot both
    win: the loser reads the winner's marker and refuses.
    """
    found = read_marker_kind(root)
    if found is None:
        root.mkdir(parents=True, exist_ok=True)
        marker = root / MARKER_NAME
        tmp = marker.with_name(f".{marker.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "xb") as fh:
                fh.write(json.dumps({"kind": kind}).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, marker)
            fsync_dir(root)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        found = read_marker_kind(root)
    if found != kind:
        raise ArchiveKindError(f"{root} is a {found} archive; refusing to write {kind} data")
