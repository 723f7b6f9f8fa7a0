"""Generate docs/schemas.md (the data dictionary) from the dataset declarations.

    ./run python -m archive_platform.datasets.docs > docs/schemas.md

A test compares the committed page with this output, so the page cannot drift from the code.
"""

from __future__ import annotations

from archive_platform.datasets import DATASETS, Dataset

WINDOWS = {
    "session": "the regular session, from the open to the close (13:00 ET on half days)",
    "extended": "04:00-20:00 ET of the session's day (pre-market, session and after hours)",
    "day": "every instant whose market date is the partition's day (00:00-24:00 ET for NYSE "
    "datasets, so events after the close are kept)",
}
CADENCES = {
    "grid": "one snapshot per instant of the snapshot grid (every `ARCHIVE_SNAPSHOT_MINUTES`)",
    "times": "snapshots at `ARCHIVE_IV_RANK_TIMES` (ET)",
    "poll": "polled every minute from the open to 20:00 ET (after hours included)",
    "none": "fetched once after the day's window ends",
}

HEADER = """# Schemas

One canonical Arrow schema per dataset, declared once in its module under
`archive_platform/datasets/` (see [adding-a-dataset.md](adding-a-dataset.md)) and used by the
writer (validation), the checks (`schema` check), the sources (simulated and vendor) and the
DuckDB views (explicit casts). This page is generated from those declarations by
`./run python -m archive_platform.datasets.docs > docs/schemas.md`; a test keeps it in step.

Conventions shared by every dataset:

- `timestamp`: the event instant, `timestamp[us, tz=UTC]`.
- `et_offset` (US datasets): the US/Eastern UTC offset at that instant in minutes (`-300` in
  winter, `-240` in summer), so wall-clock ET is `timestamp + et_offset minutes` without a
  time-zone database. In DuckDB write `timezone('America/New_York', timestamp)` for the ET
  wall clock: it does not depend on the session's `TimeZone` setting, whereas
  `timestamp::TIMESTAMP` is the wall clock of the session's zone (so adding `et_offset` to it
  is right only in a UTC session). A dataset on the 24/7 UTC calendar has no `et_offset`.
- `source`: where the row came from (`sim`, `unusual_whales`, `thetadata`, `polygon`,
  `barchart`, `ib`, `derived`).
- `snapshot_time` (snapshot datasets): the scheduled grid instant the row belongs to. A
  vendor's quote time (`timestamp`) can differ between two fetches of the same snapshot; the
  grid instant does not, so the snapshot dedup keys use it instead of the IB option-snapshot collector's `timestamp`.
- Partition day: the market date of `timestamp` (`snapshot_time` for snapshot datasets) in the
  dataset's calendar: the ET date, an NYSE session, for `nyse` datasets; the UTC date for `utc`
  ones. The store refuses rows of another day.
- Dedup: rows with an existing dedup key replace the stored ones (last write wins).
- Value rules: *hard* rules (every floating-point value finite, plus those marked below) are
  invariants the store enforces: a batch breaking one is refused, naming the column and the
  first bad row. *Soft* rules are anomalies a real market produces (a crossed quote): stored,
  and counted by the `values` check.
"""


def section(d: Dataset) -> str:
    lines = [
        f"## `{d.name}`",
        "",
        f"{d.schema.metadata[b'description'].decode()} Folder `{d.directory}/date=YYYY-MM-DD/`, "
        f"file `{d.file_stem}_YYYYMMDD.parquet`.",
        f"Dedup key: `{', '.join(d.dedup_key)}`. Sorted by `{', '.join(d.sort_key)}`. "
        f"Keeps events of the window `{d.window}`: {WINDOWS[d.window]}.",
        f"Calendar: `{d.calendar_name}`. Cadence: {CADENCES[d.cadence]}. Group: `{d.group}`. "
        f"Sources: {', '.join(f'`{s}`' for s in d.sources)} (can backfill: "
        f"{', '.join(f'`{s}`' for s in d.sources if s in d.backfill_sources) or 'none'}).",
        "",
        "| column | type | nullable | unit / meaning |",
        "|---|---|---|---|",
    ]
    for f in d.schema:
        lines.append(f"| `{f.name}` | `{f.type}` | {'yes' if f.nullable else 'no'} | {d.units[f.name]} |")
    lines += ["", "Value rules:", ""]
    for r in d.rules:
        lines.append(f"- {'hard' if r.hard else 'soft'}: `{r.name}`")
    return "\n".join(lines) + "\n"


def windows_table() -> str:
    """Which instants each dataset keeps: one line per dataset."""
    lines = ["", "## Event windows", "",
             "Which instants of its partition each dataset keeps (the `in_session` check and the "
             "sources use the same window; the store refuses rows of another market date):", "",
             "| dataset | window | keeps |", "|---|---|---|"]
    lines += [f"| `{d.name}` | `{d.window}` | {WINDOWS[d.window]} |" for d in DATASETS]
    return "\n".join(lines) + "\n"


def render() -> str:
    return HEADER + windows_table() + "".join("\n" + section(d) for d in DATASETS)


if __name__ == "__main__":
    print(render(), end="")
