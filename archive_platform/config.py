"""Which source feeds which archive type: parsed from the environment, validated up front.

Pure: ``SourceSelection.from_env(env)`` takes a mapping (``os.environ`` in production, a dict in
tests) and either returns a valid selection or raises ``ConfigError`` naming the variable, the
value and what is allowed. The Dagster layer calls it when the definitions load, so a typo in
``ARCHIVE_SOURCE_OPTIONS`` fails the code location with that message instead of failing a run at
03:00 on a Saturday.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time

from archive_platform.schemas import ArchiveType

SIM = "sim"

#: the sources each archive type can be switched to (first one is the default)
ALLOWED_SOURCES: dict[ArchiveType, tuple[str, ...]] = {
    ArchiveType.UW_FLOW: (SIM, "unusual_whales"),
    ArchiveType.OPTIONS: (SIM, "thetadata", "polygon", "ib"),
    # gex is computed from the options archive. UW's greek-exposure-by-strike endpoint has no
    # open interest, which the canonical gex schema requires, so it is not offered.
    ArchiveType.GEX: (SIM, "derived"),
    ArchiveType.STOCKS_1M: (SIM, "polygon", "thetadata", "ib"),
    ArchiveType.IV_RANK: (SIM, "barchart", "unusual_whales", "derived"),
    ArchiveType.TRADES: (SIM, "ib"),
}

#: environment variables holding secrets, per vendor (read through Dagster's EnvVar only)
SECRET_ENV = {
    "unusual_whales": "UW_API_KEY",
    "polygon": "POLYGON_API_KEY",
    "barchart": "BARCHART_API_KEY",
}


class ConfigError(ValueError):
    """A configuration value is missing or not allowed; the message says which and why."""


def source_env_var(archive_type: ArchiveType) -> str:
    return f"ARCHIVE_SOURCE_{archive_type.value.upper()}"


def parse_symbols(value: str | None, default: list[str]) -> list[str]:
    """``ARCHIVE_SYMBOLS``: comma list of tickers (upper-cased, de-duplicated, order kept)."""
    if value is None or not value.strip():
        return list(default)
    out: list[str] = []
    for raw in value.split(","):
        sym = raw.strip().upper()
        if not sym:
            continue
        if not all(c.isalnum() or c in ".-" for c in sym) or len(sym) > 10:
            raise ConfigError(f"ARCHIVE_SYMBOLS: {raw.strip()!r} is not a ticker symbol")
        if sym not in out:
            out.append(sym)
    if not out:
        raise ConfigError("ARCHIVE_SYMBOLS is set but names no symbol")
    return out


def parse_times(value: str | None, default: tuple[time, ...], var: str) -> tuple[time, ...]:
    """A comma list of ET wall-clock times ``HH:MM`` (e.g. ``ARCHIVE_IV_RANK_TIMES=07:00,19:00``)."""
    if value is None or not value.strip():
        return default
    out = []
    for raw in value.split(","):
        try:
            hh, mm = raw.strip().split(":")
            out.append(time(int(hh), int(mm)))
        except ValueError:
            raise ConfigError(f"{var}: {raw.strip()!r} is not a time of day HH:MM") from None
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class SourceSelection:
    """The source name chosen for each archive type."""

    by_type: Mapping[ArchiveType, str] = field(
        default_factory=lambda: {t: SIM for t in ArchiveType}
    )

    def __getitem__(self, archive_type: ArchiveType | str) -> str:
        return self.by_type[ArchiveType(archive_type)]

    def is_sim(self, archive_type: ArchiveType | str) -> bool:
        """True when the type's rows come from the simulated market (gex follows options)."""
        return self.store_kind(archive_type) == "sim"

    def store_kind(self, archive_type: ArchiveType | str) -> str:
        """``sim`` or ``live``: which archive root the type is written to.

        Derived types live where their inputs live: ``gex`` derived from a simulated ``options``
        archive is simulated too, and so is ``iv_rank`` derived from it.
        """
        t = ArchiveType(archive_type)
        name = self.by_type[t]
        if name == "derived":
            return self.store_kind(ArchiveType.OPTIONS)
        return "sim" if name == SIM else "live"

    def vendors(self) -> set[str]:
        return {v for v in self.by_type.values() if v not in (SIM, "derived")}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SourceSelection:
        chosen: dict[ArchiveType, str] = {}
        for t, allowed in ALLOWED_SOURCES.items():
            var = source_env_var(t)
            value = (env.get(var) or "").strip().lower()
            if not value:
                # gex follows options: derived from a live options archive, simulated otherwise
                gex_of_live = t is ArchiveType.GEX and chosen[ArchiveType.OPTIONS] != SIM
                chosen[t] = "derived" if gex_of_live else allowed[0]
                continue
            if value not in allowed:
                raise ConfigError(
                    f"{var}={value!r} is not supported for {t.value}; "
                    f"choose one of: {', '.join(allowed)}"
                )
            chosen[t] = value
        sel = cls(chosen)
        if sel[ArchiveType.GEX] == SIM and chosen[ArchiveType.OPTIONS] != SIM:
            raise ConfigError(
                f"{source_env_var(ArchiveType.GEX)}=sim cannot pair with "
                f"{source_env_var(ArchiveType.OPTIONS)}={chosen[ArchiveType.OPTIONS]}: simulated "
                "gamma exposure over a live option archive would mix simulated and live data; "
                "use 'derived' (the default)"
            )
        for vendor, var in SECRET_ENV.items():
            if vendor == "barchart":
                continue  # Barchart also works key-less from CSV drops
            if vendor in sel.vendors() and not env.get(var):
                users = [t.value for t, v in chosen.items() if v == vendor]
                raise ConfigError(
                    f"{var} is not set, but {', '.join(users)} "
                    f"{'is' if len(users) == 1 else 'are'} configured to come from {vendor}"
                )
        if sel[ArchiveType.IV_RANK] == "barchart" and not (
            env.get("BARCHART_API_KEY") or env.get("BARCHART_CSV_DIR")
        ):
            raise ConfigError(
                "ARCHIVE_SOURCE_IV_RANK=barchart needs BARCHART_API_KEY (OnDemand API) or "
                "BARCHART_CSV_DIR (a folder of downloaded IV-rank CSV files)"
            )
        return sel
