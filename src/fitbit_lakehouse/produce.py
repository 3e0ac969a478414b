"""CSV files -> the events topic: runs of raw lines per Kafka message, each row sent once.

A message carries consecutive data lines of one file and one user, byte for byte as in the file.
Kafka headers say what they are: `kind`, `source_file`, `first_row` (the 1-based data row of the
first line; the header is row 0) and `header` (the file's header line). Bronze splits a message back
into one record per line. The producer never parses a row: a file is cut into messages on its bytes
with numpy, so the cost is reading the file plus Kafka's client.

A ledger under the lake records per topic and file how many bytes were sent and acknowledged. A
re-run sends only the lines appended since (`replay=True` sends everything again); a file that changed
other than by appending is sent whole, and silver drops what it already holds. The message key is the
pseudonymous user key, so one user's records share a partition and keep their order.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .catalogue import (HEADER_COLUMNS, HEADER_FILE, HEADER_KIND, HEADER_ROW, PY_DATE_FORMAT, PY_TIMESTAMP_FORMAT,
                        UNKNOWN_MONTH, FileKind, SourceScan, month_order, scan_sources)
from .config import Settings
from .kafka_broker import BrokerError, LocalBroker, make_producer
from .privacy import user_key, user_key_secret

log = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"
_ID_BYTES_COMPARED = 24   # an Id run is found by comparing the first bytes of the first field


# --- a file as lines, without parsing a row -----------------------------------------------

@dataclass(frozen=True)
class FileLines:
    """The data lines of one CSV as byte ranges of `data` (the header line excluded)."""
    data: bytes
    header: str
    starts: np.ndarray      # offset of each line
    ends: np.ndarray        # offset where its content ends (before CR LF)
    id_ends: np.ndarray     # offset where its first field (the Id) ends
    separators: np.ndarray  # commas in the line

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def rows(self) -> np.ndarray:
        """1-based data row of each line, as a spreadsheet would number it below the header."""
        return np.arange(1, len(self.starts) + 1)

    def line(self, i: int) -> bytes:
        return self.data[self.starts[i]:self.ends[i]]


def split_lines(data: bytes) -> FileLines | None:
    """Lines of a CSV file (LF or CRLF; a UTF-8 BOM is dropped); None for an empty file."""
    first = len(BOM) if data.startswith(BOM) else 0
    if len(data) <= first:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate(([first], newlines + 1)).astype(np.int64)
    ends = np.concatenate((newlines, [len(buf)])).astype(np.int64)
    if starts[-1] >= len(buf):          # the empty "line" after a final newline
        starts, ends = starts[:-1], ends[:-1]
    carriage = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord("\r"))
    ends = ends - carriage
    header = data[starts[0]:ends[0]].decode("utf-8", errors="replace")
    starts, ends = starts[1:], ends[1:]
    commas = np.append(np.flatnonzero(buf == ord(",")), len(buf)).astype(np.int64)
    first_comma = commas[np.searchsorted(commas, starts)]
    separators = np.searchsorted(commas, ends) - np.searchsorted(commas, starts)
    return FileLines(data, header, starts, ends, np.minimum(first_comma, ends), separators)


def _id_fingerprints(lines: FileLines) -> np.ndarray:
    """A number per line that differs between lines whose first fields differ (in their first bytes)."""
    buf = np.frombuffer(lines.data, dtype=np.uint8)
    last = len(buf) - 1
    fingerprint = (lines.id_ends - lines.starts).astype(np.uint64)
    for k in range(_ID_BYTES_COMPARED):
        position = lines.starts + k
        byte = np.where(position < lines.id_ends, buf[np.minimum(position, last)], 0).astype(np.uint64)
        fingerprint = fingerprint * np.uint64(257) + byte
    return fingerprint


def plan_messages(lines: FileLines, selected: np.ndarray, per_message: int, max_bytes: int) -> list[tuple[int, int]]:
    """[first, last] line indexes of each message: consecutive selected, non-blank lines of one user,
    at most per_message lines and (unless one line alone is larger) max_bytes of payload."""
    keep = selected & (lines.ends > lines.starts)
    index = np.flatnonzero(keep)
    if not len(index):
        return []
    fingerprint = _id_fingerprints(lines)[index]
    new_run = np.ones(len(index), dtype=bool)
    new_run[1:] = (np.diff(index) != 1) | (fingerprint[1:] != fingerprint[:-1])
    run_start = np.flatnonzero(new_run)
    position = np.arange(len(index)) - run_start[np.cumsum(new_run) - 1]
    breaks = np.flatnonzero(new_run | (position % per_message == 0))
    bounds = np.append(breaks, len(index))
    messages = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        first, last = int(index[a]), int(index[b - 1])
        if lines.ends[last] - lines.starts[first] <= max_bytes or first == last:
            messages.append((first, last))
            continue
        start = first   # rare: long lines; cut by size
        for i in range(first + 1, last + 1):
            if lines.ends[i] - lines.starts[start] > max_bytes:
                messages.append((start, i - 1))
                start = i
        messages.append((start, last))
    return messages


def message_key(id_field: bytes, secret: str) -> bytes:
    """The pseudonymous user key of the message's user (never the raw Fitbit Id)."""
    text = id_field.decode("utf-8", errors="replace").strip()
    if text.isdigit():
        return user_key(text, secret).encode()
    return hmac.new(secret.encode(), id_field, hashlib.sha256).hexdigest()[:32].encode()


def event_id(kind: str, line: str) -> str:
    """Deterministic id of a source row (silver computes the same): the same row, replayed or in two
    overlapping months, gets one id."""
    return hashlib.sha256(f"{kind}\x1f{line}".encode()).hexdigest()[:32]


# --- what was sent -----------------------------------------------------------------------

LEDGER_FILE = "ledger.json"
UNKNOWN_TOPIC_ID = "unknown-topic-id"
EARLIER = "_earlier"   # the ledger's records that another file replaced under their name (never a topic's key)


class SendLedger:
    """Per topic (by its Kafka topic id, so a recreated topic starts over) and source file: the bytes
    sent and acknowledged, the file's size and mtime, and a hash of the sent prefix."""

    def __init__(self, path: Path, stream: str):
        self.path, self.stream = path, stream
        self._all = json.loads(path.read_text()) if path.is_file() else {}
        unknown = f"{stream.rsplit('/', 1)[0]}/{UNKNOWN_TOPIC_ID}"
        if stream not in self._all and unknown in self._all:   # sent while the new topic's id was not known yet
            self._all[stream] = self._all.pop(unknown)

    def entry(self, name: str) -> dict | None:
        return self._all.get(self.stream, {}).get(name)

    def moved_entry(self, name: str, data: bytes) -> dict | None:
        """The entry of this very file sent under another name: FITBIT_RAW_DIR moved between a folder and
        its month folder (or the folder was renamed), or one another file replaced under this name (the
        months' files share their names). Same file name, and the bytes sent are its start."""
        current = [(other, entry) for other, entry in self._all.get(self.stream, {}).items() if other != name]
        earlier = [(entry["name"], entry) for entry in self._all.get(EARLIER, {}).get(self.stream, [])]
        return next((entry for other, entry in current + earlier
                     if Path(other).name == Path(name).name and holds_the_start(entry, data)), None)

    def later_month_sent(self, path: Path, name: str) -> str | None:
        """A file of the same name from a later month folder, sent before this one (month 1 after month 2)."""
        month = month_order(path)
        if month == UNKNOWN_MONTH:
            return None
        return next((other for other in self._all.get(self.stream, {})
                     if Path(other).name == Path(name).name and UNKNOWN_MONTH != month_order(Path(other)) > month),
                    None)

    def record(self, name: str, stat: os.stat_result, sent_bytes: int, head_sha256: str,
               another_file: bool = False) -> None:
        """another_file: the entry under this name is of another file (or this one rewritten), not of
        this one before it grew: it is kept for moved_entry, as the months' files share their names."""
        entries = self._all.setdefault(self.stream, {})
        if another_file and name in entries:
            earlier = self._all.setdefault(EARLIER, {}).setdefault(self.stream, [])
            if {**entries[name], "name": name} not in earlier:
                earlier.append({**entries[name], "name": name})
        entries[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sent_bytes": sent_bytes,
                         "head_sha256": head_sha256}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self._all, indent=1))
        partial.replace(self.path)   # atomic: a crash leaves the old ledger or the new one


def holds_the_start(entry: dict, data: bytes) -> bool:
    """Whether the bytes an entry recorded as sent are the start of data (data is that file, grown or not)."""
    sent = entry["sent_bytes"]
    return len(data) >= sent and hashlib.sha256(data[:sent]).hexdigest() == entry["head_sha256"]


def unsent_from(entry: dict | None, data: bytes, name: str) -> int:
    """Byte offset from which the file still has to be sent (0 = all of it)."""
    if entry is None:
        return 0
    if holds_the_start(entry, data):
        return entry["sent_bytes"]
    log.warning("%s is not the file sent under that name before (it changed, not only by lines appended, or "
                "another file took its name): sending all of it", name)
    return 0


# --- sending -----------------------------------------------------------------------------

@dataclass
class ProduceSummary:
    files: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    rows: int = 0
    malformed_rows: int = 0
    skipped_files: int = 0      # unchanged since the last run: nothing to send
    seconds: float = 0.0
    unknown_files: list[str] = field(default_factory=list)
    refused_files: list[str] = field(default_factory=list)
    synthetic: bool = False

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"rows": self.rows, "messages": self.messages, "malformed_rows": self.malformed_rows,
                "skipped_files": self.skipped_files, "seconds": round(self.seconds, 2),
                "rows_per_second": round(self.rows_per_second), "files": self.files,
                "unknown_files": self.unknown_files, "refused_files": self.refused_files,
                "synthetic": self.synthetic}

    def __str__(self) -> str:
        lines = [f"  {name:<45} {count:>10,} rows" for name, count in self.files.items()]
        skipped = f"; {self.skipped_files} files unchanged since the last run" if self.skipped_files else ""
        return "\n".join([f"Produced {self.rows:,} rows in {self.messages:,} messages in "
                          f"{self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s); {self.malformed_rows} "
                          f"rows whose field count differs from the header (silver quarantines them){skipped}",
                          *lines])


def select_sources(scan: SourceScan, file_filter: str | None) -> list[tuple[Path, FileKind]]:
    """Files whose kind or name contains the filter (comma-separated, case-insensitive)."""
    if not file_filter:
        return scan.files
    wanted = [w.strip().lower() for w in file_filter.split(",") if w.strip()]
    return [(p, k) for p, k in scan.files
            if any(w in k.kind.lower() or w in p.name.lower() for w in wanted)]


def source_name(path: Path, raw_dir: Path) -> str:
    try:
        return str(path.relative_to(raw_dir))
    except ValueError:
        return path.name


class _Sender:
    """Sends messages and remembers the first failure of any send."""

    def __init__(self, settings: Settings, producer):
        self.settings, self.producer = settings, producer
        self.secret = user_key_secret(settings)
        self.errors: list[Exception] = []

    def send(self, kind: FileKind, name: str, lines: FileLines, first: int, last: int) -> None:
        value = lines.data[lines.starts[first]:lines.ends[last]]
        key = message_key(lines.data[lines.starts[first]:lines.id_ends[first]], self.secret)
        headers = [(HEADER_KIND, kind.kind.encode()), (HEADER_FILE, name.encode()),
                   (HEADER_ROW, str(first + 1).encode()), (HEADER_COLUMNS, lines.header.encode())]
        future = self.producer.send(self.settings.events_topic, key=key, value=value, headers=headers)
        future.add_errback(self.errors.append)

    def flush(self) -> None:
        self.producer.flush()
        if self.errors:
            broker = LocalBroker(self.settings)   # the lake's own, when it is the one sent to
            why = broker.why_it_stopped()
            stopped = f"; the local broker stopped: {why} (in {broker.data_dir})" if why else ""
            raise BrokerError(f"{len(self.errors)} Kafka sends failed, first: {self.errors[0]}{stopped}")


def produce(settings: Settings, sources: list[tuple[Path, FileKind]], raw_dir: Path,
            limit: int | None = None, speed: float | None = None, replay: bool = False,
            ledger: SendLedger | None = None, producer=None) -> ProduceSummary:
    """Send the rows of `sources` not sent before (all of them with replay) to the events topic."""
    speed = settings.get("producer.speed") if speed is None else speed
    per_message = int(settings.get("producer.records_per_message"))
    max_bytes = int(settings.get("producer.max_request_size")) // 2   # room for headers and batching
    own_producer = producer is None
    sender = _Sender(settings, producer or make_producer(settings))
    summary, counts = ProduceSummary(), Counter()
    budget = limit if limit is not None else None
    started = time.monotonic()
    pacing = bool(speed and speed > 0)
    paced, acknowledged = [], []   # paced rows, and their files for the ledger once sent
    said_later_month = False
    try:
        for path, kind in sources:
            name = source_name(path, raw_dir)
            try:
                stat = path.stat()
                entry = None if (replay or ledger is None) else ledger.entry(name)
                if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
                    summary.skipped_files += 1   # unchanged since it was sent: not even read
                    continue
                data = path.read_bytes()
            except OSError as exc:   # stop rather than leave a file out unsaid
                raise UnreadableFile.of(path, exc.strerror, raw_dir, "The files before it were sent; the next run "
                                                                     "goes on from there") from exc
            another_file = entry is not None and not holds_the_start(entry, data)   # under this name before
            if not replay and ledger is not None and (entry is None or another_file):
                moved = ledger.moved_entry(name, data)   # sent before under another name?
                if moved is not None and moved["sent_bytes"] == len(data):   # all of it
                    ledger.record(name, stat, len(data), moved["head_sha256"], another_file)
                    summary.skipped_files += 1
                    continue
                entry = moved or entry
            if entry is None and ledger is not None and not replay and not said_later_month:
                later = ledger.later_month_sent(path, name)
                if later is not None:   # the months overlap on one day: the one received later wins there
                    said_later_month = True
                    log.warning("%s is of an earlier month than %s, which was sent before it: on the day the "
                                "months share, the earlier month's hourly and minute rows (received later) replace "
                                "the later month's, daily summaries keep the one with more steps. Load month 1 "
                                "first, or both at once (README)", name, later)
            lines = split_lines(data)
            if lines is None or not len(lines):
                continue
            selected = lines.starts >= unsent_from(entry, data, name)
            if budget is not None:
                selected &= np.cumsum(selected) <= budget
                budget -= int(selected.sum())
            expected_fields = lines.header.count(",")
            summary.malformed_rows += int((selected & (lines.separators != expected_fields)
                                           & (lines.ends > lines.starts)).sum())
            rows = np.flatnonzero(selected & (lines.ends > lines.starts))
            counts[name] += len(rows)
            if not len(rows):
                continue
            sent_to = _line_end(data, int(lines.ends[rows[-1]]))
            if sent_to == int(lines.ends[rows[-1]]) == len(data):
                # a last line without its line ending may be cut off mid-write: sent, but recorded as
                # unsent, so once the file grows the whole line goes again (silver keeps the one received later)
                sent_to = int(lines.starts[rows[-1]])
            done = (name, stat, sent_to, hashlib.sha256(data[:sent_to]).hexdigest(), another_file)
            if pacing:   # released later, in event-time order across files, one row per message
                paced += [(kind, name, lines, int(i)) for i in rows]
                acknowledged.append(done)
            else:
                messages = plan_messages(lines, selected, per_message, max_bytes)
                for first, last in messages:
                    sender.send(kind, name, lines, first, last)
                sender.flush()   # acknowledged (acks=all): only now is the file recorded as sent
                summary.messages += len(messages)
                if ledger is not None:
                    ledger.record(*done)
            if budget is not None and budget <= 0:
                break
        if pacing:
            summary.messages += _send_paced(sender, paced, speed, settings.get("producer.progress_every_s"))
            for done in acknowledged if ledger is not None else ():
                ledger.record(*done)
    finally:
        if own_producer:
            sender.producer.close()
    summary.seconds = time.monotonic() - started
    summary.files = dict(counts)
    summary.rows = sum(counts.values())
    return summary


def _line_end(data: bytes, content_end: int) -> int:
    """The offset just past the line ending (CR LF or LF) after content_end."""
    end = content_end
    if data[end:end + 1] == b"\r":
        end += 1
    if data[end:end + 1] == b"\n":
        end += 1
    return end


def event_time_of(line: bytes, header: str, kind: FileKind) -> datetime:
    """The row's event time (datetime.min when it does not parse: such rows go first)."""
    names = [h.strip() for h in header.split(",")]
    fields = line.decode("utf-8", errors="replace").split(",")
    if kind.time.source in names and len(fields) == len(names):
        value = fields[names.index(kind.time.source)].strip()
        for fmt in (PY_TIMESTAMP_FORMAT, PY_DATE_FORMAT):
            try:
                return datetime.strptime(value, fmt)
            except ValueError:
                continue
    return datetime.min


def _send_paced(sender: _Sender, rows: list, speed: float, progress_every_s: float = 0) -> int:
    """One row per message, in event-time order, at `speed` seconds of event time per wall second:
    a replay that behaves like a live feed (per-row work is fine at this pace)."""
    timed = sorted(((event_time_of(lines.line(i), lines.header, kind), kind, name, lines, i)
                    for kind, name, lines, i in rows), key=lambda r: r[0])
    moments = [r[0] for r in timed if r[0] != datetime.min]
    if moments:   # hours of pacing ahead: say so, then how far it got (progress_every_s)
        log.info("paced replay: %d rows, event time %s to %s at %gx: about %s of wall time", len(timed),
                 moments[0], moments[-1], speed, _duration((moments[-1] - moments[0]).total_seconds() / speed))
    start_wall, start_event = time.monotonic(), None
    every, reported = float(progress_every_s or 0), time.monotonic()
    for sent, (moment, kind, name, lines, i) in enumerate(timed):
        if moment != datetime.min:
            start_event = start_event or moment
            delay = (moment - start_event).total_seconds() / speed - (time.monotonic() - start_wall)
            if delay > 0:
                sender.producer.flush()
                time.sleep(delay)
            if every and time.monotonic() - reported >= every:
                reported = time.monotonic()
                log.info("paced replay: %d of %d rows sent, event time %s, about %s left", sent, len(timed),
                         moment, _duration((moments[-1] - moment).total_seconds() / speed))
        sender.send(kind, name, lines, i, i)
    sender.flush()
    return len(timed)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90 \
        else f"{seconds:.0f} s"


class NoInput(RuntimeError):
    """The raw folder holds no Fitbit CSV and synthetic data was not asked for."""


class UnreadableFile(NoInput):
    """A Fitbit CSV, or a folder, of the raw folder that cannot be read (no permission, gone since it was
    listed)."""

    @classmethod
    def of(cls, path: Path, why: str, raw_dir: Path, what_was_sent: str) -> "UnreadableFile":
        return cls(f"{path} cannot be read ({why}): give this user the right to read it, or move it out of "
                   f"{raw_dir}. {what_was_sent}")


class MixedDataSets(NoInput):
    """The lake holds the synthetic data set and the run has the user's files, or the other way round:
    gold would mix the two without a word."""


def synthetic_allowed(settings: Settings, asked: bool | None = None) -> bool:
    """Whether a raw folder without a Fitbit CSV means the synthetic data set: as asked (a job's
    `synthetic` parameter), else as conf says."""
    return bool(settings.get("producer.synthetic_when_empty") if asked is None else asked)


def require_raw_dir(settings: Settings, synthetic_when_empty: bool | None = None) -> SourceScan:
    """A raw folder that does not exist (or is a file) is a mistyped path, one that holds a zip but no
    CSV the Kaggle download not unzipped, one whose CSVs all have other names renamed files, and one
    whose Fitbit CSVs all link out of it refused input: not "no data" but an error, unless the
    synthetic data set was asked for by name (synthetic_when_empty given). Either way, the data set
    must be the one the lake was built on. Returns the raw folder's scan."""
    raw_dir = settings.raw_dir
    if synthetic_when_empty is None and not raw_dir.is_dir():
        raise NoInput(f"The raw folder {raw_dir} " + ("is a file, not a folder: set FITBIT_RAW_DIR (or the raw_dir "
                                                      "parameter) to the folder that holds the Kaggle CSVs."
                                                      if raw_dir.exists() else
                                                      "does not exist: set FITBIT_RAW_DIR (or the raw_dir parameter) to "
                                                      "the folder of the Kaggle CSVs, or to an empty folder for the "
                                                      "synthetic data set."))
    scan = scan_sources(raw_dir)
    if not scan.files and synthetic_when_empty is None:
        if scan.archives:
            raise NoInput(f"{raw_dir} holds {scan.archives[0].name} but no Fitbit CSV: unzip it there (the Kaggle "
                          f"download is a zip of the month folders), or point FITBIT_RAW_DIR at the folder it unzips to.")
        if scan.outside:
            raise NoInput(f"{raw_dir} holds no Fitbit CSV of its own: {scan.outside[0].name} links to "
                          f"{scan.outside[0].resolve()}, outside it, and links out of the raw folder are not read. "
                          f"Point FITBIT_RAW_DIR at the folder the links lead to, or copy the files in.")
        if scan.unknown:
            raise NoInput(f"{raw_dir} holds {len(scan.unknown)} CSV file(s) but none named as a Fitbit file "
                          f"(e.g. {scan.unknown[0].name}): the Kaggle files are named like dailyActivity_merged.csv; "
                          f"give them their Kaggle names, or point FITBIT_RAW_DIR at the folder of the Kaggle files.")
    if scan.files or synthetic_allowed(settings, synthetic_when_empty):   # else no data: resolve_raw_dir says so
        LakeDataSet(settings).require(synthetic=not scan.files, raw_dir=raw_dir)
    return scan


class LakeDataSet:
    """Which data set the lake was built on, the synthetic one or the user's files (kept beside the
    producer's ledger, so `make clean-lake` forgets it with the tables)."""

    SYNTHETIC, FILES = "synthetic", "files"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path = settings.lake_dir / "_producer" / "data_set.json"

    def held(self) -> dict | None:
        if self.path.is_file():
            return json.loads(self.path.read_text())
        if not (self.path.parent / LEDGER_FILE).is_file():
            return None   # nothing sent into this lake yet
        # sent before the lake kept its data set: the synthetic one is generated under the lake when used
        synthetic = self.settings.synthetic_dir
        if scan_sources(synthetic).files:
            return {"data_set": self.SYNTHETIC, "raw_dir": str(synthetic)}
        return {"data_set": self.FILES, "raw_dir": "an earlier run's raw folder"}

    def require(self, synthetic: bool, raw_dir: Path) -> None:
        held, lake = self.held(), self.settings.lake_dir
        if held is None or (held["data_set"] == self.SYNTHETIC) == synthetic:
            return
        if synthetic:
            raise MixedDataSets(
                f"The lake {lake} holds the Fitbit files of {held['raw_dir']}, and {raw_dir} holds none: this run "
                f"would add the synthetic data set to them. Set FITBIT_RAW_DIR to the folder of the Kaggle files, "
                f"or FITBIT_LAKE_DIR to a new folder for the synthetic data set.")
        raise MixedDataSets(
            f"The lake {lake} holds the synthetic data set of an earlier run: the files in {raw_dir} would be mixed "
            f"with it in gold. Start a fresh lake for them: `make clean-lake` (deletes the tables, keeps the CSVs), "
            f"or set FITBIT_LAKE_DIR to a new folder.")

    def record(self, synthetic: bool, raw_dir: Path) -> None:
        if self.held() is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"data_set": self.SYNTHETIC if synthetic else self.FILES,
                                         "raw_dir": str(raw_dir)}))


def resolve_raw_dir(settings: Settings, synthetic_when_empty: bool | None = None) -> tuple[Path, bool]:
    """FITBIT_RAW_DIR when it holds a Fitbit CSV, else (where allowed) a synthetic data set generated once."""
    if require_raw_dir(settings, synthetic_when_empty).files:
        return settings.raw_dir, False
    if not synthetic_allowed(settings, synthetic_when_empty):
        raise NoInput(f"No Fitbit CSV in {settings.raw_dir}: upload the Kaggle files there, or set the job "
                      f"parameter synthetic=true to replay a synthetic data set instead.")
    from . import synthetic

    target = settings.synthetic_dir
    if not scan_sources(target).files:
        synthetic.generate(target, users=settings.get("synthetic.users"), days=settings.get("synthetic.days"),
                           seed=settings.get("synthetic.seed"),
                           heart_rate_users=settings.get("synthetic.heart_rate_users"),
                           dirty_rows=settings.get("synthetic.dirty_rows"))
    print(f"No Fitbit CSV in {settings.raw_dir}: using the synthetic data set in {target} "
          f"(Kaggle schema; put the Kaggle files there or set FITBIT_RAW_DIR to use real data)")
    return target, True


def produce_from_settings(settings: Settings, file_filter: str | None = None, limit: int | None = None,
                          speed: float | None = None, replay: bool = False,
                          topic_id: str | None = None, synthetic: bool | None = None) -> ProduceSummary:
    """The 01_produce step: resolve the raw files (or synthetic ones) and send what is new."""
    raw_dir, synthetic = resolve_raw_dir(settings, synthetic)
    scan = scan_sources(raw_dir)
    if scan.unreadable:   # before anything is sent: a month left out would go unsaid
        raise UnreadableFile.of(*scan.unreadable[0], raw_dir, "Nothing was sent")
    for unknown in scan.unknown:
        log.warning("Skipping %s: not a known Fitbit file", unknown)
    for link in scan.outside:
        log.warning("Refusing %s: it links to %s, outside the raw folder %s. Copy the file in, or point "
                    "FITBIT_RAW_DIR at the folder that holds it", link, link.resolve(), raw_dir)
    sources = select_sources(scan, file_filter)
    LakeDataSet(settings).record(synthetic, raw_dir)
    ledger = SendLedger(settings.lake_dir / "_producer" / LEDGER_FILE,
                        f"{settings.events_topic}/{topic_id or UNKNOWN_TOPIC_ID}")
    summary = produce(settings, sources, raw_dir, limit=limit, speed=speed, replay=replay, ledger=ledger)
    summary.unknown_files = [str(p) for p in scan.unknown]
    summary.refused_files = [str(p) for p in scan.outside]
    summary.synthetic = synthetic
    return summary
