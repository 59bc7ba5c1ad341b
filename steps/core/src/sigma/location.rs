//! Where the Sigma rules are: the `SIGMA_RULES` setting (docs/sigma.md, "Deploying rules").

use std::fmt;
use std::path::PathBuf;

/// The value of `SIGMA_RULES`: an S3 prefix (on AWS) or a local directory (the local stack,
/// the CLI, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesLocation {
    /// `s3://bucket/prefix/`: every object under the prefix whose key ends in `.yml` or
    /// `.yaml`. `prefix` is empty or ends with `/` (`s3://bucket/sigma` reads `sigma/`).
    S3 { bucket: String, prefix: String },
    /// A directory: every `*.yml` and `*.yaml` file under it.
    Dir(PathBuf),
}

impl RulesLocation {
    /// Reads a `SIGMA_RULES` value (already trimmed and not empty). A value with a scheme other
    /// than `s3://` is refused rather than taken for a directory name.
    pub fn parse(value: &str) -> Result<RulesLocation, String> {
        let Some(rest) = value.strip_prefix("s3://") else {
            if value.contains("://") {
                return Err("expected s3://bucket/prefix/ or a directory".into());
            }
            return Ok(RulesLocation::Dir(PathBuf::from(value)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !is_bucket_name(bucket) {
            return Err(format!(
                "{bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, dots \
                 and hyphens): expected s3://bucket/prefix/"
            ));
        }
        if prefix.starts_with('/') || prefix.contains("//") {
            return Err("the prefix has an empty folder name (//)".into());
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(RulesLocation::S3 {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

impl fmt::Display for RulesLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RulesLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RulesLocation::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// S3's bucket naming rules, loosely: 3 to 63 characters of lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit.
fn is_bucket_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(name.chars().next())
        && edge(name.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> RulesLocation {
        RulesLocation::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn values() {
        assert_eq!(
            RulesLocation::parse("s3://my-rules/sigma/"),
            Ok(s3("my-rules", "sigma/"))
        );
        assert_eq!(
            RulesLocation::parse("s3://my-rules/a/b"),
            Ok(s3("my-rules", "a/b/"))
        );
        assert_eq!(
            RulesLocation::parse("s3://my-rules"),
            Ok(s3("my-rules", ""))
        );
        assert_eq!(
            RulesLocation::parse("s3://my-rules/"),
            Ok(s3("my-rules", ""))
        );
        assert_eq!(
            RulesLocation::parse("rules/sigma"),
            Ok(RulesLocation::Dir("rules/sigma".into()))
        );
        assert_eq!(
            RulesLocation::parse("s3://my-rules/a/b")
                .unwrap()
                .to_string(),
            "s3://my-rules/a/b/"
        );
        for bad in [
            "s3://",
            "s3://My_Rules/x/",
            "s3://ab/",
            "s3://rules-/x/",
            "s3://rules//x/",
            "s3://rules/a//b/",
            "https://example.com/rules/",
        ] {
            assert!(RulesLocation::parse(bad).is_err(), "{bad}");
        }
    }
}
