//! Loading the user's Sigma rules from where `SIGMA_RULES` points (docs/sigma.md, "Deploying
//! rules"): an S3 prefix on AWS, a directory locally. Collect loads them once per container
//! ([`crate::AwsContext::sigma_rules`]); the CLI loads them to list and test them.
//!
//! A load never drops a rule quietly: a rejected file, an unreadable object or a location that
//! holds no rule file at all fails the load with every file and reason.

use std::path::Path;

use iamtrail_core::sigma::{
    RejectReason, RulesLocation, SigmaLoadError, SigmaLoadErrors, SigmaRules,
};

use crate::ports::{ObjectReader, ObjectStore, StoreError};

/// The largest rule file read (SigmaHQ's rules are a few KB).
pub const MAX_RULE_FILE_BYTES: usize = 1024 * 1024;

/// Why the rules could not be loaded. Each names the location first (`<location>: ...`).
#[derive(Debug, thiserror::Error)]
pub enum SigmaRulesError {
    /// Files were rejected: each with its reasons.
    #[error("{location}: {errors}")]
    Rejected {
        location: String,
        errors: SigmaLoadErrors,
    },
    /// The location holds no `*.yml` or `*.yaml` file.
    #[error("{location}: no *.yml or *.yaml rule file there")]
    NoRules { location: String },
    /// The directory does not exist or is not a directory.
    #[error("{location}: not a directory")]
    NotADirectory { location: String },
    /// Reading the bucket failed (access, network): worth another try.
    #[error("{location}: {error}")]
    Read { location: String, error: StoreError },
}

impl SigmaRulesError {
    /// Whether trying again may help (a read failure), unlike a rule set that needs fixing.
    pub fn is_transient(&self) -> bool {
        matches!(self, SigmaRulesError::Read { .. })
    }
}

/// Whether a key (or file name) names a rule file: `*.yml` or `*.yaml`, no part of its path
/// (below the prefix) hidden, as [`SigmaRules::load_dir`] reads a directory.
fn is_rule_file(relative: &str) -> bool {
    (relative.ends_with(".yml") || relative.ends_with(".yaml"))
        && !relative.split('/').any(|part| part.starts_with('.'))
}

/// Loads every rule object under `prefix`, in key order, the keys naming the files in rules
/// and errors (what `aws s3 ls` shows).
pub async fn load_objects<O: ObjectStore + ObjectReader>(
    objects: &O,
    prefix: &str,
) -> Result<Vec<(String, String)>, Result<SigmaLoadErrors, StoreError>> {
    let mut keys: Vec<String> = objects
        .list(prefix)
        .await
        .map_err(Err)?
        .into_iter()
        .filter(|k| is_rule_file(k.strip_prefix(prefix).unwrap_or(k)))
        .collect();
    keys.sort();
    let mut texts = Vec::with_capacity(keys.len());
    let mut errors = Vec::new();
    for key in keys {
        let Some(bytes) = objects.get(&key).await.map_err(Err)? else {
            // Deleted between the listing and the read: it is not part of the rule set.
            tracing::warn!(%key, "a Sigma rule object disappeared while the rules were read");
            continue;
        };
        let unreadable = |why: String| SigmaLoadError {
            file: key.clone(),
            reason: RejectReason::Unreadable(why),
        };
        if bytes.len() > MAX_RULE_FILE_BYTES {
            errors.push(unreadable(format!(
                "{} bytes; a rule file may hold at most {MAX_RULE_FILE_BYTES}",
                bytes.len()
            )));
            continue;
        }
        match String::from_utf8(bytes) {
            Ok(text) => texts.push((key, text)),
            Err(_) => errors.push(unreadable("not UTF-8 text".to_string())),
        }
    }
    if errors.is_empty() {
        Ok(texts)
    } else {
        // Every problem in one report: the unreadable objects and the rejected rules.
        if let Err(mut more) = SigmaRules::from_texts(&texts) {
            errors.append(&mut more.errors);
            errors.sort_by(|a, b| a.file.cmp(&b.file));
        }
        Err(Ok(SigmaLoadErrors { errors }))
    }
}

/// Loads the rules of a location: a directory through [`SigmaRules::load_dir`], an S3
/// prefix through `objects` (a store on the rules bucket).
pub async fn load<O: ObjectStore + ObjectReader>(
    location: &RulesLocation,
    objects: Option<&O>,
) -> Result<SigmaRules, SigmaRulesError> {
    let shown = location.to_string();
    let rules = match location {
        RulesLocation::Dir(dir) => load_dir(dir, &shown)?,
        RulesLocation::S3 { prefix, .. } => {
            let objects = objects.ok_or_else(|| SigmaRulesError::Read {
                location: shown.clone(),
                error: StoreError {
                    operation: "s3:ListObjectsV2",
                    message: "no S3 client for the rules bucket".into(),
                },
            })?;
            let texts = load_objects(objects, prefix).await.map_err(|e| match e {
                Ok(errors) => SigmaRulesError::Rejected {
                    location: shown.clone(),
                    errors,
                },
                Err(error) => SigmaRulesError::Read {
                    location: shown.clone(),
                    error,
                },
            })?;
            SigmaRules::from_texts(&texts).map_err(|errors| SigmaRulesError::Rejected {
                location: shown.clone(),
                errors,
            })?
        }
    };
    if rules.is_empty() {
        return Err(SigmaRulesError::NoRules { location: shown });
    }
    Ok(rules)
}

/// Loads the rules of a location, reading an S3 prefix with `s3` (a client in any region: the
/// bucket's own is found, see [`crate::s3::client_for_prefix`]). What Collect and the CLI call.
pub async fn load_with(
    location: &RulesLocation,
    s3: Option<&aws_sdk_s3::Client>,
) -> Result<SigmaRules, SigmaRulesError> {
    let store = match (location, s3) {
        (RulesLocation::S3 { bucket, prefix }, Some(client)) => {
            let client = crate::s3::client_for_prefix(client, bucket, prefix)
                .await
                .map_err(|error| SigmaRulesError::Read {
                    location: location.to_string(),
                    error,
                })?;
            Some(crate::s3::S3Store::new(
                client,
                bucket.clone(),
                crate::s3::MIN_PART_SIZE,
            ))
        }
        _ => None,
    };
    load(location, store.as_ref()).await
}

fn load_dir(dir: &Path, shown: &str) -> Result<SigmaRules, SigmaRulesError> {
    if !dir.is_dir() {
        return Err(SigmaRulesError::NotADirectory {
            location: shown.to_string(),
        });
    }
    SigmaRules::load_dir(dir).map_err(|errors| SigmaRulesError::Rejected {
        location: shown.to_string(),
        errors,
    })
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::memory::MemoryObjects;

    const GOOD: &str = "title: Good\nid: 7d3f0c52-6a0e-4c4e-9a55-1f6f8f0f8a11\nlevel: high\n\
        logsource:\n  product: aws\n  service: cloudtrail\n\
        detection:\n  selection:\n    eventName|startswith: Delete\n  condition: selection\n";

    async fn bucket(objects: &[(&str, &[u8])]) -> MemoryObjects {
        let store = MemoryObjects::new();
        for (key, bytes) in objects {
            store
                .put_bytes(key, bytes.to_vec(), "application/yaml")
                .await
                .unwrap();
        }
        store
    }

    fn s3(prefix: &str) -> RulesLocation {
        RulesLocation::S3 {
            bucket: "rules".into(),
            prefix: prefix.into(),
        }
    }

    #[tokio::test]
    async fn rule_objects_under_the_prefix_are_loaded() {
        let store = bucket(&[
            ("sigma/good.yml", GOOD.as_bytes()),
            ("sigma/README.md", b"not a rule"),
            ("sigma/.draft/wip.yml", b"{{{"),
            ("other/bad.yml", b"{{{"),
        ])
        .await;
        let rules = load(&s3("sigma/"), Some(&store)).await.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules.iter().next().unwrap().file, "sigma/good.yml");
    }

    #[tokio::test]
    async fn every_bad_object_is_named() {
        let store = bucket(&[
            ("sigma/a.yml", GOOD.as_bytes()),
            ("sigma/b.yaml", b"title: x\n"),
            ("sigma/c.yml", &[0xff, 0xfe]),
        ])
        .await;
        let err = load(&s3("sigma/"), Some(&store)).await.unwrap_err();
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(
            text.starts_with("s3://rules/sigma/: 2 Sigma rule files rejected:"),
            "{text}"
        );
        assert!(text.contains("\n  sigma/b.yaml: "), "{text}");
        assert!(
            text.contains("\n  sigma/c.yml: cannot read the file: not UTF-8 text"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_empty_location_is_an_error() {
        let store = bucket(&[("sigma/notes.txt", b"x")]).await;
        let err = load(&s3("sigma/"), Some(&store)).await.unwrap_err();
        assert!(matches!(err, SigmaRulesError::NoRules { .. }), "{err}");
        let dir = std::env::temp_dir().join(format!("iamtrail-sigma-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = load::<MemoryObjects>(&RulesLocation::Dir(dir.clone()), None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no *.yml or *.yaml rule file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
        let err = load::<MemoryObjects>(&RulesLocation::Dir("/nonexistent/rules".into()), None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "/nonexistent/rules: not a directory");
    }
}
