-- Share of valid days on which each user reached the daily step goal, and the typical hour it happened.
SELECT f.user_key,
       u.engagement_segment,
       COUNT(*)                                          AS valid_days,
       COUNT(a.date_key)                                 AS goal_days,
       ROUND(COUNT(a.date_key) / COUNT(*), 3)            AS goal_hit_rate,
       ROUND(AVG(HOUR(a.reached_at)), 1)                 AS mean_goal_hour
FROM fact_daily_activity f
JOIN dim_user u USING (user_key)
LEFT JOIN goal_alerts a ON a.user_key = f.user_key AND a.date_key = f.date_key
WHERE f.is_valid_day
GROUP BY f.user_key, u.engagement_segment
ORDER BY goal_hit_rate DESC, f.user_key;
