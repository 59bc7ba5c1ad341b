//! Rules on IAM Identity Center (SSO admin): permission sets, their policies, account
//! assignments and managed applications; and what the stored Identity Center events say about a
//! permission set, a group or a user (names, admin policies, group assignments), which
//! `sso-account-assignment` and `admin-group-membership` read (docs/alerts.md, "Rules that read
//! history").

use super::event_rule::{EventCase, EventRule};
use super::fields::{get_ci, or_unknown, scalar};
use super::history::{History, Reads};
use super::policy::{admin_policy_name, dangerous_grants, policy_document};
use super::view::{Field, Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, SSO_SOURCE};
use crate::normalize::NormalizedEvent;

/// `eventSource` of Identity Center's directory (the console's users, groups and memberships).
pub(super) const SSO_DIRECTORY_SOURCE: &str = "sso-directory.amazonaws.com";
/// `eventSource` of the Identity Store API (users, groups and memberships).
pub(super) const IDENTITY_STORE_SOURCE: &str = "identitystore.amazonaws.com";

/// What CloudTrail writes instead of a value it withholds (Identity Store user names, and group
/// display names since 2025): never a name.
const HIDDEN: &str = "HIDDEN_DUE_TO_SECURITY_REASONS";

/// The stored calls that change a permission set's policies.
pub(super) const PERMISSION_SET_POLICY_CALLS: [&str; 4] = [
    "AttachManagedPolicyToPermissionSet",
    "DetachManagedPolicyFromPermissionSet",
    "PutInlinePolicyToPermissionSet",
    "DeleteInlinePolicyFromPermissionSet",
];

/// The stored calls that name a permission set, a group or a user.
pub(super) const NAMING_CALLS: [&str; 3] = ["CreatePermissionSet", "CreateGroup", "CreateUser"];

/// The calls `sso-account-assignment` reads.
const ASSIGNMENT_READS: [&str; 7] = [
    PERMISSION_SET_POLICY_CALLS[0],
    PERMISSION_SET_POLICY_CALLS[1],
    PERMISSION_SET_POLICY_CALLS[2],
    PERMISSION_SET_POLICY_CALLS[3],
    NAMING_CALLS[0],
    NAMING_CALLS[1],
    NAMING_CALLS[2],
];

/// The details shared by the permission-set rules.
const PERMISSION_SET_CONTEXT: [(&str, &[Field]); 4] = [
    ("Instance ARN", &[Field::Req("instanceArn")]),
    ("Session Duration", &[Field::Req("sessionDuration")]),
    ("Relay State", &[Field::Req("relayState")]),
    ("Description", &[Field::Req("description")]),
];

pub(super) const PERMISSION_SET_CREATION: Rule = Rule {
    info: RuleInfo {
        id: "sso-permission-set-creation",
        title: "SSO Permission Set Created",
        severity: Severity::Critical,
        description: "sso:CreatePermissionSet (eventSource sso.amazonaws.com) succeeded. Failed \
            calls do not alert.",
        attack: &["T1098.003"],
        seed_check: Some("check_sso_permission_set_creation"),
    },
    logic: Logic::Events(&EventRule {
        source: SSO_SOURCE,
        events: &[EventCase::new("CreatePermissionSet", "was created")],
        noun: "Permission set",
        subject: &[Field::Req("name"), Field::Resp(&["permissionSet", "name"])],
        place: " in IAM Identity Center",
        context: &[
            (
                "Permission Set",
                &[Field::Req("name"), Field::Resp(&["permissionSet", "name"])],
            ),
            (
                "Permission Set ARN",
                &[Field::Resp(&["permissionSet", "permissionSetArn"])],
            ),
            PERMISSION_SET_CONTEXT[0],
            PERMISSION_SET_CONTEXT[1],
            PERMISSION_SET_CONTEXT[2],
        ],
    }),
};

pub(super) const PERMISSION_SET_UPDATE: Rule = Rule {
    info: RuleInfo {
        id: "sso-permission-set-update",
        title: "SSO Permission Set Updated",
        severity: Severity::Critical,
        description: "sso:UpdatePermissionSet (eventSource sso.amazonaws.com) succeeded. Failed \
            calls do not alert.",
        attack: &["T1098.003"],
        seed_check: Some("check_sso_permission_set_update"),
    },
    logic: Logic::Events(&EventRule {
        source: SSO_SOURCE,
        events: &[EventCase::new("UpdatePermissionSet", "was updated")],
        noun: "Permission set",
        subject: &[Field::Req("permissionSetArn")],
        place: " in IAM Identity Center",
        context: &[
            ("Permission Set ARN", &[Field::Req("permissionSetArn")]),
            PERMISSION_SET_CONTEXT[0],
            PERMISSION_SET_CONTEXT[1],
            PERMISSION_SET_CONTEXT[2],
            PERMISSION_SET_CONTEXT[3],
        ],
    }),
};

pub(super) const ADMIN_POLICY_ATTACHMENT: Rule = Rule {
    info: RuleInfo {
        id: "sso-admin-policy-attachment",
        title: "Admin Policy Attached to SSO Permission Set",
        severity: Severity::Critical,
        description: "sso:AttachManagedPolicyToPermissionSet succeeded with managedPolicyArn \
            exactly one of the admin AWS-managed policies of admin-policy-attachment. Other \
            policies and failed calls do not alert.",
        attack: &["T1098.003"],
        seed_check: Some("check_sso_admin_policy_attachment"),
    },
    logic: Logic::Check(sso_admin_policy_attachment),
};

pub(super) const ACCOUNT_ASSIGNMENT: Rule = Rule {
    info: RuleInfo {
        id: "sso-account-assignment",
        title: "SSO Account Assignment Created",
        severity: Severity::Critical,
        description: "sso:CreateAccountAssignment succeeded (a user or group given a permission \
            set on an account). Failed calls do not alert. The alert names the permission set \
            and the principal from the stored CreatePermissionSet and Identity Store \
            CreateGroup/CreateUser events when they are known (the ARN and id otherwise), shows \
            the permission set's admin policies when the stored events show any, words the \
            assignment by responseElements.accountAssignmentCreationStatus.status (IN_PROGRESS \
            \"is being given\", SUCCEEDED \"was given\", FAILED \"failed\"), and flags a \
            targetId equal to the account where the call was made (the management account \
            unless Identity Center administration is delegated).",
        attack: &["T1098.003"],
        seed_check: Some("check_sso_account_assignment"),
    },
    logic: Logic::Known(
        &Reads {
            triggers: &["CreateAccountAssignment"],
            reads: &ASSIGNMENT_READS,
        },
        sso_account_assignment,
    ),
};

pub(super) const APP_CREATION: Rule = Rule {
    info: RuleInfo {
        id: "sso-app-creation",
        title: "SSO Application Created",
        severity: Severity::High,
        description: "sso:CreateManagedApplicationInstance succeeded. Failed calls do not \
            alert.",
        attack: &["T1098"],
        seed_check: Some("check_sso_app_creation"),
    },
    logic: Logic::Check(sso_app_creation),
};

pub(super) const APP_DELETION: Rule = Rule {
    info: RuleInfo {
        id: "sso-app-deletion",
        title: "SSO Application Deleted",
        severity: Severity::High,
        description: "sso:DeleteManagedApplicationInstance succeeded. Failed calls do not \
            alert.",
        attack: &["T1098"],
        seed_check: Some("check_sso_app_deletion"),
    },
    logic: Logic::Check(sso_app_deletion),
};

fn sso_admin_policy_attachment(v: &View) -> Option<Hit> {
    if !v.succeeded(SSO_SOURCE, &["AttachManagedPolicyToPermissionSet"]) {
        return None;
    }
    let policy_arn = v.req_str("managedPolicyArn")?;
    let policy = admin_policy_name(&policy_arn)?;
    let ps = v.req_str("permissionSetArn");
    Some(
        Hit::new(format!(
            "{policy} was attached to permission set {} by {}",
            or_unknown(&ps),
            v.actor()
        ))
        .with("Permission Set ARN", ps)
        .with("Policy Name", Some(policy))
        .with("Policy ARN", Some(policy_arn))
        .with("Instance ARN", v.req_str("instanceArn")),
    )
}

fn sso_account_assignment(v: &View, history: &History) -> Option<Hit> {
    if !v.succeeded(SSO_SOURCE, &["CreateAccountAssignment"]) {
        return None;
    }
    let account = v.account();
    let target = v.req_str("targetId");
    let ps = v.req_str("permissionSetArn");
    let principal_type = v.req_str("principalType");
    let principal = v.req_str("principalId");
    let status = v.resp_path(&["accountAssignmentCreationStatus", "status"]);
    let ps_name = ps
        .as_deref()
        .and_then(|arn| permission_set_name(history, v.e, account, arn));
    let kind = principal_type.as_deref().map(str::trim).unwrap_or("");
    let principal_name = principal.as_deref().and_then(|id| {
        if kind.eq_ignore_ascii_case("USER") {
            user_name(history, v.e, account, id)
        } else if kind.eq_ignore_ascii_case("GROUP") {
            group_name(history, v.e, account, id)
        } else {
            None
        }
    });
    let admin = ps
        .as_deref()
        .map(|arn| permission_set_admin(history, v.e, account, arn))
        .unwrap_or_default();
    let management = match (target.as_deref(), account) {
        (Some(t), Some(a)) => t.trim() == a,
        _ => false,
    };

    let noun = match kind.to_ascii_lowercase().as_str() {
        "user" => "User".to_string(),
        "group" => "Group".to_string(),
        "" => "Principal".to_string(),
        other => other.to_string(),
    };
    let who = format!(
        "{noun} {}",
        principal_name
            .as_deref()
            .or(principal.as_deref())
            .unwrap_or("unknown")
    );
    let what = ps_name.as_deref().or(ps.as_deref()).unwrap_or("unknown");
    let on = or_unknown(&target);
    let actor = v.actor();
    let state = status.as_deref().map(|s| s.trim().to_ascii_uppercase());
    let mut summary = match state.as_deref() {
        Some("SUCCEEDED") => {
            format!("{who} was given permission set {what} on account {on} by {actor}")
        }
        Some("IN_PROGRESS") => {
            format!("{who} is being given permission set {what} on account {on} by {actor}")
        }
        Some("FAILED") => format!(
            "{who} was not given permission set {what} on account {on}: the assignment \
             requested by {actor} failed"
        ),
        _ => format!(
            "Permission set {what} on account {on} was requested for {} by {actor}",
            lower_first(&who)
        ),
    };
    if !admin.is_empty() {
        let names: Vec<&str> = admin.iter().map(|g| g.what.as_str()).collect();
        summary.push_str(&format!("; the permission set grants {}", names.join(", ")));
    }
    if management {
        summary.push_str(
            "; the target is the account where the call was made, which in an organisation is \
             the management account unless Identity Center administration is delegated",
        );
    }
    let mut hit = Hit::new(summary);
    if state.as_deref() == Some("FAILED") {
        hit = hit.title("SSO Account Assignment Failed");
    }
    Some(
        hit.with("Target Account", target)
            .with("Target Is Management Account", management.then_some("yes"))
            .with("Target Type", v.req_str("targetType"))
            .with("Permission Set", ps_name)
            .with("Permission Set ARN", ps)
            .with("Admin Policies", describe_all(&admin))
            .with("Principal Type", principal_type)
            .with("Principal", principal_name)
            .with("Principal ID", principal)
            .with("Assignment Status", status)
            .with("Instance ARN", v.req_str("instanceArn")),
    )
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A value CloudTrail recorded, if it is one (not blank, not withheld).
fn known(value: Option<String>) -> Option<String> {
    value
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != HIDDEN)
}

fn same_id(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// The stored event belongs to the account `account` (events of another account never count).
pub(super) fn same_account(stored: &View, account: Option<&str>) -> bool {
    stored.account() == account
}

/// What makes a principal admin, and the stored event that did it.
pub(super) struct AdminGrant<'h> {
    /// `AdministratorAccess`, or `inline policy (Allow *)`.
    pub(super) what: String,
    /// `attached`, `put`.
    verb: &'static str,
    pub(super) event: &'h NormalizedEvent,
}

impl<'h> AdminGrant<'h> {
    pub(super) fn new(what: String, verb: &'static str, event: &'h NormalizedEvent) -> Self {
        AdminGrant { what, verb, event }
    }

    /// `AdministratorAccess (attached 2025-08-10T08:55:25Z by carol)`.
    pub(super) fn describe(&self) -> String {
        format!(
            "{} ({} {} by {})",
            self.what, self.verb, self.event.event_time, self.event.user_name
        )
    }
}

/// Every grant described, joined with `; ` (`None` for none).
pub(super) fn describe_all(grants: &[AdminGrant]) -> Option<String> {
    (!grants.is_empty()).then(|| {
        grants
            .iter()
            .map(AdminGrant::describe)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// What makes permission set `ps_arn` admin as of `event`, from the stored events of its
/// account: an admin AWS-managed policy attached (and not detached since), or an inline policy
/// with admin-level grants (not replaced by a scoped one or deleted since). Newest first.
pub(super) fn permission_set_admin<'h>(
    history: &'h History,
    event: &'h NormalizedEvent,
    account: Option<&str>,
    ps_arn: &str,
) -> Vec<AdminGrant<'h>> {
    let mut decided: Vec<String> = Vec::new();
    let mut inline_decided = false;
    let mut grants = Vec::new();
    for stored in history.before(&PERMISSION_SET_POLICY_CALLS, event) {
        let s = View::new(stored);
        if s.e.event_source != SSO_SOURCE
            || s.failed()
            || !same_account(&s, account)
            || !s
                .req_str("permissionSetArn")
                .is_some_and(|a| same_id(&a, ps_arn))
        {
            continue;
        }
        match s.e.event_name.as_str() {
            "AttachManagedPolicyToPermissionSet" | "DetachManagedPolicyFromPermissionSet" => {
                let Some(arn) = s.req_str("managedPolicyArn") else {
                    continue;
                };
                let key = arn.trim().to_ascii_lowercase();
                if decided.contains(&key) {
                    continue;
                }
                decided.push(key);
                if s.e.event_name.starts_with("Attach") {
                    if let Some(name) = admin_policy_name(&arn) {
                        grants.push(AdminGrant::new(name.to_string(), "attached", stored));
                    }
                }
            }
            "PutInlinePolicyToPermissionSet" | "DeleteInlinePolicyFromPermissionSet" => {
                if inline_decided {
                    continue;
                }
                inline_decided = true;
                if s.e.event_name.starts_with("Put") {
                    let found = policy_document(s.req_value("inlinePolicy"))
                        .map(|doc| dangerous_grants(&doc))
                        .unwrap_or_default();
                    if !found.is_empty() {
                        grants.push(AdminGrant::new(
                            format!("inline policy ({})", found.join("; ")),
                            "put",
                            stored,
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    grants
}

/// The name of permission set `ps_arn`, from its stored CreatePermissionSet.
pub(super) fn permission_set_name(
    history: &History,
    event: &NormalizedEvent,
    account: Option<&str>,
    ps_arn: &str,
) -> Option<String> {
    history
        .before(&["CreatePermissionSet"], event)
        .find_map(|stored| {
            let s = View::new(stored);
            let holds = s.e.event_source == SSO_SOURCE
                && !s.failed()
                && same_account(&s, account)
                && s.resp_path(&["permissionSet", "permissionSetArn"])
                    .is_some_and(|a| same_id(&a, ps_arn));
            holds.then(|| {
                known(s.resp_path(&["permissionSet", "name"])).or_else(|| known(s.req_str("name")))
            })
        })
        .flatten()
}

/// A stored Identity Store creation (`CreateGroup`, `CreateUser`) of sso-directory or
/// identitystore, in this account, that succeeded.
fn directory_call(s: &View, account: Option<&str>) -> bool {
    (s.e.event_source == SSO_DIRECTORY_SOURCE || s.e.event_source == IDENTITY_STORE_SOURCE)
        && !s.failed()
        && same_account(s, account)
}

/// The display name of Identity Center group `group_id`, from its stored CreateGroup
/// (sso-directory: `responseElements.group.{groupId, displayName}`; identitystore:
/// `responseElements.groupId`, `requestParameters.displayName`). `None` when unknown or withheld.
pub(super) fn group_name(
    history: &History,
    event: &NormalizedEvent,
    account: Option<&str>,
    group_id: &str,
) -> Option<String> {
    history
        .before(&["CreateGroup"], event)
        .find_map(|stored| {
            let s = View::new(stored);
            let id = s
                .resp_path(&["group", "groupId"])
                .or_else(|| s.resp_path(&["groupId"]));
            let holds = directory_call(&s, account) && id.is_some_and(|id| same_id(&id, group_id));
            holds.then(|| {
                known(s.resp_path(&["group", "displayName"]))
                    .or_else(|| known(s.req_str("displayName")))
            })
        })
        .flatten()
}

/// The user name of Identity Center user `user_id`, from its stored CreateUser
/// (sso-directory: `responseElements.user.{userId, userName}`; identitystore:
/// `responseElements.userId`, `requestParameters.userName`). `None` when unknown or withheld.
pub(super) fn user_name(
    history: &History,
    event: &NormalizedEvent,
    account: Option<&str>,
    user_id: &str,
) -> Option<String> {
    history
        .before(&["CreateUser"], event)
        .find_map(|stored| {
            let s = View::new(stored);
            let id = s
                .resp_path(&["user", "userId"])
                .or_else(|| s.resp_path(&["userId"]));
            let holds = directory_call(&s, account) && id.is_some_and(|id| same_id(&id, user_id));
            holds.then(|| {
                known(s.resp_path(&["user", "userName"]))
                    .or_else(|| known(s.req_str("userName")))
                    .or_else(|| known(s.resp_path(&["user", "displayName"])))
                    .or_else(|| known(s.req_str("displayName")))
            })
        })
        .flatten()
}

/// One account assignment a group holds: the account and the permission set.
pub(super) struct Assignment<'h> {
    pub(super) target: String,
    pub(super) permission_set: String,
    pub(super) event: &'h NormalizedEvent,
}

/// The account assignments Identity Center group `group_id` holds as of `event`, from the stored
/// events of its account: a CreateAccountAssignment with principalType GROUP and this principalId
/// (not FAILED) not followed by a DeleteAccountAssignment of the same account and permission set.
pub(super) fn group_assignments<'h>(
    history: &'h History,
    event: &'h NormalizedEvent,
    account: Option<&str>,
    group_id: &str,
) -> Vec<Assignment<'h>> {
    let mut decided: Vec<(String, String)> = Vec::new();
    let mut held = Vec::new();
    for stored in history.before(
        &["CreateAccountAssignment", "DeleteAccountAssignment"],
        event,
    ) {
        let s = View::new(stored);
        if s.e.event_source != SSO_SOURCE
            || s.failed()
            || !same_account(&s, account)
            || !s
                .req_str("principalType")
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("GROUP"))
            || !s
                .req_str("principalId")
                .is_some_and(|p| same_id(&p, group_id))
        {
            continue;
        }
        let (Some(target), Some(ps)) = (s.req_str("targetId"), s.req_str("permissionSetArn"))
        else {
            continue;
        };
        let creating = s.e.event_name == "CreateAccountAssignment";
        if creating
            && s.resp_path(&["accountAssignmentCreationStatus", "status"])
                .is_some_and(|st| st.trim().eq_ignore_ascii_case("FAILED"))
        {
            // A creation that failed changed nothing.
            continue;
        }
        let key = (
            target.trim().to_ascii_lowercase(),
            ps.trim().to_ascii_lowercase(),
        );
        if decided.contains(&key) {
            continue;
        }
        decided.push(key);
        if creating {
            held.push(Assignment {
                target: target.trim().to_string(),
                permission_set: ps.trim().to_string(),
                event: stored,
            });
        }
    }
    held
}

/// Context of the (console-only, sparsely documented) managed-application calls: whichever
/// identifying fields the request and response carry.
fn sso_app_hit(v: &View, verb: &str) -> Hit {
    const KEYS: [(&str, &str); 8] = [
        ("applicationName", "Application Name"),
        ("name", "Application Name"),
        ("displayName", "Display Name"),
        ("managedApplicationInstanceId", "Application Instance ID"),
        ("instanceId", "Application Instance ID"),
        ("applicationArn", "Application ARN"),
        ("applicationProviderArn", "Application Provider ARN"),
        ("templateId", "Template ID"),
    ];
    let mut hit = Hit::new(String::new());
    for (key, label) in KEYS {
        if hit.context.iter().any(|(l, _)| l == label) {
            continue;
        }
        let value = v.req_str(key).or_else(|| {
            v.resp
                .as_object()
                .and_then(|m| m.values().find_map(|inner| get_ci(inner, key)))
                .and_then(scalar)
        });
        hit = hit.with(label, value);
    }
    hit = hit.with("Instance ARN", v.req_str("instanceArn"));
    if hit.context.is_empty() {
        hit = hit.with("Request Parameters", v.e.request_parameters.clone());
    }
    let named = hit
        .context
        .iter()
        .find(|(l, _)| l == "Application Name" || l == "Application Instance ID")
        .map(|(_, val)| format!(" {val}"))
        .unwrap_or_default();
    hit.summary = format!(
        "Managed application instance{named} was {verb} in IAM Identity Center by {}",
        v.actor()
    );
    hit
}

fn sso_app_creation(v: &View) -> Option<Hit> {
    v.succeeded(SSO_SOURCE, &["CreateManagedApplicationInstance"])
        .then(|| sso_app_hit(v, "created"))
}

fn sso_app_deletion(v: &View) -> Option<Hit> {
    v.succeeded(SSO_SOURCE, &["DeleteManagedApplicationInstance"])
        .then(|| sso_app_hit(v, "deleted"))
}
