"""bronze_records on tiny Kafka rows: the producer's messages split into lines, anything else kept whole."""
from __future__ import annotations

from datetime import datetime

from pyspark.sql import types as T

from fitbit_lakehouse.bronze import bronze_records

KAFKA_SCHEMA = T.StructType([
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("headers", T.ArrayType(T.StructType([
        T.StructField("key", T.StringType()), T.StructField("value", T.BinaryType())])))])

T0 = datetime(2026, 1, 1)


def _kafka(spark, *messages):
    rows = [("t", 0, offset, T0, None, value, headers) for offset, (value, headers) in enumerate(messages)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def test_a_producer_message_becomes_one_record_per_line_numbered_from_its_first_row(spark):
    headers = [("kind", b"hourlySteps"), ("source_file", b"h.csv"), ("first_row", b"7"),
               ("header", b"Id,ActivityHour,StepTotal")]
    out = bronze_records(_kafka(spark, (b"1,a,1\r\n2,b,2\n3,c,3", headers))).orderBy("record_index").collect()
    assert [(r.record_index, r.value, r.row_number, r.event_type) for r in out] == [
        (0, "1,a,1", 7, "hourlySteps"), (1, "2,b,2", 8, "hourlySteps"), (2, "3,c,3", 9, "hourlySteps")]


def test_a_message_without_the_kind_header_is_one_record_even_with_line_breaks(spark):
    out = bronze_records(_kafka(spark, (b"junk\nmore\r\njunk", None), (b"", []), (None, None))).collect()
    assert sorted((r.offset, r.record_index, r.value) for r in out) == [
        (0, 0, "junk\nmore\r\njunk"), (1, 0, ""), (2, 0, None)]
    assert all(r.event_type is None and r.row_number is None for r in out)
