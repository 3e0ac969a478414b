"""`make vacuum`: delete the files of the lake's Delta tables that no version within the retention uses.

Every MERGE, overwrite and compaction leaves the files it replaced on disk, for time travel and for the
readers still behind; a lake that runs for weeks (`make stream`, a daily job) keeps growing with them.
VACUUM deletes them once older than the retention (`maintenance.vacuum_retain_hours`, Delta's 7 days by
default). delta-rs does it from the tables' logs, without Spark; its full mode, like Spark's VACUUM,
also deletes files no commit names (a write killed before its commit) and the change data files of
old commits.

A reader of this lake that has not yet read some commits (gold, which reads silver's change feed from
the versions it last read; the alerts publisher, gold/goal_alerts' feed; a streaming query, its source
table from its checkpoint's offset) may need files those commits replaced. A table whose unread commits
are older than the retention is therefore left as it is, with a line that says which reader to run.
"""
from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from .config import Settings

LAYERS = ("bronze", "silver", "gold")


class VacuumRefused(RuntimeError):
    """A retention under the tables' own without --force, or a vacuum this lake cannot take."""


@dataclass(frozen=True)
class Unread:
    version: int    # the oldest version of the table the reader has not read yet
    reader: str     # who, in words
    catch_up: str   # what brings it up to date


@dataclass
class TableVacuum:
    table: str                 # layer/name
    files: int = 0
    bytes: int = 0
    kept_because: str = ""     # why the table was left as it is


def delta_tables(lake_dir: Path) -> list[Path]:
    return sorted(p.parent for layer in LAYERS for p in (lake_dir / layer).glob("*/_delta_log"))


def unread_commits(settings: Settings, tables: dict[Path, object] | None = None) -> dict[str, Unread]:
    """layer/name -> the oldest version a reader of this lake has not read (where one is behind).
    tables: the lake's tables, already opened with delta-rs (else opened here)."""
    found: dict[str, Unread] = {}

    def note(table: str, unread: Unread) -> None:
        if table not in found or unread.version < found[table].version:
            found[table] = unread

    from .alerts import published_version_file
    from .gold import silver_versions_file

    checkpoints = settings.checkpoints_dir
    gold_state = silver_versions_file(settings)
    if gold_state.exists():
        for table, version in json.loads(gold_state.read_text()).items():
            note(f"silver/{table}", Unread(version + 1, "gold", "run gold (make run)"))
    published = published_version_file(settings)
    if published.exists():
        note("gold/goal_alerts", Unread(json.loads(published.read_text())["version"] + 1,
                                        "the alerts publisher", "run gold (make run)"))
    tables = tables if tables is not None else _open_tables(settings)
    ids = {table.metadata().id: _name(path) for path, table in tables.items()}
    for offsets in sorted(checkpoints.rglob("offsets")):
        query = offsets.parent
        if query == checkpoints / "gold" / settings.get("gold.query_name"):
            continue   # make stream's gold trigger of an earlier version: it never reads those commits again
        for source in _next_offsets(query):
            table = ids.get(source.get("reservoirId"))
            if table is not None:
                note(table, Unread(int(source["reservoirVersion"]),
                                   f"the streaming query of {query.relative_to(checkpoints)}",
                                   "run that step (make run, or make stream)"))
    return found


def _next_offsets(query: Path) -> list[dict]:
    """The source offsets a streaming query goes on from: those of its last committed micro-batch, or
    of its first when none committed yet (a Delta source's reservoirVersion is where it reads next)."""
    def batches(folder: str) -> list[int]:
        return sorted(int(p.name) for p in (query / folder).glob("*") if p.name.isdigit())

    committed, planned = batches("commits"), batches("offsets")
    if not planned:
        return []
    batch = committed[-1] if committed and committed[-1] in planned else planned[0]
    lines = (query / "offsets" / str(batch)).read_text().splitlines()[2:]   # "v1", batch metadata, then one per source
    return [entry for entry in map(json.loads, lines) if isinstance(entry, dict)]


def _open_tables(settings: Settings) -> dict[Path, object]:
    from deltalake import DeltaTable

    return {path: DeltaTable(str(path)) for path in delta_tables(settings.lake_dir)}


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def retention_hours(settings: Settings, retain_hours: int | None = None) -> int:
    """The retention a vacuum uses: the one asked for, else maintenance.vacuum_retain_hours."""
    return int(settings.get("maintenance.vacuum_retain_hours") if retain_hours is None else retain_hours)


def vacuum_lake(settings: Settings, retain_hours: int | None = None, dry_run: bool = False,
                force: bool = False) -> list[TableVacuum]:
    """Vacuum every Delta table of the lake; with force, a retention under the tables' own is allowed,
    and the lake's step locks are held meanwhile (no run or stream may write while it goes)."""
    from .pipeline import writing_every_step

    if settings.get("storage.kind", "path") != "path":
        raise VacuumRefused("vacuum works on a lake of folders; on Databricks the workspace's predictive "
                            "optimisation, or VACUUM in SQL, does this")
    hours = retention_hours(settings, retain_hours)
    with ExitStack() as held:
        if force and not dry_run:
            held.enter_context(writing_every_step(settings, "vacuum"))
        cutoff_ms = (time.time() - hours * 3600) * 1000
        tables = _open_tables(settings)
        unread = unread_commits(settings, tables)
        # every table planned before any is vacuumed: a refusal deletes nothing
        # (a dry run deletes nothing, so it lists what a retention under the tables' own would take too)
        plans = [_plan(path, table, hours, cutoff_ms, unread, force or dry_run) for path, table in tables.items()]
        return [plan.result if dry_run or plan.result.kept_because else plan.execute() for plan in plans]


@dataclass
class _Plan:
    path: Path
    table: object            # deltalake.DeltaTable
    hours: int
    force: bool
    sizes: dict[str, int]    # the files a vacuum now would delete, and their bytes
    result: TableVacuum      # what the plan says (a dry run's answer)

    def execute(self) -> TableVacuum:
        removed = _stale(self.table, self.result.table, self.hours, self.force, dry_run=False)
        for relative in removed:   # Hadoop's checksum of each file: hidden, so delta-rs leaves it
            (self.path / relative).with_name(f".{Path(relative).name}.crc").unlink(missing_ok=True)
        return _counted(self.result.table, removed, self.sizes)


def _plan(path: Path, table, hours: int, cutoff_ms: float, unread: dict[str, Unread], force: bool) -> _Plan:
    name = _name(path)
    behind = unread.get(name)
    if behind is not None and behind.version <= table.version():
        written = _commit_time_ms(path, behind.version)
        if written is None or written < cutoff_ms:
            return _Plan(path, table, hours, force, {}, TableVacuum(
                name, kept_because=f"{behind.reader} has not read its commits from version {behind.version} "
                f"on: {behind.catch_up} first"))
    sizes = {f: (path / f).stat().st_size for f in _stale(table, name, hours, force, dry_run=True) if (path / f).exists()}
    return _Plan(path, table, hours, force, sizes, _counted(name, list(sizes), sizes))


def _stale(table, name: str, hours: int, force: bool, dry_run: bool) -> list[str]:
    """The files delta-rs's full vacuum deletes (or would): those no version within the retention
    names, and those no commit names at all, once older than the retention."""
    try:
        return table.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=not force, full=True)
    except Exception as exc:   # noqa: BLE001 - delta-rs's retention check, said in the project's words
        floor = re.search(r"greater than (\d+) hours", str(exc))
        if floor is None:
            raise
        raise VacuumRefused(
            f"{hours} h is under the {floor.group(1)} h that {name} keeps (delta.deletedFileRetentionDuration): "
            "files that young may still be read by a running stream or written by a running step; stop them "
            "(make stream, make run) and pass --force to go below it") from None


def _counted(name: str, removed: list[str], sizes: dict[str, int]) -> TableVacuum:
    data = [f for f in removed if not Path(f).name.startswith(".")]   # without checksum files
    return TableVacuum(name, files=len(data), bytes=sum(sizes.get(f, 0) for f in data))


def _commit_time_ms(path: Path, version: int) -> int | None:
    """When a version was committed (None when its commit file is gone: older than the log keeps)."""
    commit = path / "_delta_log" / f"{version:020d}.json"
    try:
        with open(commit) as handle:
            for line in handle:
                action = json.loads(line)
                if "commitInfo" in action:
                    return int(action["commitInfo"]["timestamp"])
        return int(commit.stat().st_mtime * 1000)
    except FileNotFoundError:
        return None


# what a run writes under the lake dir besides the configured entries below (raw_dir, even when it lies
# under the lake dir, is the user's input and stays)
LAKE_ENTRIES = ("bronze", "silver", "gold", "checkpoints", "_producer", "_locks", "_warehouse", "_derby", "mlruns")
LAKE_ENTRY_SETTINGS = ("paths.reports_dir", "paths.synthetic_dir", "kafka.broker.log_dir", "spark.scratch_dir",
                       "privacy.lake_secret_file", "privacy.fingerprint_file", "mlflow.artifact_location")


def lake_entries(settings: Settings) -> list[Path]:
    """The files and folders of the lake dir that a run wrote: the lake, its checkpoints and ledger, the
    local broker's topics, the reports, MLflow's store. Configured ones count only under the lake dir."""
    lake = settings.lake_dir.resolve()
    names = list(LAKE_ENTRIES)
    for key in LAKE_ENTRY_SETTINGS:
        value = settings.get(key)
        if value and not Path(value).is_absolute():
            names.append(Path(value).parts[0])
    if not settings.get("mlflow.tracking_uri"):
        names.append("mlflow.db")
    raw = settings.raw_dir.resolve()
    return [lake / name for name in dict.fromkeys(names)
            if (lake / name).exists() and not raw.is_relative_to(lake / name)]


def clean_lake(settings: Settings) -> list[Path]:
    """Delete what a run wrote under the lake dir (lake_entries), holding every step's lock meanwhile:
    refused while a run, a stream or a producer uses this lake. The local broker the project started
    for this lake is stopped first (its topics go with the lake). Returns what was deleted."""
    import shutil

    from .kafka_broker import stop_local_broker
    from .pipeline import writing_every_step

    with writing_every_step(settings, "clean-lake"):
        stop_local_broker(settings)
        entries = lake_entries(settings)
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return [e for e in entries if e.name != "_locks"]   # the lock files this call made are not news


def summary_line(results: list[TableVacuum], hours: int, dry_run: bool, seconds: float) -> str:
    files, size = sum(r.files for r in results), sum(r.bytes for r in results)
    if not files:
        return f"vacuum: nothing to delete in the {len(results)} tables (retention {hours} h, {seconds:.1f} s)"
    tables = sum(1 for r in results if r.files)
    return (f"vacuum: {'would delete' if dry_run else 'deleted'} {files:,} file{'' if files == 1 else 's'} "
            f"({size / 2**20:,.1f} MB) that no table version of the last {hours} h uses, from {tables} of "
            f"{len(results)} tables, in {seconds:.1f} s")
