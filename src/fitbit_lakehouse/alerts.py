"""Real-time daily-goal alerts from the hourly steps stream (Spark stateful streaming).

bronze/events (hourlySteps records) -> state per user-day (steps per hour, alerted?) -> the first hour
at which the day's cumulative steps reach the goal -> gold/goal_alerts (insert-only MERGE on
user-day, so a replay or restart never adds a second alert) and the topic fitbit_wellness_alerts
(only alerts new to the table are sent; keyed by user_key|date_key so a consumer can deduplicate the
rare re-send after a crash between the send and the commit).
"""
from __future__ import annotations

import json
import logging
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from .catalogue import BY_KIND
from .config import Settings
from .gold import IDENTITY, identity_rows, user_key_secret
from .quality import Rules
from .silver import parse_events, typed_records
from .tables import Lake

log = logging.getLogger(__name__)

GOAL_ALERTS = "goal_alerts"
ALERT_SCHEMA = "fitbit_id long, alert_date date, goal_steps long, reached_at timestamp_ntz, steps_at_alert long"
STATE_SCHEMA = "hours array<timestamp_ntz>, steps array<long>, alerted boolean"


def hourly_steps_events(bronze: DataFrame, rules: Rules) -> DataFrame:
    """Valid hourlySteps records of a bronze stream, with their day."""
    kind = BY_KIND["hourlySteps"]
    # cheap substring test first: only records that can be hourlySteps events are parsed as JSON
    events = parse_events(bronze.where(F.col("value").contains(kind.kind))).where(F.col("kind") == kind.kind)
    typed = typed_records(events, kind, rules).where(F.size("reasons") == 0)
    return typed.select("fitbit_id", F.to_date("activity_hour").alias("alert_date"), "activity_hour", "step_total")


def first_goal_hour(hours: dict, goal: int):
    """(hour, cumulative steps) of the first hour whose cumulative steps reach the goal, else None."""
    total = 0
    for hour in sorted(hours):
        total += hours[hour]
        if total >= goal:
            return hour, total
    return None


def detect_alerts(goal: int):
    """applyInPandasWithState function: keeps the latest steps per hour of a user-day, and emits the
    day's alert once, the first time its cumulative steps reach the goal."""

    def update(key, batches: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:
        fitbit_id, alert_date = key
        if state.exists:
            hours_list, steps_list, alerted = state.get
            hours = dict(zip(hours_list, steps_list))
        else:
            hours, alerted = {}, False
        for batch in batches:
            for hour, steps in zip(batch["activity_hour"], batch["step_total"]):
                hours[pd.Timestamp(hour).to_pydatetime()] = int(steps)
        out = []
        if not alerted:
            hit = first_goal_hour(hours, goal)
            if hit is not None:
                alerted = True
                out.append({"fitbit_id": fitbit_id, "alert_date": alert_date, "goal_steps": goal,
                            "reached_at": hit[0], "steps_at_alert": hit[1]})
        ordered = sorted(hours)
        state.update((ordered, [hours[h] for h in ordered], alerted))
        yield pd.DataFrame(out, columns=["fitbit_id", "alert_date", "goal_steps", "reached_at", "steps_at_alert"])

    return update


class AlertWriter:
    """foreachBatch: new alerts -> gold/goal_alerts (insert-only MERGE) and the alerts topic."""

    def __init__(self, spark, settings: Settings):
        self.spark, self.settings, self.lake = spark, settings, Lake(spark, settings)
        self.secret = user_key_secret(settings)

    def __call__(self, alerts: DataFrame, batch_id: int) -> None:
        rows = alerts.collect()
        if not rows:
            return
        keys = dict(identity_rows({r["fitbit_id"] for r in rows}, self.secret))
        self._remember_identity(keys)
        keyed = self.spark.createDataFrame(
            [(keys[r["fitbit_id"]], int(r["alert_date"].strftime("%Y%m%d")), r["goal_steps"], r["reached_at"],
              r["steps_at_alert"]) for r in rows],
            "user_key string, date_key int, goal_steps bigint, reached_at timestamp_ntz, steps_at_alert bigint")
        if self.lake.exists("gold", GOAL_ALERTS):
            existing = self.lake.read("gold", GOAL_ALERTS).select("user_key", "date_key")
            new = keyed.join(existing, ["user_key", "date_key"], "left_anti").collect()
        else:
            new = keyed.collect()
        self._publish(new)
        if not self.lake.exists("gold", GOAL_ALERTS):
            self.lake.save(keyed.limit(0), "gold", GOAL_ALERTS)
        with self.lake.idempotent(f"{self.settings.get('alerts.query_name')}:{GOAL_ALERTS}", batch_id):
            (self.lake.delta("gold", GOAL_ALERTS).alias("t")
             .merge(keyed.alias("s"), "t.user_key = s.user_key AND t.date_key = s.date_key")
             .whenNotMatchedInsertAll().execute())
        log.info("alerts batch %s: %d alerts, %d new", batch_id, len(rows), len(new))

    def _remember_identity(self, keys: dict) -> None:
        from .gold import merge_by_key

        identity = self.spark.createDataFrame(list(keys.items()), "fitbit_id bigint, user_key string")
        merge_by_key(self.lake, "silver", IDENTITY, identity, ("fitbit_id",), delete_missing=False)

    def _publish(self, alerts) -> None:
        if not alerts:
            return
        from .produce import make_producer

        producer = make_producer(self.settings)
        try:
            for a in alerts:
                value = {"user_key": a["user_key"], "date_key": a["date_key"], "goal_steps": a["goal_steps"],
                         "reached_at": a["reached_at"].isoformat(), "steps_at_alert": a["steps_at_alert"]}
                producer.send(self.settings.alerts_topic, key=f"{a['user_key']}|{a['date_key']}".encode(),
                              value=json.dumps(value).encode())
            producer.flush()
        finally:
            producer.close()


def start_alerts(spark, settings: Settings, trigger: str | None = None):
    from .bronze import BRONZE_TABLE, trigger_of

    lake = Lake(spark, settings)
    goal = int(settings.get("kpi.goal_alert_steps"))
    hourly = hourly_steps_events(lake.read_stream("bronze", BRONZE_TABLE), Rules.from_settings(settings))
    alerts = hourly.groupBy("fitbit_id", "alert_date").applyInPandasWithState(
        detect_alerts(goal), ALERT_SCHEMA, STATE_SCHEMA, "append", GroupStateTimeout.NoTimeout)
    return (alerts.writeStream.queryName(settings.get("alerts.query_name"))
            .foreachBatch(AlertWriter(spark, settings))
            .option("checkpointLocation", lake.checkpoint("gold", GOAL_ALERTS))
            .trigger(**trigger_of(settings, "alerts", trigger))
            .start())


def run_alerts(spark, settings: Settings, trigger: str | None = None) -> int:
    query = start_alerts(spark, settings, trigger)
    query.awaitTermination()
    lake = Lake(spark, settings)
    return lake.count("gold", GOAL_ALERTS)


def consume_alerts(settings: Settings, from_beginning: bool = True, idle_timeout_s: float | None = None) -> int:
    """`make alerts`: print alerts as they arrive (Ctrl-C stops)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
                             client_id="fitbit-alerts-console")
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
