"""Helpers the subcommands share: the Dagster instance, quiet Dagster logs, rich tables and
progress, byte sizes, and option types that turn bad input into usage errors."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # rich and humanize are imported when output is printed, so --help stays fast
    from rich.console import Console

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
    retries = _DropRetryWarnings()
    logging.getLogger().addFilter(retries)  # dagster-postgres logs each retry on the root logger
    try:
        return dg.DagsterInstance.get()
    except Exception as exc:  # a traceback of storage internals tells a user nothing
        raise InstanceUnavailable(instance_error(exc, os.environ["DAGSTER_HOME"])) from None
    finally:
        logging.getLogger().removeFilter(retries)


class _DropRetryWarnings(logging.Filter):
    """dagster-postgres retries a failed connection 5 times, each with a warning on the root
    logger: a wrong password printed 5 such lines before the command's one ``error:`` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Retrying failed database connection")


class InstanceUnavailable(Exception):
    """The Dagster instance does not load (its server is down, a variable it reads is unset):
    the command cannot run, which is not a verdict (``status`` exits 2 for it, not 1)."""


def instance_error(exc: BaseException, home: str) -> str:
    """One line for an instance that does not load: the root cause (the driver's own words, say
    "connection refused"), never a password, and what to check."""
    from archive_platform.vendors.redact import redact

    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    config_errors = [e for x in chain for e in (getattr(x, "errors", None) or [])]
    if config_errors:  # DagsterInvalidConfigError: the first line of each error, not its stack
        root = "; ".join(_first_line(getattr(getattr(e, "error_data", None), "message", None)
                                     or getattr(e, "message", str(e))) for e in config_errors)
    else:
        root = next((_first_line(str(e)) for e in reversed(chain) if str(e).strip()), type(exc).__name__)
    secrets = [os.environ.get("DAGSTER_PG_PASSWORD", "")]
    url = os.environ.get("DAGSTER_PG_URL", "")
    if "@" in url and ":" in url.split("@", 1)[0].rsplit("/", 1)[-1]:
        secrets.append(url.split("@", 1)[0].rsplit(":", 1)[-1])  # the password of user:password@
    hint = ""
    if "environment variable" in root:
        hint = " Set it as for the other processes of this deployment (docs/deployment.md)."
    elif any("postgres" in type(e).__module__ or "psycopg" in type(e).__module__ for e in chain):
        hint = (" Is the PostgreSQL server up and reachable, and are the DAGSTER_PG_* variables "
                "those of the other processes of this deployment (docs/deployment.md)?")
    return redact(f"cannot load the Dagster instance in {home} (dagster.yaml): {root}.{hint}", secrets)


def _first_line(text: str) -> str:
    """The first non-empty line, without a leading ``package.module.ErrorClass: ``."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return re.sub(r"^(\w+\.)+\w+(Error|Exception): ", "", line).rstrip(".")


def dagster_home() -> str:
    return os.environ.get("DAGSTER_HOME", "")


def console() -> Console:
    """A console on the current stdout; off a terminal (logs, pipes, tests) it is plain text,
    wide enough that tables are not wrapped."""
    from rich.console import Console

    c = Console(highlight=False)
    if not c.is_terminal:
        c = Console(highlight=False, width=max(c.width, 160), no_color=True)
    return c


def human(n: float) -> str:
    """A byte count for people (binary units: 1.5 MiB)."""
    import humanize

    return humanize.naturalsize(n, binary=True)


def print_table(cols: Sequence[str], rows: Sequence[Sequence], title: str | None = None,
                out: Console | None = None) -> None:
    """Print rows as a table; numbers and sizes right-aligned."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for i, c in enumerate(cols):
        t.add_column(str(c), justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    (out or console()).print(t)


@contextmanager
def progress(total: int, what: str, out: Console | None = None) -> Iterator:
    """A progress bar over ``total`` steps on a terminal; yields ``step(line)``, which advances
    it and prints ``line`` above the bar. Off a terminal there is no bar: each step prints its
    one line, so logs and tests stay readable."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = out or console()
    if not out.is_terminal:
        # soft_wrap: a long line stays one line in a log (rich would fold it at the console width)
        yield lambda line: out.print(line, markup=False, soft_wrap=True)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=out, transient=True) as bar:
        task = bar.add_task(what, total=total)

        def step(line: str) -> None:
            bar.console.print(line, markup=False, soft_wrap=True)
            bar.advance(task)

        yield step


class IsoDate(click.ParamType):
    """A YYYY-MM-DD calendar date; anything else is a usage error naming the option."""

    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a calendar date as YYYY-MM-DD (e.g. 2025-11-26)", param, ctx)


class AwareInstant(click.ParamType):
    """An ISO 8601 instant WITH its UTC offset (``Z`` or ``+hh:mm``); a naive time is refused,
    because the archive cannot guess which zone it means."""

    name = "ISO-INSTANT"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 instant (e.g. 2025-11-26T15:30:00-05:00)", param, ctx)
        if ts.tzinfo is None:
            self.fail(f"{value!r} has no UTC offset; add one, e.g. {value}-05:00 (New York "
                      f"standard time) or {value}Z (UTC)", param, ctx)
        return ts
