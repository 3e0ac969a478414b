"""The producer without Kafka: CSV rows -> records -> JSON events -> messages."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fitbit_lakehouse import produce as P
from fitbit_lakehouse.catalogue import BY_KIND

DAILY = BY_KIND["dailyActivity"]
HOURLY = BY_KIND["hourlySteps"]
SLEEP = BY_KIND["minuteSleep"]

HOURLY_HEADER = "Id,ActivityHour,StepTotal"


def _write(path: Path, lines: list[str], eol: str = "\r\n") -> Path:
    path.write_bytes((eol.join(lines) + eol).encode())
    return path


# --- read_records ------------------------------------------------------------------------

def test_read_records_crlf(tmp_path):
    path = _write(tmp_path / "hourlySteps_merged.csv", [
        HOURLY_HEADER,
        "1503960366,4/12/2016 12:00:00 AM,373",
        "1503960366,4/12/2016 1:00:00 AM,160",
        "",                                          # a blank line is skipped
        "8877689391,4/12/2016 2:00:00 AM,0",
    ])
    records = list(P.read_records(path, HOURLY))
    assert [r.fields for r in records] == [
        ["1503960366", "4/12/2016 12:00:00 AM", "373"],
        ["1503960366", "4/12/2016 1:00:00 AM", "160"],
        ["8877689391", "4/12/2016 2:00:00 AM", "0"],
    ]
    assert [r.line for r in records] == ["1503960366,4/12/2016 12:00:00 AM,373",
                                         "1503960366,4/12/2016 1:00:00 AM,160",
                                         "8877689391,4/12/2016 2:00:00 AM,0"]
    assert all("\r" not in r.line and "\n" not in r.line for r in records)
    assert [r.row_number for r in records][:2] == [1, 2]
    assert all(r.header == ("Id", "ActivityHour", "StepTotal") for r in records)
    assert all(r.source_file == "hourlySteps_merged.csv" and r.kind is HOURLY for r in records)
    assert [r.user_key for r in records] == ["1503960366", "1503960366", "8877689391"]
    assert records[0].event_time == "4/12/2016 12:00:00 AM"

    named = list(P.read_records(path, HOURLY, source_name="Fitabase Data 4.12.16-5.12.16/x.csv"))
    assert {r.source_file for r in named} == {"Fitabase Data 4.12.16-5.12.16/x.csv"}


def test_read_records_lf_only(tmp_path):
    path = _write(tmp_path / "h.csv", [HOURLY_HEADER, "1,4/12/2016 12:00:00 AM,5"], eol="\n")
    [record] = P.read_records(path, HOURLY)
    assert record.fields == ["1", "4/12/2016 12:00:00 AM", "5"]


def test_read_records_header_only_and_empty(tmp_path):
    assert list(P.read_records(_write(tmp_path / "a.csv", [HOURLY_HEADER]), HOURLY)) == []
    empty = tmp_path / "b.csv"
    empty.write_bytes(b"")
    assert list(P.read_records(empty, HOURLY)) == []


def test_read_records_wrong_field_count(tmp_path):
    path = _write(tmp_path / "hourlySteps_merged.csv", [
        HOURLY_HEADER,
        "1503960366,4/12/2016 12:00:00 AM",          # too few
        "1503960366,4/12/2016 1:00:00 AM,1,2",       # too many
        "1503960366,4/12/2016 2:00:00 AM,7",
    ])
    few, many, ok = P.read_records(path, HOURLY)
    assert few.fields is None and many.fields is None and ok.fields is not None
    assert few.row_number == 1 and many.row_number == 2
    assert few.user_key == "1503960366"
    assert few.event_time is None
    event = few.event()
    assert event["raw_line"] == "1503960366,4/12/2016 12:00:00 AM"
    assert "payload" not in event
    assert event["event_type"] == "hourlySteps" and event["row_number"] == 1 and event["event_time"] is None
    good = ok.event()
    assert good["payload"] == {"Id": "1503960366", "ActivityHour": "4/12/2016 2:00:00 AM", "StepTotal": "7"}
    assert "raw_line" not in good
    assert good["event_time"] == "4/12/2016 2:00:00 AM"
    assert good["source_file"] == "hourlySteps_merged.csv"


def test_user_key_of_empty_id(tmp_path):
    path = _write(tmp_path / "h.csv", [HOURLY_HEADER, ",4/12/2016 12:00:00 AM,5"])
    [record] = P.read_records(path, HOURLY)
    assert record.user_key == "unknown"


# --- event_id ----------------------------------------------------------------------------

def test_event_id_deterministic():
    line = "1503960366,4/12/2016 12:00:00 AM,373"
    assert P.event_id("hourlySteps", line) == P.event_id("hourlySteps", line)
    assert P.event_id("hourlySteps", line) != P.event_id("hourlyCalories", line)
    assert P.event_id("hourlySteps", line) != P.event_id("hourlySteps", line + "0")
    expected = hashlib.sha256(f"hourlySteps\x1f{line}".encode()).hexdigest()[:32]
    assert P.event_id("hourlySteps", line) == expected
    assert len(expected) == 32


def test_event_id_same_line_in_two_files(tmp_path):
    """The same row in two month folders (the overlap day) gets the same id; other kind, other id."""
    line = "1503960366,4/12/2016 12:00:00 AM,373"
    a = _write(tmp_path / "a.csv", [HOURLY_HEADER, line])
    b = _write(tmp_path / "b.csv", [HOURLY_HEADER, "1503960366,4/12/2016 1:00:00 AM,1", line])
    [ra] = P.read_records(a, HOURLY)
    rb = list(P.read_records(b, HOURLY))[1]
    assert ra.event()["event_id"] == rb.event()["event_id"]
    assert ra.event()["row_number"] != rb.event()["row_number"]
    other = P.SourceRecord(BY_KIND["hourlyCalories"], "c.csv", 1, line, line.split(","),
                           ("Id", "ActivityHour", "Calories"))
    assert other.event()["event_id"] != ra.event()["event_id"]


# --- _messages ---------------------------------------------------------------------------

def _rec(user: str, source: str, n: int) -> P.SourceRecord:
    line = f"{user},4/12/2016 12:00:00 AM,{n}"
    return P.SourceRecord(HOURLY, source, n, line, line.split(","), tuple(HOURLY_HEADER.split(",")))


def test_messages_grouping():
    records = [_rec("1", "a.csv", 1), _rec("1", "a.csv", 2), _rec("1", "a.csv", 3),   # 3 -> 2 + 1
               _rec("2", "a.csv", 4),                                                 # new user
               _rec("2", "b.csv", 5), _rec("2", "b.csv", 6),                          # new file
               _rec("1", "b.csv", 7)]                                                 # user 1 again
    messages = list(P._messages(records, 2))
    assert [(key, [r.row_number for r in batch]) for key, batch in messages] == [
        ("1", [1, 2]), ("1", [3]), ("2", [4]), ("2", [5, 6]), ("1", [7])]


def test_messages_empty_and_per_message_one():
    assert list(P._messages([], 5)) == []
    records = [_rec("1", "a.csv", i) for i in range(1, 4)]
    assert [len(b) for _, b in P._messages(records, 1)] == [1, 1, 1]
    assert [len(b) for _, b in P._messages(records, 500)] == [3]


# --- produce with a fake producer --------------------------------------------------------

class _Future:
    def __init__(self):
        self.errbacks = []

    def add_errback(self, fn):
        self.errbacks.append(fn)
        return self


class FakeProducer:
    def __init__(self):
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = 0
        self.closed = 0

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))
        return _Future()

    def flush(self):
        self.flushed += 1

    def close(self):
        self.closed += 1


def _sources(tmp_path: Path):
    raw = tmp_path / "raw"
    month = raw / "Fitabase Data 4.12.16-5.12.16"
    month.mkdir(parents=True)
    hourly = _write(month / "hourlySteps_merged.csv", [
        HOURLY_HEADER,
        "1503960366,4/12/2016 12:00:00 AM,373",
        "1503960366,4/12/2016 1:00:00 AM,160",
        "1503960366,4/12/2016 2:00:00 AM,151",
        "1624580081,4/12/2016 12:00:00 AM,0",
        "1624580081,broken",
    ])
    sleep = _write(raw / "minuteSleep_merged.csv", [
        "Id,date,value,logId",
        "1503960366,4/12/2016 2:47:30 AM,3,11380564589",
    ])
    return raw, [(hourly, HOURLY), (sleep, SLEEP)]


def test_produce_fake_producer(tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    settings = base_settings.with_overrides(**{"producer.records_per_message": 2, "producer.speed": 0})
    fake = FakeProducer()
    summary = P.produce(settings, sources, raw, progress=False, producer=fake)

    # messages: user 1503960366 rows 1-2, row 3; user 1624580081 rows 4-5; the sleep file: 1
    assert summary.messages == 4 == len(fake.sent)
    assert summary.rows == 6
    assert summary.malformed_rows == 1
    hourly_name = "Fitabase Data 4.12.16-5.12.16/hourlySteps_merged.csv"
    assert summary.files == {hourly_name: 5, "minuteSleep_merged.csv": 1}
    assert fake.flushed == 1 and fake.closed == 0     # a producer passed in is not closed here
    assert {t for t, _, _ in fake.sent} == {"fitbit_wellness_stream"}
    assert [k for _, k, _ in fake.sent] == [b"1503960366", b"1503960366", b"1624580081", b"1503960366"]

    events = [[json.loads(line) for line in v.decode().split("\n")] for _, _, v in fake.sent]
    assert [len(e) for e in events] == [2, 1, 2, 1]
    flat = [e for batch in events for e in batch]
    # round-trip: each line is exactly the event of its record
    expected = [r.event() for path, kind in sources
                for r in P.read_records(path, kind, P.source_name(path, raw))]
    assert flat == expected
    assert flat[0] == {
        "event_id": hashlib.sha256(b"hourlySteps\x1f1503960366,4/12/2016 12:00:00 AM,373").hexdigest()[:32],
        "event_type": "hourlySteps", "source_file": hourly_name, "row_number": 1,
        "event_time": "4/12/2016 12:00:00 AM",
        "payload": {"Id": "1503960366", "ActivityHour": "4/12/2016 12:00:00 AM", "StepTotal": "373"}}
    assert flat[4]["raw_line"] == "1624580081,broken" and "payload" not in flat[4]
    assert flat[5]["payload"] == {"Id": "1503960366", "date": "4/12/2016 2:47:30 AM", "value": "3",
                                  "logId": "11380564589"}
    assert summary.as_dict()["rows"] == 6


def test_produce_limit(tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    fake = FakeProducer()
    summary = P.produce(base_settings, sources, raw, limit=3, speed=0, progress=False, producer=fake)
    assert summary.rows == 3
    assert summary.messages == 1       # default 500 per message: one user, one file
    [(_, _, value)] = fake.sent
    assert [json.loads(x)["row_number"] for x in value.decode().split("\n")] == [1, 2, 3]


def test_produce_send_error_raises(tmp_path, base_settings):
    from fitbit_lakehouse.kafka_broker import BrokerError

    class FailingFuture(_Future):
        def add_errback(self, fn):
            fn(RuntimeError("boom"))
            return self

    class Failing(FakeProducer):
        def send(self, topic, key=None, value=None):
            super().send(topic, key, value)
            return FailingFuture()

    raw, sources = _sources(tmp_path)
    with pytest.raises(BrokerError, match="boom"):
        P.produce(base_settings, sources, raw, speed=0, progress=False, producer=Failing())


def test_select_sources(tmp_path):
    raw, sources = _sources(tmp_path)
    scan = P.scan_sources(raw)
    assert len(P.select_sources(scan, None)) == 2
    assert [k.kind for _, k in P.select_sources(scan, "SLEEP")] == ["minuteSleep"]
    assert {k.kind for _, k in P.select_sources(scan, "hourly, minuteSleep")} == {"hourlySteps", "minuteSleep"}
    assert P.select_sources(scan, "nothing") == []


def test_paced_orders_by_event_time():
    """A paced replay releases records in event-time order; a row without a time goes first."""
    header = tuple(HOURLY_HEADER.split(","))

    def rec(n, line):
        fields = line.split(",")
        return P.SourceRecord(HOURLY, "h.csv", n, line, fields if len(fields) == 3 else None, header)

    records = [rec(1, "1,4/12/2016 1:00:00 PM,5"), rec(2, "1,4/12/2016 12:00:00 AM,5"), rec(3, "1,broken"),
               rec(4, "1,4/12/2016 1:00:00 AM,5")]
    assert [r.row_number for r in P._paced(records, speed=1e9)] == [3, 2, 4, 1]
