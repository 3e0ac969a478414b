"""Kafka -> bronze/events: every record as received, with its Kafka coordinates.

A message holds one or more CSV lines (see produce.py); bronze splits it into one row per line
(record_index = its place in the message) and keeps the producer's headers as columns. Nothing is
parsed or dropped here: a message without those headers (a poison message) is one row like any other.
A message whose value is not UTF-8 text (a binary poison message) keeps it byte for byte in
value_bytes, on its first record; value holds the text with U+FFFD for the bytes that are not, so that
every reader (delta-rs, pandas, Arrow) can read the table.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .catalogue import HEADER_COLUMNS, HEADER_FILE, HEADER_KIND, HEADER_ROW
from .config import Settings
from .kafka_broker import partitions_of, spark_options
from .spark import trigger_of
from .tables import BRONZE_EVENTS, Lake, exception_text

log = logging.getLogger(__name__)


def _text(binary: F.Column) -> F.Column:
    """Kafka bytes as a string every reader can read: bytes that are not UTF-8 become U+FFFD (Spark
    would keep them in a string column as they are, which Arrow and delta-rs refuse to read)."""
    return F.make_valid_utf8(binary.cast("string"))


def _header(name: str) -> F.Column:
    """The value of a Kafka header as a string (null when absent; the first one when repeated)."""
    match = F.filter("headers", lambda h: h["key"] == F.lit(name))
    return _text(F.get(match, 0)["value"])


def bronze_records(kafka_rows: DataFrame) -> DataFrame:
    """One row per line of a message; an empty or null value is kept as one row."""
    messages = kafka_rows.select(   # per message, before the split: the headers are read once per message
        "topic", "partition", "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        _text(F.col("key")).alias("key"),
        _header(HEADER_KIND).alias("event_type"),
        _header(HEADER_FILE).alias("source_file"),
        _header(HEADER_ROW).try_cast("bigint").alias("_first_row"),
        _header(HEADER_COLUMNS).alias("source_header"),
        # the producer's messages are CSV lines, CR LF or LF (a literal split is much cheaper than a
        # pattern); a message without its kind header is not ours and stays one record, whatever it holds
        F.when(_header(HEADER_KIND).isNull(), F.array(F.col("value").cast("string")))
         .otherwise(F.split(F.replace(F.col("value").cast("string"), F.lit("\r\n"), F.lit("\n")), "\n"))
         .alias("_lines"),
        F.when(~F.is_valid_utf8(F.col("value").cast("string")), F.col("value")).alias("_bytes"))
    return messages.select(
        "*", F.posexplode_outer("_lines").alias("_index", "value")
    ).select(
        "topic", "partition", "offset",
        F.coalesce("_index", F.lit(0)).alias("record_index"),
        "kafka_timestamp", "key",
        F.when(F.col("_bytes").isNull(), F.col("value")).otherwise(F.make_valid_utf8("value")).alias("value"),
        "event_type", "source_file",
        (F.col("_first_row") + F.coalesce("_index", F.lit(0))).alias("row_number"),
        "source_header",
        F.current_timestamp().alias("ingested_at"),
        # last, where a lake from before it gained the column (start_bronze)
        F.when(F.coalesce("_index", F.lit(0)) == 0, F.col("_bytes")).alias("value_bytes"),
    )


def read_kafka_stream(spark, settings: Settings, starting_offsets: str | None = None) -> DataFrame:
    return (spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", settings.bootstrap_servers)
            .option("subscribe", settings.events_topic)
            .option("includeHeaders", "true")
            .option("startingOffsets", starting_offsets or settings.get("bronze.starting_offsets"))
            .option("maxOffsetsPerTrigger", settings.get("bronze.max_offsets_per_trigger"))
            .option("failOnDataLoss", str(settings.get("bronze.fail_on_data_loss")).lower())
            .options(**spark_options(settings))
            .load())


TOPIC_ID_PROPERTY = "fitbit.sourceTopicId"   # the Kafka topic id whose offsets bronze holds


class DataLossError(RuntimeError):
    """Bronze would skip or mix up records of the events topic: it stops instead."""


def _check_topic(lake: Lake, settings: Settings, topic_id: str | None, schema) -> None:
    """Bronze's offsets belong to one incarnation of the topic. A topic deleted and recreated has a new
    id, and offsets that may be smaller, equal or larger than the old ones: all would silently lose or
    mix records, so that stops here with what to do."""
    if not topic_id:
        return
    if not lake.exists("bronze", BRONZE_EVENTS):
        lake.create("bronze", BRONZE_EVENTS, schema, {TOPIC_ID_PROPERTY: topic_id})
        return
    known = lake.properties("bronze", BRONZE_EVENTS).get(TOPIC_ID_PROPERTY)
    if known is None:
        lake.set_properties("bronze", BRONZE_EVENTS, {TOPIC_ID_PROPERTY: topic_id})
    elif known != topic_id:
        raise DataLossError(
            f"The topic {settings.events_topic} was deleted and recreated since bronze last read it (topic id "
            f"{known}, now {topic_id}): its offsets no longer match bronze's. Nothing was read. To load the new "
            f"topic, start a new lake (make clean-lake, or another FITBIT_LAKE_DIR); to keep this one, point "
            f"KAFKA_BOOTSTRAP_SERVERS / kafka.events_topic back at the topic it was built from.")


def _resume_offsets(lake: Lake, settings: Settings) -> str | None:
    """With the checkpoint gone but bronze kept, the offsets to go on from (JSON for startingOffsets):
    after the last record of each partition in bronze, so nothing is landed twice or skipped."""
    if (Path(lake.checkpoint("bronze", BRONZE_EVENTS)) / "offsets").is_dir() or not lake.exists("bronze", BRONZE_EVENTS):
        return None
    last = (lake.read("bronze", BRONZE_EVENTS).where(F.col("topic") == settings.events_topic)
            .groupBy("partition").agg(F.max("offset").alias("offset")).collect())
    if not last:
        return None
    log.warning("bronze: no checkpoint at %s but bronze holds records: going on after its last offsets",
                lake.checkpoint("bronze", BRONZE_EVENTS))
    partitions = {str(p): -2 for p in partitions_of(settings, settings.events_topic)}   # -2: earliest
    partitions.update({str(r["partition"]): r["offset"] + 1 for r in last})
    return json.dumps({settings.events_topic: partitions})


def start_bronze(spark, settings: Settings, trigger: str | None = None, topic_id: str | None = None):
    """The bronze streaming query (Delta's sink is exactly-once through its checkpoint)."""
    lake = Lake(spark, settings)
    records = bronze_records(read_kafka_stream(spark, settings, _resume_offsets(lake, settings)))
    _check_topic(lake, settings, topic_id, records.schema)
    if lake.exists("bronze", BRONZE_EVENTS):   # before any query reads it: silver's sees one schema
        for column in lake.add_missing_columns("bronze", BRONZE_EVENTS, records.schema):
            log.info("bronze/events: column %s added (a lake of an earlier version)", column)
    writer = (records
              .writeStream.format("delta")
              .queryName(settings.get("bronze.query_name"))
              .outputMode("append")
              .option("maxRecordsPerFile", settings.get("bronze.max_records_per_file"))
              .option("checkpointLocation", lake.checkpoint("bronze", BRONZE_EVENTS))
              .trigger(**trigger_of(settings, "bronze", trigger)))
    return lake.start_sink(writer, "bronze", BRONZE_EVENTS)


def hit_kafka_metrics_bug(exc: Exception) -> bool:
    """Spark 4.1.1's Kafka source (SPARK-57438) throws a NullPointerException in its progress metrics
    when a restarted query re-runs the batch that a crash left uncommitted. The batch itself has been
    written and committed by then, so the query only needs starting again."""
    text = exception_text(exc)
    return "NullPointerException" in text and ("KafkaMicroBatchStream" in text
                                               or "scala.Option.get()" in text and "IterableOps.map" in text)


def data_loss(exc: Exception, settings: Settings) -> DataLossError | None:
    """The Kafka source's failOnDataLoss error (found when a batch is planned, or while a task reads
    the records), as one line that says what to do."""
    text = exception_text(exc)   # found while a task reads: TASK_WRITE_FAILED, Kafka's reason in a cause
    if "KAFKA_DATA_LOSS" not in text and "data may have been lost" not in text.lower():
        return None
    lines = [line.strip() for line in text.splitlines()]
    said = [line for line in lines if "KAFKA_DATA_LOSS" in line or "data may have been lost" in line.lower()
            or line.startswith("Reason: Could not read")]
    said = [re.sub(r"^(Caused by: )?[\w.$]+(Exception|Error): ", "", line) for line in said]   # Kafka's words
    first = " ".join(dict.fromkeys(said[:2])) or lines[0]
    return DataLossError(
        f"Records of {settings.events_topic} that bronze has not landed are gone from Kafka (the topic was "
        f"recreated, or retention removed them): bronze stops rather than skip them. Re-produce them "
        f"(produce --replay) into a new topic and lake, or accept the loss with "
        f"FITBIT_SETTINGS='{{\"bronze.fail_on_data_loss\": false}}'. Kafka said: {first[:300]}")


def run_bronze(spark, settings: Settings, trigger: str | None = None, topic_id: str | None = None) -> dict:
    """Run bronze to the end of the topic (availableNow) or until stopped (processingTime)."""
    from pyspark.errors import StreamingQueryException

    lake = Lake(spark, settings)
    before = lake.version("bronze", BRONZE_EVENTS)
    for attempt in range(1, 4):
        query = start_bronze(spark, settings, trigger, topic_id)
        try:
            query.awaitTermination()
            break
        except StreamingQueryException as exc:
            lost = data_loss(exc, settings)
            if lost is not None:
                raise lost from None
            if attempt == 3 or not hit_kafka_metrics_bug(exc):
                raise
            log.warning("bronze: the batch left by a crash is done; starting the query again (SPARK-57438)")
    commits = lake.commits_after("bronze", BRONZE_EVENTS, before)
    result = {"records": lake.rows_added(commits),   # batches: micro-batches, not the table's creation
              "batches": sum(c["operation"] == "STREAMING UPDATE" for c in commits)}
    log.info("bronze: %s", result)
    return result
