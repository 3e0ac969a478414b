"""Daily-goal alerts on the topic fitbit_wellness_alerts.

gold/goal_alerts is the record of alerts (gold.py adds a user-day's alert once, the first time its
cumulative hourly steps reach the goal). It is also the outbox: the publisher sends the rows added to
it since the last table version it published (read from the table's change data feed), keyed
`user_key|date_key`, and remembers that version once the broker has acknowledged every send.
"""
from __future__ import annotations

import json
import logging

from pyspark.sql import functions as F

from .config import Settings
from .gold import GOAL_ALERTS
from .kafka_broker import BrokerError, client_options, make_producer
from .tables import Lake

log = logging.getLogger(__name__)


def alert_message(row) -> tuple[bytes, bytes]:
    """(key, value) of an alert's Kafka message: pseudonymous, nothing that maps back to a raw Id."""
    value = {"user_key": row["user_key"], "date_key": row["date_key"], "goal_steps": row["goal_steps"],
             "reached_at": row["reached_at"].isoformat(), "steps_at_alert": row["steps_at_alert"]}
    return f"{row['user_key']}|{row['date_key']}".encode(), json.dumps(value).encode()


def publish_alerts(spark, settings: Settings) -> int:
    """Send the alerts added to gold/goal_alerts since the last publish; returns how many were sent."""
    lake = Lake(spark, settings)
    version = lake.version("gold", GOAL_ALERTS)
    if version is None:
        return 0
    state = settings.checkpoints_dir / "alerts" / "published_version.json"
    published = json.loads(state.read_text())["version"] if state.exists() else -1
    if version <= published:
        return 0
    added = (lake.changes("gold", GOAL_ALERTS, published + 1, version)
             .where(F.col("_change_type") == "insert").orderBy("date_key", "user_key").collect())
    if added:
        producer = make_producer(settings, client_id="fitbit-alerts")
        errors: list[Exception] = []
        try:
            for row in added:
                key, value = alert_message(row)
                producer.send(settings.alerts_topic, key=key, value=value).add_errback(errors.append)
            producer.flush()
        finally:
            producer.close()
        if errors:
            raise BrokerError(f"{len(errors)} alerts could not be sent to {settings.alerts_topic}: {errors[0]}")
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"version": version}))
    log.info("alerts: %d published to %s", len(added), settings.alerts_topic)
    return len(added)


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
