"""The producer without Kafka: a CSV file -> byte ranges of lines -> messages, and the send ledger."""
from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import numpy as np
import pytest

from fitbit_lakehouse import produce as P
from fitbit_lakehouse.catalogue import BY_KIND
from fitbit_lakehouse.kafka_broker import BrokerError
from fitbit_lakehouse.privacy import user_key

HOURLY = BY_KIND["hourlySteps"]
SLEEP = BY_KIND["minuteSleep"]
HOURLY_HEADER = "Id,ActivityHour,StepTotal"


def _write(path: Path, lines: list[str], eol: str = "\r\n", final_eol: bool = True, bom: bool = False) -> Path:
    text = eol.join(lines) + (eol if final_eol else "")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def _lines(lines: P.FileLines) -> list[str]:
    return [lines.line(i).decode() for i in range(len(lines))]


# --- split_lines -------------------------------------------------------------------------

@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_split_lines(tmp_path, eol):
    rows = ["1503960366,4/12/2016 12:00:00 AM,373", "1503960366,4/12/2016 1:00:00 AM,160", "",
            "8877689391,4/12/2016 2:00:00 AM,0"]
    lines = P.split_lines(_write(tmp_path / "h.csv", [HOURLY_HEADER, *rows], eol=eol).read_bytes())
    assert lines.header == HOURLY_HEADER
    assert _lines(lines) == rows                       # no CR, no LF; the blank line is an empty line
    assert list(lines.rows) == [1, 2, 3, 4]            # numbered as in the file, below the header
    assert [lines.data[s:e].decode() for s, e in zip(lines.starts, lines.id_ends)] == \
        ["1503960366", "1503960366", "", "8877689391"]
    assert list(lines.separators) == [2, 2, 0, 2]


def test_split_lines_bom_no_final_newline_and_empty_files(tmp_path):
    lines = P.split_lines(_write(tmp_path / "a.csv", [HOURLY_HEADER, "1,4/12/2016 1:00:00 AM,5"],
                                 final_eol=False, bom=True).read_bytes())
    assert lines.header == HOURLY_HEADER               # a BOM does not become part of the first column
    assert _lines(lines) == ["1,4/12/2016 1:00:00 AM,5"]
    assert len(P.split_lines(_write(tmp_path / "b.csv", [HOURLY_HEADER]).read_bytes())) == 0
    assert P.split_lines(b"") is None and P.split_lines(b"\xef\xbb\xbf") is None


# --- plan_messages -----------------------------------------------------------------------

def _file(tmp_path, rows) -> P.FileLines:
    return P.split_lines(_write(tmp_path / "h.csv", [HOURLY_HEADER, *rows]).read_bytes())


def test_plan_messages_groups_by_user_and_size(tmp_path):
    rows = [f"1,4/12/2016 {h}:00:00 AM,{h}" for h in range(1, 4)] + \
           ["2,4/12/2016 1:00:00 AM,1", "", "2,4/12/2016 2:00:00 AM,2", "12,4/12/2016 1:00:00 AM,1",
            "1,4/12/2016 5:00:00 AM,5"]
    lines = _file(tmp_path, rows)
    everything = np.ones(len(lines), dtype=bool)
    # user 1: rows 1-2, row 3 (2 per message); user 2: row 4; the blank line ends a run; user 2 again,
    # user 12 (not user 1: the whole first field counts), user 1 again
    assert P.plan_messages(lines, everything, per_message=2, max_bytes=10**6) == \
        [(0, 1), (2, 2), (3, 3), (5, 5), (6, 6), (7, 7)]
    assert P.plan_messages(lines, everything, per_message=500, max_bytes=10**6)[0] == (0, 2)
    # only the selected lines are planned
    selected = np.arange(len(lines)) >= 2
    assert P.plan_messages(lines, selected, per_message=500, max_bytes=10**6)[0] == (2, 2)
    # a size bound cuts a run, but a single line is never split
    one_line = int(lines.ends[0] - lines.starts[0])
    assert P.plan_messages(lines, everything, per_message=500, max_bytes=one_line)[:3] == [(0, 0), (1, 1), (2, 2)]


def test_message_key_is_the_pseudonym_never_the_raw_id():
    assert P.message_key(b"8877689391", "s") == user_key(8877689391, "s").encode()
    assert b"8877689391" not in P.message_key(b"8877689391", "s")
    assert P.message_key(b"abc", "s") == hmac.new(b"s", b"abc", hashlib.sha256).hexdigest()[:32].encode()


def test_event_id_deterministic():
    line = "1503960366,4/12/2016 12:00:00 AM,373"
    assert P.event_id("hourlySteps", line) == hashlib.sha256(f"hourlySteps\x1f{line}".encode()).hexdigest()[:32]
    assert P.event_id("hourlySteps", line) != P.event_id("hourlyCalories", line)


# --- produce with a fake producer ------------------------------------------------------------

class _Future:
    def __init__(self, error=None):
        self.error = error

    def add_errback(self, fn):
        if self.error:
            fn(self.error)
        return self


class FakeProducer:
    def __init__(self, fail: bool = False):
        self.sent: list[tuple[str, bytes, bytes, dict]] = []
        self.flushed = self.closed = 0
        self.fail = fail

    def send(self, topic, key=None, value=None, headers=None):
        self.sent.append((topic, key, value, {k: v.decode() for k, v in headers}))
        return _Future(RuntimeError("boom") if self.fail else None)

    def flush(self):
        self.flushed += 1

    def close(self):
        self.closed += 1


HOURLY_ROWS = ["1503960366,4/12/2016 12:00:00 AM,373", "1503960366,4/12/2016 1:00:00 AM,160",
               "1503960366,4/12/2016 2:00:00 AM,151", "1624580081,4/12/2016 12:00:00 AM,0", "1624580081,broken"]


def _sources(tmp_path: Path):
    raw = tmp_path / "raw"
    month = raw / "Fitabase Data 4.12.16-5.12.16"
    month.mkdir(parents=True)
    hourly = _write(month / "hourlySteps_merged.csv", [HOURLY_HEADER, *HOURLY_ROWS])
    sleep = _write(raw / "minuteSleep_merged.csv", ["Id,date,value,logId", "1503960366,4/12/2016 2:47:30 AM,3,11380564589"])
    return raw, [(hourly, HOURLY), (sleep, SLEEP)]


def _ledger(tmp_path) -> P.SendLedger:
    return P.SendLedger(tmp_path / "lake" / "_producer" / "ledger.json", "topic/id-1")


def _sent_lines(fake) -> list[tuple[str, int, str]]:
    """(source file, row number, line) of every record sent, from the messages and their headers."""
    out = []
    for _, _, value, headers in fake.sent:
        for i, line in enumerate(value.decode().split("\r\n")):
            out.append((headers["source_file"], int(headers["first_row"]) + i, line))
    return out


def test_produce_sends_lines_as_in_the_file(tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    settings = base_settings.with_overrides(**{"producer.records_per_message": 2, "producer.speed": 0})
    fake = FakeProducer()
    summary = P.produce(settings, sources, raw, producer=fake)

    hourly_name = "Fitabase Data 4.12.16-5.12.16/hourlySteps_merged.csv"
    assert summary.messages == 4 == len(fake.sent)     # user 1: rows 1-2, 3; user 2: rows 4-5; sleep: 1
    assert summary.rows == 6 and summary.files == {hourly_name: 5, "minuteSleep_merged.csv": 1}
    assert summary.malformed_rows == 1                  # "1624580081,broken"
    assert fake.closed == 0                             # a producer passed in is not closed here
    assert _sent_lines(fake) == [(hourly_name, i + 1, line) for i, line in enumerate(HOURLY_ROWS)] + \
        [("minuteSleep_merged.csv", 1, "1503960366,4/12/2016 2:47:30 AM,3,11380564589")]
    topic, key, _, headers = fake.sent[0]
    assert topic == "fitbit_wellness_stream"
    assert headers["kind"] == "hourlySteps" and headers["header"] == HOURLY_HEADER
    assert key == user_key(1503960366, P.user_key_secret(settings)).encode()


def test_a_paced_replay_sends_in_event_time_order_and_says_how_far_it_got(tmp_path, base_settings, monkeypatch,
                                                                          caplog):
    """produce --speed can pace for hours: it says what lies ahead, then how far it got, every
    producer.progress_every_s (it used to be silent until the end)."""
    import logging
    from datetime import datetime

    raw, sources = _sources(tmp_path)
    clock = [0.0]   # a wall clock the replay's sleeps advance
    monkeypatch.setattr(P.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(P.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    fake = FakeProducer()
    settings = base_settings.with_overrides(**{"producer.progress_every_s": 1})
    with caplog.at_level(logging.INFO, logger=P.log.name):
        summary = P.produce(settings, sources, raw, speed=3600, producer=fake)   # an hour of events a second

    def moment(line):
        try:
            return datetime.strptime(line.split(",")[1], "%m/%d/%Y %I:%M:%S %p")
        except (IndexError, ValueError):
            return datetime.min   # a row without a time goes first

    lines = [line for _, _, line in _sent_lines(fake)]
    assert len(fake.sent) == summary.messages == len(lines) == 6   # one row per message
    assert [moment(line) for line in lines] == sorted(moment(line) for line in lines)
    assert lines[0] == "1624580081,broken"
    timed = sorted(moment(line) for line in lines if moment(line) != datetime.min)
    span_s = (timed[-1] - timed[0]).total_seconds() / 3600
    assert clock[0] == pytest.approx(span_s)   # paced: the wall time is the event time / speed
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == (f"paced replay: 6 rows, event time {timed[0]} to {timed[-1]} at 3600x: about "
                       f"{span_s:.0f} s of wall time")
    progress = [m for m in said[1:] if "rows sent" in m]
    assert progress and all(m.startswith("paced replay: ") and " of 6 rows sent, event time " in m
                            for m in progress)
    assert len(progress) <= int(span_s) + 1   # at most one a second (progress_every_s)


def test_produce_limit(tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    fake = FakeProducer()
    summary = P.produce(base_settings, sources, raw, limit=3, speed=0, producer=fake)
    assert summary.rows == 3 and [row for _, row, _ in _sent_lines(fake)] == [1, 2, 3]


def test_rerun_sends_only_what_is_new(tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    first = FakeProducer()
    P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=first)
    assert len(_sent_lines(first)) == 6

    again = FakeProducer()     # nothing new: the files are not even read
    summary = P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=again)
    assert again.sent == [] and summary.rows == 0 and summary.skipped_files == 2

    hourly = sources[0][0]     # two rows appended: only they are sent, numbered as in the file
    with open(hourly, "ab") as f:
        f.write(b"1624580081,4/12/2016 1:00:00 AM,9\r\n1624580081,4/12/2016 2:00:00 AM,8\r\n")
    appended = FakeProducer()
    P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=appended)
    assert [(row, line) for _, row, line in _sent_lines(appended)] == \
        [(6, "1624580081,4/12/2016 1:00:00 AM,9"), (7, "1624580081,4/12/2016 2:00:00 AM,8")]

    replay = FakeProducer()    # --replay: everything again
    P.produce(base_settings, sources, raw, speed=0, replay=True, ledger=_ledger(tmp_path), producer=replay)
    assert len(_sent_lines(replay)) == 8


def test_a_raw_folder_given_as_its_month_folder_does_not_send_its_files_again(tmp_path, base_settings):
    """FITBIT_RAW_DIR moved from a folder to the month folder in it names each file differently; the
    ledger knows them by their bytes too, so only what was appended since goes."""
    raw, sources = _sources(tmp_path)
    P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=FakeProducer())
    hourly = sources[0][0]
    month = hourly.parent
    again = FakeProducer()
    summary = P.produce(base_settings, [sources[0]], month, speed=0, ledger=_ledger(tmp_path), producer=again)
    assert again.sent == [] and summary.rows == 0 and summary.skipped_files == 1

    with open(hourly, "ab") as f:
        f.write(b"1624580081,4/12/2016 1:00:00 AM,9\r\n")
    appended = FakeProducer()
    P.produce(base_settings, [sources[0]], month, speed=0, ledger=_ledger(tmp_path), producer=appended)
    assert [(name, row, line) for name, row, line in _sent_lines(appended)] == \
        [("hourlySteps_merged.csv", len(HOURLY_ROWS) + 1, "1624580081,4/12/2016 1:00:00 AM,9")]

    other = month.parent / "another month" / "hourlySteps_merged.csv"   # same name, other rows: sent
    other.parent.mkdir()
    other.write_text(HOURLY_HEADER + "\r\n1927972279,4/12/2016 12:00:00 AM,5\r\n")
    fresh = FakeProducer()
    P.produce(base_settings, [(other, sources[0][1])], month.parent, speed=0, ledger=_ledger(tmp_path), producer=fresh)
    assert [line for _, _, line in _sent_lines(fresh)] == ["1927972279,4/12/2016 12:00:00 AM,5"]


def test_months_given_one_folder_at_a_time_then_together_are_not_sent_again(tmp_path, base_settings):
    """FITBIT_RAW_DIR at month 1's folder, then at month 2's (their files share names), then at the folder
    above both: each file goes once. Month 1 sent again after month 2 would win the days they share."""
    from fitbit_lakehouse.catalogue import scan_sources

    raw = tmp_path / "raw"
    months = {"Fitabase Data 3.12.16-4.11.16": ["1503960366,4/11/2016 1:00:00 AM,5"],
              "Fitabase Data 4.12.16-5.12.16": ["1503960366,4/12/2016 1:00:00 AM,5", "1503960366,4/12/2016 2:00:00 AM,7"]}
    for folder, rows in months.items():   # files of different sizes
        (raw / folder).mkdir(parents=True)
        _write(raw / folder / "hourlySteps_merged.csv", [HOURLY_HEADER, *rows])

    def send(raw_dir: Path) -> list[str]:
        fake = FakeProducer()
        sources = scan_sources(raw_dir).files
        P.produce(base_settings, sources, raw_dir, speed=0, ledger=_ledger(tmp_path), producer=fake)
        return [line for _, _, line in _sent_lines(fake)]

    first, second = (raw / folder for folder in months)
    assert send(first) == months[first.name]
    assert send(second) == months[second.name]
    assert send(raw) == []
    assert send(first) == [] and send(second) == [] and send(first) == [] and send(raw) == []


def test_a_last_line_cut_off_mid_write_is_sent_again_whole_once_the_file_grows(tmp_path, base_settings):
    """The export is still writing the file: its last line has no line ending yet (calories 23 of 2317).
    It is sent, as a file may end without one; when the file grows, the whole line goes again with what
    follows (silver keeps the one received later); a file that does not change sends nothing again."""
    raw = tmp_path / "raw"
    raw.mkdir()
    daily = raw / "dailyActivity_merged.csv"
    header = ",".join(c.source for c in BY_KIND["dailyActivity"].columns)
    whole = "1503960366,4/12/2016,13162,8.5,8.5,0,1.88,0.55,6.06,0,25,13,328,728,1985"
    cut = "1503960366,4/13/2016,10735,6.97,6.97,0,1.57,0.69,4.71,0,21,19,217,776,23"
    daily.write_bytes(f"{header}\r\n{whole}\r\n{cut}".encode())
    sources = [(daily, BY_KIND["dailyActivity"])]

    def send() -> list[str]:
        fake = FakeProducer()
        P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=fake)
        return [line for _, _, line in _sent_lines(fake)]

    assert send() == [whole, cut]
    assert send() == []   # unchanged: not even read
    with open(daily, "ab") as f:
        f.write(b"17\r\n1503960366,4/14/2016,9762,6.28,6.28,0,2.14,1.26,2.83,0,29,11,181,1218,1776\r\n")
    assert send() == [cut + "17", "1503960366,4/14/2016,9762,6.28,6.28,0,2.14,1.26,2.83,0,29,11,181,1218,1776"]
    assert send() == []


def test_month_1_sent_after_month_2_is_said_once(tmp_path, base_settings, caplog):
    """Where the months overlap the record received later wins (CONTRACT): month 1 after month 2 replaces
    month 2's hourly and minute rows of that day. It is sent (the order is the user's), with one warning."""
    import logging

    from fitbit_lakehouse.catalogue import scan_sources

    raw = tmp_path / "raw"
    month2 = raw / "Fitabase Data 4.12.16-5.12.16"
    month2.mkdir(parents=True)
    _write(month2 / "hourlySteps_merged.csv", [HOURLY_HEADER, "1503960366,4/12/2016 1:00:00 AM,5"])
    P.produce(base_settings, scan_sources(raw).files, raw, speed=0, ledger=_ledger(tmp_path), producer=FakeProducer())
    month1 = raw / "Fitabase Data 3.12.16-4.11.16"
    month1.mkdir()
    for name in ("hourlySteps_merged.csv", "hourlyCalories_merged.csv"):
        _write(month1 / name, [HOURLY_HEADER if "Steps" in name else "Id,ActivityHour,Calories",
                               "1503960366,4/12/2016 1:00:00 AM,3"])
    fake = FakeProducer()
    with caplog.at_level(logging.WARNING, logger=P.log.name):
        P.produce(base_settings, scan_sources(raw).files, raw, speed=0, ledger=_ledger(tmp_path), producer=fake)
    assert len(_sent_lines(fake)) == 2
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith(
        "Fitabase Data 3.12.16-4.11.16/hourlySteps_merged.csv is of an earlier month than Fitabase Data "
        "4.12.16-5.12.16/hourlySteps_merged.csv, which was sent before it")


def test_a_file_changed_in_place_is_sent_whole(tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=FakeProducer())
    hourly = sources[0][0]
    hourly.write_bytes(hourly.read_bytes().replace(b",373", b",374"))   # same size, an edited row
    os.utime(hourly, ns=(0, hourly.stat().st_mtime_ns + 10**9))
    changed = FakeProducer()
    P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=changed)
    assert [row for _, row, _ in _sent_lines(changed)] == [1, 2, 3, 4, 5]


def test_a_failed_send_raises_and_is_not_recorded(tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    with pytest.raises(BrokerError, match="boom"):
        P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=FakeProducer(fail=True))
    retry = FakeProducer()
    P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=retry)
    assert len(_sent_lines(retry)) == 6


def test_a_file_that_cannot_be_read_stops_the_producer_in_one_line_and_the_files_before_it_count_as_sent(
        tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    sleep_file = sources[1][0]
    kept = sleep_file.read_bytes()
    sleep_file.unlink()   # listed, then gone (as a file this user may not read, which root cannot make here)
    with pytest.raises(P.UnreadableFile) as failure:
        P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=FakeProducer())
    said = str(failure.value)
    assert said.startswith(f"{sleep_file} cannot be read (No such file or directory): give this user the right to "
                           f"read it, or move it out of {raw}.") and "\n" not in said, said
    sleep_file.write_bytes(kept)
    retry = FakeProducer()
    P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=retry)
    assert [source for source, _, _ in _sent_lines(retry)] == ["minuteSleep_merged.csv"]   # only the one not sent


def test_a_raw_folder_that_cannot_be_listed_stops_the_producer_before_it_sends(tmp_path, base_settings,
                                                                                monkeypatch):
    raw, _ = _sources(tmp_path)
    month = raw / "Fitabase Data 4.12.16-5.12.16"
    listing = os.scandir

    def scandir(path="."):   # as for a folder this user may not read, which root cannot make here
        if Path(path) == month:
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    sent = []
    monkeypatch.setattr(P, "produce", lambda settings, sources, *a, **k: sent.extend(sources) or P.ProduceSummary())
    settings = base_settings.with_overrides(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(tmp_path / "lake")})
    with pytest.raises(P.UnreadableFile) as failure:
        P.produce_from_settings(settings)
    assert str(failure.value) == (f"{month} cannot be read (Permission denied): give this user the right to read "
                                  f"it, or move it out of {raw}. Nothing was sent")
    assert sent == []


def test_ledger_is_per_topic(tmp_path, base_settings):
    raw, sources = _sources(tmp_path)
    P.produce(base_settings, sources, raw, speed=0, ledger=_ledger(tmp_path), producer=FakeProducer())
    recreated = FakeProducer()   # a topic deleted and created again has a new id: everything is sent
    P.produce(base_settings, sources, raw, speed=0, producer=recreated,
              ledger=P.SendLedger(tmp_path / "lake" / "_producer" / "ledger.json", "topic/id-2"))
    assert len(_sent_lines(recreated)) == 6


def test_select_sources(tmp_path):
    raw, _ = _sources(tmp_path)
    scan = P.scan_sources(raw)
    assert len(P.select_sources(scan, None)) == 2
    assert [k.kind for _, k in P.select_sources(scan, "SLEEP")] == ["minuteSleep"]
    assert {k.kind for _, k in P.select_sources(scan, "hourly, minuteSleep")} == {"hourlySteps", "minuteSleep"}
    assert P.select_sources(scan, "nothing") == []


def test_paced_replay_sends_one_row_per_message_in_event_time_order(tmp_path, base_settings):
    raw = tmp_path / "raw"
    raw.mkdir()
    path = _write(raw / "hourlySteps_merged.csv", [HOURLY_HEADER, "1,4/12/2016 1:00:00 PM,5",
                                                  "1,4/12/2016 12:00:00 AM,5", "1,broken", "1,4/12/2016 1:00:00 AM,5"])
    fake = FakeProducer()
    summary = P.produce(base_settings, [(path, HOURLY)], raw, speed=1e9, producer=fake)
    assert summary.messages == 4
    assert [row for _, row, _ in _sent_lines(fake)] == [3, 2, 4, 1]    # a row without a time goes first


def test_a_link_out_of_the_raw_folder_is_refused_with_a_warning_that_says_what_to_do(base_settings, tmp_path,
                                                                                   monkeypatch, caplog):
    import logging

    raw, outside = tmp_path / "raw", tmp_path / "outside"
    raw.mkdir()
    outside.mkdir()
    (outside / "dailyActivity_merged.csv").write_text("Id,ActivityDate\n")
    (raw / "dailyActivity_merged.csv").symlink_to(outside / "dailyActivity_merged.csv")
    (raw / "hourlySteps_merged.csv").write_text("Id,ActivityHour,StepTotal\n")
    given = []
    monkeypatch.setattr(P, "produce", lambda settings, sources, *a, **k: given.extend(sources) or P.ProduceSummary())
    settings = base_settings.with_overrides(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(tmp_path / "lake")})
    with caplog.at_level(logging.WARNING, logger="fitbit_lakehouse.produce"):
        summary = P.produce_from_settings(settings)
    assert [p.name for p, _ in given] == ["hourlySteps_merged.csv"]   # the link is not read
    assert summary.refused_files == [str(raw / "dailyActivity_merged.csv")]
    [warning] = [r.getMessage() for r in caplog.records if "Refusing" in r.getMessage()]
    assert str(outside) in warning and "Copy the file in" in warning


def test_a_ledger_kept_while_the_topics_id_was_unknown_is_taken_for_that_topic(tmp_path, base_settings):
    """A fresh lake's first run once recorded its files before the new topic's id was known: the next
    run, which knows it, takes that record instead of sending everything again."""
    raw, sources = _sources(tmp_path)
    path = tmp_path / "lake" / "_producer" / "ledger.json"
    P.produce(base_settings, sources, raw, speed=0, ledger=P.SendLedger(path, f"topic/{P.UNKNOWN_TOPIC_ID}"),
              producer=FakeProducer())
    again = FakeProducer()
    summary = P.produce(base_settings, sources, raw, speed=0, ledger=P.SendLedger(path, "topic/id-1"), producer=again)
    assert again.sent == [] and summary.skipped_files == 2
