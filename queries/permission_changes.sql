-- name: permission_changes
-- description: IAM permission changes (policy attach/detach/put/delete, policy versions, trust policies, group membership, boundaries), newest first.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    event_time,
    user_name AS actor,
    event_name,
    COALESCE(
        NULLIF(split_part(split_part(request_parameters, '"roleName":"', 2), '"', 1), ''),
        NULLIF(split_part(split_part(request_parameters, '"userName":"', 2), '"', 1), ''),
        NULLIF(split_part(split_part(request_parameters, '"groupName":"', 2), '"', 1), '')
    ) AS target,
    COALESCE(
        NULLIF(split_part(split_part(request_parameters, '"policyArn":"', 2), '"', 1), ''),
        NULLIF(split_part(split_part(request_parameters, '"policyName":"', 2), '"', 1), ''),
        NULLIF(split_part(split_part(request_parameters, '"permissionsBoundary":"', 2), '"', 1), '')
    ) AS policy,
    source_ip,
    error_code
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND event_type = 'iam'
  AND event_name IN (
        'AttachUserPolicy', 'AttachRolePolicy', 'AttachGroupPolicy',
        'DetachUserPolicy', 'DetachRolePolicy', 'DetachGroupPolicy',
        'PutUserPolicy', 'PutRolePolicy', 'PutGroupPolicy',
        'DeleteUserPolicy', 'DeleteRolePolicy', 'DeleteGroupPolicy',
        'CreatePolicy', 'DeletePolicy', 'CreatePolicyVersion', 'DeletePolicyVersion',
        'SetDefaultPolicyVersion', 'UpdateAssumeRolePolicy',
        'AddUserToGroup', 'RemoveUserFromGroup',
        'PutUserPermissionsBoundary', 'DeleteUserPermissionsBoundary',
        'PutRolePermissionsBoundary', 'DeleteRolePermissionsBoundary'
  )
ORDER BY event_time DESC, event_id
LIMIT 100
