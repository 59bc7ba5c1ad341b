//! Reading IAM policy documents (docs/alerts.md, "The rules"): the document forms CloudTrail
//! records, the broad grants of identity policies, the principals of trust policies, and the
//! AWS-managed admin policies.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::fields::{get_ci, string_list};
use crate::filter::glob_match;

/// The AWS-managed policies that grant administrator (or IAM/Identity Center administrator)
/// power. Matched exactly, by ARN `arn:<partition>:iam::aws:policy/<name>`, never by substring:
/// a customer policy called `MyAdministratorAccessCopy` is not one of them.
pub const ADMIN_POLICY_NAMES: [&str; 6] = [
    "AdministratorAccess",
    "IAMFullAccess",
    "PowerUserAccess",
    "AWSSSOMasterAccountAdministrator",
    "AWSIdentityCenterFullAccess",
    "AWSSSOMemberAccountAdministrator",
];

/// Decodes `%XX` escapes (and, when `plus_is_space`, `+` as a space, as in form encoding).
/// Invalid escapes are kept as they are; invalid UTF-8 is replaced.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let text = if plus_is_space {
        Cow::Owned(text.replace('+', " "))
    } else {
        Cow::Borrowed(text)
    };
    percent_decode_str(&text).decode_utf8_lossy().into_owned()
}

/// A policy document from its request value: a JSON object, JSON text, or URL-encoded JSON
/// text (as CloudTrail records some IAM calls). `None` when it cannot be read.
pub fn policy_document(value: Option<&Value>) -> Option<Value> {
    fn from_text(text: &str, depth: u8) -> Option<Value> {
        let text = text.trim();
        let mut candidates = vec![Cow::Borrowed(text)];
        if text.contains('%') {
            candidates.push(Cow::Owned(percent_decode(text, false)));
            candidates.push(Cow::Owned(percent_decode(text, true)));
        }
        candidates.into_iter().find_map(|c| {
            match serde_json::from_str::<Value>(c.trim()).ok()? {
                v @ Value::Object(_) => Some(v),
                // JSON text inside a JSON string: one more level at most.
                Value::String(inner) if depth == 0 => from_text(&inner, 1),
                _ => None,
            }
        })
    }
    match value? {
        v @ Value::Object(_) => Some(v.clone()),
        Value::String(s) => from_text(s, 0),
        _ => None,
    }
}

/// The statements of a policy document (`Statement` as an object or a list).
fn statements(doc: &Value) -> Vec<&Value> {
    match get_ci(doc, "Statement") {
        Some(Value::Array(items)) => items.iter().filter(|s| s.is_object()).collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    }
}

fn is_allow(statement: &Value) -> bool {
    get_ci(statement, "Effect")
        .and_then(Value::as_str)
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("allow"))
}

/// What an action pattern grants that we alert on: `*` (everything), `iam:*` or `sts:*`
/// (every action of the service), or an equivalent glob (`*:*`, `IAM:*`, `i*`, `iam:?*`).
fn broad_action(pattern: &str) -> Option<&'static str> {
    let p = pattern.trim().to_ascii_lowercase();
    // A pattern covers a whole service when it matches any action name, which we probe with
    // two names no literal pattern can spell (and of different lengths, against `?`).
    let covers = |service: &str| {
        glob_match(&p, &format!("{service}:\u{1}"))
            && glob_match(
                &p,
                &format!("{service}:\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}"),
            )
    };
    if covers("\u{1}") && covers("\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}") {
        Some("*")
    } else if covers("iam") {
        Some("iam:*")
    } else if covers("sts") {
        Some("sts:*")
    } else {
        None
    }
}

/// The dangerous grants of an identity policy document, described for a responder.
pub fn dangerous_grants(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for statement in statements(doc).into_iter().filter(|s| is_allow(s)) {
        if let Some(actions) = get_ci(statement, "Action") {
            for action in string_list(actions) {
                if let Some(kind) = broad_action(action) {
                    let what = if action.trim() == kind {
                        format!("Allow {kind}")
                    } else {
                        format!("Allow {} (= {kind})", action.trim())
                    };
                    if !found.contains(&what) {
                        found.push(what);
                    }
                }
            }
        }
        if let Some(not_actions) = get_ci(statement, "NotAction") {
            let listed = string_list(not_actions).join(", ");
            found.push(format!("Allow NotAction [{listed}] (everything else)"));
        }
    }
    found
}

/// The account of an AWS principal: a bare 12-digit id or the account field of an ARN.
/// `Some("*")` for wildcards, `None` when it names no account (unique ids, garbage).
fn principal_account(principal: &str) -> Option<String> {
    let p = principal.trim();
    if p == "*" {
        return Some("*".into());
    }
    if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
        return Some(p.into());
    }
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0].eq_ignore_ascii_case("arn") {
        let account = parts[4].trim();
        if account.contains('*') {
            return Some("*".into());
        }
        if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
            return Some(account.into());
        }
    }
    None
}

/// What a trust policy opens up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrustFindings {
    /// `*`, `AWS: *` or `NotPrincipal`: anyone.
    pub anyone: Vec<String>,
    /// AWS principals of other accounts.
    pub other_accounts: Vec<String>,
    /// Federated principals with a wildcard.
    pub federated_wildcards: Vec<String>,
    /// Every principal of the Allow statements, as `Type: value`.
    pub all_principals: Vec<String>,
    /// Conditions of the flagged statements (compact JSON).
    pub conditions: Vec<String>,
}

impl TrustFindings {
    pub fn is_match(&self) -> bool {
        !(self.anyone.is_empty()
            && self.other_accounts.is_empty()
            && self.federated_wildcards.is_empty())
    }
}

/// Reads a role trust policy against the role's account (`None`: unknown, so any named
/// account counts as another).
pub fn trust_findings(doc: &Value, own_account: Option<&str>) -> TrustFindings {
    let mut f = TrustFindings::default();
    for statement in statements(doc).into_iter().filter(|s| is_allow(s)) {
        let before = (
            f.anyone.len(),
            f.other_accounts.len(),
            f.federated_wildcards.len(),
        );
        if let Some(not_principal) = get_ci(statement, "NotPrincipal") {
            f.anyone
                .push(format!("NotPrincipal {not_principal} (everyone else)"));
        }
        match get_ci(statement, "Principal") {
            Some(Value::String(s)) => {
                f.all_principals.push(s.clone());
                if s.trim() == "*" {
                    f.anyone.push("*".into());
                }
            }
            Some(Value::Object(map)) => {
                for (kind, values) in map {
                    for value in string_list(values) {
                        f.all_principals.push(format!("{kind}: {value}"));
                        if kind.eq_ignore_ascii_case("AWS") {
                            match principal_account(value).as_deref() {
                                Some("*") => f.anyone.push(format!("AWS: {value}")),
                                Some(acct) if Some(acct) != own_account => {
                                    f.other_accounts.push(format!("{value} (account {acct})"))
                                }
                                _ => {}
                            }
                        } else if kind.eq_ignore_ascii_case("Federated") && value.contains('*') {
                            f.federated_wildcards.push(format!("Federated: {value}"));
                        }
                    }
                }
            }
            _ => {}
        }
        let after = (
            f.anyone.len(),
            f.other_accounts.len(),
            f.federated_wildcards.len(),
        );
        if before != after {
            if let Some(c) = get_ci(statement, "Condition")
                .filter(|c| c.as_object().is_some_and(|m| !m.is_empty()))
            {
                f.conditions.push(c.to_string());
            }
        }
    }
    f
}

/// The admin policy an ARN names exactly (`arn:<partition>:iam::aws:policy/<name>`), if any.
pub fn admin_policy_name(arn: &str) -> Option<&'static str> {
    let arn = arn.trim();
    let (prefix, name) = arn.split_once(":iam::aws:policy/")?;
    let partition = prefix.strip_prefix("arn:")?;
    let valid_partition = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        });
    if !valid_partition {
        return None;
    }
    ADMIN_POLICY_NAMES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn admin_policy_names_are_exact() {
        assert_eq!(
            admin_policy_name("arn:aws:iam::aws:policy/AdministratorAccess"),
            Some("AdministratorAccess")
        );
        assert_eq!(
            admin_policy_name("arn:aws-us-gov:iam::aws:policy/IAMFullAccess"),
            Some("IAMFullAccess")
        );
        assert_eq!(
            admin_policy_name("arn:aws-cn:iam::aws:policy/PowerUserAccess"),
            Some("PowerUserAccess")
        );
        for not_admin in [
            "arn:aws:iam::123456789012:policy/AdministratorAccess",
            "arn:aws:iam::aws:policy/MyAdministratorAccessCopy",
            "arn:aws:iam::aws:policy/AdministratorAccess-Amplify",
            "arn:aws:iam::aws:policy/job-function/AdministratorAccess",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "xarn:aws:iam::aws:policy/AdministratorAccess",
            "arn:evil:iam::aws:policy/AdministratorAccess",
            "AdministratorAccess",
            "",
        ] {
            assert_eq!(admin_policy_name(not_admin), None, "{not_admin}");
        }
    }

    #[test]
    fn broad_actions() {
        for (p, kind) in [
            ("*", "*"),
            ("*:*", "*"),
            ("iam:*", "iam:*"),
            ("IAM:*", "iam:*"),
            (" Iam:* ", "iam:*"),
            ("iam:?*", "iam:*"),
            ("sts:*", "sts:*"),
            ("STS:*", "sts:*"),
        ] {
            assert_eq!(broad_action(p), Some(kind), "{p}");
        }
        for p in [
            "iam:Get*",
            "iam:PassRole",
            "sts:AssumeRole",
            "s3:*",
            "ec2:Describe*",
            "iam:?",
            "",
        ] {
            assert_eq!(broad_action(p), None, "{p}");
        }
    }

    #[test]
    fn policy_documents_in_every_form() {
        let doc = json!({"Statement": {"Effect": "Allow", "Action": "*"}});
        let text = doc.to_string();
        let encoded: String = text
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        for v in [
            doc.clone(),
            Value::String(text.clone()),
            Value::String(encoded),
            Value::String(Value::String(text).to_string()),
        ] {
            assert_eq!(policy_document(Some(&v)), Some(doc.clone()), "{v}");
        }
        for bad in [
            json!(null),
            json!(42),
            json!("not json"),
            json!("%7B%22broken"),
            json!("%"),
            json!("%%%4"),
            json!("[1,2]"),
        ] {
            assert_eq!(policy_document(Some(&bad)), None, "{bad}");
        }
        assert_eq!(policy_document(None), None);
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("%+1%zz%41", false), "%+1%zzA");
        assert_eq!(percent_decode("a%2B+b", true), "a+ b");
    }

    #[test]
    fn trust_principals() {
        let doc = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["111122223333", "arn:aws:iam::111122223333:role/x"]}},
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}},
            {"Effect": "Deny", "Principal": "*"}
        ]});
        assert!(!trust_findings(&doc, Some("111122223333")).is_match());
        let f = trust_findings(&doc, Some("444455556666"));
        assert_eq!(f.other_accounts.len(), 2);
        let unknown = trust_findings(&doc, None);
        assert!(unknown.is_match(), "an unknown own account cannot vouch");
        assert_eq!(principal_account("AROAEXAMPLEID"), None);
        assert_eq!(
            principal_account("arn:aws:iam::*:root").as_deref(),
            Some("*")
        );
    }
}
