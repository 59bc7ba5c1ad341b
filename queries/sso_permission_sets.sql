-- name: sso_permission_sets
-- description: IAM Identity Center permission set changes (create/update/delete/provision, managed, inline and boundary policies), newest first.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    event_time,
    user_name,
    event_name,
    COALESCE(
        NULLIF(split_part(split_part(request_parameters, '"permissionSetArn":"', 2), '"', 1), ''),
        NULLIF(split_part(split_part(request_parameters, '"name":"', 2), '"', 1), '')
    ) AS permission_set,
    NULLIF(split_part(split_part(request_parameters, '"managedPolicyArn":"', 2), '"', 1), '') AS managed_policy,
    source_ip,
    error_code
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND event_type = 'sso'
  AND event_name IN (
        'CreatePermissionSet', 'UpdatePermissionSet', 'DeletePermissionSet', 'ProvisionPermissionSet',
        'AttachManagedPolicyToPermissionSet', 'DetachManagedPolicyFromPermissionSet',
        'AttachCustomerManagedPolicyReferenceToPermissionSet',
        'DetachCustomerManagedPolicyReferenceFromPermissionSet',
        'PutInlinePolicyToPermissionSet', 'DeleteInlinePolicyFromPermissionSet',
        'PutPermissionsBoundaryToPermissionSet', 'DeletePermissionsBoundaryFromPermissionSet'
  )
ORDER BY event_time DESC, event_id
LIMIT 100
