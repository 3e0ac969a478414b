-- The gold star schema (Spark / Databricks SQL). Tables are Delta; run in the gold schema, e.g.
--   USE CATALOG main; USE SCHEMA fitbit_gold;
-- Keys: user_key = HMAC-SHA256 pseudonym of the Fitbit Id (silver.user_identity); date_key = yyyymmdd.

CREATE TABLE IF NOT EXISTS dim_user (
  user_key STRING NOT NULL COMMENT 'pseudonymous user',
  engagement_segment STRING COMMENT 'High / Medium / Low by mean active minutes over valid days, Unknown without one',
  avg_active_minutes DOUBLE,
  avg_daily_steps DOUBLE,
  valid_days BIGINT,
  first_date DATE,
  last_date DATE
) USING DELTA COMMENT 'one row per user';

CREATE TABLE IF NOT EXISTS dim_date (
  date_key INT NOT NULL COMMENT 'yyyymmdd',
  date DATE,
  day_of_week STRING COMMENT 'Monday..Sunday',
  is_weekend BOOLEAN,
  iso_week INT,
  month INT,
  year INT
) USING DELTA COMMENT 'every calendar day from the first to the last day of the facts';

CREATE TABLE IF NOT EXISTS fact_daily_activity (
  user_key STRING NOT NULL,
  date_key INT NOT NULL,
  total_steps BIGINT,
  total_distance_km DOUBLE,
  calories BIGINT,
  very_active_minutes BIGINT,
  fairly_active_minutes BIGINT,
  lightly_active_minutes BIGINT,
  sedentary_minutes BIGINT,
  active_minutes BIGINT COMMENT 'very + fairly + lightly',
  mvpa_minutes BIGINT COMMENT 'very + fairly',
  tracked_minutes BIGINT COMMENT 'all four including sedentary',
  is_valid_day BOOLEAN COMMENT 'total_steps > 0'
) USING DELTA COMMENT 'user-day';

CREATE TABLE IF NOT EXISTS fact_sleep (
  user_key STRING NOT NULL,
  date_key INT NOT NULL,
  sleep_records BIGINT,
  minutes_asleep BIGINT,
  time_in_bed BIGINT,
  sleep_efficiency DOUBLE COMMENT 'minutes_asleep / time_in_bed',
  source STRING COMMENT 'sleepDay or minuteSleep'
) USING DELTA COMMENT 'user-day';

CREATE TABLE IF NOT EXISTS fact_hourly_activity (
  user_key STRING NOT NULL,
  date_key INT NOT NULL,
  hour INT COMMENT '0-23',
  activity_hour TIMESTAMP_NTZ COMMENT 'wall-clock hour as recorded',
  steps BIGINT,
  calories BIGINT,
  total_intensity BIGINT,
  average_intensity DOUBLE
) USING DELTA COMMENT 'user-hour';

CREATE TABLE IF NOT EXISTS fact_heart_rate_hourly (
  user_key STRING NOT NULL,
  date_key INT NOT NULL,
  hour INT,
  min_bpm BIGINT,
  avg_bpm DOUBLE,
  max_bpm BIGINT,
  readings BIGINT
) USING DELTA COMMENT 'user-hour';

CREATE TABLE IF NOT EXISTS fact_weight (
  user_key STRING NOT NULL,
  date_key INT NOT NULL,
  logged_at TIMESTAMP_NTZ,
  weight_kg DOUBLE,
  bmi DOUBLE,
  fat_pct DOUBLE,
  is_manual BOOLEAN,
  weigh_in_key STRING
) USING DELTA COMMENT 'weigh-in';

CREATE TABLE IF NOT EXISTS kpi_daily_wellness (
  user_key STRING NOT NULL,
  date_key INT NOT NULL,
  activity_score DOUBLE,
  sleep_score DOUBLE,
  wellness_score DOUBLE COMMENT '0-100, null without sleep',
  sleep_efficiency DOUBLE,
  active_minutes BIGINT,
  daily_segment STRING,
  total_steps BIGINT,
  mvpa_minutes BIGINT,
  minutes_asleep BIGINT
) USING DELTA COMMENT 'user-day with a valid activity day';

CREATE TABLE IF NOT EXISTS goal_alerts (
  user_key STRING NOT NULL,
  date_key INT NOT NULL,
  goal_steps BIGINT,
  reached_at TIMESTAMP_NTZ COMMENT 'the hour at which the day''s cumulative steps reached the goal',
  steps_at_alert BIGINT
) USING DELTA COMMENT 'user-day that reached the goal, once';
