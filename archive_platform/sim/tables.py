"""Aligned NumPy columns -> Arrow tables in a canonical schema (pure helpers)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from archive_platform.schemas import ArchiveType, spec_for


def concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate per-symbol column dicts (all with the same keys)."""
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def to_table(archive_type: ArchiveType, cols: dict[str, np.ndarray], source: str) -> pa.Table:
    """Build the canonical table, sorted by the type's sort key; NaN in floats becomes null."""
    spec = spec_for(archive_type)
    if not cols or len(next(iter(cols.values()))) == 0:
        return spec.schema.empty_table()
    n = len(next(iter(cols.values())))
    arrays = []
    for field in spec.schema:
        if field.name == "source":
            arrays.append(pa.array(np.full(n, source, dtype=object), type=field.type))
            continue
        values = cols[field.name]
        if len(values) != n:
            raise ValueError(f"{archive_type.value}: column {field.name!r} has {len(values)} rows, expected {n}")
        arrays.append(pa.array(values, type=field.type, from_pandas=True))
    table = pa.Table.from_arrays(arrays, schema=spec.schema)
    return table.sort_by([(k, "ascending") for k in spec.sort_key])
