//! Normalisation over every record of the bundled invictus-aws-2023 dataset (real CloudTrail
//! logs from an attack simulation, MIT licensed; see datasets/invictus-aws-2023/LICENSE).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use iamtrail_core::filter::{EventFilter, FilterReason};
use iamtrail_core::normalize::{normalize, NormalizeOptions, DYNAMODB_MAX_ITEM_BYTES};
use iamtrail_core::record::{format_time, read_log_dir, CloudTrailRecord};
use iamtrail_core::Source;

fn dataset() -> Vec<CloudTrailRecord> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/invictus-aws-2023/CloudTrail");
    let logs = read_log_dir(&dir).expect("dataset directory");
    assert_eq!(logs.len(), 55);
    let mut records = Vec::new();
    for (path, log) in logs {
        assert!(log.rejected.is_empty(), "{path:?}: {:?}", log.rejected);
        records.extend(log.records);
    }
    records
}

#[test]
fn every_record_parses_and_normalises() {
    let records = dataset();
    assert_eq!(records.len(), 2900);
    let ids: HashSet<_> = records.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(ids.len(), 2900, "event ids are unique");
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        let e = normalize(
            r,
            NormalizeOptions {
                retention_days: Some(365),
            },
        );
        assert_eq!(e.event_id, r.event_id);
        assert_eq!(e.event_time, format_time(r.event_time));
        assert!(e.event_time.starts_with(&e.event_date));
        assert!(!e.user_name.trim().is_empty(), "{}", r.event_id);
        assert_eq!(e.aws_region, "us-east-1");
        assert!(e.dynamodb_size() <= DYNAMODB_MAX_ITEM_BYTES);
        assert!(!e.is_truncated());
        assert_eq!(e.ttl, Some(r.event_time.timestamp() + 365 * 86400));
        // JSON fields are stored as JSON text that parses back to the record's values.
        if let Some(text) = &e.request_parameters {
            assert_eq!(
                &serde_json::from_str::<serde_json::Value>(text).unwrap(),
                r.raw.get("requestParameters").unwrap()
            );
        }
        assert_eq!(e.error_code.is_some(), r.raw.get("errorCode").is_some());
        *by_type.entry(e.event_type.clone()).or_default() += 1;
    }
    assert_eq!(by_type["iam"], 398);
    assert_eq!(by_type["sts"], 64);
    assert_eq!(by_type["signin"], 3);
    assert!(!by_type.contains_key("sso"));
    assert_eq!(by_type["other"], 2900 - 398 - 64 - 3);
    // 42 records have no userIdentity.type: still normalised.
    assert_eq!(
        records
            .iter()
            .filter(|r| r.user_identity.identity_type.is_none())
            .count(),
        42
    );
}

#[test]
fn user_names_follow_the_rules_on_real_records() {
    for r in dataset() {
        let e = normalize(&r, NormalizeOptions::default());
        match (
            r.event_name.as_str(),
            r.user_identity.identity_type.as_deref(),
        ) {
            ("AssumeRole", _) => {
                // The target role: from requestParameters, or from the error of a denied call.
                let arn = r
                    .request_param_str("roleArn")
                    .or(r.error_message.as_deref())
                    .unwrap();
                assert!(
                    arn.ends_with(&format!("/{}", e.user_name)),
                    "{arn} vs {}",
                    e.user_name
                );
            }
            ("ConsoleLogin", Some("IAMUser")) => assert_eq!(
                Some(e.user_name.as_str()),
                r.user_identity.user_name.as_deref()
            ),
            (_, Some("IAMUser")) => assert_eq!(
                Some(e.user_name.as_str()),
                r.user_identity.user_name.as_deref()
            ),
            (_, Some("AssumedRole")) => {
                assert_eq!(
                    Some(e.user_name.as_str()),
                    r.session_issuer().and_then(|i| i.user_name.as_deref())
                )
            }
            _ => {}
        }
    }
}

#[test]
fn tracked_events_and_filters() {
    let filter = EventFilter {
        filter_aws_service_events: true,
        filtered_roles: vec![],
    };
    let tracked: Vec<_> = dataset()
        .into_iter()
        .filter(|r| Source::from_event_source(&r.event_source).is_some())
        .collect();
    assert_eq!(tracked.len(), 465);
    let service: Vec<_> = tracked
        .iter()
        .filter(|r| filter.classify(r) == Some(FilterReason::AwsService))
        .collect();
    // The AWS-service AssumeRole calls (inspector2, ec2, lambda, ... assuming their roles).
    assert_eq!(service.len(), 26);
    assert!(service.iter().all(|r| r.event_name == "AssumeRole"
        && r.user_identity.identity_type.as_deref() == Some("AWSService")));
}
