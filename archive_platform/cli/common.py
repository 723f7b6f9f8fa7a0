"""Helpers the subcommands share: the Dagster instance, quiet Dagster logs, tables, byte sizes."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def quiet_dagster() -> None:
    """Keep Dagster's beta/preview warnings out of a user's terminal.

    Dagster flags backfill policies and partitioned checks as beta/preview on every load; that is
    for the developers who chose them, not for someone running the archive.
    """
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def instance():
    import dagster as dg

    quiet_dagster()
    if not os.environ.get("DAGSTER_HOME"):
        home = Path(".dagster_home").absolute()
        home.mkdir(exist_ok=True)
        if not (home / "dagster.yaml").exists():
            # the same instance config `./run` installs (deploy/instance/, see docs/deployment.md)
            script = Path(__file__).resolve().parents[2] / "deploy" / "instance" / "install-config"
            subprocess.run([str(script), str(home)], check=True)
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def dagster_home() -> str:
    return os.environ.get("DAGSTER_HOME", "")


def human(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:,.1f} {unit}"
    raise AssertionError("unreachable")


def table(cols: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in cols]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
