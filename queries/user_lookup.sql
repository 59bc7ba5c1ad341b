-- name: user_lookup
-- description: Timeline of one user's (or role's) identity activity, newest first; match is case-insensitive on user_name.
-- params: since:timestamp, from_day:day, to_day:day, user:string
SELECT
    event_time,
    event_name,
    event_type,
    aws_region,
    source_ip,
    user_identity_type,
    error_code
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND lower(user_name) = lower(?)
ORDER BY event_time DESC, event_id
LIMIT 100
