-- name: off_hours
-- description: Users active outside 06:00-22:00 UTC: events, changes and errors per user, most active first.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    user_name,
    count(*) AS events,
    sum(CASE WHEN read_only = false THEN 1 ELSE 0 END) AS changes,
    sum(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END) AS errors,
    count(DISTINCT event_date) AS active_days,
    count(DISTINCT source_ip) AS source_ips,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND (extract(hour FROM event_time) < 6 OR extract(hour FROM event_time) >= 22)
GROUP BY user_name
ORDER BY events DESC, user_name
LIMIT 100
