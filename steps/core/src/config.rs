//! Configuration, read from environment variables (the Lambda environment, or the local stack).

use chrono::Duration;

use crate::filter::{parse_role_patterns, EventFilter};
use crate::normalize::NormalizeOptions;
use crate::rules::login_failures::BurstSettings;
use crate::sigma::RulesLocation;
use crate::source::Source;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// Which regions a source is read in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionSelection {
    /// Every enabled region.
    All,
    /// The listed regions (those that are enabled).
    Only(Vec<String>),
}

/// Everything the steps read from their environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub events_table: String,
    pub control_table: String,
    pub alerts_table: String,
    /// Each source and whether it is collected (`PROCESS_*_EVENTS`; Identity Center's three
    /// sources share `PROCESS_SSO_EVENTS`).
    pub process: [(Source, bool); 7],
    pub filter: EventFilter,
    /// Region whose LookupEvents holds IAM (global) events: us-east-1 in the aws partition.
    pub iam_region: String,
    pub signin_regions: RegionSelection,
    pub sso_regions: Vec<String>,
    pub initial_lookback: Duration,
    pub overlap: Duration,
    pub settle: Duration,
    /// Windows longer than this with more than one page are split (oldest half first).
    pub min_slice: Duration,
    pub normalize: NormalizeOptions,
    /// Most time a Collect invocation spends before it stops between slices with `more: true`.
    pub collect_time_budget: std::time::Duration,
    /// LookupEvents requests per second per region (AWS quota: 2).
    pub lookup_rate_per_second: f64,
    /// `ALERTS_ENABLED`: deliver alerts (they are queued in the outbox either way).
    pub alerts_enabled: bool,
    /// `ALERTS_TOPIC_ARN`: the SNS topic alerts go to.
    pub alerts_topic_arn: Option<String>,
    /// `ALERTS_PER_RUN`: most alerts one EvaluateAlerts invocation delivers.
    pub alerts_per_run: usize,
    /// `ANALYTICS_BUCKET`: where the Parquet export goes.
    pub analytics_bucket: Option<String>,
    /// `TRAIL_BUCKET`: the CloudTrail trail bucket the S3 ingestion reads (docs/ingest.md);
    /// `None`: a request must name its bucket.
    pub trail_bucket: Option<String>,
    /// `TRAIL_PREFIX`: the trail's key prefix (the folder holding `AWSLogs/`).
    pub trail_prefix: Option<String>,
    /// `PARTITION_BY_REGION`: add a `region=` level to the export layout.
    pub partition_by_region: bool,
    /// `DETAILED_METRICS`: also publish the per region/source metrics per Region and Source
    /// (one billed custom metric each; docs/metrics.md, "Cost").
    pub detailed_metrics: bool,
    /// `EXPORT_COMPRESSION`: `snappy` (default) or `zstd`.
    pub export_compression: String,
    /// `MAX_COLLECT_INVOCATIONS`: most Collect invocations one work item gets in one execution
    /// (the workflow's Collect loop cap, derived from the schedule by the template). An item
    /// that reaches it ends with `capped`; the next run resumes from its checkpoint.
    pub max_collect_invocations: u32,
    /// `RUN_LEASE_SECONDS`: how long a scheduled execution holds the run lease (the state
    /// machine's `TimeoutSeconds`): a second scheduled execution in that time is `skipped`.
    pub run_lease: Duration,
    /// `REGION_LEASE_SECONDS`: how long a collector's region lease lasts without renewal (it is
    /// renewed after every stored slice); an expired lease may be taken over.
    pub region_lease: Duration,
    /// `ALERTS_TIME_BUDGET_SECONDS`: most time an EvaluateAlerts invocation spends delivering.
    pub alerts_time_budget: std::time::Duration,
    /// `ALERT_MAX_ATTEMPTS`: failed publishes after which an alert becomes `failed`.
    pub alert_max_attempts: u32,
    /// `EXPORT_TIME_BUDGET_SECONDS`: most time an Export invocation spends before it stops
    /// between dates with `more: true`.
    pub export_time_budget: std::time::Duration,
    /// `EXPORT_PART_SIZE_BYTES`: export files larger than this are uploaded in parts of this
    /// size (one multipart upload: the object appears whole or not at all).
    pub export_part_size: u64,
    /// `SIGMA_RULES`: where Collect reads the user's Sigma rules (an S3 prefix or a local
    /// directory); `None`: only the built-in rules run (docs/sigma.md).
    pub sigma_rules: Option<RulesLocation>,
    /// The console-login burst: `LOGIN_FAILURE_THRESHOLD` failures within
    /// `LOGIN_FAILURE_WINDOW_MINUTES`.
    pub login_failures: BurstSettings,
}

/// CloudTrail keeps 90 days of event history.
pub const CLOUDTRAIL_HISTORY_DAYS: i64 = 90;

impl Settings {
    /// Reads settings through `lookup` (normally `std::env::var`). Unset values take their
    /// defaults; set but unusable values are errors that name the variable.
    pub fn from_lookup<F>(lookup: F) -> Result<Settings, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let flag = |name: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Ok(true),
                    "false" | "0" | "no" | "off" => Ok(false),
                    _ => Err(ConfigError {
                        name,
                        value: v,
                        reason: "expected true or false".into(),
                    }),
                },
            }
        };
        let number =
            |name: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
                match get(name) {
                    None => Ok(default),
                    Some(v) => match v.parse::<u64>() {
                        Ok(n) if (min..=max).contains(&n) => Ok(n),
                        _ => Err(ConfigError {
                            name,
                            value: v,
                            reason: format!("expected a whole number from {min} to {max}"),
                        }),
                    },
                }
            };
        let regions = |name: &'static str, v: String| -> Result<Vec<String>, ConfigError> {
            let list: Vec<String> = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if let Some(bad) = list.iter().find(|r| !looks_like_region(r)) {
                return Err(ConfigError {
                    name,
                    value: v.clone(),
                    reason: format!("{bad:?} is not a region name"),
                });
            }
            Ok(list)
        };
        let signin_regions = match get("SIGNIN_REGIONS") {
            None => RegionSelection::All,
            Some(v) if v.eq_ignore_ascii_case("all") => RegionSelection::All,
            Some(v) => RegionSelection::Only(regions("SIGNIN_REGIONS", v)?),
        };
        let sso_regions = regions(
            "SSO_REGIONS",
            get("SSO_REGIONS").unwrap_or_else(|| "us-east-1".into()),
        )?;
        let iam_region = get("IAM_REGION").unwrap_or_else(|| "us-east-1".into());
        if !looks_like_region(&iam_region) {
            return Err(ConfigError {
                name: "IAM_REGION",
                value: iam_region,
                reason: "not a region name".into(),
            });
        }
        let rate = match get("LOOKUP_RATE_PER_SECOND") {
            None => 2.0,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if r > 0.0 && r <= 100.0 => r,
                _ => {
                    return Err(ConfigError {
                        name: "LOOKUP_RATE_PER_SECOND",
                        value: v,
                        reason: "expected a number above 0".into(),
                    })
                }
            },
        };
        let retention = number("RETENTION_DAYS", 0, 0, 36500)? as u32;
        let collect_time_budget =
            std::time::Duration::from_secs(number("COLLECT_TIME_BUDGET_SECONDS", 780, 1, 3600)?);
        let sigma_rules = match get("SIGMA_RULES") {
            None => None,
            Some(v) => Some(RulesLocation::parse(&v).map_err(|reason| ConfigError {
                name: "SIGMA_RULES",
                value: v.clone(),
                reason,
            })?),
        };
        Ok(Settings {
            events_table: get("EVENTS_TABLE").unwrap_or_else(|| "iamtrail-events".into()),
            control_table: get("CONTROL_TABLE").unwrap_or_else(|| "iamtrail-control".into()),
            alerts_table: get("ALERTS_TABLE").unwrap_or_else(|| "iamtrail-alerts".into()),
            process: {
                let sso = flag("PROCESS_SSO_EVENTS", true)?;
                [
                    (Source::Iam, flag("PROCESS_IAM_EVENTS", true)?),
                    (Source::Sts, flag("PROCESS_STS_EVENTS", true)?),
                    (Source::Signin, flag("PROCESS_SIGNIN_EVENTS", true)?),
                    (Source::Sso, sso),
                    (Source::SsoDirectory, sso),
                    (Source::IdentityStore, sso),
                    (Source::Root, flag("PROCESS_ROOT_EVENTS", true)?),
                ]
            },
            filter: EventFilter {
                filter_aws_service_events: flag("FILTER_AWS_SERVICE_EVENTS", true)?,
                filtered_roles: parse_role_patterns(&get("FILTERED_ROLES").unwrap_or_default()),
            },
            iam_region,
            signin_regions,
            sso_regions,
            initial_lookback: Duration::days(number(
                "INITIAL_LOOKBACK_DAYS",
                90,
                1,
                CLOUDTRAIL_HISTORY_DAYS as u64,
            )? as i64),
            overlap: Duration::minutes(number("OVERLAP_MINUTES", 15, 0, 24 * 60)? as i64),
            settle: Duration::minutes(number("SETTLE_MINUTES", 5, 0, 24 * 60)? as i64),
            min_slice: Duration::seconds(number("MIN_SLICE_SECONDS", 300, 1, 86400)? as i64),
            normalize: NormalizeOptions {
                retention_days: (retention > 0).then_some(retention),
            },
            collect_time_budget,
            lookup_rate_per_second: rate,
            alerts_enabled: flag("ALERTS_ENABLED", true)?,
            alerts_topic_arn: get("ALERTS_TOPIC_ARN"),
            alerts_per_run: number("ALERTS_PER_RUN", 200, 1, 5000)? as usize,
            analytics_bucket: get("ANALYTICS_BUCKET"),
            trail_bucket: get("TRAIL_BUCKET"),
            trail_prefix: get("TRAIL_PREFIX"),
            partition_by_region: flag("PARTITION_BY_REGION", false)?,
            detailed_metrics: flag("DETAILED_METRICS", false)?,
            export_compression: match get("EXPORT_COMPRESSION").map(|v| v.to_ascii_lowercase()) {
                None => "snappy".to_string(),
                Some(v) if v == "snappy" || v == "zstd" => v,
                Some(v) => {
                    return Err(ConfigError {
                        name: "EXPORT_COMPRESSION",
                        value: v,
                        reason: "expected snappy or zstd".into(),
                    })
                }
            },
            max_collect_invocations: number("MAX_COLLECT_INVOCATIONS", 4, 1, 1000)? as u32,
            run_lease: Duration::seconds(number("RUN_LEASE_SECONDS", 3300, 10, 7 * 86400)? as i64),
            region_lease: Duration::seconds(number(
                "REGION_LEASE_SECONDS",
                collect_time_budget.as_secs() + 120,
                5,
                86400,
            )? as i64),
            alerts_time_budget: std::time::Duration::from_secs(number(
                "ALERTS_TIME_BUDGET_SECONDS",
                90,
                1,
                900,
            )?),
            alert_max_attempts: number("ALERT_MAX_ATTEMPTS", 5, 1, 100)? as u32,
            export_time_budget: std::time::Duration::from_secs(number(
                "EXPORT_TIME_BUDGET_SECONDS",
                780,
                1,
                3600,
            )?),
            export_part_size: number(
                "EXPORT_PART_SIZE_BYTES",
                64 * 1024 * 1024,
                1024,
                5 * 1024 * 1024 * 1024,
            )?,
            sigma_rules,
            login_failures: BurstSettings {
                threshold: number("LOGIN_FAILURE_THRESHOLD", 5, 1, 1000)? as usize,
                window: Duration::minutes(
                    number("LOGIN_FAILURE_WINDOW_MINUTES", 10, 1, 24 * 60)? as i64
                ),
            },
        })
    }

    /// Settings from `NAME`/`VALUE` pairs over the defaults (a later pair of a name overrides
    /// an earlier one): tests and tools.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|k| {
            pairs
                .iter()
                .rev()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    /// Reads settings from the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|k| std::env::var(k).ok())
    }

    /// Whether a source is switched on.
    pub fn is_enabled(&self, source: Source) -> bool {
        self.process.iter().any(|(s, on)| *s == source && *on)
    }
}

/// A loose check that a string is a region name (`xx-name-N`, lowercase).
pub fn looks_like_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_pairs(pairs)
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert!(Source::ALL.iter().all(|src| s.is_enabled(*src)));
        assert_eq!(s.signin_regions, RegionSelection::All);
        assert_eq!(s.sso_regions, vec!["us-east-1"]);
        assert_eq!(s.overlap, Duration::minutes(15));
        assert_eq!(s.settle, Duration::minutes(5));
        assert_eq!(s.initial_lookback, Duration::days(90));
        assert!(s.filter.filter_aws_service_events);
        assert_eq!(s.normalize.retention_days, None);
    }

    #[test]
    fn values_and_errors() {
        let s = settings(&[
            ("PROCESS_STS_EVENTS", "false"),
            ("SIGNIN_REGIONS", "us-east-1, eu-north-1"),
            ("FILTERED_ROLES", "scanner*"),
            ("RETENTION_DAYS", "365"),
        ])
        .unwrap();
        assert!(!s.is_enabled(Source::Sts));
        assert_eq!(
            s.signin_regions,
            RegionSelection::Only(vec!["us-east-1".into(), "eu-north-1".into()])
        );
        assert_eq!(s.filter.filtered_roles.len(), 1);
        assert_eq!(s.normalize.retention_days, Some(365));
        let err = settings(&[("PROCESS_IAM_EVENTS", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PROCESS_IAM_EVENTS") && err.contains("maybe"),
            "{err}"
        );
        let err = settings(&[("INITIAL_LOOKBACK_DAYS", "120")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 to 90"), "{err}");
        let err = settings(&[("SSO_REGIONS", "us-east-1,Mars")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("Mars"), "{err}");
    }

    #[test]
    fn sigma_rules_location() {
        assert_eq!(settings(&[]).unwrap().sigma_rules, None);
        assert_eq!(settings(&[("SIGMA_RULES", " ")]).unwrap().sigma_rules, None);
        assert_eq!(
            settings(&[("SIGMA_RULES", "s3://rules-bucket/sigma")])
                .unwrap()
                .sigma_rules,
            Some(RulesLocation::S3 {
                bucket: "rules-bucket".into(),
                prefix: "sigma/".into()
            })
        );
        assert_eq!(
            settings(&[("SIGMA_RULES", "rules/sigma")])
                .unwrap()
                .sigma_rules,
            Some(RulesLocation::Dir("rules/sigma".into()))
        );
        let err = settings(&[("SIGMA_RULES", "s3://Bad_Bucket/x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SIGMA_RULES") && err.contains("Bad_Bucket"),
            "{err}"
        );
    }

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "ap-southeast-2",
            "us-gov-west-1",
            "eu-central-2",
        ] {
            assert!(looks_like_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us",
            "US-EAST-1",
            "us-east",
            "us_east_1",
            "us-east-1; drop",
        ] {
            assert!(!looks_like_region(bad), "{bad}");
        }
    }
}
