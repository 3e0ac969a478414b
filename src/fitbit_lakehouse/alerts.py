"""Daily-goal alerts on the topic fitbit_wellness_alerts, exactly once for a read_committed consumer.

gold/goal_alerts is the record of alerts (gold.py adds a user-day's alert once, the first time its
cumulative hourly steps reach the goal). It is also the outbox: the publisher sends the rows added to
it since the last table version it published (read from the table's change data feed), keyed
`user_key|date_key`, in one Kafka transaction whose messages carry that table version in a header.
The topic itself therefore says what was published: after a crash before the commit the broker aborts
the transaction (a read_committed consumer never sees it) and the next run sends it again; after a
crash past the commit the header tells the next run that it was sent. A local note of the version
only saves reading the topic on the usual path.
"""
from __future__ import annotations

import json
import logging
import time

from pyspark.sql import functions as F

from . import faults
from .config import Settings
from .gold import GOAL_ALERTS
from .kafka_broker import BrokerError, client_options, make_producer
from .tables import Lake

log = logging.getLogger(__name__)

HEADER_GOLD_VERSION = "gold_version"   # the goal_alerts version whose added rows a message belongs to


def alert_message(row) -> tuple[bytes, bytes]:
    """(key, value) of an alert's Kafka message: pseudonymous, nothing that maps back to a raw Id."""
    value = {"user_key": row["user_key"], "date_key": row["date_key"], "goal_steps": row["goal_steps"],
             "reached_at": row["reached_at"].isoformat(), "steps_at_alert": row["steps_at_alert"]}
    return f"{row['user_key']}|{row['date_key']}".encode(), json.dumps(value).encode()


def published_version_file(settings: Settings):
    """Where the publisher notes the goal_alerts version it has published up to."""
    return settings.checkpoints_dir / "alerts" / "published_version.json"


def publish_alerts(spark, settings: Settings) -> int:
    """Send the alerts added to gold/goal_alerts since the last publish; returns how many were sent."""
    lake = Lake(spark, settings)
    version = lake.version("gold", GOAL_ALERTS)
    if version is None:
        return 0
    note = published_version_file(settings)
    noted = json.loads(note.read_text())["version"] if note.exists() else -1
    if version <= noted:
        return 0
    published = max(noted, last_published_version(settings))
    added = [] if version <= published else (
        lake.changes("gold", GOAL_ALERTS, published + 1, version)
        .where(F.col("_change_type") == "insert").orderBy("date_key", "user_key").collect())
    if added:
        _send_in_one_transaction(settings, added, version)
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(json.dumps({"version": version}))
    log.info("alerts: %d published to %s", len(added), settings.alerts_topic)
    return len(added)


def _send_in_one_transaction(settings: Settings, rows: list, version: int) -> None:
    from kafka.errors import KafkaError

    transactional_id = settings.get("kafka.alerts_transactional_id") or f"fitbit-alerts-{settings.alerts_topic}"
    producer = make_producer(settings, client_id="fitbit-alerts", transactional_id=transactional_id)
    headers = [(HEADER_GOLD_VERSION, str(version).encode())]
    try:
        producer.init_transactions()   # fences an earlier run of this id and aborts its open transaction
        producer.begin_transaction()
        for row in rows:
            key, value = alert_message(row)
            producer.send(settings.alerts_topic, key=key, value=value, headers=headers)
        producer.flush()
        faults.reached("alerts:sent")   # on the broker, not yet committed
        producer.commit_transaction()   # flushes; raises if any send failed
        faults.reached("alerts:committed")
    except KafkaError as exc:
        try:
            producer.abort_transaction()
        except KafkaError:
            pass
        raise BrokerError(f"{len(rows)} alerts could not be sent to {settings.alerts_topic} "
                          f"({type(exc).__name__}: {exc}); the next run sends them again") from exc
    finally:
        producer.close()


def last_published_version(settings: Settings, timeout_s: float = 20.0) -> int:
    """The highest goal_alerts version in a committed message of the alerts topic (-1: none). Reads
    only the end of each partition: the last committed transaction is the newest."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed",
                             enable_auto_commit=False, client_id="fitbit-alerts-outbox",
                             **client_options(settings))
    try:
        partitions = consumer.partitions_for_topic(settings.alerts_topic) or set()
        best = -1
        for partition in sorted(partitions):
            tp = TopicPartition(settings.alerts_topic, partition)
            consumer.assign([tp])
            begin, end = consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
            back = 64
            while end > begin:
                start = max(begin, end - back)
                found = _versions_between(consumer, tp, start, end, time.monotonic() + timeout_s)
                if found or start == begin:
                    best = max([best, *found])
                    break
                back *= 8   # only aborted records or markers at the end: look further back
        return best
    finally:
        consumer.close()


def _versions_between(consumer, tp, start: int, end: int, deadline: float) -> list[int]:
    consumer.seek(tp, start)
    versions = []
    while consumer.position(tp) < end and time.monotonic() < deadline:
        for record in consumer.poll(timeout_ms=500).get(tp, []):
            header = dict(record.headers or []).get(HEADER_GOLD_VERSION)
            if header is not None and record.offset < end:
                versions.append(int(header))
    return versions


def consume_alerts(settings: Settings, from_beginning: bool = True, idle_timeout_s: float | None = None) -> int:
    """`make alerts`: print alerts as they arrive (Ctrl-C stops)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             isolation_level="read_committed",
                             consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
                             client_id="fitbit-alerts-console", **client_options(settings))
    seen = 0
    try:
        for message in consumer:
            alert = json.loads(message.value)
            seen += 1
            print(f"GOAL {alert['date_key']} user {alert['user_key'][:12]}: {alert['steps_at_alert']:,} steps "
                  f"by {alert['reached_at'][11:16]} (goal {alert['goal_steps']:,})", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return seen
