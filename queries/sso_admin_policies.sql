-- name: sso_admin_policies
-- description: Admin-grade policies attached to or detached from permission sets (AdministratorAccess, IAMFullAccess, ..., inline Action "*").
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    event_time,
    user_name,
    event_name,
    admin_policy,
    permission_set,
    source_ip,
    error_code
FROM (
    SELECT
        event_time,
        event_id,
        user_name,
        event_name,
        CASE
            WHEN request_parameters LIKE '%"managedPolicyArn":"arn:%:iam::aws:policy/AdministratorAccess"%' THEN 'AdministratorAccess'
            WHEN request_parameters LIKE '%"managedPolicyArn":"arn:%:iam::aws:policy/IAMFullAccess"%' THEN 'IAMFullAccess'
            WHEN request_parameters LIKE '%"managedPolicyArn":"arn:%:iam::aws:policy/PowerUserAccess"%' THEN 'PowerUserAccess'
            WHEN request_parameters LIKE '%"managedPolicyArn":"arn:%:iam::aws:policy/AWSSSOMasterAccountAdministrator"%' THEN 'AWSSSOMasterAccountAdministrator'
            WHEN request_parameters LIKE '%"managedPolicyArn":"arn:%:iam::aws:policy/AWSSSOMemberAccountAdministrator"%' THEN 'AWSSSOMemberAccountAdministrator'
            WHEN request_parameters LIKE '%"managedPolicyArn":"arn:%:iam::aws:policy/AWSIdentityCenterFullAccess"%' THEN 'AWSIdentityCenterFullAccess'
            WHEN event_name = 'PutInlinePolicyToPermissionSet'
             AND (request_parameters LIKE '%Action__:__*__%' OR request_parameters LIKE '%Action__: __*__%'
                  OR request_parameters LIKE '%Action__:[__*__%' OR request_parameters LIKE '%Action__: [__*__%')
                THEN 'inline: Action *'
        END AS admin_policy,
        NULLIF(split_part(split_part(request_parameters, '"permissionSetArn":"', 2), '"', 1), '') AS permission_set,
        source_ip,
        error_code
    FROM iam_events
    WHERE event_time >= ?
      AND year * 10000 + month * 100 + day BETWEEN ? AND ?
      AND event_type = 'sso'
      AND event_name IN (
            'AttachManagedPolicyToPermissionSet', 'DetachManagedPolicyFromPermissionSet',
            'PutInlinePolicyToPermissionSet'
      )
) AS candidates
WHERE admin_policy IS NOT NULL
ORDER BY event_time DESC, event_id
LIMIT 100
