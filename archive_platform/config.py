"""Which source feeds which archive type: parsed from the environment, validated up front.

Pure: ``SourceSelection.from_env(env)`` takes a mapping (the process environment, via ``archive_platform.settings``, a dict in
tests) and either returns a valid selection or raises ``ConfigError`` naming the variable, the
value and what is allowed. The Dagster layer calls it when the definitions load, so a typo in
``ARCHIVE_SOURCE_OPTIONS`` fails the code location with that message instead of failing a run at
03:00 on a Saturday.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time

from archive_platform.datasets import DATASETS
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.symbols import SymbolError, normalise_us_ticker

SIM = "sim"

#: the sources each archive type can be switched to (first one is the default), as declared
ALLOWED_SOURCES: dict[ArchiveType, tuple[str, ...]] = {ArchiveType(d.name): d.sources for d in DATASETS}



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
        if not raw.strip():
            continue
        try:
            sym = normalise_us_ticker(raw)  # the one US ticker grammar the vendor clients enforce
        except SymbolError as exc:
            raise ConfigError(f"ARCHIVE_SYMBOLS: {exc}") from None
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

    def __getitem__(self, archive_type) -> str:
        """The source of a dataset (name, ``ArchiveType`` or ``Dataset``); a dataset that is
        not registered (a test's own) has only the simulated source."""
        name = spec_for(archive_type).name if not isinstance(archive_type, str) else archive_type
        for t, value in self.by_type.items():
            if t.value == name:
                return value
        return SIM

    def is_sim(self, archive_type: ArchiveType | str) -> bool:
        """True when the type's rows come from the simulated market (gex follows options)."""
        return self.store_kind(archive_type) == "sim"

    def store_kind(self, archive_type: ArchiveType | str) -> str:
        """``sim`` or ``live``: which archive root the type is written to.

        Derived types live where their inputs live: ``gex`` derived from a simulated ``options``
        archive is simulated too, and so is ``iv_rank`` derived from it.
        """
        name = self[archive_type]
        if name == "derived":
            return self.store_kind(spec_for(archive_type).derived_from[0])
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
                ds = spec_for(t)
                of_live = ds.derive_under_sim and chosen[ArchiveType(ds.derived_from[0])] != SIM
                chosen[t] = "derived" if of_live else allowed[0]
                continue
            if value not in allowed:
                raise ConfigError(
                    f"{var}={value!r} is not supported for {t.value}; "
                    f"choose one of: {', '.join(allowed)}"
                )
            chosen[t] = value
        sel = cls(chosen)
        for t in chosen:
            ds = spec_for(t)
            base = ArchiveType(ds.derived_from[0]) if ds.derive_under_sim else None
            if base is not None and sel[t] == SIM and chosen[base] != SIM:
                raise ConfigError(
                    f"{source_env_var(t)}=sim cannot pair with "
                    f"{source_env_var(base)}={chosen[base]}: simulated {ds.name} over a live "
                    f"{base.value} archive would mix simulated and live data; "
                    "use 'derived' (the default)"
                )
        from archive_platform.sources.registry import VENDORS

        for vendor, info in VENDORS.items():
            var = info.key_env
            if not info.key_required:
                continue  # e.g. Barchart also works key-less from CSV drops
            if vendor in sel.vendors() and not env.get(var):
                users = [t.value for t, v in chosen.items() if v == vendor]
                raise ConfigError(
                    f"{var} is not set, but {', '.join(users)} "
                    f"{'is' if len(users) == 1 else 'are'} configured to come from {vendor}"
                )
        if sel[ArchiveType.IV_RANK] == "barchart" and not (
            env.get(key := VENDORS["barchart"].key_env)
            or env.get(csv := VENDORS["barchart"].settings["csv_dir"][0])
        ):
            raise ConfigError(
                f"ARCHIVE_SOURCE_IV_RANK=barchart needs {key} (OnDemand API) or "
                f"{csv} (a folder of downloaded IV-rank CSV files)"
            )
        return sel
