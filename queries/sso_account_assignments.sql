-- name: sso_account_assignments
-- description: IAM Identity Center account assignments created or deleted: who gave which principal which permission set in which account.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    event_time,
    user_name,
    event_name,
    NULLIF(split_part(split_part(request_parameters, '"targetId":"', 2), '"', 1), '') AS target_account,
    NULLIF(split_part(split_part(request_parameters, '"principalType":"', 2), '"', 1), '') AS principal_type,
    NULLIF(split_part(split_part(request_parameters, '"principalId":"', 2), '"', 1), '') AS principal_id,
    NULLIF(split_part(split_part(request_parameters, '"permissionSetArn":"', 2), '"', 1), '') AS permission_set,
    error_code
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND event_type = 'sso'
  AND event_name IN ('CreateAccountAssignment', 'DeleteAccountAssignment')
ORDER BY event_time DESC, event_id
LIMIT 100
