-- name: active_users
-- description: Most active users and roles: events, changes, error rate, distinct actions and source IPs.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    user_name,
    count(*) AS events,
    sum(CASE WHEN read_only = false THEN 1 ELSE 0 END) AS changes,
    sum(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END) AS errors,
    round(CAST(sum(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END) AS DOUBLE) * 100 / count(*), 1) AS error_pct,
    count(DISTINCT event_name) AS actions,
    count(DISTINCT source_ip) AS source_ips,
    max(event_time) AS last_seen
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
GROUP BY user_name
ORDER BY events DESC, user_name
LIMIT 100
