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


def repeated_strings(values: list[str], counts: list[int]) -> pa.Array:
    """``values[i]`` repeated ``counts[i]`` times, built as a dictionary (cheap), then decoded."""
    idx = np.repeat(np.arange(len(values), dtype=np.int32), counts)
    return pa.DictionaryArray.from_arrays(idx, pa.array(values, pa.string())).cast(pa.string())


def choose_strings(mask: np.ndarray, if_true: str, if_false: str) -> pa.Array:
    """A string column from a boolean mask without a Python object per row."""
    idx = np.asarray(mask, dtype=np.int32)
    return pa.DictionaryArray.from_arrays(idx, pa.array([if_false, if_true], pa.string())).cast(
        pa.string()
    )


def to_table(
    archive_type: ArchiveType, cols: dict, source: str, *, presorted: bool = False
) -> pa.Table:
    """Build the canonical table sorted by the type's sort key; NaN in floats becomes null.

    ``presorted`` skips the sort when the caller built the rows in sort-key order already.
    """
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
            raise ValueError(
                f"{archive_type.value}: column {field.name!r} has {len(values)} rows, expected {n}"
            )
        if isinstance(values, pa.Array):
            arrays.append(values if values.type == field.type else values.cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type, from_pandas=True))
    table = pa.Table.from_arrays(arrays, schema=spec.schema)
    if presorted:
        return table
    return table.sort_by([(k, "ascending") for k in spec.sort_key])
