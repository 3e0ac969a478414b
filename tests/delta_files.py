"""A Delta table's files as the disk and its log show them, read with delta-rs (for the vacuum tests)."""
from __future__ import annotations

from pathlib import Path


def data_files(table: Path) -> set[str]:
    """Files on disk a reader of some version could use: all but the log and hidden (checksum) files."""
    return {str(f.relative_to(table)) for f in table.rglob("*") if f.is_file()
            and "_delta_log" not in f.parts and not f.name.startswith(".")}


def live_files(table: Path) -> set[str]:
    """The files of the table's latest version, from its log."""
    from deltalake import DeltaTable

    return {str(Path(u).relative_to(table)) for u in DeltaTable(str(table)).file_uris()}


def table_rows(table: Path) -> list[str]:
    """Every row of the latest version, in a comparable order."""
    from deltalake import DeltaTable

    return sorted(map(repr, DeltaTable(str(table)).to_pandas().itertuples(index=False, name=None)))
