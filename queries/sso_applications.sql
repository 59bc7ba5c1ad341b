-- name: sso_applications
-- description: IAM Identity Center application changes (managed application instances created, updated or deleted), newest first.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    event_time,
    user_name,
    event_name,
    aws_region,
    source_ip,
    error_code,
    substr(request_parameters, 1, 160) AS request
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND event_type = 'sso'
  AND event_name LIKE '%Application%'
  AND COALESCE(read_only, false) = false
  AND event_name NOT LIKE 'Get%'
  AND event_name NOT LIKE 'List%'
  AND event_name NOT LIKE 'Describe%'
ORDER BY event_time DESC, event_id
LIMIT 100
