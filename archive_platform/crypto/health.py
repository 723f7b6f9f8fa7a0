"""Is capture alive? Pure checks over the heartbeat file the service writes (for the sensor).

``read_heartbeat(root)`` returns the parsed JSON or None; ``capture_problems(beat, now)`` returns
what is wrong (empty: healthy): no heartbeat, a heartbeat older than ``stale_seconds`` (the
process stopped or hung), a stream whose last message is older than ``stream_stale_seconds``
(an exchange, or one connection, went quiet beyond what the service's reconnects repair), a
subscribed stream that has delivered nothing in the service's first ``stream_stale_seconds``, or
a spool that cannot be written (disk full, permissions): the service is alive and every stream
delivers, yet nothing reaches the archive, the rows wait in memory and, past
``ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS``, the oldest are dropped (recorded as capture gaps).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from archive_platform.crypto.spool import heartbeat_path


def read_heartbeat(root: Path | str) -> dict[str, Any] | None:
    try:
        return json.loads(heartbeat_path(root).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _age(now: datetime, stamp: str) -> float:
    return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def capture_problems(beat: dict[str, Any] | None, now: datetime, *, stale_seconds: float = 60.0,
                     stream_stale_seconds: float = 300.0) -> list[str]:
    """Problems with the capture as of ``now`` (timezone-aware); an empty list means healthy."""
    if beat is None:
        return ["no capture heartbeat: the capture service has never run under this root"]
    problems = []
    age = _age(now, beat["written_at"])
    if age > stale_seconds:
        problems.append(f"capture heartbeat is {age:.0f} s old (pid {beat.get('pid')}): the service is not running")
    streams = beat.get("streams", {})
    for stream, info in sorted(streams.items()):
        s_age = _age(now, info["last_receive"])
        if s_age > stream_stale_seconds:
            problems.append(f"stream {stream}: no message for {s_age:.0f} s")
    # a stream that never delivered (no network, a refused subscription, a wrong URL) is as
    # silent as one that stopped, once the service has run longer than the stream threshold
    running = _age(now, beat["started"]) if beat.get("started") else 0.0
    if running > stream_stale_seconds:
        for stream in sorted(set(beat.get("expected_streams", [])) - set(streams)):
            problems.append(f"stream {stream}: nothing received since the service started {running:.0f} s ago")
        if not streams and not beat.get("expected_streams"):
            problems.append(f"no stream has delivered anything since the service started {running:.0f} s ago")
    if beat.get("spool_error"):
        dropping = beat.get("dropping_rows") or 0
        bound = beat.get("max_unspooled_rows")
        held = f"{beat.get('buffered_rows', 0):,} rows held in memory" + (f" (bound {bound:,})" if bound else "")
        lost = (f", {dropping:,} rows dropped so far (recorded as capture gaps)" if dropping
                else ", none dropped yet")
        problems.append(f"spool not writable ({beat['spool_error']}): {held}{lost}; free space or fix "
                        "the spool folder under the capture root")
    return problems
