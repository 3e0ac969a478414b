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


class _Captured(Exception):
    """The shape of PySpark's captured JVM exceptions: a message, the JVM's stack trace text, a cause."""

    def __init__(self, message: str, stack_trace: str = "", cause: Exception | None = None):
        super().__init__(message)
        self._stackTrace, self._cause = stack_trace, cause


PLANNED = ("[STREAM_FAILED] Query terminated with exception: [KAFKA_DATA_LOSS.START_OFFSET_RESET] Some data may "
           "have been lost because they are not available in Kafka any more; either the data was aged out by Kafka "
           "or the topic may have been deleted before all the data in the topic was processed.")
READ_IN_A_TASK = (
    "org.apache.spark.SparkException: [TASK_WRITE_FAILED] Task failed while writing rows to file:/lake/bronze/events.\n"
    "\tat org.apache.spark.sql.errors.QueryExecutionErrors$.taskFailedWhileWritingRowsError(QueryExecutionErrors.scala:1)\n"
    "Caused by: org.apache.spark.sql.kafka010.KafkaIllegalStateException: Some data may have been lost because they "
    "are not available in Kafka any more;\neither the data was aged out by Kafka or the topic may have been deleted\n"
    "Reason: Could not read records in offset [4, 30) for topic partition events-0\n"
    "\tat org.apache.spark.sql.kafka010.KafkaExceptions$.couldNotReadOffsetRange(KafkaExceptions.scala:101)\n")


def test_a_kafka_data_loss_is_one_line_whether_found_when_planning_or_while_reading(base_settings):
    """Found when a batch is planned it is in the query's own message; found while a task reads the
    records it reaches Python as TASK_WRITE_FAILED, with Kafka's reason only in the JVM's cause."""
    from fitbit_lakehouse.bronze import data_loss

    planned = data_loss(_Captured(PLANNED), base_settings)
    in_a_task = data_loss(_Captured("[STREAM_FAILED] Query terminated with exception: [TASK_WRITE_FAILED] Task "
                                    "failed while writing rows", cause=_Captured("[TASK_WRITE_FAILED] Task failed",
                                                                                 READ_IN_A_TASK)), base_settings)
    for lost in (planned, in_a_task):
        assert lost is not None and "\n" not in str(lost) and "produce --replay" in str(lost)
    assert "KAFKA_DATA_LOSS" in str(planned)
    assert "offset [4, 30) for topic partition events-0" in str(in_a_task)
    assert data_loss(_Captured("[TASK_WRITE_FAILED] disk full", "java.io.IOException: No space left"),
                     base_settings) is None


def test_a_payload_that_is_not_utf8_is_kept_byte_for_byte_and_the_table_stays_readable(spark, tmp_path):
    """A binary poison message was stored in the string column as it came: Spark read it, but delta-rs,
    Arrow and pandas refused the whole of bronze/events (and silver/quarantine, which copies it)."""
    from deltalake import DeltaTable

    binary = bytes(range(256))
    headers = [("kind", b"hourlySteps"), ("source_file", b"h\xff.csv"), ("first_row", b"1"), ("header", b"Id")]
    rows = [("t", 0, 0, T0, b"\xfe\xff", binary, None), ("t", 0, 1, T0, b"k", b"1,a,\xe9\n2,b,2", headers),
            ("t", 0, 2, T0, None, "caf\u00e9 \u2603".encode(), None), ("t", 0, 3, T0, None, None, None)]
    out = bronze_records(spark.createDataFrame(rows, KAFKA_SCHEMA))
    path = str(tmp_path / "events")
    out.write.format("delta").save(path)
    table = DeltaTable(path).to_pyarrow_table().to_pylist()   # refused before: "invalid utf-8"
    got = {(r["offset"], r["record_index"]): r for r in table}
    assert got[(0, 0)]["value_bytes"] == binary and got[(0, 0)]["key"] == "\ufffd\ufffd"
    assert got[(0, 0)]["value"] == binary.decode("utf-8", errors="replace")
    assert (got[(1, 0)]["value"], got[(1, 0)]["value_bytes"]) == ("1,a,\ufffd", b"1,a,\xe9\n2,b,2")   # the message's
    assert (got[(1, 1)]["value"], got[(1, 1)]["value_bytes"]) == ("2,b,2", None)
    assert got[(1, 0)]["source_file"] == "h\ufffd.csv"
    assert (got[(2, 0)]["value"], got[(2, 0)]["value_bytes"]) == ("caf\u00e9 \u2603", None)   # UTF-8 text as it is
    assert (got[(3, 0)]["value"], got[(3, 0)]["value_bytes"]) == (None, None)
    assert out.columns[-1] == "value_bytes"   # last: where ALTER TABLE ADD COLUMNS puts it in an older lake


def test_a_bronze_table_of_an_earlier_version_gains_the_new_column_and_takes_new_rows(spark, tmp_path, base_settings):
    from fitbit_lakehouse.tables import Lake

    settings = base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path)})
    lake = Lake(spark, settings)
    new = bronze_records(_kafka(spark, (b"\xff", None)))
    lake.save(new.drop("value_bytes"), "bronze", "events")
    assert lake.add_missing_columns("bronze", "events", new.schema) == ["value_bytes"]
    assert lake.add_missing_columns("bronze", "events", new.schema) == []
    lake.save(new, "bronze", "events")
    assert sorted((r.value_bytes is None, r.value) for r in lake.read("bronze", "events").collect()) == [
        (False, "\ufffd"), (True, "\ufffd")]   # the row of the earlier version: null, its value as it was
