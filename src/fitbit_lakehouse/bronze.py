"""Kafka -> bronze/events: every record as received, with its Kafka coordinates."""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .config import Settings
from .tables import Lake

log = logging.getLogger(__name__)

BRONZE_TABLE = "events"


def bronze_records(kafka_rows: DataFrame) -> DataFrame:
    """One row per record: a Kafka message carries records as JSON lines (record_index = line).

    posexplode_outer keeps a message with an empty or null value as one row: nothing is dropped.
    """
    lines = F.split(F.col("value").cast("string"), "\n")
    return kafka_rows.select(
        "topic", "partition", "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").cast("string").alias("key"),
        F.posexplode_outer(lines).alias("record_index", "value"),
    ).select(
        "topic", "partition", "offset",
        F.coalesce("record_index", F.lit(0)).alias("record_index"),
        "kafka_timestamp", "key", "value",
        F.current_timestamp().alias("ingested_at"),
    )


def read_kafka_stream(spark, settings: Settings) -> DataFrame:
    return (spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", settings.bootstrap_servers)
            .option("subscribe", settings.events_topic)
            .option("startingOffsets", settings.get("bronze.starting_offsets"))
            .option("maxOffsetsPerTrigger", settings.get("bronze.max_offsets_per_trigger"))
            .option("failOnDataLoss", str(settings.get("bronze.fail_on_data_loss")).lower())
            .load())


def trigger_of(settings: Settings, layer: str, trigger: str | None = None) -> dict:
    trigger = trigger or settings.get(f"{layer}.trigger")
    if trigger == "availableNow":
        return {"availableNow": True}
    if trigger == "processingTime":
        return {"processingTime": settings.get(f"{layer}.processing_time")}
    raise ValueError(f"{layer}.trigger must be availableNow or processingTime, not {trigger!r}")


def start_bronze(spark, settings: Settings, trigger: str | None = None):
    """The bronze streaming query (Delta's sink is exactly-once through its checkpoint)."""
    lake = Lake(spark, settings)
    writer = (bronze_records(read_kafka_stream(spark, settings))
              .writeStream.format("delta")
              .queryName(settings.get("bronze.query_name"))
              .outputMode("append")
              .option("checkpointLocation", lake.checkpoint("bronze", BRONZE_TABLE))
              .trigger(**trigger_of(settings, "bronze", trigger)))
    return lake.start_sink(writer, "bronze", BRONZE_TABLE)


def run_bronze(spark, settings: Settings, trigger: str | None = None) -> dict:
    """Run bronze to the end of the topic (availableNow) or until stopped (processingTime)."""
    lake = Lake(spark, settings)
    before = lake.count("bronze", BRONZE_TABLE)
    query = start_bronze(spark, settings, trigger)
    query.awaitTermination()
    after = lake.count("bronze", BRONZE_TABLE)
    result = {"bronze_rows_added": after - before, "bronze_rows": after}
    log.info("bronze: %s", result)
    return result
