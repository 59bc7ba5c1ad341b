-- name: root_usage
-- description: Every action by the account root user (console sign-ins and API calls), with MFA and outcome, newest first.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    event_time,
    event_name,
    aws_region,
    source_ip,
    COALESCE(mfa_used, mfa_authenticated) AS mfa,
    CASE
        WHEN error_code IS NOT NULL THEN error_code
        WHEN event_type = 'signin' AND response_elements LIKE '%"Failure"%' THEN 'Failure'
        ELSE 'Success'
    END AS outcome,
    user_agent
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND user_identity_type = 'Root'
ORDER BY event_time DESC, event_id
LIMIT 100
