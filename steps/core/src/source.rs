//! The event sources we track and where each is read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A collection source: one LookupEvents query per region, with its own checkpoint
/// (docs/architecture.md, "Where each source is read").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Iam,
    Sts,
    Signin,
    Sso,
    /// Identity Center's directory (users, groups, memberships), stored as `sso`.
    #[serde(rename = "sso-directory")]
    SsoDirectory,
    /// Identity Store API calls (users, groups, memberships), stored as `sso`.
    #[serde(rename = "identitystore")]
    IdentityStore,
    /// Every call of the root user, from any service (LookupEvents by `Username` `root`).
    Root,
}

/// What one LookupEvents query of a source filters on: CloudTrail allows one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKey {
    /// `EventSource`, e.g. `iam.amazonaws.com`.
    EventSource,
    /// `Username`, e.g. `root`.
    Username,
}

impl LookupKey {
    /// The attribute's name in the LookupEvents API.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupKey::EventSource => "EventSource",
            LookupKey::Username => "Username",
        }
    }
}

impl Source {
    /// Every source, in the order a region's sources are read.
    pub const ALL: [Source; 7] = [
        Source::Iam,
        Source::Sts,
        Source::Signin,
        Source::Sso,
        Source::SsoDirectory,
        Source::IdentityStore,
        Source::Root,
    ];

    /// The short key used in control-table keys and metrics.
    pub fn key(self) -> &'static str {
        match self {
            Source::Iam => "iam",
            Source::Sts => "sts",
            Source::Signin => "signin",
            Source::Sso => "sso",
            Source::SsoDirectory => "sso-directory",
            Source::IdentityStore => "identitystore",
            Source::Root => "root",
        }
    }

    /// The CloudTrail `eventSource` this source reads; `None` for `root`, which reads every
    /// service.
    pub fn event_source(self) -> Option<&'static str> {
        match self {
            Source::Iam => Some("iam.amazonaws.com"),
            Source::Sts => Some("sts.amazonaws.com"),
            Source::Signin => Some("signin.amazonaws.com"),
            Source::Sso => Some("sso.amazonaws.com"),
            Source::SsoDirectory => Some("sso-directory.amazonaws.com"),
            Source::IdentityStore => Some("identitystore.amazonaws.com"),
            Source::Root => None,
        }
    }

    /// The LookupEvents attribute this source queries by.
    pub fn lookup(self) -> (LookupKey, &'static str) {
        match self.event_source() {
            Some(event_source) => (LookupKey::EventSource, event_source),
            None => (LookupKey::Username, "root"),
        }
    }

    /// The source that reads an `eventSource` (`None` for services only `root` reads).
    pub fn reading(event_source: &str) -> Option<Source> {
        Source::ALL
            .into_iter()
            .find(|s| s.event_source() == Some(event_source))
    }

    /// The `event_type` of a record's `eventSource`: IAM Identity Center also records under
    /// `sso-directory`, `identitystore` and `sso-oauth`; they all count as `sso`.
    pub fn from_event_source(event_source: &str) -> Option<Source> {
        match event_source {
            "iam.amazonaws.com" => Some(Source::Iam),
            "sts.amazonaws.com" => Some(Source::Sts),
            "signin.amazonaws.com" => Some(Source::Signin),
            "sso.amazonaws.com"
            | "sso-directory.amazonaws.com"
            | "identitystore.amazonaws.com"
            | "sso-oauth.amazonaws.com" => Some(Source::Sso),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// An unknown source name.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown source {0:?}: expected one of iam, sts, signin, sso, sso-directory, identitystore, root"
)]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Source::ALL
            .into_iter()
            .find(|src| src.key() == wanted || src.event_source() == Some(wanted.as_str()))
            .ok_or_else(|| UnknownSource(s.to_string()))
    }
}

/// The control-table key of a region/source checkpoint, e.g. `us-east-1-iam`.
pub fn checkpoint_key(region: &str, source: Source) -> String {
    format!("{region}-{}", source.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in Source::ALL {
            assert_eq!(s.key().parse::<Source>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.key())
            );
            if let Some(es) = s.event_source() {
                assert_eq!(Source::reading(es), Some(s));
                assert_eq!(es.parse::<Source>().unwrap(), s);
            }
        }
        assert_eq!(Source::Root.lookup(), (LookupKey::Username, "root"));
        assert_eq!(
            Source::IdentityStore.lookup(),
            (LookupKey::EventSource, "identitystore.amazonaws.com")
        );
        assert_eq!(Source::reading("kms.amazonaws.com"), None);
        assert_eq!(
            Source::from_event_source("identitystore.amazonaws.com"),
            Some(Source::Sso)
        );
        assert_eq!(Source::from_event_source("ec2.amazonaws.com"), None);
        assert!("s3"
            .parse::<Source>()
            .unwrap_err()
            .to_string()
            .contains("iam, sts"));
        assert_eq!(checkpoint_key("eu-west-1", Source::Sts), "eu-west-1-sts");
    }
}
