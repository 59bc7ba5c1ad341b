//! Rules on IAM users and their credentials: `user-creation`, `access-key-creation`,
//! `access-key-update`, `mfa-deletion`.

use super::event_rule::{EventCase, EventRule};
use super::fields::or_unknown;
use super::view::{Field, Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, IAM_SOURCE};

pub(super) const USER_CREATION: Rule = Rule {
    info: RuleInfo {
        id: "user-creation",
        title: "IAM User Created",
        severity: Severity::High,
        description: "iam:CreateUser succeeded. A failed call (any errorCode) does not alert.",
        attack: &["T1136.003"],
        seed_check: Some("check_user_creation"),
    },
    logic: Logic::Events(&EventRule {
        source: IAM_SOURCE,
        events: &[EventCase::new("CreateUser", "was created")],
        noun: "IAM user",
        subject: &[Field::Req("userName"), Field::Resp(&["user", "userName"])],
        place: "",
        context: &[
            (
                "New User",
                &[Field::Req("userName"), Field::Resp(&["user", "userName"])],
            ),
            ("New User ARN", &[Field::Resp(&["user", "arn"])]),
            ("Path", &[Field::Req("path")]),
        ],
    }),
};

pub(super) const ACCESS_KEY_CREATION: Rule = Rule {
    info: RuleInfo {
        id: "access-key-creation",
        title: "Access Key Created",
        severity: Severity::Critical,
        description: "iam:CreateAccessKey succeeded (for any user, including the caller \
            itself). Failed calls do not alert.",
        attack: &["T1098.001"],
        seed_check: Some("check_access_key_creation"),
    },
    logic: Logic::Check(access_key_creation),
};

pub(super) const ACCESS_KEY_UPDATE: Rule = Rule {
    info: RuleInfo {
        id: "access-key-update",
        title: "Access Key Status Changed",
        severity: Severity::High,
        description: "iam:UpdateAccessKey succeeded (a key activated or deactivated). Failed \
            calls do not alert.",
        attack: &["T1098.001"],
        seed_check: Some("check_access_key_update"),
    },
    logic: Logic::Check(access_key_update),
};

pub(super) const MFA_DELETION: Rule = Rule {
    info: RuleInfo {
        id: "mfa-deletion",
        title: "MFA Device Removed",
        severity: Severity::Critical,
        description: "iam:DeactivateMFADevice or iam:DeleteVirtualMFADevice succeeded. Failed \
            calls do not alert.",
        attack: &["T1556.006"],
        seed_check: Some("check_mfa_deletion"),
    },
    logic: Logic::Events(&EventRule {
        source: IAM_SOURCE,
        events: &[
            EventCase::titled(
                "DeactivateMFADevice",
                "was deactivated",
                "MFA Device Deactivated",
            ),
            EventCase::titled(
                "DeleteVirtualMFADevice",
                "was deleted",
                "Virtual MFA Device Deleted",
            ),
        ],
        noun: "MFA device",
        subject: &[Field::Req("serialNumber")],
        place: "",
        context: &[
            ("For User", &[Field::Req("userName")]),
            ("MFA Serial", &[Field::Req("serialNumber")]),
        ],
    }),
};

fn access_key_creation(v: &View) -> Option<Hit> {
    if !v.succeeded(IAM_SOURCE, &["CreateAccessKey"]) {
        return None;
    }
    let key_id = v.resp_path(&["accessKey", "accessKeyId"]);
    let for_user = v
        .req_str("userName")
        .or_else(|| v.resp_path(&["accessKey", "userName"]))
        .unwrap_or_else(|| v.actor().to_string());
    let key_text = key_id
        .as_deref()
        .map(|k| format!("Access key {k}"))
        .unwrap_or_else(|| "An access key".into());
    Some(
        Hit::new(format!(
            "{key_text} was created for user {for_user} by {}",
            v.actor()
        ))
        .with("For User", Some(for_user))
        .with("Access Key ID", key_id)
        .with("Key Status", v.resp_path(&["accessKey", "status"])),
    )
}

fn access_key_update(v: &View) -> Option<Hit> {
    if !v.succeeded(IAM_SOURCE, &["UpdateAccessKey"]) {
        return None;
    }
    let key_id = v.req_str("accessKeyId");
    let status = v.req_str("status");
    let for_user = v
        .req_str("userName")
        .unwrap_or_else(|| v.actor().to_string());
    let title = match status.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("Active") => Some("Access Key Activated"),
        Some(s) if s.eq_ignore_ascii_case("Inactive") => Some("Access Key Deactivated"),
        _ => None,
    };
    let mut hit = Hit::new(format!(
        "Access key {} of user {for_user} was set to {} by {}",
        or_unknown(&key_id),
        or_unknown(&status),
        v.actor()
    ))
    .with("Access Key ID", key_id)
    .with("New Status", status)
    .with("For User", Some(for_user));
    if let Some(t) = title {
        hit = hit.title(t);
    }
    Some(hit)
}
