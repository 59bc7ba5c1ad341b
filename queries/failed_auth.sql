-- name: failed_auth
-- description: Failed console sign-ins and access-denied/invalid-credential errors per user and source IP (brute force, probing).
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    user_name,
    source_ip,
    count(*) AS failures,
    sum(CASE WHEN event_type = 'signin' THEN 1 ELSE 0 END) AS signin_failures,
    sum(CASE WHEN event_type = 'signin' THEN 0 ELSE 1 END) AS api_denials,
    count(DISTINCT event_name) AS actions,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND (
        (event_type = 'signin' AND (response_elements LIKE '%"Failure"%' OR error_code IS NOT NULL))
     OR error_code LIKE '%AccessDenied%'
     OR error_code LIKE '%Unauthorized%'
     OR error_code IN (
            'InvalidClientTokenId', 'SignatureDoesNotMatch', 'IncompleteSignature',
            'MissingAuthenticationToken', 'ExpiredToken', 'ExpiredTokenException',
            'InvalidIdentityToken', 'IDPRejectedClaim', 'AuthFailure', 'InvalidAccessKeyId'
        )
  )
GROUP BY user_name, source_ip
ORDER BY failures DESC, last_seen DESC, user_name, source_ip
LIMIT 100
