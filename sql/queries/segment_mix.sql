-- How users and their days split across the engagement segments.
SELECT 'user' AS grain, engagement_segment AS segment, COUNT(*) AS n,
       ROUND(100 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS pct
FROM dim_user GROUP BY engagement_segment
UNION ALL
SELECT 'day', daily_segment, COUNT(*),
       ROUND(100 * COUNT(*) / SUM(COUNT(*)) OVER (), 1)
FROM kpi_daily_wellness GROUP BY daily_segment
ORDER BY grain, segment;
