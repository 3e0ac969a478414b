-- The average day: mean steps, calories and intensity per hour of day.
SELECT hour,
       ROUND(AVG(steps), 1)             AS mean_steps,
       ROUND(AVG(calories), 1)          AS mean_calories,
       ROUND(AVG(average_intensity), 3) AS mean_intensity,
       COUNT(*)                         AS user_hours
FROM fact_hourly_activity
GROUP BY hour
ORDER BY hour;
