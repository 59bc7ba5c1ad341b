-- name: sso_activity_summary
-- description: IAM Identity Center usage by service (sso, sso-directory, identitystore) and event name: events, users, source IPs, changes, errors, last seen.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    event_source,
    event_name,
    count(*) AS events,
    count(DISTINCT user_name) AS users,
    count(DISTINCT source_ip) AS source_ips,
    sum(CASE WHEN read_only = false THEN 1 ELSE 0 END) AS changes,
    sum(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END) AS errors,
    max(event_time) AS last_seen
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND event_type = 'sso'
GROUP BY event_source, event_name
ORDER BY events DESC, event_source, event_name
LIMIT 100
