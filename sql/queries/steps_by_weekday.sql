-- Mean steps and active minutes by weekday, valid days only.
SELECT d.day_of_week,
       DAYOFWEEK(d.date)                       AS weekday_number,
       COUNT(*)                                AS user_days,
       ROUND(AVG(f.total_steps), 0)            AS mean_steps,
       ROUND(AVG(f.active_minutes), 1)         AS mean_active_minutes
FROM fact_daily_activity f
JOIN dim_date d USING (date_key)
WHERE f.is_valid_day
GROUP BY d.day_of_week, DAYOFWEEK(d.date)
ORDER BY (DAYOFWEEK(d.date) + 5) % 7;
