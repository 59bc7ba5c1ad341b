-- name: daily_summary
-- description: One row per UTC day for compliance reporting: events, users, changes, errors, console logins, role assumptions, root events.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    event_date,
    count(*) AS events,
    count(DISTINCT user_name) AS users,
    sum(CASE WHEN read_only = false THEN 1 ELSE 0 END) AS changes,
    sum(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END) AS errors,
    sum(CASE WHEN event_name = 'ConsoleLogin' THEN 1 ELSE 0 END) AS console_logins,
    sum(CASE WHEN event_name LIKE 'AssumeRole%' THEN 1 ELSE 0 END) AS role_assumptions,
    sum(CASE WHEN user_identity_type = 'Root' THEN 1 ELSE 0 END) AS root_events
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
GROUP BY event_date
ORDER BY event_date DESC
LIMIT 100
