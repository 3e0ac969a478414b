-- Does more time in bed mean better sleep? Efficiency by hour bucket of time in bed.
SELECT CAST(FLOOR(time_in_bed / 60) AS INT)  AS hours_in_bed,
       COUNT(*)                              AS nights,
       ROUND(AVG(minutes_asleep), 1)         AS mean_minutes_asleep,
       ROUND(AVG(sleep_efficiency), 3)       AS mean_sleep_efficiency
FROM fact_sleep
GROUP BY CAST(FLOOR(time_in_bed / 60) AS INT)
ORDER BY hours_in_bed;
