"""Kafka -> bronze/events: every record as received, with its Kafka coordinates.

A message holds one or more CSV lines (see produce.py); bronze splits it into one row per line
(record_index = its place in the message) and keeps the producer's headers as columns. Nothing is
parsed or dropped here: a message without those headers (a poison message) is one row like any other.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .catalogue import HEADER_COLUMNS, HEADER_FILE, HEADER_KIND, HEADER_ROW
from .config import Settings
from .kafka_broker import spark_options
from .spark import trigger_of
from .tables import BRONZE_EVENTS, Lake

log = logging.getLogger(__name__)


def _header(name: str) -> F.Column:
    """The value of a Kafka header as a string (null when absent; the first one when repeated)."""
    match = F.filter("headers", lambda h: h["key"] == F.lit(name))
    return F.get(match, 0)["value"].cast("string")


def bronze_records(kafka_rows: DataFrame) -> DataFrame:
    """One row per line of a message; an empty or null value is kept as one row."""
    messages = kafka_rows.select(   # per message, before the split: the headers are read once per message
        "topic", "partition", "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").cast("string").alias("key"),
        _header(HEADER_KIND).alias("event_type"),
        _header(HEADER_FILE).alias("source_file"),
        _header(HEADER_ROW).try_cast("bigint").alias("_first_row"),
        _header(HEADER_COLUMNS).alias("source_header"),
        # CR LF or LF line ends (a literal split is much cheaper than a pattern)
        F.split(F.replace(F.col("value").cast("string"), F.lit("\r\n"), F.lit("\n")), "\n").alias("_lines"))
    return messages.select(
        "*", F.posexplode_outer("_lines").alias("_index", "value")
    ).select(
        "topic", "partition", "offset",
        F.coalesce("_index", F.lit(0)).alias("record_index"),
        "kafka_timestamp", "key", "value", "event_type", "source_file",
        (F.col("_first_row") + F.coalesce("_index", F.lit(0))).alias("row_number"),
        "source_header",
        F.current_timestamp().alias("ingested_at"),
    )


def read_kafka_stream(spark, settings: Settings) -> DataFrame:
    return (spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", settings.bootstrap_servers)
            .option("subscribe", settings.events_topic)
            .option("includeHeaders", "true")
            .option("startingOffsets", settings.get("bronze.starting_offsets"))
            .option("maxOffsetsPerTrigger", settings.get("bronze.max_offsets_per_trigger"))
            .option("failOnDataLoss", str(settings.get("bronze.fail_on_data_loss")).lower())
            .options(**spark_options(settings))
            .load())


def start_bronze(spark, settings: Settings, trigger: str | None = None):
    """The bronze streaming query (Delta's sink is exactly-once through its checkpoint)."""
    lake = Lake(spark, settings)
    writer = (bronze_records(read_kafka_stream(spark, settings))
              .writeStream.format("delta")
              .queryName(settings.get("bronze.query_name"))
              .outputMode("append")
              .option("checkpointLocation", lake.checkpoint("bronze", BRONZE_EVENTS))
              .trigger(**trigger_of(settings, "bronze", trigger)))
    return lake.start_sink(writer, "bronze", BRONZE_EVENTS)


def run_bronze(spark, settings: Settings, trigger: str | None = None) -> dict:
    """Run bronze to the end of the topic (availableNow) or until stopped (processingTime)."""
    lake = Lake(spark, settings)
    before = lake.version("bronze", BRONZE_EVENTS)
    query = start_bronze(spark, settings, trigger)
    query.awaitTermination()
    after = lake.version("bronze", BRONZE_EVENTS)
    result = {"records": lake.rows_added("bronze", BRONZE_EVENTS, before),
              "batches": (after or 0) - (before if before is not None else -1) if after is not None else 0}
    log.info("bronze: %s", result)
    return result
