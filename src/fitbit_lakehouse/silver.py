"""bronze/events -> typed silver tables + silver/quarantine, exactly once.

Pure functions (parse_events, typed_records, split_valid, resolve_keys) turn a bronze batch into
typed rows with their failed rules; the writer (process_batch) merges them per table by natural key.

Exactly-once: every write of micro-batch N is a Delta transaction tagged (app id, N); a batch
replayed after a crash skips the writes that already committed. Counts for the reconciliation
are written first, from the state before any merge of the batch, so a replay cannot skew them.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .catalogue import BY_KIND, KINDS, SILVER_TABLES, UNKNOWN_KIND, FileKind, kinds_for_table
from .config import Settings
from .quality import Reconciliation, Rules, collect_reasons, column_reasons, row_reasons, typed_value
from .tables import Lake

log = logging.getLogger(__name__)

EVENT_SCHEMA = ("event_id string, event_type string, source_file string, row_number bigint, "
                "event_time string, payload map<string,string>, raw_line string")
QUARANTINE = "quarantine"
INGEST_LOG = "_ingest_log"
LINEAGE = ["_event_id", "_source_kind", "_source_file", "_row_number", "_kafka_partition",
           "_kafka_offset", "_record_index", "_kafka_timestamp"]


# --- pure transformations ----------------------------------------------------------------

def parse_events(bronze: DataFrame) -> DataFrame:
    """Bronze rows with their JSON event unpacked; `kind` is unknown for a poison record."""
    event = F.from_json(F.col("value"), EVENT_SCHEMA)
    known = F.col("_event.event_type").isin([k.kind for k in KINDS])
    return (bronze.withColumn("_event", event)
            .select(
                F.when(known, F.col("_event.event_type")).otherwise(F.lit(UNKNOWN_KIND)).alias("kind"),
                F.when(F.col("_event.event_type").isNull(), F.lit("unparseable_event"))
                 .when(~known, F.lit("unknown_event_type")).alias("_event_reason"),
                F.col("_event.event_id").alias("event_id"),
                F.col("_event.source_file").alias("source_file"),
                F.col("_event.row_number").alias("row_number"),
                F.col("_event.payload").alias("payload"),
                F.col("_event.raw_line").alias("raw_line"),
                "topic", "partition", "offset", "record_index", "kafka_timestamp",
                F.col("value").alias("_raw_value")))


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


def typed_records(events: DataFrame, kind: FileKind, rules: Rules) -> DataFrame:
    """Events of one kind -> silver columns + lineage + `reasons` (+ raw columns for quarantine).

    Wide kinds are melted: one row per minute; a row whose Id/hour/field count fails stays one row.
    """
    payload = F.col("payload")
    field_count_bad = payload.isNull() | (F.size(payload) != len(kind.header))
    structural = [c for c in kind.columns if kind.melt is None or c.name != kind.melt.value.name]
    typed = {c.name: typed_value(payload[c.source], c) for c in structural}
    reasons = [r for c in structural for r in column_reasons(payload[c.source], typed[c.name], c, rules)]
    raw_cols = [F.col(c) for c in _RAW]

    if kind.melt is None:
        reasons += row_reasons(kind, typed, rules)
        all_reasons = F.when(field_count_bad, F.array(F.lit("field_count"))).otherwise(collect_reasons(reasons))
        return events.select(*[typed[c.name].alias(c.name) for c in kind.columns], *_lineage(),
                             F.lit(None).cast("int").alias("record_part"),
                             all_reasons.alias("reasons"), *raw_cols)

    # Wide: structural checks on the hour row, value checks per melted minute.
    melt, value_col = kind.melt, kind.melt.value
    row_reasons_ = F.when(field_count_bad, F.array(F.lit("field_count"))).otherwise(collect_reasons(reasons))
    minutes = F.array(*[payload[f"{melt.prefix}{i:02d}"] for i in range(melt.minutes)])
    rows = events.select(*[typed[c.name].alias(c.name) for c in structural],
                         row_reasons_.alias("_row_reasons"), minutes.alias("_minutes"), *raw_cols)
    bad_rows = rows.where(F.size("_row_reasons") > 0).select(
        *[F.col(c.name) if c.name != value_col.name else F.lit(None).cast(
            "double" if value_col.type == "double" else "bigint").alias(c.name) for c in kind.columns],
        *_lineage(), F.lit(None).cast("int").alias("record_part"),
        F.col("_row_reasons").alias("reasons"), *raw_cols)
    exploded = rows.where(F.size("_row_reasons") == 0).select(
        "*", F.posexplode("_minutes").alias("_minute", "_minute_raw"))
    value = typed_value(F.col("_minute_raw"), value_col)
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
    """Poison records (not a JSON event, or an unknown event type)."""
    return quarantine_rows(
        events.where(F.col("kind") == UNKNOWN_KIND)
        .withColumn("reasons", F.array("_event_reason"))
        .withColumn("record_part", F.lit(None).cast("int")), None)


def valid_rows(records: DataFrame, kind: FileKind) -> DataFrame:
    """Valid records as silver rows: data columns, lineage, content hash and merge version."""
    data_cols = [c.name for c in kind.columns]
    prefer = [F.expr(e).cast("double").alias(f"p{i}") for i, e in enumerate(kind.prefer)]
    version = F.struct(*prefer, F.col("_kafka_timestamp").alias("ts"), F.col("_kafka_offset").alias("offset"),
                       F.col("_record_index").alias("index"), F.coalesce("record_part", F.lit(0)).alias("part"))
    return records.where(F.size("reasons") == 0).select(
        *data_cols,
        F.sha2(F.to_json(F.struct(*data_cols)), 256).alias("_record_hash"),
        version.alias("_version"),
        *LINEAGE)


def resolve_keys(rows: DataFrame, key: tuple[str, ...]) -> DataFrame:
    """One row per natural key: the highest merge version (prefer columns, then newest)."""
    window = Window.partitionBy(*key).orderBy(F.col("_version").desc(), F.col("_record_hash"))
    return rows.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").drop("_rank")


def merge_condition() -> str:
    """An update wins only when it is a different record with a higher merge version."""
    return "s._version > t._version AND s._record_hash <> t._record_hash"


# --- writer ------------------------------------------------------------------------------

class SilverWriter:
    """foreachBatch target: parse, validate, deduplicate and merge one bronze micro-batch."""

    def __init__(self, spark, settings: Settings, app_prefix: str | None = None):
        self.spark = spark
        self.settings = settings
        self.lake = Lake(spark, settings)
        self.rules = Rules.from_settings(settings)
        self.app_prefix = app_prefix or settings.get("silver.query_name")

    def _app(self, name: str) -> str:
        return f"{self.app_prefix}:{name}"

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        events = parse_events(batch).persist()
        kinds_present = {r["kind"]: r["count"] for r in events.groupBy("kind").count().collect()}
        bronze_records = sum(kinds_present.values())
        if not bronze_records:
            events.unpersist()
            return
        per_table: dict[str, DataFrame] = {}
        quarantine = []
        for name in kinds_present:
            if name == UNKNOWN_KIND:
                quarantine.append(unknown_quarantine(events))
                continue
            kind = BY_KIND[name]
            records = typed_records(events.where(F.col("kind") == name), kind, self.rules)
            per_table[kind.table] = (per_table[kind.table].unionByName(records)
                                     if kind.table in per_table else records)

        log_rows, merges = [self._log_row(batch_id, "*", records_in=bronze_records)], []
        if UNKNOWN_KIND in kinds_present:
            n = kinds_present[UNKNOWN_KIND]
            log_rows.append(self._log_row(batch_id, UNKNOWN_KIND, records_in=n, quarantined=n))
        for table, records in per_table.items():
            records = records.persist()
            kind = kinds_for_table(table)[0]
            quarantine.append(quarantine_rows(records, table))
            winners = resolve_keys(valid_rows(records, kind), kind.key).persist()
            count_started = time.monotonic()
            counts = self._counts(records, winners, table, kind)
            log.debug("silver batch %s: counted %s in %.1f s", batch_id, table, time.monotonic() - count_started)
            log_rows.append(self._log_row(batch_id, table, **counts))
            merges.append((table, kind, records, winners, counts))

        # 1. counts of this batch (from the state before its merges), 2. quarantine, 3. merges
        with self.lake.idempotent(self._app(INGEST_LOG), batch_id):
            self.lake.save(self.spark.createDataFrame(log_rows, INGEST_LOG_SCHEMA), "silver", INGEST_LOG)
        if quarantine:
            rows = quarantine[0]
            for q in quarantine[1:]:
                rows = rows.unionByName(q)
            with self.lake.idempotent(self._app(QUARANTINE), batch_id):
                self.lake.save(rows, "silver", QUARANTINE)
        for table, kind, records, winners, counts in merges:
            merge_started = time.monotonic()
            # counts come from the table as it is now: nothing new or changed means nothing to write
            if counts["inserted"] or counts["updated"]:
                self._merge(table, kind, winners, batch_id)
            log.debug("silver batch %s: merged %s in %.1f s", batch_id, table, time.monotonic() - merge_started)
            winners.unpersist()
            records.unpersist()
        events.unpersist()
        log.info("silver batch %s: %s records in %.1f s", batch_id, bronze_records, time.monotonic() - started)

    def _counts(self, records: DataFrame, winners: DataFrame, table: str, kind: FileKind) -> dict:
        totals = records.agg(F.count("*").alias("n"),
                             F.sum(F.when(F.size("reasons") > 0, 1).otherwise(0)).alias("q")).first()
        records_in, quarantined = int(totals["n"]), int(totals["q"] or 0)
        if self.lake.exists("silver", table):
            existing = self.lake.read("silver", table).select(
                *kind.key, F.col("_record_hash").alias("_t_hash"), F.col("_version").alias("_t_version"))
            joined = winners.join(existing, list(kind.key), "left")
            c = joined.agg(
                F.sum(F.when(F.col("_t_hash").isNull(), 1).otherwise(0)).alias("new"),
                F.sum(F.when(F.col("_t_hash").isNotNull() & (F.col("_version") > F.col("_t_version"))
                             & (F.col("_record_hash") != F.col("_t_hash")), 1).otherwise(0)).alias("upd"),
            ).first()
            inserted, updated = int(c["new"] or 0), int(c["upd"] or 0)
        else:
            inserted, updated = winners.count(), 0
        valid = records_in - quarantined
        return {"records_in": records_in, "quarantined": quarantined, "inserted": inserted,
                "updated": updated, "duplicates": valid - inserted}

    def _merge(self, table: str, kind: FileKind, winners: DataFrame, batch_id: int) -> None:
        on = " AND ".join(f"t.{k} = s.{k}" for k in kind.key)
        with self.lake.idempotent(self._app(table), batch_id):
            if not self.lake.exists("silver", table):   # first load: nothing to merge with
                self.lake.save(winners, "silver", table)
                return
            (self.lake.delta("silver", table).alias("t")
             .merge(winners.alias("s"), on)
             .whenMatchedUpdateAll(condition=merge_condition())
             .whenNotMatchedInsertAll()
             .execute())

    @staticmethod
    def _log_row(batch_id: int, table: str, records_in: int = 0, quarantined: int = 0, inserted: int = 0,
                 updated: int = 0, duplicates: int = 0) -> tuple:
        return (batch_id, table, records_in, quarantined, inserted, updated, duplicates, datetime.now())


INGEST_LOG_SCHEMA = ("batch_id bigint, table string, records_in bigint, quarantined bigint, inserted bigint, "
                     "updated bigint, duplicates bigint, logged_at timestamp_ntz")


def start_silver(spark, settings: Settings, trigger: str | None = None):
    from .bronze import BRONZE_TABLE, trigger_of

    lake = Lake(spark, settings)
    stream = lake.read_stream("bronze", BRONZE_TABLE,
                              maxFilesPerTrigger=settings.get("silver.max_files_per_trigger"))
    return (stream.writeStream.queryName(settings.get("silver.query_name"))
            .foreachBatch(SilverWriter(spark, settings))
            .option("checkpointLocation", lake.checkpoint("silver", settings.get("silver.query_name")))
            .trigger(**trigger_of(settings, "silver", trigger))
            .start())


def reconcile(spark, settings: Settings) -> list[Reconciliation]:
    """Per table, over every batch so far: records in = silver rows + duplicates + quarantined;
    and every bronze record was seen by silver."""
    from .bronze import BRONZE_TABLE

    lake = Lake(spark, settings)
    if not lake.exists("silver", INGEST_LOG):
        return []
    sums = {r["table"]: r for r in lake.read("silver", INGEST_LOG).groupBy("table").agg(
        *[F.sum(c).alias(c) for c in ("records_in", "quarantined", "inserted", "duplicates")]).collect()}
    results = []
    bronze_total = lake.count("bronze", BRONZE_TABLE)
    seen = sums.get("*")
    results.append(Reconciliation("bronze/events", bronze_total, int(seen["records_in"]) if seen else 0, 0, 0))
    for table in (*SILVER_TABLES, UNKNOWN_KIND):
        if table not in sums:
            continue
        row = sums[table]
        silver_rows = lake.count("silver", table) if table != UNKNOWN_KIND else 0
        results.append(Reconciliation(table, int(row["records_in"]), silver_rows,
                                      int(row["duplicates"]), int(row["quarantined"])))
    return results


class ReconciliationError(RuntimeError):
    pass


def run_silver(spark, settings: Settings, trigger: str | None = None) -> list[dict]:
    """Run silver over the new bronze records, then reconcile; a broken count fails loudly."""
    query = start_silver(spark, settings, trigger)
    query.awaitTermination()
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
    return report
