"""``archive-platform``: the command line (click).

Each subcommand lives in its own module and is imported only when it runs, so ``--help`` and
``query`` never pay for importing Dagster. To add a command, write a module with a click command
and add one line to ``COMMANDS``.
"""

from __future__ import annotations

import importlib

import click

#: command name -> "module:attribute" of its click command
COMMANDS: dict[str, str] = {
    "demo": "archive_platform.cli.demo:demo",
    "views": "archive_platform.cli.views:views",
    "query": "archive_platform.cli.query:query",
    "capture": "archive_platform.crypto.cli:capture",
    "backtest": "archive_platform.analysis.cli:backtest",
    "backfill": "archive_platform.backfill:backfill",
    "status": "archive_platform.cli.status:status",
    "sql": "archive_platform.cli.sql:sql",
    "migrate": "archive_platform.cli.migrate:migrate",
}

_HELP = {
    "demo": "Archive the last N sessions from the simulated market through Dagster.",
    "views": "Rebuild the DuckDB views over the archive.",
    "query": "Run one of the example queries against the archive.",
    "capture": "Capture crypto books and trades into the spool (long-running).",
    "backtest": "Backtest a strategy on archived crypto data; print its metrics, save its curve.",
    "backfill": "Launch a Dagster asset backfill through the running webserver.",
    "status": "Per-dataset health of the archive (exit 1 when unhealthy); --json.",
    "sql": "Open the archive in the DuckDB shell (or run one statement with -c).",
    "migrate": "Convert an archive of the old file layout into the lake.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented lazy pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        # a bad setting is the user's to fix: one line naming it, exit 2 (as click's usage
        # errors), never a traceback, and distinct from status's "unhealthy" exit 1
        from archive_platform.cli.common import InstanceUnavailable
        from archive_platform.config import ConfigError
        from archive_platform.crypto.config import SettingsError

        try:
            return super().invoke(ctx)
        except (ConfigError, SettingsError, InstanceUnavailable) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # the group's own --help lists names and one-line help without importing any command
        with formatter.section("Commands"):
            formatter.write_dl([(name, _HELP.get(name, "")) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup)
def main() -> None:
    """archive_platform: a market-data archive on Dagster."""


if __name__ == "__main__":
    main()
