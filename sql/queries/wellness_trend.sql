-- Weekly wellness trend: mean scores per ISO week.
SELECT d.year, d.iso_week,
       MIN(d.date)                         AS week_start,
       COUNT(*)                            AS user_days,
       ROUND(AVG(k.activity_score), 3)     AS mean_activity_score,
       ROUND(AVG(k.sleep_score), 3)        AS mean_sleep_score,
       ROUND(AVG(k.wellness_score), 1)     AS mean_wellness_score
FROM kpi_daily_wellness k
JOIN dim_date d USING (date_key)
GROUP BY d.year, d.iso_week
ORDER BY d.year, d.iso_week;
