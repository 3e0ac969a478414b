-- Headline KPIs of the period.
SELECT
  COUNT(*)                                   AS valid_user_days,
  COUNT(DISTINCT user_key)                   AS users,
  ROUND(AVG(total_steps), 1)                 AS mean_daily_steps,
  ROUND(AVG(active_minutes), 1)              AS mean_active_minutes,
  COUNT(wellness_score)                      AS days_with_wellness_score,
  ROUND(AVG(wellness_score), 1)              AS mean_wellness_score,
  ROUND(AVG(sleep_efficiency), 3)            AS mean_sleep_efficiency
FROM kpi_daily_wellness;
