//! Rules on IAM Identity Center (SSO admin): permission sets, their policies, account
//! assignments and managed applications.

use super::event_rule::{EventCase, EventRule};
use super::fields::{get_ci, or_unknown, scalar};
use super::policy::admin_policy_name;
use super::view::{Field, Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, SSO_SOURCE};

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
            set on an account). Failed calls do not alert.",
        attack: &["T1098.003"],
        seed_check: Some("check_sso_account_assignment"),
    },
    logic: Logic::Check(sso_account_assignment),
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

fn sso_account_assignment(v: &View) -> Option<Hit> {
    if !v.succeeded(SSO_SOURCE, &["CreateAccountAssignment"]) {
        return None;
    }
    let target = v.req_str("targetId");
    let ps = v.req_str("permissionSetArn");
    let principal_type = v.req_str("principalType");
    let principal = v.req_str("principalId");
    Some(
        Hit::new(format!(
            "{} {} was given permission set {} on account {} by {}",
            principal_type.as_deref().unwrap_or("Principal"),
            or_unknown(&principal),
            or_unknown(&ps),
            or_unknown(&target),
            v.actor()
        ))
        .with("Target Account", target)
        .with("Target Type", v.req_str("targetType"))
        .with("Permission Set ARN", ps)
        .with("Principal Type", principal_type)
        .with("Principal ID", principal)
        .with("Instance ARN", v.req_str("instanceArn")),
    )
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
