//! Noise filters: AWS-service events and configured roles (CSPM and security scanners).

use serde::{Deserialize, Serialize};

use crate::normalize::role_name_from_arn;
use crate::record::CloudTrailRecord;

/// Why an event was filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterReason {
    /// An AWS service acting on its own (`AWSService` identity, a service event, or a
    /// service-linked role session).
    AwsService,
    /// An event by, or an `AssumeRole*` into, a role matching `FILTERED_ROLES`.
    FilteredRole,
}

/// One `FILTERED_ROLES` entry: a glob (`*`, `?`) over the role name, or, when it starts with
/// `arn:`, over the role ARN. Matching ignores ASCII case, as IAM role names do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePattern {
    pattern: String,
    match_arn: bool,
}

impl RolePattern {
    /// Parses one pattern. Empty patterns are rejected.
    pub fn parse(text: &str) -> Option<RolePattern> {
        let pattern = text.trim();
        if pattern.is_empty() {
            return None;
        }
        Some(RolePattern {
            pattern: pattern.to_ascii_lowercase(),
            match_arn: pattern.starts_with("arn:"),
        })
    }

    /// Whether the role (given by its ARN, or only its name) matches.
    pub fn matches(&self, role_arn: Option<&str>, role_name: Option<&str>) -> bool {
        let subject = if self.match_arn {
            role_arn
        } else {
            role_name.or_else(|| role_arn.and_then(role_name_from_arn))
        };
        subject.is_some_and(|s| glob_match(&self.pattern, &s.to_ascii_lowercase()))
    }

    /// The pattern as written (lower-cased).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// Parses `FILTERED_ROLES`: comma-separated globs or ARNs.
pub fn parse_role_patterns(text: &str) -> Vec<RolePattern> {
    text.split(',').filter_map(RolePattern::parse).collect()
}

/// Glob matching with `*` (any run, including `/`) and `?` (one character), iterative with
/// backtracking to the last `*`, so no pattern can blow up.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The filter configuration (`FILTER_AWS_SERVICE_EVENTS`, `FILTERED_ROLES`).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub filter_aws_service_events: bool,
    pub filtered_roles: Vec<RolePattern>,
}

fn is_service_linked_role_arn(arn: &str) -> bool {
    arn.contains(":role/aws-service-role/") || arn.contains("assumed-role/AWSServiceRoleFor")
}

impl EventFilter {
    /// Decides whether a record is noise. `None` keeps it.
    pub fn classify(&self, record: &CloudTrailRecord) -> Option<FilterReason> {
        if self.filter_aws_service_events && is_aws_service_event(record) {
            return Some(FilterReason::AwsService);
        }
        if !self.filtered_roles.is_empty() && self.matches_filtered_role(record) {
            return Some(FilterReason::FilteredRole);
        }
        None
    }

    fn matches_filtered_role(&self, record: &CloudTrailRecord) -> bool {
        let issuer = record.session_issuer();
        let actor_arn = issuer.and_then(|i| i.arn.as_deref());
        let actor_name = issuer.and_then(|i| i.user_name.as_deref());
        let target_arn = record
            .event_name
            .starts_with("AssumeRole")
            .then(|| record.request_param_str("roleArn"))
            .flatten();
        self.filtered_roles.iter().any(|p| {
            (issuer.is_some() && p.matches(actor_arn, actor_name))
                || (target_arn.is_some() && p.matches(target_arn, None))
        })
    }
}

/// AWS-service noise: the `AWSService` identity, CloudTrail's `AwsServiceEvent`s, and sessions
/// of service-linked roles (`/aws-service-role/` path, `AWSServiceRoleFor*`). Calls a service
/// makes with a person's credentials (`invokedBy` on an IAM user or role session) are kept:
/// they are that person's actions.
pub fn is_aws_service_event(record: &CloudTrailRecord) -> bool {
    let id = &record.user_identity;
    if id.identity_type.as_deref() == Some("AWSService") {
        return true;
    }
    if record.event_type.as_deref() == Some("AwsServiceEvent") {
        return true;
    }
    let issuer_arn = record.session_issuer().and_then(|i| i.arn.as_deref());
    [id.arn.as_deref(), issuer_arn]
        .into_iter()
        .flatten()
        .any(is_service_linked_role_arn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn rec(v: Value) -> CloudTrailRecord {
        let mut base = json!({"eventID": "1", "eventTime": "2024-01-01T00:00:00Z",
                              "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole"});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        CloudTrailRecord::from_value(base).unwrap()
    }

    fn filter(roles: &str) -> EventFilter {
        EventFilter {
            filter_aws_service_events: true,
            filtered_roles: parse_role_patterns(roles),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("prisma*", "prismacloudreadonly"));
        assert!(glob_match("*scan?er*", "xx-scanner-yy"));
        assert!(!glob_match("scanner", "scanner2"));
        assert!(glob_match("a*b*c", "aXXbYYbZc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match(&"*a".repeat(20), &"a".repeat(40)));
    }

    #[test]
    fn aws_service_identity_and_service_events() {
        let f = filter("");
        assert_eq!(
            f.classify(&rec(
                json!({"userIdentity": {"type": "AWSService", "invokedBy": "x"}})
            )),
            Some(FilterReason::AwsService)
        );
        assert_eq!(
            f.classify(&rec(
                json!({"eventType": "AwsServiceEvent", "userIdentity": {"accountId": "1"}})
            )),
            Some(FilterReason::AwsService)
        );
        let slr = json!({"userIdentity": {"type": "AssumedRole",
            "arn": "arn:aws:sts::1:assumed-role/AWSServiceRoleForConfig/s",
            "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::1:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig"}}}});
        assert_eq!(f.classify(&rec(slr)), Some(FilterReason::AwsService));
        // A person's call made through a service is kept.
        let via_cfn = json!({"userIdentity": {"type": "IAMUser", "userName": "a", "invokedBy": "cloudformation.amazonaws.com"}});
        assert_eq!(f.classify(&rec(via_cfn)), None);
        let off = EventFilter {
            filter_aws_service_events: false,
            filtered_roles: vec![],
        };
        assert_eq!(
            off.classify(&rec(json!({"userIdentity": {"type": "AWSService"}}))),
            None
        );
    }

    #[test]
    fn filtered_roles_match_actor_and_assume_target() {
        let f = filter(" PrismaCloud* , arn:aws:iam::*:role/security/* ,");
        assert_eq!(f.filtered_roles.len(), 2);
        let actor = json!({"eventName": "ListUsers", "userIdentity": {"type": "AssumedRole",
            "sessionContext": {"sessionIssuer": {"userName": "prismacloud-ro", "arn": "arn:aws:iam::1:role/prismacloud-ro"}}}});
        assert_eq!(f.classify(&rec(actor)), Some(FilterReason::FilteredRole));
        let by_arn = json!({"eventName": "ListUsers", "userIdentity": {"type": "AssumedRole",
            "sessionContext": {"sessionIssuer": {"userName": "x", "arn": "arn:aws:iam::1:role/security/x"}}}});
        assert_eq!(f.classify(&rec(by_arn)), Some(FilterReason::FilteredRole));
        let assume = json!({"userIdentity": {"type": "AWSAccount", "accountId": "9"},
            "requestParameters": {"roleArn": "arn:aws:iam::1:role/PrismaCloudRole"}});
        assert_eq!(f.classify(&rec(assume)), Some(FilterReason::FilteredRole));
        let other = json!({"userIdentity": {"type": "IAMUser", "userName": "prismacloud"},
            "requestParameters": {"roleArn": "arn:aws:iam::1:role/Admin"}});
        assert_eq!(
            f.classify(&rec(other)),
            None,
            "an IAM user named like the pattern is kept"
        );
    }
}
