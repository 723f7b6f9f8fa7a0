"""``archive-platform query`` opens the archive it reads with that archive's own lake settings:
the simulated one by default, the live one with ``--live``. It opened the simulated root with the
live archive's settings, so a live archive on PostgreSQL/S3 broke the queries of the simulated one."""

from __future__ import annotations

import socket
from datetime import date

import pyarrow as pa
from click.testing import CliRunner

from archive_platform.cli import main
from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import make_table

DAY = date(2025, 11, 26)
AT = "2025-11-26T21:00:00Z"


def _archives(tmp_path) -> str:
    """A simulated archive with 4 option rows and a live one with 6; the symbol they share."""
    for root, kind, table in ((tmp_path / "sim", "sim", make_table("options", DAY, 4)),
                              (tmp_path / "live", "live", make_table("options", DAY, 6, source="thetadata"))):
        # one chain: every row of one symbol (strikes keep the keys apart)
        i = table.schema.get_field_index("symbol")
        table = table.set_column(i, "symbol", pa.array(["SPY"] * len(table), table.schema.field(i).type))
        store = ArchiveStore(root, kind=kind)
        store.write_day("options", DAY, table)
        store.close()
    return "SPY"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(output: str) -> int:
    return sum(1 for line in output.splitlines() if DAY.isoformat() in line)


def test_query_reads_the_simulated_archive_with_its_own_settings_and_the_live_one_with_live(tmp_path):
    symbol = _archives(tmp_path)
    env = {"ARCHIVE_SIM_ROOT": str(tmp_path / "sim"), "ARCHIVE_ROOT": str(tmp_path / "live")}
    sim = CliRunner().invoke(main, ["query", "latest_chain", "--symbol", symbol, "--at", AT], env=env)
    live = CliRunner().invoke(main, ["query", "latest_chain", "--symbol", symbol, "--at", AT, "--live"], env=env)
    assert sim.exit_code == 0 and live.exit_code == 0, sim.output + live.output
    assert (_rows(sim.output), _rows(live.output)) == (4, 6), sim.output + live.output


def test_the_live_archives_catalog_settings_do_not_reach_the_simulated_one(tmp_path):
    symbol = _archives(tmp_path)
    # the live archive's catalog is on a PostgreSQL server that is not there
    env = {"ARCHIVE_SIM_ROOT": str(tmp_path / "sim"), "ARCHIVE_ROOT": str(tmp_path / "live"),
           "ARCHIVE_LAKE_CATALOG": f"postgres:host=127.0.0.1 port={_closed_port()} dbname=lake user=archive",
           "ARCHIVE_LAKE_PG_PASSWORD": "pw-not-used"}
    sim = CliRunner().invoke(main, ["query", "latest_chain", "--symbol", symbol, "--at", AT], env=env)
    assert sim.exit_code == 0, sim.output
    assert _rows(sim.output) == 4, sim.output
    live = CliRunner().invoke(main, ["query", "latest_chain", "--symbol", symbol, "--at", AT, "--live"], env=env)
    assert live.exit_code != 0 and "pw-not-used" not in live.output


def test_a_reader_never_hands_out_the_other_kinds_rows(tmp_path, monkeypatch):
    # readers ignored the marker: connect() (live by default) on a root holding the simulated
    # archive returned its 'sim' rows, and so did `sql` and `query --live`
    import pytest

    import archive_platform
    from archive_platform.store.errors import ArchiveKindError

    symbol = _archives(tmp_path)
    sim, live = tmp_path / "sim", tmp_path / "live"
    monkeypatch.setenv("ARCHIVE_ROOT", str(sim))  # the live variable pointed at the sim archive
    monkeypatch.setenv("ARCHIVE_SIM_ROOT", str(live))
    with pytest.raises(ArchiveKindError, match="is a sim archive; refusing to open it as live"):
        archive_platform.connect()
    with pytest.raises(ArchiveKindError, match="is a live archive; refusing to open it as sim"):
        archive_platform.connect(kind="sim")
    with pytest.raises(ArchiveKindError, match="is a sim archive"):
        archive_platform.connect(kind="live", root=sim)
    # a root given without a kind is read as what its marker says
    for root, source, n in ((sim, "sim", 4), (live, "thetadata", 6)):
        con = archive_platform.connect(root=root)
        try:
            assert con.sql("SELECT source, count(*) FROM options GROUP BY 1").fetchall() == [(source, n)]
        finally:
            con.close()
    env = {"ARCHIVE_ROOT": str(sim), "ARCHIVE_SIM_ROOT": str(live)}
    out = CliRunner().invoke(main, ["sql", "-c", "SELECT count(*) FROM options"], env=env)
    assert out.exit_code == 2 and "is a sim archive; refusing to open it as live (add --sim)" in out.output
    out = CliRunner().invoke(main, ["query", "latest_chain", "--symbol", symbol, "--at", AT, "--live"], env=env)
    assert out.exit_code == 2 and "is a sim archive; refusing to open it as live" in out.output
    out = CliRunner().invoke(main, ["query", "latest_chain", "--symbol", symbol, "--at", AT], env=env)
    assert out.exit_code == 2 and "is a live archive; refusing to open it as sim (add --live)" in out.output
    out = CliRunner().invoke(main, ["query", "latest_chain", "--symbol", symbol, "--at", AT,
                                    "--root", str(live)], env=env)
    assert out.exit_code == 0 and _rows(out.output) == 6, out.output


def test_a_damaged_catalog_is_one_line_naming_the_file(tmp_path):
    import pytest

    import archive_platform
    from archive_platform.config import ConfigError

    _archives(tmp_path)
    catalog = tmp_path / "sim" / "_lake" / "catalog.sqlite"
    for leftover in catalog.parent.glob("catalog.sqlite-*"):  # WAL and shared memory
        leftover.unlink()
    catalog.write_bytes(catalog.read_bytes()[:0] + b"garbage, as a bad copy leaves it\n")
    with pytest.raises(ConfigError, match=f"the lake catalog {catalog} cannot be read .*damaged"):
        archive_platform.connect(root=tmp_path / "sim")
    out = CliRunner().invoke(main, ["sql", "--root", str(tmp_path / "sim"), "-c", "SELECT 1"])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert f"error: the lake catalog {catalog} cannot be read" in out.output


def test_a_catalog_on_a_read_only_file_system_is_one_line_saying_why(tmp_path):
    # a backup mounted read-only: SQLite in WAL mode cannot create its shared-memory file
    # beside the catalog, and the reader died with DuckDB's "unable to open database file"
    import subprocess

    import pytest

    import archive_platform
    from archive_platform.config import ConfigError
    from archive_platform_tests.mounts import tmpfs

    with tmpfs(tmp_path / "mnt", "size=64m") as mnt:
        store = ArchiveStore(mnt / "a", kind="sim")
        store.write_day("options", DAY, make_table("options", DAY, 4))
        store.close()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(ConfigError, match="that folder is not writable .*mount it read-write"):
            archive_platform.connect(root=mnt / "a")
        out = CliRunner().invoke(main, ["sql", "--root", str(mnt / "a"), "-c", "SELECT 1"])
        assert out.exit_code == 2 and "Traceback" not in out.output
        assert f"error: the lake catalog in {mnt / 'a' / '_lake'} cannot be opened" in out.output
