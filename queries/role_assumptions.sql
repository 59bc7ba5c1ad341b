-- name: role_assumptions
-- description: Role usage: AssumeRole* calls per assumed role with failures, distinct callers, source IPs and caller accounts.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    user_name AS role_name,
    count(*) AS assumptions,
    sum(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END) AS failed,
    count(DISTINCT COALESCE(session_issuer_arn, user_arn, principal_id, invoked_by)) AS callers,
    count(DISTINCT source_ip) AS source_ips,
    count(DISTINCT account_id) AS caller_accounts,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND event_name LIKE 'AssumeRole%'
GROUP BY user_name
ORDER BY assumptions DESC, user_name
LIMIT 100
