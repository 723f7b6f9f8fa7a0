"""Helpers for end-to-end vendor runs: definitions over temp roots, reading back the live root,
and asserting that a secret appears nowhere a run leaves traces."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from archive_platform.defs import build_definitions
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform_tests.dagster_helpers import QUIET, checks, materializations, sim_env

CHECK_NAMES = {"schema", "unique_key", "in_session", "complete", "values"}


def vendor_defs(tmp_path: Path, monkeypatch, symbols: str = "SPY", **extra: str) -> dg.Definitions:
    """Definitions over temp roots; every variable also goes to ``os.environ`` (through
    ``monkeypatch``) because secrets reach the resource as ``dg.EnvVar`` and resolve at run time."""
    env = sim_env(tmp_path, ARCHIVE_SYMBOLS=symbols, **extra)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return build_definitions(env)


def materialize(defs: dg.Definitions, assets: list[str], day: date, instance, *, raise_on_error=True):
    """A run of just ``assets`` for ``day`` (no run tags: mode ``day``, the whole partition).

    ``resolve_assets_def`` hands back the assets with the definitions' resources bound."""
    return dg.materialize(
        [defs.resolve_assets_def(a) for a in assets], partition_key=day.isoformat(),
        instance=instance, run_config=QUIET, raise_on_error=raise_on_error,
    )


def live_file(tmp_path: Path, t: ArchiveType, day: date) -> Path:
    """Where the seed layout puts the day file of ``t`` under the live root ``tmp_path/live``."""
    spec = spec_for(t)
    return tmp_path / "live" / spec.directory / f"date={day}" / f"{spec.file_stem}_{day:%Y%m%d}.parquet"


def stored(tmp_path: Path, result, t: ArchiveType, day: date, vendor: str) -> pa.Table:
    """The day file of ``t`` in the live root (grain: the type's), after asserting it exists,
    nothing of ``t`` went to the sim root, every row's ``source`` is ``vendor`` and the run's
    materialization metadata agrees with the file."""
    path = live_file(tmp_path, t, day)
    assert path.exists(), f"{t.value} not at {path}"
    assert not (tmp_path / "sim" / spec_for(t).directory).exists(), "vendor rows went to the sim root"
    table = pq.read_table(path)
    assert table.schema.names == [*spec_for(t).schema.names, "date"]  # the lake writes the partition column too
    assert set(table.column("source").to_pylist()) == {vendor}
    meta = materializations(result)[t.value]
    assert meta["dagster/row_count"] == table.num_rows == pq.read_metadata(path).num_rows
    assert meta["files"] == 1 and meta["path"].endswith(f"date={day}")
    return table


def assert_checks(result, asset: str, passed=tuple(sorted(CHECK_NAMES))) -> dict:
    """All five checks of ``asset`` were evaluated and those in ``passed`` passed; name -> evaluation."""
    evals = {name: e for (a, name), e in checks(result).items() if a == asset}
    assert set(evals) == CHECK_NAMES
    failed = {n: evals[n].description for n in passed if not evals[n].passed}
    assert failed == {}
    return evals


def assert_key_nowhere(key: str, result, instance, files: list[Path]) -> None:
    """The secret is in no metadata value, no event of the run, no event log entry (messages,
    errors and stack texts included), not the run record, and no byte or string of ``files``."""
    for asset, meta in materializations(result).items():
        for name, value in meta.items():
            assert key not in str(value), f"{asset} metadata {name!r} holds the key"
    for ev in result.all_events:
        assert key not in dg.serialize_value(ev), f"event {ev.event_type_value} holds the key"
    logs = instance.all_logs(result.run_id)
    assert logs, "the run wrote no event log"
    for entry in logs:
        assert key not in dg.serialize_value(entry), f"event log entry holds the key: {entry.user_message}"
    assert key not in dg.serialize_value(instance.get_run_by_id(result.run_id))
    for path in files:
        assert key.encode() not in path.read_bytes(), f"{path} holds the key's bytes"
        table = pq.read_table(path)  # the pages are zstd-compressed: look at decoded strings too
        for col in table.column_names:
            if pa.types.is_string(table.schema.field(col).type):
                assert not any(key in v for v in table.column(col).to_pylist() if v), f"{path}:{col}"
