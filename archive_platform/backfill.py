"""Launch a Dagster ASSET backfill on a running webserver and follow it to the end.

An asset backfill (``launchPartitionBackfill`` with an asset selection and partition names, the
same request the UI's *Materialize* dialog sends) is planned by the daemon's backfill loop, which
honours each asset's ``BackfillPolicy`` (chunks of days per run), the run queue and the pools.
``dagster job backfill`` instead launches one run per day from the CLI process and needs the
code location name of the workspace; this goes through the webserver, which already has it.

Every argument is checked before anything is sent (exit status 2 on bad input): the assets
must be archived datasets, and the days must lie between the archive's start date
(``ARCHIVE_START_DATE``, where the partitions begin) and the newest day that can be archived.
Each dataset's days come from its own calendar: NYSE sessions for the US datasets, every UTC day
for the crypto datasets; a selection of both launches one backfill per calendar.

Talks GraphQL over HTTP with ``httpx``; imports no ``dagster``, so the command starts fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:3000"

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on PartitionKeysNotFoundError { partitionKeys }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
  }
}
"""

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status numPartitions
      error { message }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path } numPartitionsTargeted numPartitionsInProgress
            numPartitionsMaterialized numPartitionsFailed
          }
        }
      }
    }
    ... on PythonError { message }
    ... on BackfillNotFoundError { message }
  }
}
"""

#: backfill statuses after which nothing more happens
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


class BackfillError(RuntimeError):
    """The webserver refused the request or the backfill ended unsuccessfully."""


@dataclass(frozen=True)
class AssetProgress:
    asset: str
    targeted: int
    in_progress: int
    materialized: int
    failed: int


@dataclass(frozen=True)
class BackfillStatus:
    backfill_id: str
    status: str
    assets: tuple[AssetProgress, ...] = field(default=())
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status in {"COMPLETED", "COMPLETED_SUCCESS"} and not any(a.failed for a in self.assets)

    def line(self) -> str:
        done = sum(a.materialized for a in self.assets)
        total = sum(a.targeted for a in self.assets)
        failed = sum(a.failed for a in self.assets)
        running = sum(a.in_progress for a in self.assets)
        return (f"backfill {self.backfill_id}: {self.status}, {done}/{total} asset partitions "
                f"materialized, {running} in progress, {failed} failed")


def _one_line(text: str, url: str = "") -> str:
    """``text`` on one line, without the password or query of ``url`` (they may hold a secret)."""
    try:
        u = httpx.URL(url)
        secrets = [u.password or "", u.query.decode("ascii", "replace")]
    except (httpx.InvalidURL, TypeError):
        secrets = []
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(str(text).split())


def shown_url(url: str) -> str:
    """``url`` as it may be printed: without user, password, query and fragment."""
    try:
        return str(httpx.URL(url).copy_with(username=None, password=None, query=None, fragment=None))
    except httpx.InvalidURL:
        return "the given --url"


def _graphql(url: str, query: str, variables: dict, client: httpx.Client | None) -> dict:
    try:
        base = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BackfillError(f"the Dagster webserver URL is not valid: {_one_line(str(exc))}") from None
    endpoint = base.copy_with(path=base.path.rstrip("/") + "/graphql")
    shown = shown_url(str(endpoint))
    own = client is None
    client = client or httpx.Client(timeout=120)
    try:
        resp = client.post(endpoint, json={"query": query, "variables": variables})
    except httpx.HTTPError as exc:
        raise BackfillError(f"cannot reach the Dagster webserver at {shown_url(url)}: "
                            f"{_one_line(str(exc) or type(exc).__name__, url)}") from None
    finally:
        if own:
            client.close()
    if resp.status_code != 200:
        raise BackfillError(f"{shown} answered HTTP {resp.status_code}: {_one_line(resp.text, url)[:300]}")
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BackfillError(f"{shown} answered HTTP 200 without a GraphQL JSON body (is --url the Dagster "
                            f"webserver?): {_one_line(resp.text, url)[:300]}")
    if body.get("errors"):
        first = body["errors"][0]
        message = first.get("message") if isinstance(first, dict) else first
        raise BackfillError(f"GraphQL error from {shown}: {_one_line(str(message), url)}")
    if not isinstance(body.get("data"), dict):
        raise BackfillError(f"{shown} answered a GraphQL body without data: {_one_line(resp.text, url)[:300]}")
    return body["data"]


def _refusal(result: dict) -> str:
    """Every message the webserver gave with a refusal (some error types carry none in ``message``)."""
    why = [result.get("message") or ""]
    why += [e.get("message") or "" for e in result.get("errors") or []]
    if result.get("invalidStepKey"):
        why.append(f"invalid step {result['invalidStepKey']}")
    if result.get("invalidOutputName"):
        why.append(f"invalid output {result['invalidOutputName']} of step {result.get('stepKey')}")
    return _one_line("; ".join(w for w in why if w)) or "no message given"


#: run config that executes all steps of a run in the run worker's own process. The default
#: (multiprocess) starts one more Python process per step, which imports Dagster and loads the
#: definitions again: measured in bench/backfill.py, that start costs more than the work.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def launch_asset_backfill(
    url: str, assets: Sequence[str], partitions: Sequence[str], *, title: str | None = None,
    tags: dict[str, str] | None = None, run_config: dict | None = None,
    client: httpx.Client | None = None,
) -> str:
    """Ask the webserver at ``url`` for an asset backfill of ``assets`` over ``partitions``;
    returns the backfill id. The daemon then plans runs by each asset's backfill policy, each
    with ``run_config`` (e.g. ``IN_PROCESS``; None: the job's default executor)."""
    if not assets:
        raise BackfillError("no assets selected")
    if not partitions:
        raise BackfillError("no partitions selected")
    params: dict = {
        "assetSelection": [{"path": a.split("/")} for a in assets],
        "partitionNames": list(partitions),
        "fromFailure": False,
        "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
    }
    if title:
        params["title"] = title
    if run_config:
        params["runConfigData"] = run_config
    result = _graphql(url, LAUNCH, {"params": params}, client)["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"backfill refused ({result['__typename']}): {_refusal(result)}")
    return result["backfillId"]


def backfill_status(url: str, backfill_id: str, *, client: httpx.Client | None = None) -> BackfillStatus:
    result = _graphql(url, STATUS, {"id": backfill_id}, client)["partitionBackfillOrError"]
    if result["__typename"] != "PartitionBackfill":
        raise BackfillError(f"backfill {backfill_id}: {result['__typename']}: {_refusal(result)}")
    counts = ((result.get("assetBackfillData") or {}).get("assetBackfillStatuses")) or []
    assets = tuple(
        AssetProgress("/".join(c["assetKey"]["path"]), c["numPartitionsTargeted"],
                      c["numPartitionsInProgress"], c["numPartitionsMaterialized"], c["numPartitionsFailed"])
        for c in counts if "assetKey" in c
    )
    error = (result.get("error") or {}).get("message")
    return BackfillStatus(result["id"], result["status"], assets, error)


def wait_for_backfill(
    url: str, backfill_id: str, *, timeout: float = 3600, poll: float = 2.0,
    on_progress: Callable[[BackfillStatus], None] | None = None,
) -> BackfillStatus:
    """Poll until the backfill finishes (any terminal status); ``on_progress`` sees each change."""
    deadline = time.monotonic() + timeout
    last = None
    with httpx.Client(timeout=120) as client:
        while True:
            status = backfill_status(url, backfill_id, client=client)
            if on_progress and status != last:
                on_progress(status)
            last = status
            if status.finished:
                return status
            if time.monotonic() > deadline:
                raise BackfillError(f"backfill {backfill_id} not finished after {timeout:.0f} s: {status.line()}")
            time.sleep(poll)


def session_keys(start: date, end: date) -> list[str]:
    """The NYSE session partition keys from ``start`` to ``end`` inclusive."""
    from archive_platform.calendar import trading_days

    if end < start:
        raise click.BadParameter(f"--to {end} is before --from {start}")
    return [d.isoformat() for d in trading_days(start, end)]


def _default_assets() -> list[str]:
    from archive_platform.datasets import DATASETS

    return [d.name for d in DATASETS if d.calendar_name == "nyse"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Plan:
    """One backfill to launch: assets of one calendar over that calendar's days."""

    calendar: str  # "nyse" or "utc"
    label: str  # how the calendar names one partition ("NYSE session", "UTC day")
    assets: tuple[str, ...]
    keys: tuple[str, ...]

    def summary(self) -> str:
        unit = "sessions" if self.calendar == "nyse" else f"{self.label}s"
        return f"{len(self.keys)} {unit} x {len(self.assets)} assets ({', '.join(self.assets)})"


def archive_start_date() -> date:
    """Where the assets' partitions begin: ``ARCHIVE_START_DATE``, else the default start."""
    from archive_platform.settings import DEFAULT_START_DATE, environment, parse_start_date

    raw = (environment().get("ARCHIVE_START_DATE") or "").strip()
    if not raw:
        return DEFAULT_START_DATE
    try:
        return parse_start_date(raw, source="environment variable ARCHIVE_START_DATE")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _unknown_asset(name: str) -> click.BadParameter:
    import difflib

    from archive_platform.datasets import DATASETS

    names = [d.name for d in DATASETS]
    close = difflib.get_close_matches(name, names, n=1)
    by_cal = {}
    for d in DATASETS:
        by_cal.setdefault(d.calendar.label, []).append(d.name)
    valid = "; ".join(f"{label}s: {', '.join(v)}" for label, v in by_cal.items())
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return click.BadParameter(f"unknown asset {name!r}{hint}. Valid assets: {valid}",
                              param_hint="'--asset'")


def plan_backfill(start: date, end: date, assets: Sequence[str], *, now: datetime,
                  first: date) -> list[Plan]:
    """The backfills to launch for ``assets`` over ``start``..``end`` (inclusive), one per
    calendar, each over every partition of its calendar in the range. Raises a click usage error
    (exit status 2) on an unknown asset, an empty or reversed range, a day before ``first`` (the
    archive's start date) or after the newest day that can be archived as of ``now``."""
    from archive_platform.datasets import BY_NAME
    from archive_platform.settings import DEFAULT_START_DATE

    if end < start:
        raise click.BadParameter(f"--to {end} is before --from {start}", param_hint="'--to'")
    chosen: list[str] = []
    for a in assets:
        if a not in BY_NAME:
            raise _unknown_asset(a)
        if a not in chosen:
            chosen.append(a)
    if start < first:
        raise click.BadParameter(
            f"--from {start} is before the archive's start date {first} (ARCHIVE_START_DATE, "
            f"{DEFAULT_START_DATE} when unset: no partition exists before it); use --from {first} or later",
            param_hint="'--from'")
    groups: dict[str, list[str]] = {}
    for a in chosen:
        groups.setdefault(BY_NAME[a].calendar_name, []).append(a)
    plans = []
    for name, names in groups.items():
        cal = BY_NAME[names[0]].calendar
        today = cal.market_date(now)
        who = ", ".join(names) if len(names) <= 3 else f"the {len(names)} datasets on {cal.label}s"
        if name == "nyse":  # today's session can be archived once it opens (never stored partial as complete)
            newest, why = today, f"today in {cal.timezone}"
        else:  # a UTC day is archived after it closes at 00:00 UTC
            newest = today - timedelta(days=1)
            why = f"the newest closed {cal.label}: today's closes at 00:00 UTC tomorrow"
        if end > newest:
            what = "is in the future" if end > today else "has not closed yet"
            raise click.BadParameter(
                f"--to {end} {what} for {who}: the last day that can be backfilled is {newest} ({why})",
                param_hint="'--to'")
        keys = tuple(d.isoformat() for d in cal.sessions(start, end))
        if not keys:
            raise click.BadParameter(
                f"no {cal.label} between {start} and {end} for {who}: nothing to backfill",
                param_hint="'--from'/'--to'")
        plans.append(Plan(name, cal.label, tuple(names), keys))
    return plans


def _check_url(ctx, param, value: str) -> str:
    """The webserver URL must be http(s) with a host; said without echoing it (it may hold a password)."""
    try:
        u = httpx.URL(value)
        ok = u.scheme in ("http", "https") and bool(u.host)
    except httpx.InvalidURL:
        ok = False
    if not ok:
        raise click.BadParameter(f"not an http:// or https:// URL with a host, such as {DEFAULT_URL}")
    return value


@click.command("backfill")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day (YYYY-MM-DD).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day, inclusive.")
@click.option("--asset", "assets", multiple=True,
              help="Dataset to backfill (repeatable; default: every archived NYSE dataset). NYSE "
              "datasets get the NYSE sessions of the range, crypto datasets every UTC day of it.")
@click.option("--url", default=DEFAULT_URL, envvar="ARCHIVE_DAGSTER_URL", show_default=True,
              callback=_check_url, help="The running Dagster webserver (./run dev, or dagster-webserver).")
@click.option("--executor", type=click.Choice(["in_process", "multiprocess"]), default="in_process",
              show_default=True, help="Run each run's steps in its own process (in_process) or one "
              "subprocess per step (multiprocess: Dagster's default).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the backfill to its end.")
@click.option("--timeout", default=6 * 3600, show_default=True, help="Seconds to wait with --wait.")
def backfill(start, end, assets, url, executor, wait, timeout):
    """Launch an asset backfill of NYSE sessions (or UTC days) through the running Dagster webserver.

    The daemon splits it into runs by the assets' backfill policy (5 sessions a run with vendor
    sources, 84 on the simulated market) and queues them behind the instance's run limit and
    pools. Prints the backfill id, then its progress. Bad input (an unknown asset, days before
    ARCHIVE_START_DATE or in the future) exits with status 2 before anything is sent.
    """
    plans = plan_backfill(start.date(), end.date(), list(assets) or _default_assets(),
                          now=utcnow(), first=archive_start_date())
    launched = []
    for plan in plans:
        title = f"archive {start.date()}..{end.date()}" + ("" if plan.calendar == "nyse" else f" ({plan.label}s)")
        try:
            backfill_id = launch_asset_backfill(
                url, plan.assets, plan.keys, title=title,
                run_config=IN_PROCESS if executor == "in_process" else None)
        except BackfillError as exc:
            raise click.ClickException(str(exc)) from exc
        launched.append(backfill_id)
        click.echo(f"backfill {backfill_id}: {plan.summary()}; {shown_url(url).rstrip('/')}/runs/b/{backfill_id}")
    if not wait:
        return
    failed = []
    for backfill_id in launched:
        try:
            final = wait_for_backfill(url, backfill_id, timeout=timeout,
                                      on_progress=lambda s: click.echo(s.line()))
        except BackfillError as exc:
            raise click.ClickException(str(exc)) from exc
        if not final.succeeded:
            failed.append(f"backfill {backfill_id} ended {final.status}" + (f": {_one_line(final.error)}" if final.error else ""))
    if failed:
        raise click.ClickException("; ".join(failed))
