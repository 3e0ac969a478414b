"""silver -> gold: the star schema, the wellness KPIs and the daily-goal alerts of CONTRACT.md.

Builders are pure DataFrame functions; every number comes from conf/ (kpi.*).

The writer is incremental: gold follows the change data feed of the silver tables it reads. A run
finds the user-days whose silver rows changed since the silver versions it last read, rebuilds exactly
those user-days of every fact, KPI and alert from silver, and MERGEs them in: changed rows are updated,
rows that no longer follow from silver are deleted, the rest of gold is not read or rewritten. The users
and dates of those days then update dim_user and dim_date. A backfill is the same over the user-days
of a date range.
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial

from pyspark import StorageLevel, inheritable_thread_target
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .config import Settings, setting_differences
from .privacy import user_key_column, user_key_secret
from .silver import IDENTITY
from .tables import KeyRange, Lake, WriteMetrics, change_feed_gone, sql_literal, union_all

log = logging.getLogger(__name__)

GOAL_ALERTS = "goal_alerts"


@dataclass(frozen=True)
class Kpi:
    """The KPI settings (conf/ kpi.*): the only place they are read."""
    valid_day_min_steps: int
    steps_goal: float
    mvpa_goal_minutes: float
    steps_weight: float
    mvpa_weight: float
    asleep_goal_minutes: float
    duration_weight: float
    efficiency_weight: float
    activity_weight: float
    sleep_weight: float
    scale: float
    decimals: int
    segments: tuple[tuple[str, float], ...]
    unknown_segment: str
    goal_alert_steps: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Kpi":
        k = settings.get("kpi")
        return cls(
            valid_day_min_steps=k["valid_day_min_steps"],
            steps_goal=k["activity"]["steps_goal"], mvpa_goal_minutes=k["activity"]["mvpa_goal_minutes"],
            steps_weight=k["activity"]["steps_weight"], mvpa_weight=k["activity"]["mvpa_weight"],
            asleep_goal_minutes=k["sleep"]["asleep_goal_minutes"],
            duration_weight=k["sleep"]["duration_weight"], efficiency_weight=k["sleep"]["efficiency_weight"],
            activity_weight=k["wellness"]["activity_weight"], sleep_weight=k["wellness"]["sleep_weight"],
            scale=k["wellness"]["scale"], decimals=k["wellness"]["decimals"],
            segments=tuple((s["name"], s["min_active_minutes"]) for s in k["segments"]),
            unknown_segment=k["unknown_segment"], goal_alert_steps=k["goal_alert_steps"])


def _keyed(df: DataFrame, identity: DataFrame) -> DataFrame:
    """Swap fitbit_id for user_key (no raw Id in gold)."""
    return df.join(F.broadcast(identity), "fitbit_id", "inner").select(
        "user_key", *[c for c in df.columns if c != "fitbit_id"])


def date_key(col) -> F.Column:
    return F.date_format(col, "yyyyMMdd").cast("int")


def _date_of_key(col) -> F.Column:
    return F.to_date(F.col(col).cast("string"), "yyyyMMdd")


# --- facts -------------------------------------------------------------------------------

def fact_daily_activity(daily_activity: DataFrame, identity: DataFrame, kpi: Kpi) -> DataFrame:
    d = daily_activity
    active = F.col("very_active_minutes") + F.col("fairly_active_minutes") + F.col("lightly_active_minutes")
    return _keyed(d.select(
        "fitbit_id", date_key("activity_date").alias("date_key"), "total_steps",
        F.col("total_distance").alias("total_distance_km"), "calories",
        "very_active_minutes", "fairly_active_minutes", "lightly_active_minutes", "sedentary_minutes",
        active.alias("active_minutes"),
        (F.col("very_active_minutes") + F.col("fairly_active_minutes")).alias("mvpa_minutes"),
        (active + F.col("sedentary_minutes")).alias("tracked_minutes"),
        (F.col("total_steps") >= kpi.valid_day_min_steps).alias("is_valid_day")), identity)


def sleep_from_minutes(minute_sleep: DataFrame) -> DataFrame:
    """Per user-day from minuteSleep: the sleep logs ending that day (value 1 = asleep)."""
    logs = minute_sleep.groupBy("fitbit_id", "log_id").agg(
        F.to_date(F.max("sleep_minute")).alias("sleep_date"),
        F.sum(F.when(F.col("value") == 1, 1).otherwise(0)).alias("asleep"),
        F.count("*").alias("in_bed"))
    return logs.groupBy("fitbit_id", "sleep_date").agg(
        F.count("*").cast("bigint").alias("sleep_records"),
        F.sum("asleep").cast("bigint").alias("minutes_asleep"),
        F.sum("in_bed").cast("bigint").alias("time_in_bed"))


def sleep_days(sleep_day: DataFrame) -> DataFrame:
    """One sleepDay summary per user-day: when a day has several (at different times), the one
    received last."""
    newest = F.struct("_kafka_timestamp", "_kafka_partition", "_kafka_offset", "_record_index")
    values = F.struct("total_sleep_records", "total_minutes_asleep", "total_time_in_bed")
    return (sleep_day.withColumn("sleep_date", F.to_date("sleep_day"))
            .groupBy("fitbit_id", "sleep_date").agg(F.max_by(values, newest).alias("_s"))
            .select("fitbit_id", "sleep_date", F.col("_s.total_sleep_records").alias("sleep_records"),
                    F.col("_s.total_minutes_asleep").alias("minutes_asleep"),
                    F.col("_s.total_time_in_bed").alias("time_in_bed"), F.lit("sleepDay").alias("source")))


def fact_sleep(sleep_day: DataFrame | None, minute_sleep: DataFrame | None, identity: DataFrame) -> DataFrame | None:
    """sleepDay where present, else derived from minuteSleep; `source` says which."""
    parts = []
    if sleep_day is not None:
        parts.append(sleep_days(sleep_day))
    if minute_sleep is not None:
        derived = sleep_from_minutes(minute_sleep).withColumn("source", F.lit("minuteSleep"))
        if parts:
            derived = derived.join(parts[0].select("fitbit_id", "sleep_date"),
                                   ["fitbit_id", "sleep_date"], "left_anti")
        parts.append(derived)
    if not parts:
        return None
    return _keyed(union_all(parts).select(
        "fitbit_id", date_key("sleep_date").alias("date_key"), "sleep_records", "minutes_asleep",
        "time_in_bed",
        F.when(F.col("time_in_bed") > 0, F.col("minutes_asleep") / F.col("time_in_bed")).alias("sleep_efficiency"),
        "source"), identity)


HOURLY_PARTS = {
    "hourly_steps": lambda d: d.select("fitbit_id", "activity_hour", F.col("step_total").alias("steps")),
    "hourly_calories": lambda d: d.select("fitbit_id", "activity_hour", "calories"),
    "hourly_intensities": lambda d: d.select("fitbit_id", "activity_hour", "total_intensity", "average_intensity"),
}


def fact_hourly_activity(hourly: dict[str, DataFrame], identity: DataFrame) -> DataFrame | None:
    """The three hourly kinds joined on user-hour (any may be missing)."""
    key = ["fitbit_id", "activity_hour"]
    joined = None
    for name, pick in HOURLY_PARTS.items():
        if hourly.get(name) is None:
            continue
        part = pick(hourly[name])
        joined = part if joined is None else joined.join(part, key, "full_outer")
    if joined is None:
        return None
    for col, type_ in (("steps", "bigint"), ("calories", "bigint"), ("total_intensity", "bigint"),
                       ("average_intensity", "double")):
        if col not in joined.columns:
            joined = joined.withColumn(col, F.lit(None).cast(type_))
    return _keyed(joined.select(
        "fitbit_id", date_key("activity_hour").alias("date_key"), F.hour("activity_hour").alias("hour"),
        "activity_hour", "steps", "calories", "total_intensity", "average_intensity"), identity)


def fact_heart_rate_hourly(heart_rate: DataFrame, identity: DataFrame) -> DataFrame:
    return _keyed(heart_rate.groupBy(
        "fitbit_id", date_key("time").alias("date_key"), F.hour("time").alias("hour")).agg(
        F.min("bpm").alias("min_bpm"), F.avg("bpm").alias("avg_bpm"), F.max("bpm").alias("max_bpm"),
        F.count("*").alias("readings")), identity)


def fact_weight(weight_log: DataFrame, identity: DataFrame, secret: str) -> DataFrame:
    """Weigh-ins, keyed by an HMAC of the user's Id and the log id (a weigh-in's natural key: users share
    LogIds): the raw LogId is public in the Kaggle files and would lead back to the Fitbit Id."""
    return _keyed(weight_log.select(
        "fitbit_id", date_key("logged_at").alias("date_key"), "logged_at", "weight_kg", "bmi",
        F.col("fat").alias("fat_pct"), F.col("is_manual_report").alias("is_manual"),
        user_key_column(F.concat_ws(":", "fitbit_id", "log_id"), secret).alias("weigh_in_key")), identity)


def goal_alerts(hourly_steps: DataFrame, identity: DataFrame, goal: int) -> DataFrame:
    """Per user-day, the first hour at which that day's cumulative hourly steps reach the goal."""
    from pyspark.sql import Window

    day = Window.partitionBy("fitbit_id", "alert_date").orderBy("activity_hour") \
                .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    cumulative = (hourly_steps.withColumn("alert_date", F.to_date("activity_hour"))
                  .withColumn("cumulative", F.sum("step_total").over(day)))
    first = (cumulative.where(F.col("cumulative") >= goal)
             .groupBy("fitbit_id", "alert_date")
             .agg(F.min_by(F.struct("activity_hour", "cumulative"), F.col("activity_hour")).alias("_a")))
    return _keyed(first.select(
        "fitbit_id", date_key("alert_date").alias("date_key"), F.lit(goal).cast("bigint").alias("goal_steps"),
        F.col("_a.activity_hour").alias("reached_at"), F.col("_a.cumulative").alias("steps_at_alert")), identity)


# --- KPIs and dimensions -------------------------------------------------------------------

def segment_of(active_minutes: F.Column, kpi: Kpi) -> F.Column:
    expr = None
    for name, minimum in kpi.segments:   # highest cut-off first
        expr = F.when(active_minutes >= minimum, name) if expr is None else expr.when(active_minutes >= minimum, name)
    return expr


def kpi_daily_wellness(daily: DataFrame, sleep: DataFrame | None, kpi: Kpi) -> DataFrame:
    """One row per valid activity day; the sleep part is null where the day has no sleep."""
    valid = daily.where("is_valid_day")
    if sleep is not None:
        valid = valid.join(sleep.select("user_key", "date_key", "minutes_asleep", "sleep_efficiency"),
                           ["user_key", "date_key"], "left")
    else:
        valid = valid.withColumn("minutes_asleep", F.lit(None).cast("bigint")) \
                     .withColumn("sleep_efficiency", F.lit(None).cast("double"))
    activity = (kpi.steps_weight * F.least(F.col("total_steps") / kpi.steps_goal, F.lit(1.0))
                + kpi.mvpa_weight * F.least(F.col("mvpa_minutes") / kpi.mvpa_goal_minutes, F.lit(1.0)))
    sleep_score = (kpi.duration_weight * F.least(F.col("minutes_asleep") / kpi.asleep_goal_minutes, F.lit(1.0))
                   + kpi.efficiency_weight * F.col("sleep_efficiency"))
    return valid.select(
        "user_key", "date_key", activity.alias("activity_score"), sleep_score.alias("sleep_score"),
        F.round(kpi.scale * (kpi.activity_weight * activity + kpi.sleep_weight * sleep_score),
                kpi.decimals).alias("wellness_score"),
        "sleep_efficiency", "active_minutes", segment_of(F.col("active_minutes"), kpi).alias("daily_segment"),
        "total_steps", "mvpa_minutes", "minutes_asleep")


def dim_user(daily: DataFrame | None, users: DataFrame, kpi: Kpi) -> DataFrame:
    """One row per user of `users` (user_key), from all of their daily facts in `daily`."""
    if daily is None:
        stats = users.select("user_key", *[F.lit(None).cast(t).alias(c) for c, t in (
            ("avg_active_minutes", "double"), ("avg_daily_steps", "double"), ("valid_days", "bigint"),
            ("first_date", "date"), ("last_date", "date"))])
    else:
        on_valid = lambda c: F.when(F.col("is_valid_day"), c)  # noqa: E731
        day = _date_of_key("date_key")
        stats = daily.groupBy("user_key").agg(
            F.avg(on_valid(F.col("active_minutes"))).alias("avg_active_minutes"),
            F.avg(on_valid(F.col("total_steps"))).alias("avg_daily_steps"),
            F.count(on_valid(F.lit(1))).alias("valid_days"),
            F.min(day).alias("first_date"), F.max(day).alias("last_date"))
    joined = users.select("user_key").join(stats, "user_key", "left")
    segment = F.when(F.coalesce("valid_days", F.lit(0)) == 0, F.lit(kpi.unknown_segment)).otherwise(
        segment_of(F.col("avg_active_minutes"), kpi))
    return joined.select("user_key", segment.alias("engagement_segment"), "avg_active_minutes",
                         "avg_daily_steps", F.coalesce("valid_days", F.lit(0)).alias("valid_days"),
                         "first_date", "last_date")


def dim_date(spark, first: date, last: date) -> DataFrame:
    """Every calendar day from first to last."""
    days = spark.createDataFrame([(first, last)], "lo date, hi date") \
                .select(F.explode(F.sequence("lo", "hi")).alias("date"))
    return days.select(
        date_key("date").alias("date_key"), "date",
        F.date_format("date", "EEEE").alias("day_of_week"),
        F.dayofweek("date").isin(1, 7).alias("is_weekend"),
        F.weekofyear("date").alias("iso_week"), F.month("date").alias("month"), F.year("date").alias("year"))


# keys of the gold tables, and the silver tables whose rows each user-day of them follows from
GOLD_KEYS = {
    "dim_user": ("user_key",),
    "dim_date": ("date_key",),
    "fact_daily_activity": ("user_key", "date_key"),
    "fact_sleep": ("user_key", "date_key"),
    "fact_hourly_activity": ("user_key", "date_key", "hour"),
    "fact_heart_rate_hourly": ("user_key", "date_key", "hour"),
    "fact_weight": ("user_key", "weigh_in_key"),
    "kpi_daily_wellness": ("user_key", "date_key"),
    GOAL_ALERTS: ("user_key", "date_key"),
}


# --- which user-days changed ----------------------------------------------------------------

# silver table -> its time column; a row bears on the user-day of that time
SILVER_INPUTS = {
    "daily_activity": "activity_date", "sleep_day": "sleep_day", "minute_sleep": "sleep_minute",
    "hourly_steps": "activity_hour", "hourly_calories": "activity_hour", "hourly_intensities": "activity_hour",
    "heart_rate": "time", "weight_log": "logged_at",
}
# a sleep log counts for the day it ends (CONTRACT), so a minute of it bears on every day the log touches
SLEEP_LOGS = "minute_sleep"


def user_days(rows: DataFrame, table: str) -> DataFrame:
    """(fitbit_id, day) pairs on which a set of silver rows of `table` lies."""
    return rows.select("fitbit_id", F.to_date(SILVER_INPUTS[table]).alias("day")).distinct()


def changed_user_days(lake: Lake, changed: DataFrame, table: str) -> DataFrame:
    """The user-days that changed rows of `table` bear on. A changed minute of sleep bears on every day
    of its log as stored now: a log that grew past midnight moved from the day it ended on before (whose
    gold row must go) to the next one."""
    if table != SLEEP_LOGS:
        return user_days(changed, table)
    time = SILVER_INPUTS[table]
    low, high = changed.agg(F.min(time), F.max(time)).first()
    if low is None:
        return user_days(changed, table)
    logs = F.broadcast(changed.select("fitbit_id", "log_id").distinct())
    stored = lake.read("silver", table).where(   # a log is under a day long: Delta skips the other files
        f"{time} >= {sql_literal(low - timedelta(days=1))} AND {time} <= {sql_literal(high + timedelta(days=1))}")
    return user_days(stored.join(logs, ["fitbit_id", "log_id"], "left_semi"), table)


@dataclass(frozen=True)
class Scope:
    """The user-days a gold run rebuilds."""
    days: list[tuple[int, date]]

    @property
    def ids(self) -> list[int]:
        return sorted({i for i, _ in self.days})

    @property
    def first(self) -> date:
        return min(d for _, d in self.days)

    @property
    def last(self) -> date:
        return max(d for _, d in self.days)

    def frame(self, spark) -> DataFrame:
        return spark.createDataFrame(self.days, "fitbit_id bigint, day date")

    @classmethod
    def of(cls, silver: dict[str, DataFrame]) -> "Scope | None":
        """Every user-day that these silver rows bear on (None: none)."""
        frames = [user_days(rows, table) for table, rows in silver.items()]
        days = [(r["fitbit_id"], r["day"]) for r in union_all(frames).distinct().collect()] if frames else []
        return cls(days) if days else None

    def silver(self, lake: Lake, table: str) -> DataFrame:
        """The rows of a silver table on the scope's user-days (minute sleep: whole sleep logs, also
        those that began the day before the first or end the day after the last)."""
        time = SILVER_INPUTS[table]
        margin = timedelta(days=1) if table == SLEEP_LOGS else timedelta(0)
        ids = ", ".join(str(i) for i in self.ids)
        low = datetime.combine(self.first - margin, datetime.min.time())
        high = datetime.combine(self.last + timedelta(days=1) + margin, datetime.min.time())
        rows = lake.read("silver", table).where(   # Delta skips files outside the ids and times
            f"fitbit_id IN ({ids}) AND {time} >= {sql_literal(low)} AND {time} < {sql_literal(high)}")
        scope_days = F.broadcast(self.frame(lake.spark).toDF("_scope_id", "_scope_day"))
        on_days = rows.join(scope_days, (rows["fitbit_id"] == scope_days["_scope_id"])
                            & (F.to_date(rows[time]) == scope_days["_scope_day"]), "left_semi")
        if table != SLEEP_LOGS:
            return on_days
        logs = on_days.select("fitbit_id", "log_id").distinct()
        return rows.join(F.broadcast(logs), ["fitbit_id", "log_id"], "left_semi")


# --- writer ------------------------------------------------------------------------------

class GoldWriter:
    """Rebuilds the gold rows of a scope of user-days and merges them in."""

    def __init__(self, lake: Lake, settings: Settings):
        self.lake, self.settings = lake, settings
        self.kpi = Kpi.from_settings(settings)
        self.secret = user_key_secret(settings)
        self._cached: list[DataFrame] = []

    def read_silver(self, scope: Scope | None) -> tuple[dict[str, DataFrame], DataFrame]:
        """The silver rows of the scope's user-days (None: all of silver), and the identities: cached
        and read once, up front, as several gold tables read the same rows and a MERGE reads its
        source twice."""
        lake = self.lake
        present = [t for t in SILVER_INPUTS if lake.exists("silver", t)]
        silver = {t: (lake.read("silver", t) if scope is None else scope.silver(lake, t)).cache() for t in present}
        identity = lake.read("silver", IDENTITY).cache()
        with ThreadPoolExecutor(max_workers=int(self.settings.get("gold.table_threads"))) as pool:
            list(pool.map(inheritable_thread_target(lake.spark)(lambda df: df.count()), [identity, *silver.values()]))
        self._cached = [identity, *silver.values()]
        return silver, identity

    def build(self, silver: dict[str, DataFrame], identity: DataFrame) -> dict[str, DataFrame]:
        """Every gold fact, KPI and alert row that these silver rows give."""
        gold: dict[str, DataFrame] = {}
        if "daily_activity" in silver:
            gold["fact_daily_activity"] = fact_daily_activity(silver["daily_activity"], identity, self.kpi)
        sleep = fact_sleep(silver.get("sleep_day"), silver.get("minute_sleep"), identity)
        if sleep is not None:
            gold["fact_sleep"] = sleep
        hourly = fact_hourly_activity(silver, identity)
        if hourly is not None:
            gold["fact_hourly_activity"] = hourly
        if "heart_rate" in silver:
            gold["fact_heart_rate_hourly"] = fact_heart_rate_hourly(silver["heart_rate"], identity)
        if "weight_log" in silver:
            gold["fact_weight"] = fact_weight(silver["weight_log"], identity, self.secret)
        if "fact_daily_activity" in gold:
            gold["kpi_daily_wellness"] = kpi_daily_wellness(gold["fact_daily_activity"], gold.get("fact_sleep"), self.kpi)
        if "hourly_steps" in silver:
            gold[GOAL_ALERTS] = goal_alerts(silver["hourly_steps"], identity, self.kpi.goal_alert_steps)
        return gold

    def write(self, scope: Scope | None) -> tuple[Scope | None, dict[str, dict]]:
        """Merge the scope's rebuilt rows into gold (scope None: every user-day of silver, found in the
        rows read); returns the scope and rows inserted/updated/deleted per table. The tables are
        written by a few threads at once: their Spark jobs are small."""
        lake = self.lake
        silver, identity = self.read_silver(scope)
        scope = scope or Scope.of(silver)
        if scope is None:
            self._unpersist()
            return None, {}
        keys = F.broadcast(identity.join(F.broadcast(scope.frame(lake.spark)), "fitbit_id")
                           .select("user_key", date_key("day").alias("date_key")).cache())
        user_keys = sorted(r[0] for r in keys.select("user_key").distinct().collect())
        # where the scope's rows lie in gold: new days (the usual incremental run) are appended
        days = KeyRange(bounds=(("date_key", _key_of(scope.first), _key_of(scope.last)),),
                        values=(("user_key", tuple(user_keys)),))

        def write_table(name: str, rows: DataFrame) -> dict[str, dict]:
            # only the scope's user-days: a sleep log read for one of them may end on a day outside it
            rows = rows.join(keys, ["user_key", "date_key"], "left_semi")
            if name == GOAL_ALERTS:   # one alert per user-day, however often the day is rebuilt;
                # its change feed is the outbox of the alerts topic (alerts.py)
                metrics = lake.merge(rows, "gold", name, GOLD_KEYS[name], target_filter=days,
                                     properties={"delta.enableChangeDataFeed": "true"})
            else:
                metrics = self._replace_days(name, rows, keys, days)
            return {name: metrics.__dict__}

        def write_users() -> dict[str, dict]:
            users = lake.spark.createDataFrame([(u,) for u in user_keys], "user_key string")
            facts = lake.read("gold", "fact_daily_activity").join(F.broadcast(users), "user_key", "left_semi") \
                if lake.exists("gold", "fact_daily_activity") else None
            users_rows = dim_user(facts, users, self.kpi)
            if lake.exists("gold", "dim_user"):
                users_rows = _not_held(users_rows, lake.read("gold", "dim_user"))
            return {"dim_user": _written_unless_empty(users_rows, lambda rows: lake.merge(
                rows, "gold", "dim_user", GOLD_KEYS["dim_user"], update=_changed(rows.columns, GOLD_KEYS["dim_user"])
            )).__dict__}

        built = self.build(silver, identity)

        def write_daily_then_users() -> dict[str, dict]:
            # dim_user reads the merged fact_daily_activity: it follows that table, beside the others
            daily = built.get("fact_daily_activity")
            return {**(write_table("fact_daily_activity", daily) if daily is not None else {}), **write_users()}

        tasks = [write_daily_then_users,   # the longest chain first
                 *(partial(write_table, name, rows) for name, rows in built.items() if name != "fact_daily_activity"),
                 lambda: {"dim_date": self._extend_dates(scope).__dict__}]
        written: dict[str, dict] = {}
        with ThreadPoolExecutor(max_workers=int(self.settings.get("gold.table_threads"))) as pool:
            for part in pool.map(inheritable_thread_target(lake.spark)(lambda task: task()), tasks):
                written.update(part)
        changes = {name: written[name] for name in [*built, "dim_user", "dim_date"]}
        keys.unpersist()
        self._unpersist()
        return scope, changes

    def _unpersist(self) -> None:
        for frame in self._cached:
            frame.unpersist()
        self._cached = []

    def _replace_days(self, name: str, rows: DataFrame, keys: DataFrame, days: KeyRange):
        """MERGE the rebuilt rows of the scope's user-days: insert new, update changed, and delete the
        rows of those user-days that the rebuild no longer yields. Rows gold holds as rebuilt are left
        out, so a rebuild that changes nothing (a backfill, a KPI change a fact does not follow) writes
        no version and rewrites no file. Days gold does not hold yet need none of that: they are appended."""
        lake, key = self.lake, GOLD_KEYS[name]
        if not lake.exists("gold", name) or lake.holds_none("gold", name, days):
            return lake.append(rows, "gold", name)
        stored = lake.read("gold", name).join(keys, ["user_key", "date_key"], "left_semi")
        stale = stored.join(rows.select(*key), list(key), "left_anti")
        source = (_not_held(rows, stored).withColumn("_deleted", F.lit(False))
                  .unionByName(stale.withColumn("_deleted", F.lit(True))))
        return _written_unless_empty(source, lambda changes: lake.merge(
            changes, "gold", name, key, columns=rows.columns, update=f"NOT s._deleted AND ({_changed(rows.columns, key)})",
            delete="s._deleted", insert="NOT s._deleted"))

    def _extend_dates(self, scope: Scope) -> WriteMetrics:
        """dim_date: every day from the first to the last of gold; a scope past either end adds the
        days in between (appended: nothing stored lies there)."""
        lake = self.lake
        if not lake.exists("gold", "dim_date"):
            return lake.append(dim_date(lake.spark, scope.first, scope.last), "gold", "dim_date")
        low, high = lake.read("gold", "dim_date").agg(F.min("date"), F.max("date")).first()
        if low is None:
            low = high = scope.first
        added = WriteMetrics()
        for first, last in ((min(scope.first, low), low - timedelta(days=1)),
                            (high + timedelta(days=1), max(scope.last, high))):
            if first <= last:
                written = lake.append(dim_date(lake.spark, first, last), "gold", "dim_date")
                added = WriteMetrics(added.inserted + written.inserted)
        return added


def _key_of(day: date) -> int:
    return int(day.strftime("%Y%m%d"))


def goal_hour(reached_at: datetime) -> str:
    """The hour whose steps reached the goal, as said to people: reached_at is its start, and its steps
    count to its end ("11:00-12:00", not "by 11:00")."""
    return f"{reached_at.hour:02d}:00-{reached_at.hour + 1:02d}:00"


def _not_held(rows: DataFrame, stored: DataFrame) -> DataFrame:
    """The rows gold does not hold as they are (EXCEPT: nulls and NaNs equal, as <=>)."""
    return rows.subtract(stored.select(*rows.columns))


def _written_unless_empty(source: DataFrame, write) -> WriteMetrics:
    """write(source), unless source has no row: then no version is written. The source is computed
    once for the check and the MERGE (which reads it twice)."""
    source = source.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return WriteMetrics() if source.isEmpty() else write(source)
    finally:
        source.unpersist()


def _changed(columns, key) -> str:
    return " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in columns if c not in key and c != "_deleted") or "false"


# --- runs --------------------------------------------------------------------------------

def silver_versions_file(settings: Settings):
    """Where gold keeps the silver versions it has read (its change feed is read from the next one)."""
    return settings.checkpoints_dir / "gold" / "silver_versions.json"


EVERYTHING = "everything"   # a scope: every user-day that silver holds (found while gold reads it)


def silver_versions(lake: Lake) -> dict[str, int]:
    versions = {t: lake.version("silver", t) for t in SILVER_INPUTS}
    return {t: v for t, v in versions.items() if v is not None}


def changed_scope(lake: Lake, since: dict[str, int]) -> tuple[Scope | str | None, dict[str, int]]:
    """The user-days whose silver rows changed after the versions in `since` (EVERYTHING when gold has
    read none of them yet), and the versions now."""
    versions = silver_versions(lake)
    if versions and not set(since) & set(versions):
        return EVERYTHING, versions
    try:
        frames = []
        for table, version in versions.items():
            before = since.get(table)
            if before is None:
                frames.append(user_days(lake.read("silver", table), table))
            elif version > before:
                frames.append(changed_user_days(lake, lake.changes("silver", table, before + 1, version), table))
        if not frames:
            return None, versions
        days = [(r["fitbit_id"], r["day"]) for r in union_all(frames).distinct().collect()]
    except Exception as exc:   # noqa: BLE001 - only a change feed that is gone is handled here
        reason = change_feed_gone(exc)
        if reason is None:
            raise
        # a VACUUM (Databricks' predictive optimisation, or one by hand) or the log's retention took
        # commits gold had not read yet: what they changed is unknown, so all of gold is rebuilt
        log.warning("gold: silver's change feed since the versions gold last read is gone (%s); rebuilding "
                    "gold from all of silver", reason)
        return EVERYTHING, versions
    return (Scope(days) if days else None), versions


def range_scope(lake: Lake, start: date | None, end: date | None) -> Scope | str | None:
    """Every user-day from start to end (inclusive; None = open) that silver holds: a backfill."""
    if start is None and end is None:
        return EVERYTHING

    def in_range(day):
        return ((F.lit(True) if start is None else day >= F.lit(start))
                & (F.lit(True) if end is None else day <= F.lit(end)))

    frames = [user_days(lake.read("silver", t).where(in_range(F.to_date(SILVER_INPUTS[t]))), t)
              for t in SILVER_INPUTS if lake.exists("silver", t)]
    if not frames:
        return None
    days = [(r["fitbit_id"], r["day"]) for r in union_all(frames).distinct().collect()
            if (start is None or start <= r["day"]) and (end is None or r["day"] <= end)]
    return Scope(days) if days else None


# Bumped when gold tables change their columns: layout -> the tables whose columns changed in it.
# A lake of an older layout has those tables dropped and all of gold rebuilt from silver once.
GOLD_LAYOUT = 3
LAYOUT_CHANGES = {2: ["fact_weight"],   # log_id -> weigh_in_key (the raw LogId leads back to the Id)
                  3: ["fact_weight"]}   # weigh_in_key of Id and LogId: users share LogIds


def _layout_marker(settings: Settings):
    return settings.checkpoints_dir / "gold" / "layout.json"


def _upgrade_layout(lake: Lake, settings: Settings) -> bool:
    """True when gold must be rebuilt from all of silver: it was of an older layout (the changed tables
    are now dropped), or built with other KPI settings (kpi.*: goals, weights, segments, the alert
    goal), which would leave a mix of old and new figures. The marker is moved on once the rebuild is
    done (run_gold), so a crash in between rebuilds again."""
    built = _built_with(settings)
    if built:
        layout = built["layout"]
    else:   # gold written before the marker existed is layout 1; a fresh lake is current
        layout = 1 if any(lake.exists("gold", t) for t in GOLD_KEYS) else GOLD_LAYOUT
    for newer in range(layout + 1, GOLD_LAYOUT + 1):
        for table in LAYOUT_CHANGES.get(newer, []):
            log.warning("gold/%s has the columns of an older version: rebuilding it from silver", table)
            lake.drop("gold", table)
    kpi_changed = _other_kpi(built, settings)
    if kpi_changed:
        log.warning("gold: built with other KPI settings (%s): rebuilding gold from silver", kpi_changed)
    return layout < GOLD_LAYOUT or bool(kpi_changed)


def _built_with(settings: Settings) -> dict:
    """Gold's layout marker: its layout, and the KPI settings it was built with (none: a new lake)."""
    marker = _layout_marker(settings)
    return json.loads(marker.read_text()) if marker.exists() else {}


def _other_kpi(built: dict, settings: Settings) -> str:
    """The KPI settings that differ from those gold was built with ("" when none, or not known)."""
    if "kpi" not in built or built["kpi"] == settings.get("kpi"):
        return ""
    return ", ".join(setting_differences(built["kpi"], settings.get("kpi"), "kpi"))


class NothingToBuild(RuntimeError):
    """Gold was asked for before silver holds anything, or read as built with other KPI settings."""


def require_gold_of(settings: Settings) -> None:
    """For a reader of gold that reports the KPI settings (insights, its MLflow run): gold built with
    other ones would be reported as made with these."""
    other = _other_kpi(_built_with(settings), settings)
    if other:
        raise NothingToBuild(f"gold was built with other KPI settings ({other}): run 04_gold with these first "
                             f"(make run, or python -m fitbit_lakehouse gold)")


def run_gold(spark, settings: Settings, start: date | None = None, end: date | None = None) -> dict:
    """Bring gold up to date with silver (or, with start and end, rebuild that date range)."""
    lake = Lake(spark, settings)
    if not lake.exists("silver", IDENTITY):
        received = lake.count("bronze", "events") if lake.exists("bronze", "events") else None
        if not received:   # a lake whose topic was empty (a job run before the producer): say where to start
            raise NothingToBuild(f"No Fitbit record in {lake.settings.lake_dir} yet: bronze has received none from "
                                 f"the topic {lake.settings.events_topic}. Send the CSVs first (make run, or the "
                                 f"fitbit_producer job), then bronze and silver.")
        raise NothingToBuild(f"No silver table yet, and bronze holds {received:,} records: run 03_silver first")
    state = silver_versions_file(settings)
    since = json.loads(state.read_text()) if state.exists() else {}
    rebuild_all = _upgrade_layout(lake, settings)
    if rebuild_all or start is not None or end is not None:
        # all of gold rebuilt covers silver as it is now (versions read first: a later commit is read next time)
        versions = silver_versions(lake) if rebuild_all else None
        scope = range_scope(lake, *((None, None) if rebuild_all else (start, end)))
    else:
        scope, versions = changed_scope(lake, since)
    changes = {}
    if scope is not None:
        scope, changes = GoldWriter(lake, settings).write(None if scope == EVERYTHING else scope)
    result = {"user_days": len(scope.days) if scope else 0, "changes": changes}
    if versions is not None and versions != since:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(versions))
    marker = _layout_marker(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"layout": GOLD_LAYOUT, "kpi": settings.get("kpi")}))
    log.info("gold: %d user-days rebuilt: %s", result["user_days"], result["changes"])
    return result
