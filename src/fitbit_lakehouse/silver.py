"""bronze/events -> typed silver tables + silver/quarantine, exactly once.

Pure functions turn a bronze batch into typed rows with their failed rules (parse_events,
typed_records) and pick one row per natural key (resolve_keys). The writer (SilverWriter) merges
each table by its key in one Delta MERGE, pruned to the files that can hold the batch's keys (an
append when no stored row can: new days), and takes the counts for the reconciliation from the
commit's own metrics: no table is scanned to count, so the cost of a batch follows the batch, not the size of the lake.

Exactly-once: every write of micro-batch N is a Delta idempotent write tagged (app id, N), the app id
naming the query's checkpoint (a new checkpoint is a new app, so its batch ids restart safely). A
batch replayed after a crash skips the writes that already committed and finds their counts again in
their commits. Quarantine is keyed by the source record, so a replayed bad record is not stored twice.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from pyspark import StorageLevel, inheritable_thread_target

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from .catalogue import BY_KIND, KINDS, SILVER_TABLES, UNKNOWN_KIND, FileKind, kinds_for_table
from .config import Settings, setting_differences
from .privacy import knows_its_secret, remember_secret, user_key_column, user_key_secret
from .quality import Reconciliation, Rules, collect_reasons, column_reasons, row_reasons, typed_value
from .spark import trigger_of
from .tables import BRONZE_EVENTS, KeyRange, Lake, Txn, WriteMetrics, union_all

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"
IDENTITY = "user_identity"
INGEST_LOG = "_ingest_log"
QUARANTINE_KEY = ("source_file", "row_number", "record_part", "event_id")
LINEAGE = ["_event_id", "_source_kind", "_source_file", "_row_number", "_kafka_partition",
           "_kafka_offset", "_record_index", "_kafka_timestamp"]
# silver tables feed gold incrementally through their change data feed; file statistics are kept for
# the leading columns (the natural key, what a MERGE prunes on), not for every column
SILVER_PROPERTIES = {"delta.enableChangeDataFeed": "true", "delta.dataSkippingNumIndexedCols": "3"}


# --- pure transformations ----------------------------------------------------------------

def parse_events(bronze: DataFrame) -> DataFrame:
    """Bronze rows with their kind (`unknown` for a poison record), the line split into fields, the
    file's header split into names, and the record's deterministic event id."""
    known = F.col("event_type").isin([k.kind for k in KINDS])
    kind = F.when(known, F.col("event_type")).otherwise(F.lit(UNKNOWN_KIND))
    line = F.coalesce(F.col("value"), F.lit(""))
    return bronze.select(
        kind.alias("kind"),
        F.when(F.col("event_type").isNull(), F.lit("unparseable_event"))
         .when(~known, F.lit("unknown_event_type")).alias("_event_reason"),
        F.substring(F.sha2(F.concat(kind, F.lit("\x1f"), line), 256), 1, 32).alias("event_id"),
        "source_file", "row_number",
        F.split(line, ",").alias("_fields"),
        "source_header",
        "topic", "partition", "offset", "record_index", "kafka_timestamp",
        F.col("value").alias("_raw_value"))


def _lineage(event_id=None) -> list:
    return [
        (event_id if event_id is not None else F.col("event_id")).alias("_event_id"),
        F.col("kind").alias("_source_kind"),
        F.col("source_file").alias("_source_file"),
        F.col("row_number").alias("_row_number"),
        F.col("partition").alias("_kafka_partition"),
        F.col("offset").alias("_kafka_offset"),
        F.col("record_index").alias("_record_index"),
        F.col("kafka_timestamp").cast("timestamp_ntz").alias("_kafka_timestamp"),
    ]


_RAW = ["topic", "partition", "offset", "record_index", "kafka_timestamp", "_raw_value", "event_id",
        "source_file", "row_number", "kind"]


class _Columns:
    """The raw strings of a kind's columns in a record. When the file's header is the catalogue's (the
    usual case) a column is a fixed position of the line; otherwise it is looked up by name in the
    file's header (reordered or extra columns), and missing when the header lacks it. The lookup by
    name is only evaluated for records of such files; with by_name False (the batch holds no such
    file) it is left out of the plan, which is then a fraction of the size."""

    def __init__(self, kind: FileKind, by_name: bool = True):
        self.header = kind.header
        self.by_name = by_name
        expected = F.lit(",".join(kind.header))
        self.standard = F.coalesce(F.col("source_header"), expected) == expected
        self.names = F.transform(F.split(F.col("source_header"), ","), lambda n: F.trim(n))

    def position(self, source: str) -> F.Column:
        """0-based position of a column in the line (-1 when the file lacks it)."""
        if not self.by_name:
            return F.lit(self.header.index(source))
        return F.when(self.standard, F.lit(self.header.index(source))) \
                .otherwise(F.array_position(self.names, source) - 1)

    def __getitem__(self, source: str) -> F.Column:
        if not self.by_name:
            return F.get(F.col("_fields"), self.header.index(source))
        return F.when(self.standard, F.get(F.col("_fields"), self.header.index(source))) \
                .otherwise(F.get(F.col("_fields"), self.position(source).cast("int")))

    def structural_reasons(self) -> F.Column:
        """field_count when the line does not split into its header's fields; missing_column:<name> for
        each column of the kind that the file's header lacks; null when neither."""
        if not self.by_name:
            return F.when(F.size("_fields") != len(self.header), F.array(F.lit("field_count")))
        width = F.when(self.standard, F.lit(len(self.header))).otherwise(F.size(self.names))
        missing = F.filter(F.array(*[F.lit(h) for h in self.header]), lambda h: ~F.array_contains(self.names, h))
        return (F.when(F.size("_fields") != width, F.array(F.lit("field_count")))
                .when(~self.standard & (F.size(missing) > 0),
                      F.transform(missing, lambda h: F.concat(F.lit("missing_column:"), h))))


def standard_header(kind: FileKind, header: str | None) -> bool:
    """A file header (a message's header column) that is the catalogue's, or none given."""
    return header is None or header == ",".join(kind.header)


def typed_records(events: DataFrame, kind: FileKind, rules: Rules, by_name: bool = True) -> DataFrame:
    """Events of one kind -> silver columns + lineage + `reasons` (+ raw columns for quarantine).

    Wide kinds are melted: one row per minute; a row whose Id/hour/field count fails stays one row.
    by_name False: every record's file has the catalogue's header (see _Columns).
    """
    columns = _Columns(kind, by_name)
    ntz = events.sparkSession.conf.get("spark.sql.timestampType", "").upper() == "TIMESTAMP_NTZ"
    structural_bad = columns.structural_reasons()
    value_column = kind.melt.value.name if kind.melt else None
    structural = [c for c in kind.columns if c.name != value_column]
    typed = {c.name: typed_value(columns[c.source], c, ntz) for c in structural}
    reasons = [r for c in structural for r in column_reasons(columns[c.source], typed[c.name], c, rules)]
    raw_cols = [F.col(c) for c in _RAW]

    if kind.melt is None:
        reasons += row_reasons(kind, typed, rules)
        all_reasons = F.coalesce(structural_bad, collect_reasons(reasons))
        return events.select(*[typed[c.name].alias(c.name) for c in kind.columns], *_lineage(),
                             F.lit(None).cast("int").alias("record_part"),
                             all_reasons.alias("reasons"), *raw_cols)

    # Wide: structural checks on the hour row, value checks per melted minute.
    melt, value_col = kind.melt, kind.melt.value
    row_reasons_ = F.coalesce(structural_bad, collect_reasons(reasons))
    minutes = F.array(*[columns[f"{melt.prefix}{i:02d}"] for i in range(melt.minutes)])
    rows = events.select(*[typed[c.name].alias(c.name) for c in structural],
                         row_reasons_.alias("_row_reasons"), minutes.alias("_minutes"), *raw_cols)
    value_type = "double" if value_col.type == "double" else "bigint"
    bad_rows = rows.where(F.size("_row_reasons") > 0).select(
        *[F.col(c.name) if c.name != value_col.name else F.lit(None).cast(value_type).alias(c.name)
          for c in kind.columns],
        *_lineage(), F.lit(None).cast("int").alias("record_part"),
        F.col("_row_reasons").alias("reasons"), *raw_cols)
    exploded = rows.where(F.size("_row_reasons") == 0).select(
        "*", F.posexplode("_minutes").alias("_minute", "_minute_raw"))
    value = typed_value(F.col("_minute_raw"), value_col, ntz)
    good = exploded.select(
        *[(F.timestamp_add("MINUTE", F.col("_minute"), F.col(c.name)) if c.name == kind.time_column
           else value if c.name == value_col.name else F.col(c.name)).alias(c.name) for c in kind.columns],
        *_lineage(F.concat_ws(":", "event_id", F.format_string("%02d", "_minute"))),
        F.col("_minute").cast("int").alias("record_part"),
        collect_reasons(column_reasons(F.col("_minute_raw"), value, value_col, rules)).alias("reasons"),
        *raw_cols)
    return bad_rows.unionByName(good)


def quarantine_rows(records: DataFrame, table: str | None) -> DataFrame:
    """Records with at least one reason, in the shape of silver/quarantine."""
    return records.where(F.size("reasons") > 0).select(
        F.col("kind"), F.lit(table).cast("string").alias("target_table"), "reasons",
        F.col("_raw_value").alias("raw_value"), "event_id", "source_file", "row_number", "record_part",
        "topic", "partition", "offset", "record_index", "kafka_timestamp",
        F.current_timestamp().cast("timestamp_ntz").alias("quarantined_at"))


def unknown_quarantine(events: DataFrame) -> DataFrame:
    """Poison records (not an event of this pipeline, or an unknown event type)."""
    return quarantine_rows(
        events.where(F.col("kind") == UNKNOWN_KIND)
        .withColumn("reasons", F.array("_event_reason"))
        .withColumn("record_part", F.lit(None).cast("int")), None)


def valid_rows(records: DataFrame, kind: FileKind) -> DataFrame:
    """Valid records as silver rows: data columns, merge version and lineage."""
    data_cols = [c.name for c in kind.columns]
    prefer = [F.expr(e).cast("double").alias(f"p{i}") for i, e in enumerate(kind.prefer)]
    version = F.struct(*prefer, F.col("_kafka_timestamp").alias("ts"), F.col("_kafka_offset").alias("offset"),
                       F.col("_record_index").alias("index"), F.coalesce("record_part", F.lit(0)).alias("part"))
    return records.where(F.size("reasons") == 0).select(*data_cols, version.alias("_version"), *LINEAGE)


def resolve_keys(rows: DataFrame, key: tuple[str, ...]) -> DataFrame:
    """One row per natural key: the highest merge version (prefer columns, then newest)."""
    others = [c for c in rows.columns if c not in key]
    winner = F.max_by(F.struct(*others), F.col("_version"))
    return rows.groupBy(*key).agg(winner.alias("_w")).select(*key, *[F.col(f"_w.{c}") for c in others])


def update_condition(kind: FileKind) -> str:
    """A stored row is replaced only by a different record with a higher merge version."""
    same = " AND ".join(f"t.`{c.name}` <=> s.`{c.name}`" for c in kind.columns if c.name not in kind.key)
    return f"s._version > t._version AND NOT ({same})"


def pruning_filter(kind: FileKind, fitbit_ids: list, low, high) -> KeyRange:
    """Where every stored row the batch can match lies: its Ids, within its key range. Delta reads
    only the files whose statistics overlap it."""
    second = next(k for k in kind.key if k != "fitbit_id")
    return KeyRange(bounds=((second, low, high),), values=(("fitbit_id", tuple(int(i) for i in fitbit_ids)),))


# --- writer ------------------------------------------------------------------------------

CARRIED_BATCH = -1   # the ingest log's row of what the tables held when silver's checkpoint was lost
INGEST_LOG_SCHEMA = ("batch_id bigint, table string, records_in bigint, quarantined bigint, inserted bigint, "
                     "updated bigint, duplicates bigint, logged_at timestamp_ntz")


@dataclass(frozen=True)
class BatchCounts:
    """One table's share of a micro-batch. duplicates: records that added no row (identical or
    superseding copies of a stored key, of which `updated` replaced it, and bad records that are
    already in quarantine)."""
    table: str
    records_in: int
    quarantined: int = 0
    inserted: int = 0
    updated: int = 0

    @property
    def duplicates(self) -> int:
        return self.records_in - self.inserted - self.quarantined

    def log_row(self, batch_id: int) -> tuple:
        return (batch_id, self.table, self.records_in, self.quarantined, self.inserted, self.updated,
                self.duplicates, datetime.now())


class SilverWriter:
    """foreachBatch target: parse, validate, deduplicate and merge one bronze micro-batch.

    The tables of a batch are written by a few threads at once (their small Spark jobs and Delta
    commits leave the cores idle in between); MERGEs take turns, as their exactly-once settings
    live on the stream's session.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.rules = Rules.from_settings(settings)
        self.query_name = settings.get("silver.query_name")
        self.threads = int(settings.get("silver.table_threads"))
        self.secret = user_key_secret(settings)
        self._known_ids: set[int] | None = None
        self._merge_lock = threading.Lock()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        spark = batch.sparkSession
        lake = Lake(spark, self.settings)
        # the query's id is kept in its checkpoint: a new checkpoint is a new app for Delta's txn
        app = f"{self.query_name}:{spark.sparkContext.getLocalProperty('sql.streaming.queryId')}"
        # A first load reads the batch once per table (its counts are observed while it writes), so
        # nothing is cached: building the cache would cost more. A MERGE reads its source three times
        # (counts and key range, matched files, write): then the batch is kept, the pattern Spark's
        # guide gives for foreachBatch writing several tables.
        merging = lake.exists("silver", INGEST_LOG)
        if merging:
            batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            self._write_batch(lake, batch, batch_id, app, started)
        finally:
            if merging:
                batch.unpersist()

    def _write_batch(self, lake: Lake, batch: DataFrame, batch_id: int, app: str, started: float) -> None:
        spark = batch.sparkSession
        by_type: dict[str, int] = {}
        by_name = set()   # kinds with a file whose header is not the catalogue's: columns looked up by name
        for event_type, header, n in batch.groupBy("event_type", "source_header").count().collect():
            by_type[event_type] = by_type.get(event_type, 0) + n
            if event_type in BY_KIND and not standard_header(BY_KIND[event_type], header):
                by_name.add(event_type)
        if not by_type:
            return
        kinds_present = {t: n for t, n in by_type.items() if t in BY_KIND}
        unknown = sum(n for t, n in by_type.items() if t not in BY_KIND)
        tables = sorted({BY_KIND[k].table for k in kinds_present})

        def write_table(table: str) -> _TableResult:
            table_started = time.monotonic()
            kinds = [k for k in kinds_for_table(table) if k.kind in kinds_present]
            events = parse_events(batch.where(F.col("event_type").isin([k.kind for k in kinds])))
            records = union_all(typed_records(events.where(F.col("kind") == k.kind), k, self.rules, k.kind in by_name)
                                for k in kinds)
            estimate = sum(kinds_present[k.kind] * (k.melt.minutes if k.melt else 1) for k in kinds)
            result = self._merge_table(lake, Txn(f"{app}:{table}", batch_id), table, kinds[0], records, estimate)
            log.info("silver batch %s: %-20s %9d records in %.1f s", batch_id, table, result.records_in,
                     time.monotonic() - table_started)
            return result

        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            results = list(pool.map(inheritable_thread_target(spark)(write_table), tables))
        bad = [r.bad for r in results if r.bad is not None]
        if unknown:
            known = F.col("event_type").isin(list(BY_KIND))
            bad.append(self._gathered(unknown_quarantine(parse_events(batch.where(F.col("event_type").isNull() | ~known))),
                                      unknown))
        quarantined = self._quarantine(lake, bad, Txn(f"{app}:{QUARANTINE}", batch_id)) if bad else {}
        self._remember_identities(lake, set().union(*[r.ids for r in results]), Txn(f"{app}:{IDENTITY}", batch_id))
        counts = [BatchCounts("*", sum(by_type.values()))]
        if unknown:
            counts.append(BatchCounts(UNKNOWN_KIND, unknown, quarantined.get(UNKNOWN_KIND, 0)))
        counts += [BatchCounts(r.table, r.records_in, quarantined.get(r.table, 0), r.written.inserted,
                               r.written.updated) for r in results]
        # last: the counts of a batch are logged once, after every write they describe
        lake.save(spark.createDataFrame([c.log_row(batch_id) for c in counts], INGEST_LOG_SCHEMA),
                  "silver", INGEST_LOG, txn=Txn(f"{app}:{INGEST_LOG}", batch_id))
        log.info("silver batch %s: %s records, %d tables in %.1f s", batch_id, counts[0].records_in,
                 len(tables), time.monotonic() - started)

    def _gathered(self, rows: DataFrame, n: int) -> "_BadRows":
        """A batch's quarantine rows of one table: when few, computed now (beside the other tables'
        writes) and kept as local data, so that the quarantine write at the end of the batch does not
        parse the batch again; when many, left to that write (they need not fit in memory)."""
        if n > int(self.settings.get("silver.quarantine_gather_max_rows")):
            return _BadRows(rows, local=False)
        # through Arrow: timestamps come back exactly, with no local time zone in between
        return _BadRows(rows.sparkSession.createDataFrame(rows.toArrow()), local=True)

    def _merge_table(self, lake: Lake, txn: Txn, table: str, kind: FileKind, records: DataFrame,
                     records_estimate: int = 0) -> "_TableResult":
        """Merge a table's records of the batch; returns its counts. A first load appends and gathers its
        counts while it writes (one pass over the batch); a MERGE first needs the batch's Ids and key
        range, to read only the target files that can hold them."""
        second = next(k for k in kind.key if k != "fitbit_id")
        valid = F.size("reasons") == 0
        measures = [F.count("*").alias("n"), F.count_if(~valid).alias("bad"),
                    F.min(F.when(valid, F.col(second))).alias("low"), F.max(F.when(valid, F.col(second))).alias("high"),
                    F.collect_set(F.when(valid, F.col("fitbit_id"))).alias("ids")]
        write = dict(update=update_condition(kind), txn=txn, properties=SILVER_PROPERTIES, lock=self._merge_lock)
        stored = lake.exists("silver", table)
        if stored:   # counted, checked against the stored keys and merged: typed once, not three times
            records = records.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            if stored:
                stats = records.agg(*measures).first().asDict()
                written = WriteMetrics()
                if stats["n"] > stats["bad"]:
                    written = lake.merge(resolve_keys(valid_rows(records, kind), kind.key), "silver", table,
                                         kind.key, target_filter=pruning_filter(kind, stats["ids"], stats["low"],
                                                                                stats["high"]), **write)
            else:   # a first load: files by time range, so that later MERGEs of new days read few of them
                observation = Observation()
                observed = records.observe(observation, *measures)
                files = max(1, -(-records_estimate // int(self.settings.get("silver.rows_per_file"))))
                rows = resolve_keys(valid_rows(observed, kind), kind.key).repartitionByRange(files, second)
                written = lake.merge(rows, "silver", table, kind.key, **write)
                stats = observation.get
            bad = self._gathered(quarantine_rows(records, table), stats["bad"]) if stats["bad"] else None
        finally:
            if stored:
                records.unpersist()
        return _TableResult(table, int(stats["n"]), written, {int(i) for i in stats["ids"]}, bad)

    def _quarantine(self, lake: Lake, parts: list["_BadRows"], txn: Txn) -> dict[str, int]:
        """Bad records not yet in quarantine (keyed by the source record, so a replayed record is
        stored once); returns how many were new per target table: when every one was new, counted
        from the rows themselves, else read from the commit's own change data (also right when a
        replay finds the commit already made)."""
        rows = union_all(p.rows for p in parts)
        earliest = F.struct("partition", "offset", "record_index")
        first = rows.groupBy(*QUARANTINE_KEY).agg(F.min_by(F.struct(*rows.columns), earliest).alias("_q")).select("_q.*")
        per_table = ({r[0] or UNKNOWN_KIND: r[1] for r in first.groupBy("target_table").count().collect()}
                     if all(p.local for p in parts) else None)
        inserted = lake.merge(first, "silver", QUARANTINE, QUARANTINE_KEY, txn=txn, properties=SILVER_PROPERTIES,
                              lock=self._merge_lock).inserted
        if inserted == 0:
            return {}
        if per_table is not None and inserted == sum(per_table.values()):
            return per_table
        version = lake.commit("silver", QUARANTINE, txn.tag)["version"]
        added = lake.changes("silver", QUARANTINE, version, version).where(F.col("_change_type") == "insert")
        return {r[0] or UNKNOWN_KIND: r[1] for r in added.groupBy("target_table").count().collect()}

    def _remember_identities(self, lake: Lake, ids: set[int], txn: Txn) -> None:
        """silver/user_identity: every Fitbit Id seen, with its user_key (written here only)."""
        if self._known_ids is None:
            self._known_ids = ({r[0] for r in lake.read("silver", IDENTITY).select("fitbit_id").collect()}
                               if lake.exists("silver", IDENTITY) else set())
        new = sorted(ids - self._known_ids)
        if not new:
            return
        remember_secret(self.settings, self.secret)
        frame = lake.spark.createDataFrame([(i,) for i in new], "fitbit_id bigint")
        identities = frame.select("fitbit_id", user_key_column("fitbit_id", self.secret).alias("user_key"))
        lake.merge(identities, "silver", IDENTITY, ("fitbit_id",), txn=txn, lock=self._merge_lock)
        self._known_ids.update(new)


@dataclass(frozen=True)
class _BadRows:
    rows: DataFrame             # quarantine rows of a table in a batch
    local: bool                 # already computed (local data)


@dataclass(frozen=True)
class _TableResult:
    table: str
    records_in: int
    written: WriteMetrics
    ids: set[int]
    bad: _BadRows | None        # its quarantine rows, when it has any


def carry_over_if_checkpoint_lost(lake: Lake, settings: Settings) -> bool:
    """A silver query without a checkpoint reads bronze again from its start (new app ids: nothing is
    wrongly skipped, and its MERGEs add nothing twice). For the reconciliation to hold, the ingest log
    then starts over too, from what the tables hold: per table one row of `carried` records (silver rows
    and quarantine rows so far), against which the re-read records count as duplicates. That includes
    rows whose batch never reached the log (a crash after their commit, before the log's): the tables
    are what counts, also when the log is still empty."""
    offsets = Path(lake.checkpoint("silver", settings.get("silver.query_name"))) / "offsets"
    if offsets.is_dir() and any(offsets.iterdir()):
        return False
    if not any(lake.count("silver", t) for t in (*SILVER_TABLES, QUARANTINE, INGEST_LOG)):
        return False   # a new lake: nothing to carry
    quarantined = ({r[0] or UNKNOWN_KIND: r[1] for r in lake.read("silver", QUARANTINE).groupBy("target_table")
                    .count().collect()} if lake.exists("silver", QUARANTINE) else {})
    carried = [BatchCounts(t, lake.count("silver", t) + quarantined.get(t, 0), quarantined.get(t, 0),
                           lake.count("silver", t)) for t in SILVER_TABLES if lake.exists("silver", t)]
    if quarantined.get(UNKNOWN_KIND):
        carried.append(BatchCounts(UNKNOWN_KIND, quarantined[UNKNOWN_KIND], quarantined[UNKNOWN_KIND]))
    rows = [c.log_row(CARRIED_BATCH) for c in carried]
    lake.save(lake.spark.createDataFrame(rows, INGEST_LOG_SCHEMA), "silver", INGEST_LOG, mode="overwrite")
    log.warning("silver: no checkpoint at %s: reading bronze again from its start; the ingest log starts over "
                "from the rows the tables hold", offsets.parent)
    return True


def require_the_identities_secret(lake: Lake, settings: Settings) -> None:
    """A lake from before the secret's fingerprint: a stored identity tells whether the secret given made
    its keys (then the fingerprint is kept from now on)."""
    if knows_its_secret(settings) or not lake.exists("silver", IDENTITY):
        return
    stored = lake.read("silver", IDENTITY).select("fitbit_id", "user_key").limit(1).collect()
    if stored:
        remember_secret(settings, user_key_secret(settings), (stored[0][0], stored[0][1]))


def rules_marker(settings: Settings) -> Path:
    return settings.checkpoints_dir / "silver" / "rules.json"


def note_the_rules(settings: Settings) -> None:
    """Validation rules apply to records as they arrive: a rule changed since silver last ran is said
    once, as the rows silver holds were checked with the earlier one."""
    marker, rules = rules_marker(settings), settings.get("validation.rules")
    before = json.loads(marker.read_text()) if marker.exists() else None
    if before is not None and before != rules:
        log.warning("silver: validation rules changed since silver last ran (%s): they apply to records from "
                    "now on; the rows silver holds were checked with the earlier ones (make clean-lake, then "
                    "make run, checks them all again)",
                    ", ".join(setting_differences(before, rules, "validation.rules")))
    if before != rules:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(rules))


def create_quarantine(lake: Lake) -> None:
    """silver/quarantine (a table of the contract), empty, when no record has been bad yet. After a
    batch run's query rather than before it: on a warm JVM a table's creation costs a fraction."""
    if not lake.exists("silver", QUARANTINE) and lake.exists("bronze", BRONZE_EVENTS):
        shape = unknown_quarantine(parse_events(lake.read("bronze", BRONZE_EVENTS).limit(0))).schema
        lake.create("silver", QUARANTINE, StructType([StructField(f.name, f.dataType, True) for f in shape]),
                    SILVER_PROPERTIES)


def start_silver(spark, settings: Settings, trigger: str | None = None, carry_over: bool = True):
    lake = Lake(spark, settings)
    require_the_identities_secret(lake, settings)
    note_the_rules(settings)
    if carry_over:
        carry_over_if_checkpoint_lost(lake, settings)
    options = {"maxFilesPerTrigger": settings.get("silver.max_files_per_trigger")}
    if settings.get("silver.max_bytes_per_trigger"):
        options["maxBytesPerTrigger"] = settings.get("silver.max_bytes_per_trigger")
    stream = lake.read_stream("bronze", BRONZE_EVENTS, **options)
    return (stream.writeStream.queryName(settings.get("silver.query_name"))
            .foreachBatch(SilverWriter(settings))
            .option("checkpointLocation", lake.checkpoint("silver", settings.get("silver.query_name")))
            .trigger(**trigger_of(settings, "silver", trigger))
            .start())


def reconcile(spark, settings: Settings) -> list[Reconciliation]:
    """Per table, over every batch so far, against the tables themselves: records in = silver rows +
    duplicates + quarantined rows; and every bronze record was seen by silver."""
    lake = Lake(spark, settings)
    if not lake.exists("silver", INGEST_LOG):
        return []
    sums = {r["table"]: r for r in lake.read("silver", INGEST_LOG).groupBy("table").agg(
        *[F.sum(c).alias(c) for c in ("records_in", "quarantined", "inserted", "duplicates")]).collect()}
    quarantined = ({r[0] or UNKNOWN_KIND: r[1] for r in lake.read("silver", QUARANTINE).groupBy("target_table")
                    .count().collect()} if lake.exists("silver", QUARANTINE) else {})
    seen = sums.get("*")
    results = [Reconciliation("bronze/events", lake.count("bronze", BRONZE_EVENTS),
                              int(seen["records_in"]) if seen else 0, 0, 0)]
    for table in (*SILVER_TABLES, UNKNOWN_KIND):
        if table not in sums:
            continue
        row = sums[table]
        silver_rows = lake.count("silver", table) if table != UNKNOWN_KIND else 0
        results.append(Reconciliation(table, int(row["records_in"]), silver_rows, int(row["duplicates"]),
                                      int(quarantined.get(table, 0))))
    return results


class ReconciliationError(RuntimeError):
    pass


def _batches_after(lake: Lake, batch_id: int | None):
    log_rows = lake.read("silver", INGEST_LOG).where(F.col("table") == "*")
    return log_rows.where(F.col("batch_id") > batch_id) if batch_id is not None else log_rows


def run_silver(spark, settings: Settings, trigger: str | None = None) -> dict:
    """Run silver over the new bronze records, then reconcile (a broken count fails loudly).
    Returns the records and micro-batches of this run, and the reconciliation."""
    lake = Lake(spark, settings)
    carried = carry_over_if_checkpoint_lost(lake, settings)
    before = (lake.read("silver", INGEST_LOG).agg(F.max("batch_id")).first()[0]
              if lake.exists("silver", INGEST_LOG) and not carried else None)
    query = start_silver(spark, settings, trigger, carry_over=False)
    query.awaitTermination()
    create_quarantine(lake)
    this_run = (_batches_after(lake, before).agg(F.count("*"), F.sum("records_in")).first()
                if lake.exists("silver", INGEST_LOG) else (0, 0))
    results = reconcile(spark, settings)
    report = [r.as_dict() for r in results]
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    (settings.reports_dir / "silver_reconciliation.json").write_text(json.dumps(report, indent=2))
    for r in results:
        log.info("reconcile %-20s in=%d silver=%d dup=%d quarantine=%d %s", r.table, r.records_in,
                 r.silver_rows, r.duplicates, r.quarantined, "ok" if r.holds else "BROKEN")
    broken = [r for r in results if not r.holds]
    if broken:
        raise ReconciliationError("reconciliation broken: " + "; ".join(
            f"{r.table}: in={r.records_in} != silver {r.silver_rows} + dup {r.duplicates} + "
            f"quarantine {r.quarantined}" for r in broken))
    return {"records": int(this_run[1] or 0), "batches": int(this_run[0]), "reconciliation": report}
