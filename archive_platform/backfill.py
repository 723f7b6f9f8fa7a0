"""Launch a Dagster ASSET backfill on a running webserver and follow it to the end.

An asset backfill (``launchPartitionBackfill`` with an asset selection and partition names, the
same request the UI's *Materialize* dialog sends) is planned by the daemon's backfill loop, which
honours each asset's ``BackfillPolicy`` (chunks of days per run), the run queue and the pools.
``dagster job backfill`` instead launches one run per day from the CLI process and needs the
code location name of the workspace; this goes through the webserver, which already has it.

Talks GraphQL over HTTP with ``httpx``; imports no ``dagster``, so the command starts fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:3000"

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message partitionKeys }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
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


def _graphql(url: str, query: str, variables: dict, client: httpx.Client | None) -> dict:
    endpoint = url.rstrip("/") + "/graphql"
    own = client is None
    client = client or httpx.Client(timeout=120)
    try:
        resp = client.post(endpoint, json={"query": query, "variables": variables})
    except httpx.HTTPError as exc:
        raise BackfillError(f"cannot reach the Dagster webserver at {url}: {exc}") from exc
    finally:
        if own:
            client.close()
    if resp.status_code != 200:
        raise BackfillError(f"{endpoint} answered HTTP {resp.status_code}: {resp.text[:300]}")
    body = resp.json()
    if body.get("errors"):
        raise BackfillError(f"GraphQL error from {endpoint}: {body['errors'][0].get('message')}")
    return body["data"]


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
        raise BackfillError("no partitions selected (no NYSE session in the range?)")
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
        raise BackfillError(f"backfill refused ({result['__typename']}): {result.get('message', '')}")
    return result["backfillId"]


def backfill_status(url: str, backfill_id: str, *, client: httpx.Client | None = None) -> BackfillStatus:
    result = _graphql(url, STATUS, {"id": backfill_id}, client)["partitionBackfillOrError"]
    if result["__typename"] != "PartitionBackfill":
        raise BackfillError(f"backfill {backfill_id}: {result['__typename']}: {result.get('message', '')}")
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


@click.command("backfill")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day (YYYY-MM-DD).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day, inclusive.")
@click.option("--asset", "assets", multiple=True,
              help="Asset key to backfill (repeatable; default: every archived NYSE dataset).")
@click.option("--url", default=DEFAULT_URL, envvar="ARCHIVE_DAGSTER_URL", show_default=True,
              help="The running Dagster webserver (./run dev, or dagster-webserver).")
@click.option("--executor", type=click.Choice(["in_process", "multiprocess"]), default="in_process",
              show_default=True, help="Run each run's steps in its own process (in_process) or one "
              "subprocess per step (multiprocess: Dagster's default).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the backfill to its end.")
@click.option("--timeout", default=6 * 3600, show_default=True, help="Seconds to wait with --wait.")
def backfill(start, end, assets, url, executor, wait, timeout):
    """Launch an asset backfill of NYSE sessions through the running Dagster webserver.

    The daemon splits it into runs by the assets' backfill policy (5 sessions a run with vendor
    sources, 84 on the simulated market) and queues them behind the instance's run limit and
    pools. Prints the backfill id, then its progress.
    """
    keys = session_keys(start.date(), end.date())
    chosen = list(assets) or _default_assets()
    try:
        backfill_id = launch_asset_backfill(
            url, chosen, keys, title=f"archive {start.date()}..{end.date()}",
            run_config=IN_PROCESS if executor == "in_process" else None)
    except BackfillError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backfill {backfill_id}: {len(keys)} sessions x {len(chosen)} assets ({', '.join(chosen)}); "
               f"{url.rstrip('/')}/runs/b/{backfill_id}")
    if not wait:
        return
    try:
        final = wait_for_backfill(url, backfill_id, timeout=timeout,
                                  on_progress=lambda s: click.echo(s.line()))
    except BackfillError as exc:
        raise click.ClickException(str(exc)) from exc
    if not final.succeeded:
        raise click.ClickException(f"backfill {backfill_id} ended {final.status}"
                                   + (f": {final.error}" if final.error else ""))
