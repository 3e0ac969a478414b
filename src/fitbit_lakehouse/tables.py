"""Where tables live and how they are written: the one place that turns (layer, name) into a location,
and the one MERGE of the project.

Locally each table is a Delta folder <lake>/<layer>/<name>; on Databricks (storage.kind: catalog) a
Unity Catalog table <catalog>.<schema of the layer>.<name>. Readers and writers go through here.

Exactly-once writes: a write given a Txn(app_id, version) is a Delta idempotent write: Delta skips it
when a commit with that app id and a version >= it is already in the table's log. The settings go on
the session of the DataFrame being written (in foreachBatch, the stream's own session, so concurrent
queries never see each other's), and every commit carries a tag (userMetadata) by which its metrics
are found again, also when a replay skipped it.
"""
from __future__ import annotations

import datetime as dt
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .config import Settings

BRONZE_EVENTS = "events"

_TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"
_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
COMPACTION = "OPTIMIZE"   # the operation of a commit of Delta's (auto) compaction: files rewritten, no row changed


@dataclass(frozen=True)
class Txn:
    """Identifies one write of a streaming micro-batch: (app id of the query's checkpoint, batch id)."""
    app_id: str
    version: int

    @property
    def tag(self) -> str:
        return f"{self.app_id}@{self.version}"

    def part(self, name: str) -> "Txn":
        """A write of its own within this one (its own commit, skipped on its own in a replay)."""
        return Txn(f"{self.app_id}/{name}", self.version)


@dataclass(frozen=True)
class WriteMetrics:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    def __add__(self, other: "WriteMetrics") -> "WriteMetrics":
        return WriteMetrics(self.inserted + other.inserted, self.updated + other.updated, self.deleted + other.deleted)

    @classmethod
    def of_commit(cls, operation: str, metrics: dict) -> "WriteMetrics":
        metrics = {k: int(v) for k, v in (metrics or {}).items() if str(v).lstrip("-").isdigit()}
        if operation == "MERGE":
            return cls(metrics.get("numTargetRowsInserted", 0), metrics.get("numTargetRowsUpdated", 0),
                       metrics.get("numTargetRowsDeleted", 0))
        return cls(inserted=metrics.get("numOutputRows", 0))


@contextmanager
def _session_conf(spark, values: dict[str, str]):
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key in values:
            spark.conf.unset(key)


_NO_LOCK = nullcontext()


# What Spark and Delta say when a change feed's files or commits no longer exist
CHANGE_FEED_GONE = ("FILE_NOT_EXIST", "FileNotFoundException", "DELTA_CHANGE_DATA_FILE_NOT_FOUND",
                    "DELTA_FILE_NOT_FOUND", "DELTA_VERSIONS_NOT_CONTIGUOUS", "VersionNotFoundException")


def exception_text(exc: BaseException) -> str:
    """An exception's message with those of its causes, the JVM's among them (PySpark's captured
    exceptions keep the JVM's stack trace text, causes included): an error a Spark task met reaches
    Python inside a more general one (TASK_WRITE_FAILED, a stage failure)."""
    texts, seen = [], 0
    while exc is not None and seen < 10:
        texts += [str(exc), getattr(exc, "_stackTrace", None) or ""]
        exc, seen = getattr(exc, "_cause", None) or exc.__cause__, seen + 1
    return "\n".join(texts)


def change_feed_gone(exc: BaseException) -> str | None:
    """The line of a failed change-feed read that says its files or commits are gone; None when the
    read failed for another reason."""
    return next((line.strip()[:200] for line in exception_text(exc).splitlines()
                 if any(mark in line for mark in CHANGE_FEED_GONE)), None)


def sql_literal(value) -> str:
    """A Python value as a Spark SQL literal (for pruning predicates built from a batch's keys)."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        return f"TIMESTAMP_NTZ'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


_STATS_STRING_PREFIX = 32   # Delta keeps this many characters of a text column's min and max


@dataclass(frozen=True)
class KeyRange:
    """Where every stored row that a write can match lies: per column an inclusive (low, high), and
    for some columns the values they take (an IN list). As SQL over the target (t.) it keeps a MERGE
    to the files that can hold such rows; against the files' statistics it can tell, without reading
    a file, that no stored row lies there (then an append does the MERGE's work)."""
    bounds: tuple[tuple[str, Any, Any], ...] = ()
    values: tuple[tuple[str, tuple], ...] = ()

    def sql(self) -> str:
        parts = [f"t.`{c}` IN ({', '.join(sql_literal(v) for v in sorted(vs))})" for c, vs in self.values]
        parts += [f"t.`{c}` BETWEEN {sql_literal(low)} AND {sql_literal(high)}" for c, low, high in self.bounds]
        return " AND ".join(parts) or "true"

    def below(self, column: str, high) -> "KeyRange":
        """The same range, with the column's upper bound lowered to high."""
        return KeyRange(bounds=tuple((c, lo, min(hi, high) if c == column else hi) for c, lo, hi in self.bounds),
                        values=self.values)

    def excludes(self, file_stats: dict) -> bool:
        """True when a file's min/max statistics (`min.<col>`, `max.<col>`) show it holds no row in the
        range; False when it may (a missing statistic may hide anything)."""
        def outside(column, inside) -> bool:
            low, high = file_stats.get(f"min.{column}"), file_stats.get(f"max.{column}")
            if low is None or high is None or isinstance(high, str) and len(high) >= _STATS_STRING_PREFIX:
                return False   # no statistic, or a text one cut to its prefix: may hold anything
            if isinstance(high, dt.datetime):
                high += dt.timedelta(milliseconds=1)   # Delta keeps times to the millisecond
            return not inside(low, high)

        if any(outside(c, lambda lo, hi, a=a, b=b: a <= hi and lo <= b) for c, a, b in self.bounds):
            return True
        return any(outside(c, lambda lo, hi, vs=vs: any(lo <= v <= hi for v in vs)) for c, vs in self.values)


_UNREAD = object()   # the files' statistics not read yet


def _stored_end(keys: KeyRange, files: list[dict]) -> tuple[str, Any] | None:
    """(column, the highest value stored rows in the range take) when the range runs past it, told by
    the files' statistics (None when it does not, or they cannot tell): a range of one bounded
    column, a number, date or time."""
    if len(keys.bounds) != 1:
        return None
    column, _low, high = keys.bounds[0]
    if not isinstance(high, (int, float, dt.date)) or isinstance(high, bool):
        return None
    highs = [f.get(f"max.{column}") for f in files if not keys.excludes(f)]
    if not highs or any(h is None or type(h) is not type(high) for h in highs):
        return None
    stored_high = max(highs)
    if isinstance(stored_high, dt.datetime):
        stored_high += dt.timedelta(milliseconds=1)   # Delta keeps times to the millisecond
    return (column, stored_high) if stored_high < high else None


class Lake:
    def __init__(self, spark, settings: Settings):
        self.spark = spark
        self.settings = settings
        self.by_path = settings.get("storage.kind", "path") == "path"

    # --- locations ------------------------------------------------------------------------
    def path(self, layer: str, name: str) -> str:
        return str(self.settings.lake_dir / layer / name)

    def name(self, layer: str, name: str) -> str:
        catalog = self.settings.get("storage.catalog")
        prefix = self.settings.get("storage.schema_prefix")
        return f"{catalog}.{prefix}_{layer}.{name}" if prefix else f"{catalog}.{layer}.{name}"

    def checkpoint(self, layer: str, name: str) -> str:
        return str(self.settings.checkpoints_dir / layer / name)

    # --- reading --------------------------------------------------------------------------
    def exists(self, layer: str, name: str) -> bool:
        from delta.tables import DeltaTable

        if self.by_path:
            return DeltaTable.isDeltaTable(self.spark, self.path(layer, name))
        return self.spark.catalog.tableExists(self.name(layer, name))

    def read(self, layer: str, name: str, version: int | None = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(layer, name)) if self.by_path else reader.table(self.name(layer, name))

    def read_stream(self, layer: str, name: str, **options) -> DataFrame:
        reader = self.spark.readStream.format("delta").options(**{k: str(v) for k, v in options.items()})
        return reader.load(self.path(layer, name)) if self.by_path else reader.table(self.name(layer, name))

    def changes(self, layer: str, name: str, start_version: int, end_version: int) -> DataFrame:
        """The table's change data feed between two versions (both included). A VACUUM or the log's
        retention may have taken part of it: change_feed_gone tells that failure from others."""
        reader = (self.spark.read.format("delta").option("readChangeFeed", "true")
                  .option("startingVersion", start_version).option("endingVersion", end_version))
        return reader.load(self.path(layer, name)) if self.by_path else reader.table(self.name(layer, name))

    def delta(self, layer: str, name: str, spark=None):
        from delta.tables import DeltaTable

        spark = spark or self.spark
        if self.by_path:
            return DeltaTable.forPath(spark, self.path(layer, name))
        return DeltaTable.forName(spark, self.name(layer, name))

    def _log(self, layer: str, name: str):
        """The table's Delta log read with delta-rs (no Spark job), for a local table; None where that
        cannot be (a catalog table, no such table, a protocol delta-rs does not read): ask Spark."""
        if not self.by_path:
            return None
        try:
            from deltalake import DeltaTable

            return DeltaTable(self.path(layer, name))
        except Exception:   # noqa: BLE001 - not there, or not readable by delta-rs: Spark decides
            return None

    def version(self, layer: str, name: str) -> int | None:
        """The table's latest Delta version (None when it does not exist)."""
        if self.by_path and not (Path(self.path(layer, name)) / "_delta_log").is_dir():
            return None
        log = self._log(layer, name)
        if log is not None:
            return log.version()
        if not self.exists(layer, name):
            return None
        return self.delta(layer, name).history(1).select("version").first()[0]

    def history(self, layer: str, name: str, limit: int | None = None) -> list[dict]:
        """The newest commits first (version, operation, operationMetrics, userMetadata), up to limit."""
        log = self._log(layer, name)
        if log is not None:
            return [{k: c.get(k) for k in ("version", "operation", "operationMetrics", "userMetadata")}
                    for c in log.history(limit)]
        history = self.delta(layer, name).history(limit) if limit else self.delta(layer, name).history()
        return [r.asDict() for r in history.select("version", "operation", "operationMetrics", "userMetadata").collect()]

    def count(self, layer: str, name: str) -> int:
        """Rows of the table: from the record counts its log keeps per file (no data read, no Spark job)
        when it is a local folder whose every file has them, else counted by Spark."""
        if not self.exists(layer, name):
            return 0
        if self.by_path:
            counted = logged_rows(self.path(layer, name))
            if counted is not None:
                return counted
        return self.read(layer, name).count()

    def commits_after(self, layer: str, name: str, after_version: int | None) -> list[dict]:
        """The commits after a version (None: all of them), newest first, as history() gives them."""
        latest = self.version(layer, name)
        if latest is None or (after_version is not None and latest <= after_version):
            return []
        return self.history(layer, name, latest - after_version if after_version is not None else None)

    @staticmethod
    def rows_added(commits: list[dict]) -> int:
        """Rows these commits wrote (from their metrics, not the data)."""
        return sum(WriteMetrics.of_commit(c["operation"], c["operationMetrics"]).inserted for c in commits)

    # --- writing --------------------------------------------------------------------------
    def start_sink(self, stream_writer, layer: str, name: str):
        if self.by_path:
            return stream_writer.start(self.path(layer, name))
        return stream_writer.toTable(self.name(layer, name))

    def save(self, df: DataFrame, layer: str, name: str, mode: str = "append", txn: Txn | None = None,
             tag: str | None = None, properties: dict[str, str] | None = None) -> None:
        """Write df; properties apply when the write creates the table."""
        writer = df.write.format("delta").mode(mode).options(**(properties or {}))
        if txn is not None:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        if tag or txn:
            writer = writer.option("userMetadata", tag or txn.tag)
        if mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        if self.by_path:
            writer.save(self.path(layer, name))
        else:
            writer.saveAsTable(self.name(layer, name))

    def drop(self, layer: str, name: str) -> None:
        """Delete a table (a derived one, about to be rebuilt), its data and its log."""
        if self.by_path:
            import shutil

            shutil.rmtree(self.path(layer, name), ignore_errors=True)
        else:
            self.spark.sql(f"DROP TABLE IF EXISTS {self.name(layer, name)}")

    def properties(self, layer: str, name: str) -> dict[str, str]:
        return dict(self.delta(layer, name).detail().select("properties").first()[0] or {})

    def _sql_name(self, layer: str, name: str) -> str:
        return f"delta.`{self.path(layer, name)}`" if self.by_path else self.name(layer, name)

    def set_properties(self, layer: str, name: str, properties: dict[str, str]) -> None:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in properties.items())
        self.spark.sql(f"ALTER TABLE {self._sql_name(layer, name)} SET TBLPROPERTIES ({pairs})")

    def add_missing_columns(self, layer: str, name: str, schema) -> list[str]:
        """The columns of schema the table lacks, added at its end (null in the rows it holds): a table
        made by an earlier version of the project takes the rows of this one."""
        held = set(self.read(layer, name).columns)
        missing = [f for f in schema.fields if f.name not in held]
        if missing:
            columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
            self.spark.sql(f"ALTER TABLE {self._sql_name(layer, name)} ADD COLUMNS ({columns})")
        return [f.name for f in missing]

    def create(self, layer: str, name: str, schema, properties: dict[str, str] | None = None) -> None:
        """An empty table with the schema (no-op when it exists)."""
        from delta.tables import DeltaTable

        builder = DeltaTable.createIfNotExists(self.spark).addColumns(schema)
        builder = builder.location(self.path(layer, name)) if self.by_path else builder.tableName(self.name(layer, name))
        for key, value in (properties or {}).items():
            builder = builder.property(key, value)
        builder.execute()

    def merge(self, source: DataFrame, layer: str, name: str, key: Sequence[str], *,
              columns: Sequence[str] | None = None, update: str | None = None, delete: str | None = None,
              insert: str | None = "true", target_filter: KeyRange | None = None, txn: Txn | None = None,
              properties: dict[str, str] | None = None, lock=None) -> WriteMetrics:
        """MERGE source into the table on `key` (t. = target, s. = source), creating it first when needed.

        columns: the table's columns (default: all of the source's; others only serve conditions);
        update / delete: conditions under which a matched row is updated from the source / deleted
        (None: never); insert: condition under which an unmatched source row is inserted (None: never);
        target_filter: where every matching target row lies, so that Delta skips the other files (when
        no stored row lies there, nothing can match: the source is appended, the same write without
        the MERGE's joins and lock; when the range runs past the stored rows, the rows past them are
        appended and the rest merged, two commits); txn: makes the write exactly-once;
        properties: table properties, when the table is created; lock: held while the session carries this MERGE's settings (threads that
        share a session take turns). Returns the commit's row counts.
        """
        columns = list(columns or source.columns)
        exists = self.exists(layer, name)
        files = self._file_stats(layer, name) if exists and target_filter else None   # read once, used twice
        if insert == "true" and (not exists or (target_filter and self.holds_none(
                layer, name, target_filter, files, keys_of=source.select(*key)))):
            # nothing to match: an append does the same, faster (new days of a table, a first load, a
            # stream's batch that shares its first minute with the last one, but for other users)
            return self.append(source, layer, name, columns=columns, txn=txn, properties=properties)
        if not exists:
            self.create(layer, name, source.select(*columns).schema, properties)
        can_split = insert == "true" and delete is None and files
        past_txn = txn.part("past-stored") if txn and can_split else None
        if past_txn is not None and self.commit(layer, name, past_txn.tag, depth=(20,)) is not None:
            # a replay that finds its rows past the stored end appended: the MERGE of the whole source
            # does the rest (those rows now match themselves, unchanged); the counts of both commits
            return self.commit_metrics(layer, name, past_txn.tag) + self._merge(
                source, layer, name, key, columns, update, delete, insert, target_filter, txn, lock)
        split = _stored_end(target_filter, files) if can_split else None
        if split is not None:
            # rows past the last stored key can match nothing: appended; only the overlap is merged
            # (new days that begin inside the stored range, e.g. two months that share a day)
            column, stored_high = split
            past = F.coalesce(F.col(column) > F.lit(stored_high), F.lit(False))
            source = source.persist(StorageLevel.MEMORY_AND_DISK)   # both parts read it: computed once
            try:
                appended = self.append(source.where(past), layer, name, columns=columns, txn=past_txn)
                return appended + self._merge(source.where(~past), layer, name, key, columns, update, delete,
                                              insert, target_filter.below(column, stored_high), txn, lock)
            finally:
                source.unpersist()
        return self._merge(source, layer, name, key, columns, update, delete, insert, target_filter, txn, lock)

    def _merge(self, source: DataFrame, layer: str, name: str, key: Sequence[str], columns: list[str],
               update: str | None, delete: str | None, insert: str | None, target_filter: KeyRange | None,
               txn: Txn | None, lock) -> WriteMetrics:
        if delete is None and insert == "true" and self._not_written_yet(layer, name, txn):
            # rows that would change nothing (stored as they are, or newer) left out; none left, no
            # version: a replayed day or a re-read bronze rewrites no file (a MERGE rewrites every file
            # where a key matched, also when its update condition then holds for no row)
            source = self._changing(source, layer, name, key, update, target_filter).persist(
                StorageLevel.MEMORY_AND_DISK)
            try:
                if source.isEmpty():
                    return WriteMetrics()
                return self._merge_all(source, layer, name, key, columns, update, delete, insert, target_filter,
                                       txn, lock)
            finally:
                source.unpersist()
        return self._merge_all(source, layer, name, key, columns, update, delete, insert, target_filter, txn, lock)

    def _not_written_yet(self, layer: str, name: str, txn: Txn | None) -> bool:
        """True when Delta holds no commit of this exactly-once write (a replay finds the commit it made
        before: its counts are that commit's). Where delta-rs cannot tell (a catalog table, a protocol it
        does not read): False, and the MERGE gets the whole source, as Delta's own replay check needs."""
        if txn is None:
            return True
        log = self._log(layer, name)
        if log is None:
            return False
        done = log.transaction_version(txn.app_id)
        return done is None or done < txn.version

    def _changing(self, source: DataFrame, layer: str, name: str, key: Sequence[str], update: str | None,
                  target_filter: KeyRange | None) -> DataFrame:
        """The source rows a MERGE would insert or update: no stored row has their key, or the update
        condition holds for the one that has (a null condition updates nothing, as in the MERGE)."""
        stored = self.read(layer, name).alias("t")
        if target_filter is not None:
            stored = stored.where(target_filter.sql())
        same_key = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in key)
        unchanged = f"{same_key} AND NOT coalesce(({update}), false)" if update else same_key
        return source.alias("s").join(stored, on=F.expr(unchanged), how="left_anti")

    def _merge_all(self, source: DataFrame, layer: str, name: str, key: Sequence[str], columns: list[str],
                   update: str | None, delete: str | None, insert: str | None, target_filter: KeyRange | None,
                   txn: Txn | None, lock) -> WriteMetrics:
        session = source.sparkSession
        tag = txn.tag if txn else f"write-{uuid.uuid4()}"
        on = " AND ".join([f"t.`{k}` <=> s.`{k}`" for k in key] + ([target_filter.sql()] if target_filter else []))
        values = {f"`{c}`": f"s.`{c}`" for c in columns}
        builder = self.delta(layer, name, session).alias("t").merge(source.alias("s"), on)
        if delete:
            builder = builder.whenMatchedDelete(condition=delete)
        if update:
            builder = builder.whenMatchedUpdate(condition=update, set=values)
        if insert is not None:
            builder = builder.whenNotMatchedInsert(condition=None if insert == "true" else insert, values=values)
        if txn is None:   # the MERGE's own result row has the counts; nothing goes on the session
            result = builder.execute().first()
            return WriteMetrics(result["num_inserted_rows"], result["num_updated_rows"], result["num_deleted_rows"]) \
                if result is not None else WriteMetrics()
        conf = {_USER_METADATA: tag, _TXN_APP_ID: txn.app_id, _TXN_VERSION: str(txn.version)}
        with lock or _NO_LOCK, _session_conf(session, conf):
            builder.execute()
        # from the commit, not the result: a replay skips the MERGE but finds the commit it made before
        return self.commit_metrics(layer, name, tag)

    def append(self, source: DataFrame, layer: str, name: str, *, columns: Sequence[str] | None = None,
               txn: Txn | None = None, properties: dict[str, str] | None = None) -> WriteMetrics:
        """Append source (rows no stored row can match), creating the table when needed; txn makes it
        exactly-once. Returns the commit's row counts."""
        tag = txn.tag if txn else f"write-{uuid.uuid4()}"
        self.save(source.select(*(columns or source.columns)), layer, name, txn=txn, tag=tag, properties=properties)
        return self.commit_metrics(layer, name, tag)

    def holds_none(self, layer: str, name: str, keys: KeyRange, files: list[dict] | None | object = _UNREAD,
                   keys_of: DataFrame | None = None) -> bool:
        """No stored row lies in the range (with keys_of, a source's key columns: none in the range has
        one of its keys): told by every file's statistics where they tell it (read with delta-rs: no
        Spark job, unless given), else by a query (Delta still skips files by them)."""
        files = self._file_stats(layer, name) if files is _UNREAD else files
        if files is not None and all(keys.excludes(f) for f in files):
            return True
        stored = self.read(layer, name).alias("t").where(keys.sql())
        if keys_of is not None:
            same_key = [F.col(f"t.`{k}`").eqNullSafe(F.col(f"s.`{k}`")) for k in keys_of.columns]
            stored = stored.join(keys_of.alias("s"), on=same_key, how="left_semi")
        return stored.isEmpty()

    def _file_stats(self, layer: str, name: str) -> list[dict] | None:
        """Min/max statistics of the table's live files (None where delta-rs cannot read them)."""
        if not self.by_path:
            return None
        try:
            import pyarrow as pa
            from deltalake import DeltaTable

            actions = pa.table(DeltaTable(self.path(layer, name)).get_add_actions(flatten=True))
        except Exception:   # noqa: BLE001 - not readable by delta-rs: the query decides
            return None
        stats = [c for c in actions.column_names if c.startswith(("min.", "max."))]
        return actions.select(stats).to_pylist()

    def commit(self, layer: str, name: str, tag: str, depth: Iterable[int] = (20, None)) -> dict | None:
        """The write tagged `tag` (version, operation, operationMetrics), or None. Delta's auto
        compaction runs right after a write and its commit carries the session's tag too (a MERGE's
        tag is set on the session): it rewrote files and changed no row, so it is skipped."""
        for limit in depth:   # almost always among the last few
            found = next((c for c in self.history(layer, name, limit)
                          if c["userMetadata"] == tag and c["operation"] != COMPACTION), None)
            if found is not None:
                return found
        return None

    def commit_metrics(self, layer: str, name: str, tag: str) -> WriteMetrics:
        """Row counts of the commit tagged `tag` (zeros when no commit carries it: nothing was written)."""
        row = self.commit(layer, name, tag)
        return WriteMetrics.of_commit(row["operation"], row["operationMetrics"]) if row else WriteMetrics()


def logged_rows(path: str) -> int | None:
    """Sum of numRecords over the table's live files, read with delta-rs; None when that is not exact
    (a file without statistics, deletion vectors) or delta-rs is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        from deltalake import DeltaTable
    except ImportError:
        return None
    try:
        actions = pa.table(DeltaTable(path).get_add_actions(flatten=True))
    except Exception:   # noqa: BLE001 - a protocol delta-rs cannot read: let Spark count
        return None
    if "num_records" not in actions.column_names or actions["num_records"].null_count:
        return None
    if any(c.startswith("deletionVector") and actions[c].null_count < len(actions) for c in actions.column_names):
        return None
    return int(pc.sum(actions["num_records"]).as_py() or 0)


def union_all(frames: Iterable[DataFrame]) -> DataFrame | None:
    result = None
    for frame in frames:
        result = frame if result is None else result.unionByName(frame)
    return result
