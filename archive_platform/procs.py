"""Whether a process is alive (pure: procfs, no Dagster). Used by the recovery sensor for run
workers and by the views refresh for the temp files of writers that died."""

from __future__ import annotations

import os
from pathlib import Path


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def pid_alive(pid: int, started_by: float | None = None) -> bool:
    """Whether process ``pid`` runs (not a zombie) and, when ``started_by`` (epoch seconds) is
    given, started no later than that: a younger process reuses the pid of a dead one."""
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():  # no procfs: existence only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if fields[0] in ("Z", "X"):
        return False
    if started_by is not None:
        started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        if started > started_by + 2.0:
            return False
    return True
