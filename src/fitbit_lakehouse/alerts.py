"""Daily-goal alerts on the topic fitbit_wellness_alerts, exactly once for a read_committed consumer.

gold/goal_alerts is the record of alerts (gold.py adds a user-day's alert once, the first time its
cumulative hourly steps reach the goal). It is also the outbox: the publisher sends the rows added to
it since the last table version it published (read from the table's change data feed), keyed
`user_key|date_key`, in one Kafka transaction whose messages carry that table version in a header.
The topic itself therefore says what was published: after a crash before the commit the broker aborts
the transaction (a read_committed consumer never sees it) and the next run sends it again; after a
crash past the commit the header tells the next run that it was sent. A local note of the version
only saves reading the topic on the usual path. When the change feed since that version is gone (a
VACUUM after a compaction, or the log's retention, outside the project), the alerts whose key the
topic does not hold are sent instead.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime

from pyspark.sql import functions as F

from . import faults
from .config import Settings
from .gold import GOAL_ALERTS, goal_hour
from .kafka_broker import BrokerError, client_options, make_producer
from .tables import Lake, change_feed_gone

log = logging.getLogger(__name__)

HEADER_GOLD_VERSION = "gold_version"   # the goal_alerts version whose added rows a message belongs to


def alert_key(row) -> bytes:
    """The Kafka key of an alert: its user-day, one alert each."""
    return f"{row['user_key']}|{row['date_key']}".encode()


def alert_message(row) -> tuple[bytes, bytes]:
    """(key, value) of an alert's Kafka message: pseudonymous, nothing that maps back to a raw Id."""
    value = {"user_key": row["user_key"], "date_key": row["date_key"], "goal_steps": row["goal_steps"],
             "reached_at": row["reached_at"].isoformat(), "steps_at_alert": row["steps_at_alert"]}
    return alert_key(row), json.dumps(value).encode()


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
    producer = _fenced_producer(settings)
    try:
        published = max(noted, last_published_version(settings))
        added = [] if version <= published else _added_since(lake, settings, published, version)
        if added:
            _send_in_one_transaction(producer, settings, added, version)
    finally:
        producer.close()
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(json.dumps({"version": version}))
    log.info("alerts: %d published to %s", len(added), settings.alerts_topic)
    return len(added)


def _added_since(lake: Lake, settings: Settings, published: int, version: int) -> list:
    """The rows added to goal_alerts after version `published` up to `version`, from its change feed;
    when that is gone, the table's rows whose key the topic does not hold."""
    try:
        return (lake.changes("gold", GOAL_ALERTS, published + 1, version)
                .where(F.col("_change_type") == "insert").orderBy("date_key", "user_key").collect())
    except Exception as exc:   # noqa: BLE001 - only a change feed that is gone is handled here
        reason = change_feed_gone(exc)
        if reason is None:
            raise
    sent, whole_topic = published_keys(settings)
    rows = lake.read("gold", GOAL_ALERTS, version=version).orderBy("date_key", "user_key").collect()
    unsent = [row for row in rows if alert_key(row) not in sent]
    log.warning("alerts: goal_alerts' change feed since version %d is gone (%s); sending the %d of its %d alerts "
                "whose key is not on %s%s", published + 1, reason, len(unsent), len(rows), settings.alerts_topic,
                "" if whole_topic else " (its retention has deleted older alerts: those of them still in "
                "goal_alerts are sent again)")
    return unsent


def _fenced_producer(settings: Settings):
    """The publisher's transactional producer, initialised before the topic is read: an earlier run's
    transaction of this id that is still completing its commit is then complete (its alerts readable,
    so they are not sent twice), and one left open is aborted."""
    from kafka.errors import KafkaError

    transactional_id = settings.get("kafka.alerts_transactional_id") or f"fitbit-alerts-{settings.alerts_topic}"
    producer = make_producer(settings, client_id="fitbit-alerts", transactional_id=transactional_id)
    try:
        producer.init_transactions()
    except KafkaError as exc:
        producer.close()
        raise BrokerError(f"the alerts could not be published to {settings.alerts_topic} ({type(exc).__name__}: "
                          f"{exc}); the next run sends them") from exc
    return producer


def _send_in_one_transaction(producer, settings: Settings, rows: list, version: int) -> None:
    from kafka.errors import KafkaError

    headers = [(HEADER_GOLD_VERSION, str(version).encode())]
    try:
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


def _outbox_consumer(settings: Settings):
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed",
                         enable_auto_commit=False, client_id="fitbit-alerts-outbox", **client_options(settings))


def _partitions(consumer, topic: str):
    from kafka import TopicPartition

    for partition in sorted(consumer.partitions_for_topic(topic) or set()):
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        yield tp, consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]


def last_published_version(settings: Settings, timeout_s: float = 20.0) -> int:
    """The highest goal_alerts version in a committed message of the alerts topic (-1: none). Reads
    only the end of each partition: the last committed transaction is the newest."""
    consumer = _outbox_consumer(settings)
    try:
        best = -1
        for tp, begin, end in _partitions(consumer, settings.alerts_topic):
            back = 64
            while end > begin:
                start = max(begin, end - back)
                found = [int(header) for record in _committed(consumer, tp, start, end, time.monotonic() + timeout_s)
                         if (header := dict(record.headers or []).get(HEADER_GOLD_VERSION)) is not None]
                if found or start == begin:
                    best = max([best, *found])
                    break
                back *= 8   # only aborted records or markers at the end: look further back
        return best
    finally:
        consumer.close()


def published_keys(settings: Settings, timeout_s: float = 120.0) -> tuple[set[bytes], bool]:
    """The keys of every committed alert on the topic, and whether the topic still holds all it was
    sent (its retention has deleted nothing)."""
    consumer = _outbox_consumer(settings)
    try:
        keys, whole = set(), True
        deadline = time.monotonic() + timeout_s
        for tp, begin, end in _partitions(consumer, settings.alerts_topic):
            whole = whole and begin == 0
            keys.update(record.key for record in _committed(consumer, tp, begin, end, deadline))
            if consumer.position(tp) < end:
                raise BrokerError(f"the alerts on {settings.alerts_topic} could not be read in {timeout_s:.0f} s; "
                                  "nothing was sent: the next run tries again")
        return keys, whole
    finally:
        consumer.close()


def _committed(consumer, tp, start: int, end: int, deadline: float):
    """The committed records of a partition from offset start to end (read_committed skips the rest)."""
    consumer.seek(tp, start)
    while consumer.position(tp) < end and time.monotonic() < deadline:
        for record in consumer.poll(timeout_ms=500).get(tp, []):
            if record.offset < end:
                yield record


def alert_line(alert: dict) -> str:
    """An alert as make alerts prints it."""
    return (f"GOAL {alert['date_key']} user {alert['user_key'][:12]}: {alert['steps_at_alert']:,} steps in the "
            f"hour {goal_hour(datetime.fromisoformat(alert['reached_at']))} (goal {alert['goal_steps']:,})")


PROBE_EVERY_S = 5   # make alerts, while no alert comes: how often it asks the broker whether it is there


def consume_alerts(settings: Settings, from_beginning: bool = True) -> int:
    """`make alerts`: print alerts as they arrive (Ctrl-C stops). A broker that has not answered a
    metadata request (with the client's own security) for kafka.probe_timeout_s ends it in one line:
    kafka-python logs its reconnects for ever, and attaches to whatever broker starts next on the
    address (a new lake's, whose alerts it would print again; one started again sooner than that
    is taken for the same broker)."""
    from kafka import KafkaConsumer

    from .kafka_broker import kafka_probe

    security = client_options(settings)   # the secrets are read once, not at every probe
    consumer = KafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             isolation_level="read_committed", client_id="fitbit-alerts-console", **security)
    print(f"Waiting for alerts on {settings.alerts_topic} (Ctrl-C stops) ...", flush=True)
    grace = float(settings.get("kafka.probe_timeout_s"))
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL + 1)   # its reconnect errors: the probe below says why in one line
    seen, unanswered_since, next_probe = 0, None, time.monotonic() + PROBE_EVERY_S
    try:
        while True:
            batches = consumer.poll(timeout_ms=1000)
            for message in (m for batch in batches.values() for m in batch):
                print(alert_line(json.loads(message.value)), flush=True)
                seen += 1
            if batches or time.monotonic() < next_probe:
                continue
            why = kafka_probe(settings.bootstrap_servers, min(grace, PROBE_EVERY_S), **security)
            next_probe = time.monotonic() + PROBE_EVERY_S
            unanswered_since = None if why is None else unanswered_since or time.monotonic()
            if unanswered_since is not None and time.monotonic() - unanswered_since >= grace:
                raise BrokerError(f"The broker at {settings.bootstrap_servers} has not answered for {grace:g} s "
                                  f"({type(why).__name__}): make alerts stops. Start it again (make kafka-up, make "
                                  f"run or make stream), then make alerts.")
    except KeyboardInterrupt:
        pass
    finally:
        kafka_log.setLevel(level)
        consumer.close()
    return seen
