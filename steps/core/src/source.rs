//! The event sources we track and where each is read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A tracked CloudTrail event source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Iam,
    Sts,
    Signin,
    Sso,
}

impl Source {
    /// Every source, in the order a region's sources are read.
    pub const ALL: [Source; 4] = [Source::Iam, Source::Sts, Source::Signin, Source::Sso];

    /// The short key used in control-table keys and `event_type`.
    pub fn key(self) -> &'static str {
        match self {
            Source::Iam => "iam",
            Source::Sts => "sts",
            Source::Signin => "signin",
            Source::Sso => "sso",
        }
    }

    /// The CloudTrail `eventSource` passed to LookupEvents.
    pub fn event_source(self) -> &'static str {
        match self {
            Source::Iam => "iam.amazonaws.com",
            Source::Sts => "sts.amazonaws.com",
            Source::Signin => "signin.amazonaws.com",
            Source::Sso => "sso.amazonaws.com",
        }
    }

    /// Classifies a record's `eventSource`. IAM Identity Center also records under
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
#[error("unknown source {0:?}: expected one of iam, sts, signin, sso")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "iam" | "iam.amazonaws.com" => Ok(Source::Iam),
            "sts" | "sts.amazonaws.com" => Ok(Source::Sts),
            "signin" | "signin.amazonaws.com" => Ok(Source::Signin),
            "sso" | "sso.amazonaws.com" => Ok(Source::Sso),
            _ => Err(UnknownSource(s.to_string())),
        }
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
            assert_eq!(Source::from_event_source(s.event_source()), Some(s));
        }
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
