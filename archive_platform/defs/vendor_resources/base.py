"""The base of the per-vendor Dagster resources: settings from ``Settings``, key as ``dg.EnvVar``."""

from __future__ import annotations

from typing import ClassVar

import dagster as dg

from archive_platform.settings import Settings
from archive_platform.sources.base import MarketSource
from archive_platform.sources.registry import VENDORS, source_class


HIDDEN = "'***'"


def hide_secrets(pairs, secret_fields: tuple[str, ...]):
    """``__repr_args__`` pairs with the value of every set secret field replaced: in a run the
    resources hold the resolved ``dg.EnvVar`` values, and ``repr()`` (a log line, a traceback,
    ``context.log.info(resource)``) must never show them. An unresolved ``EnvVar`` shows its
    variable's name, which is no secret."""
    for name, value in pairs:
        if name in secret_fields and value and not isinstance(value, dg.EnvVar):
            value = _Hidden()
        yield name, value


class _Hidden:
    def __repr__(self) -> str:
        return HIDDEN


class VendorResource(dg.ConfigurableResource):
    """One vendor's connection settings; ``client()`` builds its ``MarketSource``."""

    vendor: ClassVar[str] = ""
    #: fields holding a secret (resolved from ``dg.EnvVar`` in a run): hidden from ``repr()``
    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)

    def __repr_args__(self):
        return hide_secrets(super().__repr_args__(), self.secret_fields)

    @classmethod
    def key_needed(cls, settings: Settings) -> bool:
        """Whether the run must have the vendor's key (``VendorInfo.key_required``; a vendor
        that also works key-less says when its key-less input is not configured)."""
        return VENDORS[cls.vendor].key_required

    @classmethod
    def from_settings(cls, settings: Settings) -> VendorResource:
        info = VENDORS[cls.vendor]
        kwargs: dict = {}
        # The key is wired as dg.EnvVar whether or not the process loading the definitions
        # has it: Dagster resolves an EnvVar when the resource is initialised in the run, from
        # the run process's environment ("The value of the environment variable will be evaluated
        # when a run is launched": https://docs.dagster.io/guides/build/external-resources/configuring-resources),
        # so in a deployment where a code server loads the definitions and run workers execute
        # them, the worker's key is what counts, and a worker without it fails at run start
        # naming the variable. Only a vendor that also works key-less (Barchart CSV drops),
        # configured for that and loaded without the key, gets no EnvVar: an unset EnvVar would
        # fail every key-less run.
        if info.key_env and (cls.key_needed(settings) or info.key_env in settings.secrets_set):
            kwargs["api_key"] = dg.EnvVar(info.key_env)  # resolved at run time, never shown
        for field, (var, kind) in info.settings.items():
            if var in settings.vendor:
                raw = settings.vendor[var]
                kwargs[field] = int(raw) if kind in ("port", "int") else raw
        return cls(**kwargs)

    def source_class(self) -> type[MarketSource]:
        return source_class(self.vendor)

    def required_key(self, value: str | None) -> str:
        if not value:
            var = VENDORS[self.vendor].key_env
            raise ValueError(f"{var} is not set; export it (see .env.example) or choose another source")
        return value

    def client(self) -> MarketSource:  # pragma: no cover - every vendor overrides it
        raise NotImplementedError
