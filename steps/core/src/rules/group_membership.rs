//! `admin-group-membership`: a user added to a group that, from what the tracker has stored,
//! holds admin power at that moment. IAM groups hold it through their policies; Identity Center
//! groups through an account assignment of an admin permission set. Nothing in the membership
//! call says so: the rule reads the stored events (docs/alerts.md, "Rules that read history").
//! A group the stored events say nothing about never alerts, whatever its name.

use super::fields::or_unknown;
use super::history::{History, Reads};
use super::policy::{admin_policy_name, dangerous_grants, policy_document};
use super::sso::{
    describe_all, group_assignments, group_name, permission_set_admin, permission_set_name,
    same_account, user_name, AdminGrant, IDENTITY_STORE_SOURCE, NAMING_CALLS,
    PERMISSION_SET_POLICY_CALLS, SSO_DIRECTORY_SOURCE,
};
use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, IAM_SOURCE};
use crate::normalize::NormalizedEvent;

/// The stored IAM calls that give a group policies or take them away.
const GROUP_POLICY_CALLS: [&str; 4] = [
    "AttachGroupPolicy",
    "DetachGroupPolicy",
    "PutGroupPolicy",
    "DeleteGroupPolicy",
];

/// Everything the rule reads.
const READS: [&str; 13] = [
    GROUP_POLICY_CALLS[0],
    GROUP_POLICY_CALLS[1],
    GROUP_POLICY_CALLS[2],
    GROUP_POLICY_CALLS[3],
    "CreateAccountAssignment",
    "DeleteAccountAssignment",
    PERMISSION_SET_POLICY_CALLS[0],
    PERMISSION_SET_POLICY_CALLS[1],
    PERMISSION_SET_POLICY_CALLS[2],
    PERMISSION_SET_POLICY_CALLS[3],
    NAMING_CALLS[0],
    NAMING_CALLS[1],
    NAMING_CALLS[2],
];

pub(super) const ADMIN_GROUP_MEMBERSHIP: Rule = Rule {
    info: RuleInfo {
        id: "admin-group-membership",
        title: "User Added to Admin Group",
        severity: Severity::Critical,
        description: "A user added to a group that holds admin power, as the stored events of \
            the same account show at the time of the call. IAM: iam:AddUserToGroup succeeded \
            for a groupName that has an admin AWS-managed policy attached (AttachGroupPolicy, \
            the policies of admin-policy-attachment, not followed by a DetachGroupPolicy of it) \
            or an inline policy with admin-level grants (PutGroupPolicy, read as \
            dangerous-inline-policy reads documents, not followed by a DeleteGroupPolicy or a \
            scoped PutGroupPolicy of the same policyName). Identity Center: sso-directory \
            AddMemberToGroup or identitystore CreateGroupMembership succeeded for a groupId \
            that holds an account assignment (CreateAccountAssignment, principalType GROUP, not \
            FAILED, not followed by a DeleteAccountAssignment of the same account and permission \
            set) of a permission set with an admin AWS-managed policy attached \
            (AttachManagedPolicyToPermissionSet, not followed by \
            DetachManagedPolicyFromPermissionSet) or an admin-level inline policy \
            (PutInlinePolicyToPermissionSet, not followed by DeleteInlinePolicyFromPermissionSet \
            or a scoped one). A group the stored events say nothing about does not alert, \
            whatever its name; events of another account never count; failed calls do not \
            alert. The alert names the user, the group and the admin policies, when and by whom \
            each was attached, and for Identity Center the permission sets and target accounts \
            (names from the stored CreateGroup, CreateUser and CreatePermissionSet when known).",
        attack: &["T1098.003", "T1098"],
        seed_check: None,
    },
    logic: Logic::Known(
        &Reads {
            triggers: &[
                "AddUserToGroup",
                "AddMemberToGroup",
                "CreateGroupMembership",
            ],
            reads: &READS,
        },
        admin_group_membership,
    ),
};

fn admin_group_membership(v: &View, history: &History) -> Option<Hit> {
    if v.succeeded(IAM_SOURCE, &["AddUserToGroup"]) {
        iam_membership(v, history)
    } else if v.succeeded(SSO_DIRECTORY_SOURCE, &["AddMemberToGroup"])
        || v.succeeded(IDENTITY_STORE_SOURCE, &["CreateGroupMembership"])
    {
        identity_center_membership(v, history)
    } else {
        None
    }
}

/// What makes IAM group `group` admin as of `event`, from the stored events of its account:
/// each policy (managed by ARN, inline by name) is decided by its newest stored event.
fn iam_group_admin<'h>(
    history: &'h History,
    event: &'h NormalizedEvent,
    account: Option<&str>,
    group: &str,
) -> Vec<AdminGrant<'h>> {
    let mut decided: Vec<String> = Vec::new();
    let mut grants = Vec::new();
    for stored in history.before(&GROUP_POLICY_CALLS, event) {
        let s = View::new(stored);
        if s.e.event_source != IAM_SOURCE
            || s.failed()
            || !same_account(&s, account)
            // IAM group names are unique ignoring case.
            || !s
                .req_str("groupName")
                .is_some_and(|g| g.trim().eq_ignore_ascii_case(group.trim()))
        {
            continue;
        }
        let name = s.e.event_name.as_str();
        let managed = matches!(name, "AttachGroupPolicy" | "DetachGroupPolicy");
        let key = if managed {
            s.req_str("policyArn")
                .map(|a| format!("managed {}", a.trim().to_ascii_lowercase()))
        } else {
            s.req_str("policyName")
                .map(|n| format!("inline {}", n.trim().to_ascii_lowercase()))
        };
        let Some(key) = key else {
            continue;
        };
        if decided.contains(&key) {
            continue;
        }
        decided.push(key);
        match name {
            "AttachGroupPolicy" => {
                if let Some(policy) = s
                    .req_str("policyArn")
                    .as_deref()
                    .and_then(admin_policy_name)
                {
                    grants.push(AdminGrant::new(policy.to_string(), "attached", stored));
                }
            }
            "PutGroupPolicy" => {
                let found = policy_document(s.req_value("policyDocument"))
                    .map(|doc| dangerous_grants(&doc))
                    .unwrap_or_default();
                if !found.is_empty() {
                    grants.push(AdminGrant::new(
                        format!(
                            "inline policy {} ({})",
                            or_unknown(&s.req_str("policyName")),
                            found.join("; ")
                        ),
                        "put",
                        stored,
                    ));
                }
            }
            _ => {}
        }
    }
    grants
}

fn iam_membership(v: &View, history: &History) -> Option<Hit> {
    let group = v.req_str("groupName")?;
    let user = v.req_str("userName");
    let grants = iam_group_admin(history, v.e, v.account(), &group);
    if grants.is_empty() {
        return None;
    }
    let names: Vec<&str> = grants.iter().map(|g| g.what.as_str()).collect();
    Some(
        Hit::new(format!(
            "IAM user {} was added to group {group} by {}; the group holds {}",
            or_unknown(&user),
            v.actor(),
            names.join(", ")
        ))
        .with("Group", Some(group))
        .with("User", user)
        .with("Admin Policies", describe_all(&grants)),
    )
}

/// The member of an Identity Center membership call: sso-directory records
/// `member.memberId`, identitystore `memberId.userId` (other spellings accepted).
fn member_id(v: &View) -> Option<String> {
    [
        &["member", "memberId"][..],
        &["memberId", "userId"],
        &["member", "userId"],
        &["memberId"],
        &["userId"],
    ]
    .iter()
    .find_map(|path| v.req_path(path))
}

fn identity_center_membership(v: &View, history: &History) -> Option<Hit> {
    let group = v.req_str("groupId")?;
    let account = v.account();
    let mut held = Vec::new();
    for assignment in group_assignments(history, v.e, account, &group) {
        let grants = permission_set_admin(history, v.e, account, &assignment.permission_set);
        if !grants.is_empty() {
            let name = permission_set_name(history, v.e, account, &assignment.permission_set);
            held.push((assignment, name, grants));
        }
    }
    if held.is_empty() {
        return None;
    }
    let member = member_id(v);
    let member_name = member
        .as_deref()
        .and_then(|id| user_name(history, v.e, account, id));
    let group_label = group_name(history, v.e, account, &group);

    let holds: Vec<String> = held
        .iter()
        .map(|(a, name, grants)| {
            let policies: Vec<&str> = grants.iter().map(|g| g.what.as_str()).collect();
            format!(
                "permission set {} ({}) on account {}",
                name.as_deref().unwrap_or(&a.permission_set),
                policies.join(", "),
                a.target
            )
        })
        .collect();
    let details: Vec<String> = held
        .iter()
        .map(|(a, name, grants)| {
            format!(
                "{} on {} (assigned {} by {}): {}",
                name.as_deref().unwrap_or(&a.permission_set),
                a.target,
                a.event.event_time,
                a.event.user_name,
                describe_all(grants).unwrap_or_default()
            )
        })
        .collect();
    let targets = distinct(held.iter().map(|(a, _, _)| a.target.as_str()));
    let arns = distinct(held.iter().map(|(a, _, _)| a.permission_set.as_str()));
    Some(
        Hit::new(format!(
            "User {} was added to Identity Center group {} by {}; the group holds {}",
            member_name
                .as_deref()
                .or(member.as_deref())
                .unwrap_or("unknown"),
            group_label.as_deref().unwrap_or(&group),
            v.actor(),
            holds.join("; ")
        ))
        .title("User Added to Admin Identity Center Group")
        .with("Group", group_label)
        .with("Group ID", Some(group))
        .with("Member", member_name)
        .with("Member ID", member)
        .with("Admin Permission Sets", Some(details.join("; ")))
        .with("Permission Set ARNs", Some(arns.join(", ")))
        .with("Target Accounts", Some(targets.join(", ")))
        .with(
            "Target Is Management Account",
            targets.iter().any(|t| Some(*t) == account).then_some("yes"),
        )
        .with("Identity Store ID", v.req_str("identityStoreId")),
    )
}

/// The values, each once, in order.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}
