"""silver -> gold: the star schema and the wellness KPIs of CONTRACT.md (goal_alerts: see alerts.py).

Every builder is a pure DataFrame function; numbers come from conf/ (kpi.*). The writer merges each
table by its key, so a re-run changes only rows whose silver data changed.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .config import Settings
from .tables import Lake

log = logging.getLogger(__name__)

IDENTITY = "user_identity"


@dataclass(frozen=True)
class Kpi:
    """The KPI settings (conf/ kpi.*), defaults as in CONTRACT.md."""
    valid_day_min_steps: int = 1
    steps_goal: float = 10000
    mvpa_goal_minutes: float = 30
    steps_weight: float = 0.5
    mvpa_weight: float = 0.5
    asleep_goal_minutes: float = 420
    duration_weight: float = 0.5
    efficiency_weight: float = 0.5
    activity_weight: float = 0.5
    sleep_weight: float = 0.5
    scale: float = 100
    decimals: int = 1
    segments: tuple[tuple[str, float], ...] = (("High", 270), ("Medium", 180), ("Low", 0))
    unknown_segment: str = "Unknown"
    goal_alert_steps: int = 10000

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


# --- identity ----------------------------------------------------------------------------

def user_key_secret(settings: Settings) -> str:
    secret = os.environ.get(settings.get("gold.user_key_secret_env"))
    if secret:
        return secret
    log.warning("%s is not set: user_key uses the development secret; set it for real data",
                settings.get("gold.user_key_secret_env"))
    return settings.get("gold.user_key_dev_secret")


def user_key(fitbit_id: int, secret: str) -> str:
    """HMAC-SHA256 of the Fitbit Id: stable and pseudonymous; without the secret it cannot be reversed
    by hashing the small space of 10-digit Ids."""
    return hmac.new(secret.encode(), str(int(fitbit_id)).encode(), hashlib.sha256).hexdigest()[:32]


def identity_rows(fitbit_ids, secret: str) -> list[tuple[int, str]]:
    return [(int(i), user_key(int(i), secret)) for i in sorted(set(fitbit_ids))]


def _keyed(df: DataFrame, identity: DataFrame) -> DataFrame:
    """Swap fitbit_id for user_key (no raw Id in gold)."""
    return df.join(identity, "fitbit_id", "inner").select(
        "user_key", *[c for c in df.columns if c != "fitbit_id"])


def _date_key(col) -> F.Column:
    return F.date_format(col, "yyyyMMdd").cast("int")


# --- facts -------------------------------------------------------------------------------

def fact_daily_activity(daily_activity: DataFrame, identity: DataFrame, kpi: Kpi) -> DataFrame:
    d = daily_activity
    active = F.col("very_active_minutes") + F.col("fairly_active_minutes") + F.col("lightly_active_minutes")
    return _keyed(d.select(
        "fitbit_id", _date_key("activity_date").alias("date_key"), "total_steps",
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


def fact_sleep(sleep_day: DataFrame | None, minute_sleep: DataFrame | None, identity: DataFrame) -> DataFrame:
    """sleepDay where present, else derived from minuteSleep; `source` says which."""
    parts = []
    if sleep_day is not None:
        parts.append(sleep_day.select(
            "fitbit_id", F.to_date("sleep_day").alias("sleep_date"),
            F.col("total_sleep_records").alias("sleep_records"),
            F.col("total_minutes_asleep").alias("minutes_asleep"),
            F.col("total_time_in_bed").alias("time_in_bed"), F.lit("sleepDay").alias("source")))
    if minute_sleep is not None:
        derived = sleep_from_minutes(minute_sleep).withColumn("source", F.lit("minuteSleep"))
        if parts:
            derived = derived.join(parts[0].select("fitbit_id", "sleep_date"),
                                   ["fitbit_id", "sleep_date"], "left_anti")
        parts.append(derived)
    if not parts:
        return None
    sleep = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    return _keyed(sleep.select(
        "fitbit_id", _date_key("sleep_date").alias("date_key"), "sleep_records", "minutes_asleep",
        "time_in_bed",
        F.when(F.col("time_in_bed") > 0, F.col("minutes_asleep") / F.col("time_in_bed")).alias("sleep_efficiency"),
        "source"), identity)


def fact_hourly_activity(hourly: dict[str, DataFrame], identity: DataFrame) -> DataFrame | None:
    """The three hourly kinds joined on user-hour (any may be missing)."""
    key = ["fitbit_id", "activity_hour"]
    selected = {
        "hourly_steps": lambda d: d.select(*key, F.col("step_total").alias("steps")),
        "hourly_calories": lambda d: d.select(*key, "calories"),
        "hourly_intensities": lambda d: d.select(*key, "total_intensity", "average_intensity"),
    }
    joined = None
    for name, pick in selected.items():
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
        "fitbit_id", _date_key("activity_hour").alias("date_key"), F.hour("activity_hour").alias("hour"),
        "activity_hour", "steps", "calories", "total_intensity", "average_intensity"), identity)


def fact_heart_rate_hourly(heart_rate: DataFrame, identity: DataFrame) -> DataFrame:
    return _keyed(heart_rate.groupBy(
        "fitbit_id", _date_key("time").alias("date_key"), F.hour("time").alias("hour")).agg(
        F.min("bpm").alias("min_bpm"), F.avg("bpm").alias("avg_bpm"), F.max("bpm").alias("max_bpm"),
        F.count("*").alias("readings")), identity)


def fact_weight(weight_log: DataFrame, identity: DataFrame) -> DataFrame:
    return _keyed(weight_log.select(
        "fitbit_id", _date_key("logged_at").alias("date_key"), "logged_at", "weight_kg", "bmi",
        F.col("fat").alias("fat_pct"), F.col("is_manual_report").alias("is_manual"), "log_id"), identity)


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


def dim_user(daily: DataFrame | None, identity: DataFrame, kpi: Kpi) -> DataFrame:
    users = identity.select("user_key")
    if daily is None:
        stats = users.select("user_key", *[F.lit(None).cast(t).alias(c) for c, t in (
            ("avg_active_minutes", "double"), ("avg_daily_steps", "double"), ("valid_days", "bigint"),
            ("first_date", "date"), ("last_date", "date"))])
    else:
        on_valid = lambda c: F.when(F.col("is_valid_day"), c)  # noqa: E731
        day = F.to_date(F.col("date_key").cast("string"), "yyyyMMdd")
        stats = daily.groupBy("user_key").agg(
            F.avg(on_valid(F.col("active_minutes"))).alias("avg_active_minutes"),
            F.avg(on_valid(F.col("total_steps"))).alias("avg_daily_steps"),
            F.count(on_valid(F.lit(1))).alias("valid_days"),
            F.min(day).alias("first_date"), F.max(day).alias("last_date"))
    joined = users.join(stats, "user_key", "left")
    segment = F.when(F.coalesce("valid_days", F.lit(0)) == 0, F.lit(kpi.unknown_segment)).otherwise(
        segment_of(F.col("avg_active_minutes"), kpi))
    return joined.select("user_key", segment.alias("engagement_segment"), "avg_active_minutes",
                         "avg_daily_steps", F.coalesce("valid_days", F.lit(0)).alias("valid_days"),
                         "first_date", "last_date")


def dim_date(date_keys: DataFrame) -> DataFrame:
    """Every calendar day from the first to the last date_key of the facts."""
    bounds = date_keys.select(F.to_date(F.col("date_key").cast("string"), "yyyyMMdd").alias("d")) \
                      .agg(F.min("d").alias("lo"), F.max("d").alias("hi"))
    days = bounds.select(F.explode(F.sequence("lo", "hi")).alias("date"))
    return days.select(
        _date_key("date").alias("date_key"), "date",
        F.date_format("date", "EEEE").alias("day_of_week"),
        F.dayofweek("date").isin(1, 7).alias("is_weekend"),
        F.weekofyear("date").alias("iso_week"), F.month("date").alias("month"), F.year("date").alias("year"))


GOLD_KEYS = {
    "dim_user": ("user_key",),
    "dim_date": ("date_key",),
    "fact_daily_activity": ("user_key", "date_key"),
    "fact_sleep": ("user_key", "date_key"),
    "fact_hourly_activity": ("user_key", "date_key", "hour"),
    "fact_heart_rate_hourly": ("user_key", "date_key", "hour"),
    "fact_weight": ("user_key", "log_id"),
    "kpi_daily_wellness": ("user_key", "date_key"),
}
# written by the goal-alert stream (alerts.py), listed here for readers such as the BI export
STREAM_TABLES = ("goal_alerts",)


# --- writer ------------------------------------------------------------------------------

def build_identity(lake: Lake, settings: Settings, silver_tables: dict[str, DataFrame]) -> DataFrame:
    """silver/user_identity: every Fitbit Id seen in silver, with its user_key (merged, never rewritten)."""
    ids = set()
    for df in silver_tables.values():
        ids.update(r["fitbit_id"] for r in df.select("fitbit_id").distinct().collect())
    rows = identity_rows(ids, user_key_secret(settings))
    identity = lake.spark.createDataFrame(rows, "fitbit_id bigint, user_key string")
    merge_by_key(lake, "silver", IDENTITY, identity, ("fitbit_id",), delete_missing=False)
    return lake.read("silver", IDENTITY)


def merge_by_key(lake: Lake, layer: str, name: str, df: DataFrame, key: tuple[str, ...],
                 delete_missing: bool = True) -> None:
    """Insert new keys, update changed rows, (optionally) delete keys gone from the source."""
    if not lake.exists(layer, name):
        lake.save(df, layer, name, mode="overwrite")
        return
    on = " AND ".join(f"t.{k} = s.{k}" for k in key)
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in df.columns if c not in key) or "false"
    merge = (lake.delta(layer, name).alias("t").merge(df.alias("s"), on)
             .whenMatchedUpdateAll(condition=changed).whenNotMatchedInsertAll())
    if delete_missing:
        merge = merge.whenNotMatchedBySourceDelete()
    merge.execute()


def build_gold(silver: dict[str, DataFrame], identity: DataFrame, kpi: Kpi) -> dict[str, DataFrame]:
    """Every gold table that the available silver tables allow."""
    gold: dict[str, DataFrame] = {}
    if "daily_activity" in silver:
        gold["fact_daily_activity"] = fact_daily_activity(silver["daily_activity"], identity, kpi)
    sleep = fact_sleep(silver.get("sleep_day"), silver.get("minute_sleep"), identity)
    if sleep is not None:
        gold["fact_sleep"] = sleep
    hourly = fact_hourly_activity(silver, identity)
    if hourly is not None:
        gold["fact_hourly_activity"] = hourly
    if "heart_rate" in silver:
        gold["fact_heart_rate_hourly"] = fact_heart_rate_hourly(silver["heart_rate"], identity)
    if "weight_log" in silver:
        gold["fact_weight"] = fact_weight(silver["weight_log"], identity)
    if "fact_daily_activity" in gold:
        gold["kpi_daily_wellness"] = kpi_daily_wellness(gold["fact_daily_activity"], gold.get("fact_sleep"), kpi)
    gold["dim_user"] = dim_user(gold.get("fact_daily_activity"), identity, kpi)
    facts = [df.select("date_key") for name, df in gold.items() if "date_key" in df.columns]
    if facts:
        keys = facts[0]
        for f in facts[1:]:
            keys = keys.unionByName(f)
        gold["dim_date"] = dim_date(keys)
    return gold


def run_gold(spark, settings: Settings) -> dict:
    """Rebuild gold from silver and merge it in; skipped when no silver table changed since the last run."""
    import json

    from .catalogue import SILVER_TABLES

    lake = Lake(spark, settings)
    versions = {t: lake.version("silver", t) for t in SILVER_TABLES}
    versions = {t: v for t, v in versions.items() if v is not None}
    if not versions:
        raise RuntimeError("No silver table yet: run 03_silver first")
    state = settings.checkpoints_dir / "gold" / "silver_versions.json"
    if state.exists() and json.loads(state.read_text()) == versions:
        log.info("gold is up to date with silver (no silver table changed): nothing to do")
        return {name: lake.count("gold", name) for name in GOLD_KEYS if lake.exists("gold", name)}
    silver = {t: lake.read("silver", t) for t in versions}
    identity = build_identity(lake, settings, silver)
    gold = build_gold(silver, identity, Kpi.from_settings(settings))
    counts = {}
    for name, df in gold.items():
        merge_by_key(lake, "gold", name, df, GOLD_KEYS[name])
        counts[name] = lake.count("gold", name)
        log.info("gold %-24s %8d rows", name, counts[name])
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(versions))
    return counts
