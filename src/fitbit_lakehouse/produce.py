"""CSV rows -> JSON events -> the Kafka topic.

Every data row becomes one event: {event_id, event_type, source_file, row_number, event_time,
payload{header: value}}. A line that does not split into the header's fields is still sent, with
`raw_line` instead of a payload, so that silver quarantines it: nothing is dropped at the source.
Consecutive rows of one file and one user are batched into one Kafka message (JSON lines), keyed
by the user Id; bronze splits them back into records.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

from .catalogue import (PY_DATE_FORMAT, PY_TIMESTAMP_FORMAT, FileKind, SourceScan, scan_sources)
from .config import Settings
from .kafka_broker import BrokerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceRecord:
    kind: FileKind
    source_file: str
    row_number: int        # 1-based data row (the header is row 0)
    line: str
    fields: list[str] | None   # None when the line does not split into the header's fields
    header: tuple[str, ...]

    @property
    def user_key(self) -> str:
        first = (self.fields[0] if self.fields else self.line.split(",", 1)[0]).strip()
        return first or "unknown"

    @property
    def event_time(self) -> str | None:
        if self.fields is None:
            return None
        time_source = self.kind.time.source
        return self.fields[self.header.index(time_source)] if time_source in self.header else None

    def event(self) -> dict:
        """The JSON event of this row; its id depends only on the kind and the row's content."""
        event = {
            "event_id": event_id(self.kind.kind, self.line),
            "event_type": self.kind.kind,
            "source_file": self.source_file,
            "row_number": self.row_number,
            "event_time": self.event_time,
        }
        if self.fields is None:
            event["raw_line"] = self.line
        else:
            event["payload"] = dict(zip(self.header, self.fields))
        return event


def event_id(kind: str, line: str) -> str:
    """Deterministic: the same source row (e.g. replayed, or in two overlapping months) gets one id."""
    return hashlib.sha256(f"{kind}\x1f{line}".encode()).hexdigest()[:32]


def read_records(path: Path, kind: FileKind, source_name: str | None = None) -> Iterator[SourceRecord]:
    """Rows of one CSV; a header-only or empty file yields nothing."""
    source_name = source_name or path.name
    with open(path, "r", encoding="utf-8", errors="replace", newline="") as handle:
        header_line = handle.readline().rstrip("\r\n")
        if not header_line:
            return
        header = tuple(h.strip() for h in next(csv.reader([header_line])))
        if list(header) != kind.header:
            log.warning("%s: header differs from the catalogue's %s file; rows are sent as read",
                        source_name, kind.kind)
        for row_number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = next(csv.reader([line]), [])
            yield SourceRecord(kind, source_name, row_number, line,
                               fields if len(fields) == len(header) else None, header)


def _parse_event_time(record: SourceRecord) -> datetime:
    value = record.event_time
    for fmt in (PY_TIMESTAMP_FORMAT, PY_DATE_FORMAT):
        try:
            return datetime.strptime(value or "", fmt)
        except ValueError:
            continue
    return datetime.min  # unparseable rows go first; silver quarantines them


@dataclass
class ProduceSummary:
    files: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    rows: int = 0
    malformed_rows: int = 0
    seconds: float = 0.0
    unknown_files: list[str] = field(default_factory=list)
    synthetic: bool = False

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"rows": self.rows, "messages": self.messages, "malformed_rows": self.malformed_rows,
                "seconds": round(self.seconds, 2), "rows_per_second": round(self.rows_per_second),
                "files": self.files, "unknown_files": self.unknown_files, "synthetic": self.synthetic}

    def __str__(self) -> str:
        lines = [f"  {name:<45} {count:>10,} rows" for name, count in self.files.items()]
        return "\n".join([f"Produced {self.rows:,} rows in {self.messages:,} messages in "
                          f"{self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s); "
                          f"{self.malformed_rows} malformed rows sent raw for quarantine", *lines])


def make_producer(settings: Settings):
    """An idempotent kafka-python producer (acks=all); an unreachable broker fails fast and clearly."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    timeout_ms = int(settings.get("producer.connect_timeout_s") * 1000)
    try:
        return KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id="fitbit-producer",
            acks="all",
            enable_idempotence=True,
            linger_ms=settings.get("producer.linger_ms"),
            batch_size=settings.get("producer.batch_size_bytes"),
            max_request_size=settings.get("producer.max_request_size"),
            compression_type=settings.get("producer.compression"),
            bootstrap_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise BrokerError(f"No Kafka broker answers at {settings.bootstrap_servers} ({type(exc).__name__}): "
                          f"start one (`make kafka-up`) or set KAFKA_BOOTSTRAP_SERVERS.") from exc


def _messages(records: Iterable[SourceRecord], per_message: int) -> Iterator[tuple[str, list[SourceRecord]]]:
    """Consecutive records of one file and one user, up to per_message at a time."""
    batch: list[SourceRecord] = []
    for record in records:
        if batch and (len(batch) >= per_message or record.user_key != batch[0].user_key
                      or record.source_file != batch[0].source_file):
            yield batch[0].user_key, batch
            batch = []
        batch.append(record)
    if batch:
        yield batch[0].user_key, batch


def _paced(records: Iterable[SourceRecord], speed: float) -> Iterator[SourceRecord]:
    """Records in event-time order, released at `speed` seconds of event time per wall second."""
    ordered = sorted(records, key=_parse_event_time)
    start_wall, start_event = time.monotonic(), None
    for record in ordered:
        moment = _parse_event_time(record)
        if moment != datetime.min:
            start_event = start_event or moment
            due = (moment - start_event).total_seconds() / speed
            delay = due - (time.monotonic() - start_wall)
            if delay > 0:
                time.sleep(delay)
        yield record


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


def produce(settings: Settings, sources: list[tuple[Path, FileKind]], raw_dir: Path,
            limit: int | None = None, speed: float | None = None, progress: bool = True,
            producer=None) -> ProduceSummary:
    """Send the rows of `sources` to the events topic; returns what was sent."""
    from tqdm.auto import tqdm

    speed = settings.get("producer.speed") if speed is None else speed
    per_message = int(settings.get("producer.records_per_message"))
    own_producer = producer is None
    producer = producer or make_producer(settings)
    summary = ProduceSummary()
    counts: Counter = Counter()
    errors: list[Exception] = []

    def records() -> Iterator[SourceRecord]:
        sent = 0
        for path, kind in sources:
            for record in read_records(path, kind, source_name(path, raw_dir)):
                if limit is not None and sent >= limit:
                    return
                sent += 1
                yield record

    stream: Iterable[SourceRecord] = records()
    if speed and speed > 0:
        stream = _paced(stream, speed)
        per_message = 1   # paced replay behaves like a live feed: one event per message
    total_bytes = sum(p.stat().st_size for p, _ in sources)
    bar = tqdm(total=total_bytes if limit is None else limit, unit="B" if limit is None else "rows",
               unit_scale=True, desc="produce", disable=not progress, mininterval=1.0)
    started = time.monotonic()
    try:
        for key, batch in _messages(stream, per_message):
            value = "\n".join(json.dumps(r.event(), separators=(",", ":")) for r in batch)
            future = producer.send(settings.events_topic, key=key.encode(), value=value.encode())
            future.add_errback(errors.append)
            summary.messages += 1
            for record in batch:
                counts[record.source_file] += 1
                summary.malformed_rows += record.fields is None
            summary.rows += len(batch)
            bar.update(len(batch) if limit is not None else sum(len(r.line) + 2 for r in batch))
        producer.flush()
    finally:
        bar.close()
        if own_producer:
            producer.close()
    if errors:
        raise BrokerError(f"{len(errors)} Kafka sends failed, first: {errors[0]}")
    summary.seconds = time.monotonic() - started
    summary.files = dict(counts)
    return summary


def resolve_raw_dir(settings: Settings) -> tuple[Path, bool]:
    """FITBIT_RAW_DIR when it holds a Fitbit CSV, else a synthetic data set generated once."""
    if scan_sources(settings.raw_dir).files:
        return settings.raw_dir, False
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
                          speed: float | None = None, progress: bool = True) -> ProduceSummary:
    """The 01_produce step: resolve the raw files (or synthetic ones) and send them."""
    raw_dir, synthetic = resolve_raw_dir(settings)
    scan = scan_sources(raw_dir)
    for unknown in scan.unknown:
        log.warning("Skipping %s: not a known Fitbit file", unknown)
    sources = select_sources(scan, file_filter)
    summary = produce(settings, sources, raw_dir, limit=limit, speed=speed, progress=progress)
    summary.unknown_files = [str(p) for p in scan.unknown]
    summary.synthetic = synthetic
    return summary
