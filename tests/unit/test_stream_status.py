"""The status line of `make stream`: what each query took since the last line, and what waits for it,
from progress updates shaped as Spark 4.1's (Kafka source for bronze, Delta sources for silver and gold)."""
from __future__ import annotations

from fitbit_lakehouse.pipeline import stream_status


def _kafka(at: str, rows: int, end: dict, latest: dict) -> dict:
    return {"timestamp": at, "numInputRows": rows, "sources": [
        {"description": "KafkaV2[Subscribe[fitbit_wellness_stream]]", "endOffset": end, "latestOffset": latest,
         "numInputRows": rows}]}


def _delta(at: str, rows: int, version: int, index: int = -1) -> dict:
    return {"timestamp": at, "numInputRows": rows, "sources": [
        {"description": "DeltaSource[file:/lake/bronze/events]", "latestOffset": None, "numInputRows": rows,
         "endOffset": {"sourceVersion": 1, "reservoirVersion": version, "index": index, "isStartingVersion": False}}]}


def test_what_each_query_took_since_the_last_line_and_what_waits():
    progress = {
        "bronze": [_kafka("2026-12-05T10:00:00.000Z", 40, {"t": {"0": 20, "1": 20}}, {"t": {"0": 20, "1": 20}}),
                   _kafka("2026-12-05T10:00:10.000Z", 1500, {"t": {"0": 700, "1": 840}}, {"t": {"0": 900, "1": 850}}),
                   _kafka("2026-12-05T10:00:20.000Z", 0, {"t": {"0": 700, "1": 840}}, {"t": {"0": 900, "1": 850}})],
        "silver": [_delta("2026-12-05T10:00:00.000Z", 80_000, 3), _delta("2026-12-05T10:00:12.000Z", 2_000, 5)],
        "gold": [_delta("2026-12-05T10:00:15.000Z", 14, 7, index=2)],
    }
    last_line = {name: "2026-12-05T10:00:05.000Z" for name in progress}
    line, newest = stream_status(progress, since=last_line, read_versions={"silver": 9, "gold": 7})
    # bronze: one update with input after `since` (the idle one is no micro-batch); Kafka: 200 + 10 behind;
    # silver: bronze versions 6 to 9 unread; gold: version 7 partly read
    assert line == ("stream: bronze 1,500 messages in 1 micro-batch, silver 2,000 records in 1 micro-batch, "
                    "gold 1 update; waiting: 210 messages in Kafka, 4 commits for silver, 1 commit for gold")
    assert newest == {"bronze": "2026-12-05T10:00:20.000Z", "silver": "2026-12-05T10:00:12.000Z",
                      "gold": "2026-12-05T10:00:15.000Z"}
    # the next line counts from there: nothing new
    line, _ = stream_status(progress, since=newest, read_versions={"silver": 5, "gold": 7})
    assert line.startswith("stream: bronze 0 messages in 0 micro-batches, silver 0 records in 0 micro-batches, "
                           "gold 0 updates; waiting: 210 messages in Kafka, 0 commits for silver")


def test_before_any_progress_nothing_is_said_to_wait():
    line, newest = stream_status({"bronze": [], "silver": [], "gold": []}, read_versions={"silver": None, "gold": None})
    assert line == ("stream: bronze 0 messages in 0 micro-batches, silver 0 records in 0 micro-batches, "
                    "gold 0 updates; waiting: nothing") and newest == {"bronze": "", "silver": "", "gold": ""}


def test_a_long_micro_batch_reported_after_other_queries_later_ones_is_counted():
    """A progress timestamp is when the micro-batch began: silver's 14 s batch that began at 10:00:01 is
    reported after bronze's idle update of 10:00:08, which the last line already covered."""
    first = {"bronze": [_kafka("2026-12-05T10:00:08.000Z", 0, {"t": {"0": 5}}, {"t": {"0": 5}})], "silver": []}
    _, since = stream_status(first, read_versions={"silver": 1})
    later = {"bronze": first["bronze"], "silver": [_delta("2026-12-05T10:00:01.000Z", 8, 1)]}
    line, _ = stream_status(later, since, read_versions={"silver": 1})
    assert "silver 8 records in 1 micro-batch" in line
