-- name: sso_admin_users
-- description: Who administers IAM Identity Center: changes per user split into permission sets, account assignments, Identity Store users, groups and memberships, and applications.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    user_name,
    count(*) AS admin_actions,
    sum(CASE WHEN event_name LIKE '%PermissionSet' THEN 1 ELSE 0 END) AS permission_set_changes,
    sum(CASE WHEN event_name LIKE '%AccountAssignment' THEN 1 ELSE 0 END) AS assignment_changes,
    sum(CASE WHEN event_source IN ('sso-directory.amazonaws.com', 'identitystore.amazonaws.com')
              AND event_name IN ('CreateUser', 'UpdateUser', 'DeleteUser',
                                 'CreateGroup', 'UpdateGroup', 'DeleteGroup',
                                 'AddMemberToGroup', 'RemoveMemberFromGroup',
                                 'CreateGroupMembership', 'DeleteGroupMembership')
             THEN 1 ELSE 0 END) AS directory_changes,
    sum(CASE WHEN event_name LIKE '%Application%' THEN 1 ELSE 0 END) AS application_changes,
    count(DISTINCT source_ip) AS source_ips,
    max(event_time) AS last_seen
FROM iam_events
WHERE event_time >= ?
  AND year * 10000 + month * 100 + day BETWEEN ? AND ?
  AND event_type = 'sso'
  AND COALESCE(read_only, false) = false
  AND event_name NOT IN ('Authenticate', 'Federate', 'Logout', 'GetRoleCredentials', 'ListAccounts', 'ListAccountRoles')
GROUP BY user_name
ORDER BY admin_actions DESC, user_name
LIMIT 100
