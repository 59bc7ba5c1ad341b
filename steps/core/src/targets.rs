//! ListTargets' plan: which sources are read in which enabled region.

use std::collections::BTreeMap;

use crate::config::{RegionSelection, Settings};
use crate::record::CloudTrailRecord;
use crate::source::Source;

/// A region as EC2 DescribeRegions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub name: String,
    /// `opt-in-not-required`, `opted-in` or `not-opted-in` (absent from some emulators).
    pub opt_in_status: Option<String>,
}

/// Whether a region is enabled for the account. DescribeRegions without `AllRegions` already
/// omits disabled regions on AWS, but emulators ignore that, so the status is checked here.
pub fn is_enabled(region: &RegionInfo) -> bool {
    match region.opt_in_status.as_deref() {
        None | Some("opt-in-not-required") | Some("opted-in") => true,
        Some(_) => false,
    }
}

/// The regions a source is read in: every enabled region, or the configured ones (see
/// [`plan_targets`]).
pub fn read_regions(source: Source, settings: &Settings) -> RegionSelection {
    match source {
        Source::Iam => RegionSelection::Only(vec![settings.iam_region.clone()]),
        Source::Sts | Source::Root => RegionSelection::All,
        Source::Signin => settings.signin_regions.clone(),
        Source::Sso | Source::SsoDirectory | Source::IdentityStore => {
            RegionSelection::Only(settings.sso_regions.clone())
        }
    }
}

/// Whether a source is switched on and read in `region` (an enabled region).
pub fn reads(source: Source, region: &str, settings: &Settings) -> bool {
    settings.is_enabled(source)
        && match read_regions(source, settings) {
            RegionSelection::All => true,
            RegionSelection::Only(list) => list.iter().any(|r| r == region),
        }
}

/// The collection source a record belongs to, as the scheduled run would read it: the source
/// of its `eventSource` when that source is on and read in the event's region, else `root`
/// for a call of the root user (when that source is on); `None` for a record the scheduled
/// run does not collect, which Realtime and the S3 ingestion leave alone too.
pub fn source_of(record: &CloudTrailRecord, settings: &Settings) -> Option<Source> {
    source_for(
        &record.event_source,
        record.aws_region.as_deref(),
        record.user_identity.identity_type.as_deref(),
        settings,
    )
}

/// [`source_of`] from the three fields it reads: `eventSource`, `awsRegion` and
/// `userIdentity.type`.
pub fn source_for(
    event_source: &str,
    region: Option<&str>,
    identity_type: Option<&str>,
    settings: &Settings,
) -> Option<Source> {
    let region = region.unwrap_or(settings.iam_region.as_str());
    if let Some(source) = Source::reading(event_source) {
        if reads(source, region, settings) {
            return Some(source);
        }
    }
    let root = identity_type == Some("Root");
    (root && reads(Source::Root, region, settings)).then_some(Source::Root)
}

/// Where each source is read (docs/architecture.md, "Where each source is read"):
/// - `iam`: the IAM region (us-east-1), where IAM and global-endpoint events are recorded;
/// - `sts`: every enabled region;
/// - `signin`: every enabled region by default (`SIGNIN_REGIONS`);
/// - `sso`, `sso-directory`, `identitystore`: the Identity Center region(s) (`SSO_REGIONS`);
/// - `root`: every enabled region (root activity is rare: a request or two per region).
///
/// Returns the sources per enabled region (regions with none are left out), plus warnings for
/// configured regions that are not enabled.
pub fn plan_targets(
    enabled: &[String],
    settings: &Settings,
    only_sources: Option<&[Source]>,
) -> (BTreeMap<String, Vec<Source>>, Vec<String>) {
    let mut plan: BTreeMap<String, Vec<Source>> = BTreeMap::new();
    let mut warnings = Vec::new();
    let wanted = |s: Source| settings.is_enabled(s) && only_sources.is_none_or(|o| o.contains(&s));
    let mut add = |region: &str, source: Source, warnings: &mut Vec<String>| {
        if enabled.iter().any(|r| r == region) {
            let sources = plan.entry(region.to_string()).or_default();
            if !sources.contains(&source) {
                sources.push(source);
            }
        } else {
            // Identity Center's three sources share SSO_REGIONS: one warning for them.
            let setting = match source {
                Source::SsoDirectory | Source::IdentityStore => Source::Sso,
                other => other,
            };
            let warning =
                format!("{setting} region {region} is not enabled in this account; skipped");
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    };
    for source in Source::ALL {
        if !wanted(source) {
            continue;
        }
        let regions: Vec<String> = match read_regions(source, settings) {
            RegionSelection::All => enabled.to_vec(),
            RegionSelection::Only(list) => list,
        };
        for region in regions {
            add(&region, source, &mut warnings);
        }
    }
    for sources in plan.values_mut() {
        sources.sort();
    }
    (plan, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs).unwrap()
    }

    fn regions(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn opt_in_filter() {
        let r = |s: Option<&str>| RegionInfo {
            name: "x-y-1".into(),
            opt_in_status: s.map(String::from),
        };
        assert!(is_enabled(&r(None)));
        assert!(is_enabled(&r(Some("opt-in-not-required"))));
        assert!(is_enabled(&r(Some("opted-in"))));
        assert!(!is_enabled(&r(Some("not-opted-in"))));
    }

    #[test]
    fn default_rules() {
        let (plan, warnings) =
            plan_targets(&regions(&["eu-west-1", "us-east-1"]), &settings(&[]), None);
        assert_eq!(
            plan["us-east-1"],
            vec![
                Source::Iam,
                Source::Sts,
                Source::Signin,
                Source::Sso,
                Source::SsoDirectory,
                Source::IdentityStore,
                Source::Root
            ]
        );
        assert_eq!(
            plan["eu-west-1"],
            vec![Source::Sts, Source::Signin, Source::Root]
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn switches_and_region_settings() {
        let s = settings(&[
            ("PROCESS_STS_EVENTS", "false"),
            ("PROCESS_ROOT_EVENTS", "false"),
            ("SIGNIN_REGIONS", "us-east-1"),
            ("SSO_REGIONS", "eu-west-1,ap-south-2"),
        ]);
        let (plan, warnings) = plan_targets(
            &regions(&["eu-west-1", "us-east-1", "ca-central-1"]),
            &s,
            None,
        );
        assert_eq!(plan["us-east-1"], vec![Source::Iam, Source::Signin]);
        assert_eq!(
            plan["eu-west-1"],
            vec![Source::Sso, Source::SsoDirectory, Source::IdentityStore]
        );
        assert!(!plan.contains_key("ca-central-1"), "no source left there");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("ap-south-2"));
    }

    #[test]
    fn source_subset() {
        let (plan, _) = plan_targets(
            &regions(&["us-east-1", "us-west-2"]),
            &settings(&[]),
            Some(&[Source::Sts]),
        );
        assert_eq!(plan["us-east-1"], vec![Source::Sts]);
        assert_eq!(plan["us-west-2"], vec![Source::Sts]);
    }
}
