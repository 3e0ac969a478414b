"""The gold layer of CONTRACT.md computed by DuckDB straight from the CSVs: the reference implementation
the benchmark times the pipeline against, and an independent check of the pipeline's figures.

Covers the gold tables that the daily, sleepDay, hourly and weight files feed (what the real month 2
has); follows the contract's merge rules (a user-day's summary with more steps, then more tracked
minutes, wins; exact duplicate rows are one row) and KPI formulas with the default settings.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

TS = "%m/%d/%Y %I:%M:%S %p"
DAY = "%m/%d/%Y"


def _csv(raw: Path, stem: str) -> str | None:
    """A DuckDB table expression over every file of a kind below raw (either month), or None."""
    files = sorted(str(p) for p in raw.rglob(f"{stem}_merged.csv"))
    if not files:
        return None
    listing = ", ".join(f"'{f}'" for f in files)
    return f"read_csv([{listing}], all_varchar=true, header=true)"


def gold_from_csv(raw: Path, user_keys: dict[int, str], kpi: dict | None = None) -> dict[str, pd.DataFrame]:
    """Gold tables from the Kaggle CSVs below raw; user_keys maps each Fitbit Id to its user_key."""
    import duckdb

    k = {"steps_goal": 10000, "mvpa_goal": 30, "asleep_goal": 420, "high": 270, "medium": 180,
         "goal_alert_steps": 10000, **(kpi or {})}
    con = duckdb.connect()
    con.register("keys", pd.DataFrame({"id": list(user_keys), "user_key": list(user_keys.values())}))
    daily = _csv(raw, "dailyActivity")
    con.execute(f"""
        CREATE TABLE daily AS
        SELECT * EXCLUDE (rank) FROM (
          SELECT CAST(Id AS BIGINT) AS id, strptime(ActivityDate, '{DAY}')::DATE AS day,
                 CAST(TotalSteps AS BIGINT) AS steps, CAST(TotalDistance AS DOUBLE) AS distance,
                 CAST(Calories AS BIGINT) AS calories,
                 CAST(VeryActiveMinutes AS BIGINT) AS very, CAST(FairlyActiveMinutes AS BIGINT) AS fairly,
                 CAST(LightlyActiveMinutes AS BIGINT) AS lightly, CAST(SedentaryMinutes AS BIGINT) AS sedentary,
                 row_number() OVER (PARTITION BY Id, ActivityDate ORDER BY CAST(TotalSteps AS BIGINT) DESC,
                    CAST(VeryActiveMinutes AS BIGINT) + CAST(FairlyActiveMinutes AS BIGINT)
                    + CAST(LightlyActiveMinutes AS BIGINT) + CAST(SedentaryMinutes AS BIGINT) DESC) AS rank
          FROM {daily}) WHERE rank = 1""")
    con.execute("""
        CREATE TABLE fact_daily_activity AS
        SELECT user_key, CAST(strftime(day, '%Y%m%d') AS INT) AS date_key, steps AS total_steps,
               distance AS total_distance_km, calories, very + fairly + lightly AS active_minutes,
               very + fairly AS mvpa_minutes, very + fairly + lightly + sedentary AS tracked_minutes,
               steps > 0 AS is_valid_day
        FROM daily JOIN keys USING (id)""")
    sleep = _csv(raw, "sleepDay")
    if sleep:
        con.execute(f"""
            CREATE TABLE fact_sleep AS
            SELECT user_key, CAST(strftime(day, '%Y%m%d') AS INT) AS date_key, records AS sleep_records,
                   asleep AS minutes_asleep, in_bed AS time_in_bed,
                   CASE WHEN in_bed > 0 THEN asleep / in_bed END AS sleep_efficiency
            FROM (SELECT DISTINCT CAST(Id AS BIGINT) AS id, strptime(SleepDay, '{TS}')::DATE AS day,
                         CAST(TotalSleepRecords AS BIGINT) AS records, CAST(TotalMinutesAsleep AS BIGINT) AS asleep,
                         CAST(TotalTimeInBed AS BIGINT) AS in_bed FROM {sleep}) JOIN keys USING (id)""")
    else:
        con.execute("CREATE TABLE fact_sleep (user_key VARCHAR, date_key INT, sleep_records BIGINT, "
                    "minutes_asleep BIGINT, time_in_bed BIGINT, sleep_efficiency DOUBLE)")
    con.execute(f"""
        CREATE TABLE kpi_daily_wellness AS
        WITH scored AS (
          SELECT d.user_key, d.date_key, d.total_steps, d.mvpa_minutes, d.active_minutes, s.minutes_asleep,
                 s.sleep_efficiency,
                 0.5 * least(d.total_steps / {k['steps_goal']}, 1) + 0.5 * least(d.mvpa_minutes / {k['mvpa_goal']}, 1)
                   AS activity_score,
                 0.5 * least(s.minutes_asleep / {k['asleep_goal']}, 1) + 0.5 * s.sleep_efficiency AS sleep_score
          FROM fact_daily_activity d LEFT JOIN fact_sleep s USING (user_key, date_key) WHERE d.is_valid_day)
        SELECT *, round(100 * (0.5 * activity_score + 0.5 * sleep_score), 1) AS wellness_score,
               CASE WHEN active_minutes >= {k['high']} THEN 'High' WHEN active_minutes >= {k['medium']} THEN 'Medium'
                    ELSE 'Low' END AS daily_segment
        FROM scored""")
    con.execute(f"""
        CREATE TABLE dim_user AS
        SELECT user_key, avg(active_minutes) FILTER (WHERE is_valid_day) AS avg_active_minutes,
               count(*) FILTER (WHERE is_valid_day) AS valid_days,
               CASE WHEN count(*) FILTER (WHERE is_valid_day) = 0 THEN 'Unknown'
                    WHEN avg(active_minutes) FILTER (WHERE is_valid_day) >= {k['high']} THEN 'High'
                    WHEN avg(active_minutes) FILTER (WHERE is_valid_day) >= {k['medium']} THEN 'Medium'
                    ELSE 'Low' END AS engagement_segment
        FROM fact_daily_activity GROUP BY user_key""")
    parts = {stem: _csv(raw, stem) for stem in ("hourlySteps", "hourlyCalories", "hourlyIntensities")}
    if parts["hourlySteps"]:
        con.execute(f"""
            CREATE TABLE hourly_steps AS
            SELECT DISTINCT CAST(Id AS BIGINT) AS id, strptime(ActivityHour, '{TS}') AS hour,
                   CAST(StepTotal AS BIGINT) AS steps FROM {parts['hourlySteps']}""")
        con.execute(f"""
            CREATE TABLE goal_alerts AS
            WITH cumulative AS (
              SELECT id, hour, sum(steps) OVER (PARTITION BY id, hour::DATE ORDER BY hour) AS total FROM hourly_steps)
            SELECT user_key, CAST(strftime(hour, '%Y%m%d') AS INT) AS date_key, min(hour) AS reached_at,
                   arg_min(total, hour) AS steps_at_alert
            FROM cumulative JOIN keys USING (id) WHERE total >= {k['goal_alert_steps']}
            GROUP BY user_key, date_key""")
        hours = " UNION ".join(f"SELECT DISTINCT Id, ActivityHour FROM {expr}" for expr in parts.values() if expr)
        con.execute(f"CREATE TABLE fact_hourly_activity AS SELECT DISTINCT Id, ActivityHour FROM ({hours})")
    weight = _csv(raw, "weightLogInfo")
    if weight:
        con.execute(f"CREATE TABLE fact_weight AS SELECT DISTINCT Id, LogId FROM {weight}")
    tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
    return {t: con.execute(f"SELECT * FROM {t}").df() for t in tables
            if t not in ("daily", "hourly_steps", "keys")}
