"""``capture``: the long-running crypto capture service as a click command.

The lead attaches it to the main group (``main.add_command(capture)``), giving
``archive-platform capture [--exchange binance|hyperliquid ...] [--symbols BTCUSDT,BTC]
[--seconds N] [--root PATH]``. Settings come from the environment (docs/crypto.md); the options
override them. Every setting is validated before anything connects or is written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from archive_platform.crypto.config import SettingsError, capture_settings_from_env
from archive_platform.crypto.symbols import EXCHANGES, SymbolError, parse_symbols
from archive_platform.settings import environment


def check_capture_root(root: Path, setting: str) -> bool:
    """Make sure the service can write under ``root`` before it connects: the rules every archive
    root follows (``archive_platform.settings.check_root``: not the file system's root, not a
    file or through one, its nearest existing folder writable), then the spool folder is created
    and a temp file written in it and removed, which also catches a read-only file system or a
    full disk. Raises ``SettingsError`` naming ``setting`` (``--root`` or ``ARCHIVE_ROOT``);
    on failure nothing is left behind. Returns whether the root folder was created."""
    from archive_platform.config import ConfigError
    from archive_platform.crypto.spool import SPOOL_DIR
    from archive_platform.settings import check_root

    try:
        check_root(setting, str(root))
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None
    spool = Path(root) / SPOOL_DIR
    made = [p for p in (spool, *spool.parents) if not os.path.lexists(p)]  # deepest first
    try:
        spool.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=spool, prefix=".capture-write-check-", suffix=".tmp") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        for p in made:
            try:
                p.rmdir()
            except OSError:
                pass
        raise SettingsError(f"{setting}={str(root)!r}: the capture service cannot write its spool "
                            f"folder {spool}: {exc.strerror or exc}") from None
    return Path(root) in made


@click.command("capture")
@click.option("--exchange", "exchanges", multiple=True, type=click.Choice(EXCHANGES),
              help="Capture only these exchanges (repeatable); default: every exchange of the symbols.")
@click.option("--symbols", default=None, help="Comma list overriding ARCHIVE_CRYPTO_SYMBOLS, e.g. BTCUSDT,ETHUSDT,BTC.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after N seconds (default: run until SIGTERM/SIGINT).")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="Archive root (default: $ARCHIVE_ROOT).")
def capture(exchanges: tuple[str, ...], symbols: str | None, seconds: float | None, root: Path | None) -> None:
    """Capture Binance USD-M futures and Hyperliquid books and trades into the spool."""
    from archive_platform.crypto.service import CaptureService

    try:
        settings = capture_settings_from_env(environment())
        if symbols is not None:
            settings = replace(settings, symbols=parse_symbols(symbols, "--symbols"))
        if exchanges:
            settings = settings.for_exchanges(exchanges)
        if root is not None:
            settings = replace(settings, root=root)
        created = check_capture_root(settings.root, "--root" if root is not None else "ARCHIVE_ROOT")
    except (SettingsError, SymbolError) as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    publisher = None
    if settings.redis_url:
        from archive_platform.crypto.live import RedisPublisher

        publisher = RedisPublisher(settings.redis_url)
    new = " (created: the folder did not exist)" if created else ""
    click.echo(f"capturing {', '.join(map(str, settings.symbols))} into {settings.root}{new} "
               f"(flush every {settings.flush_seconds:g} s or {settings.max_buffer_rows} rows)")
    beat = asyncio.run(CaptureService(settings, publisher=publisher).run(seconds))
    click.echo(f"stopped: {beat['rows_written']} rows written, {beat['reconnects']} reconnects, "
               f"{beat['malformed']} malformed messages refused, {beat['exchange_errors']} error replies "
               "from the exchanges" + (f" (last: {beat['last_exchange_error']})" if beat["last_exchange_error"] else ""))
