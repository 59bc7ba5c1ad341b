//! The S3 ingestion's record path (`ingest::object_events`): on every file of the bundled
//! dataset, gzip-compressed or not, it keeps exactly the items the straightforward path keeps
//! (every record parsed, then source, filters, normalisation), though it builds only the
//! records a source collects; bad records and files that are not delivery files are reported.

use std::io::Write;
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use iamtrail_core::ingest::object_events;
use iamtrail_core::normalize::normalize;
use iamtrail_core::record::{log_file_paths, parse_log_file};
use iamtrail_core::targets::source_of;
use iamtrail_core::Settings;
use serde_json::json;

fn dataset_files() -> Vec<PathBuf> {
    log_file_paths(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/invictus-aws-2023/CloudTrail"),
    )
    .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn keeps_what_the_straightforward_path_keeps() {
    for settings in [
        Settings::from_pairs(&[]).unwrap(),
        Settings::from_pairs(&[
            ("PROCESS_STS_EVENTS", "false"),
            ("SSO_REGIONS", "eu-west-1"),
        ])
        .unwrap(),
        Settings::from_pairs(&[("FILTER_AWS_SERVICE_EVENTS", "false")]).unwrap(),
    ] {
        let (mut records, mut kept) = (0, 0);
        for path in dataset_files() {
            let bytes = std::fs::read(&path).unwrap();
            let reference = parse_log_file(&bytes).unwrap();
            let expected: Vec<_> = reference
                .records
                .iter()
                .filter(|r| source_of(r, &settings).is_some())
                .filter(|r| settings.filter.classify(r).is_none())
                .map(|r| normalize(r, settings.normalize))
                .collect();
            for input in [bytes.clone(), gzip(&bytes)] {
                let got = object_events(&input, &settings).unwrap();
                assert_eq!(got.items, expected, "{}", path.display());
                assert_eq!(
                    got.records,
                    reference.records.len() + reference.rejected.len()
                );
                assert_eq!(
                    got.records,
                    got.items.len() + got.not_collected + got.filtered + got.rejected.len()
                );
            }
            records += reference.records.len();
            kept += expected.len();
        }
        assert!(
            records > 2000 && kept > 0 && kept < records,
            "{kept} of {records}"
        );
    }
}

#[test]
fn bad_records_are_reported_and_the_others_kept() {
    let settings = Settings::from_pairs(&[]).unwrap();
    let good = json!({"eventVersion": "1.08", "eventID": "e-1", "eventTime": "2026-11-30T10:00:00Z",
        "eventSource": "iam.amazonaws.com", "eventName": "CreateUser", "awsRegion": "us-east-1",
        "recipientAccountId": "222233334444",
        "userIdentity": {"type": "IAMUser", "userName": "alice", "accountId": "222233334444"}});
    let bad_time = json!({"eventID": "e-2", "eventTime": "yesterday",
        "eventSource": "iam.amazonaws.com", "eventName": "CreateUser"});
    let odd_identity = json!({"eventID": "e-3", "eventTime": "2026-11-30T10:00:01Z",
        "eventSource": "iam.amazonaws.com", "eventName": "CreateRole", "userIdentity": "text"});
    let other_service = json!({"eventID": "e-4", "eventTime": "2026-11-30T10:00:02Z",
        "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
        "userIdentity": {"type": "IAMUser"}});
    let doc = json!({"Records": [good, bad_time, odd_identity, other_service, 42]});
    let got = object_events(doc.to_string().as_bytes(), &settings).unwrap();
    assert_eq!(got.records, 5);
    let ids: Vec<&str> = got.items.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e-1", "e-3"]);
    // The account is each record's own (an organisation trail holds many).
    assert_eq!(got.items[0].account(), Some("222233334444"));
    assert_eq!(got.not_collected, 1);
    let rejected: Vec<usize> = got.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, [1, 4]);
    assert!(
        got.rejected[0].1.contains("eventTime"),
        "{:?}",
        got.rejected
    );
}

#[test]
fn files_that_are_not_delivery_files_are_errors() {
    let settings = Settings::from_pairs(&[]).unwrap();
    for (bytes, expected) in [
        (&b"{\"Records\": [}"[..], "not JSON"),
        (&b"[1, 2]"[..], "top level is not an object"),
        (&b"{\"records\": []}"[..], "no \"Records\" array"),
        (
            &b"{\"Records\": {\"a\": 1}}"[..],
            "\"Records\" is not an array",
        ),
    ] {
        let e = object_events(bytes, &settings).unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
        let e = object_events(&gzip(bytes), &settings)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{e}");
    }
    assert!(object_events(&[0x1f, 0x8b, 0, 1, 2], &settings).is_err());
    let empty = object_events(b"{\"Records\": []}", &settings).unwrap();
    assert_eq!((empty.records, empty.items.len()), (0, 0));
}

#[test]
fn a_blank_region_is_decided_as_the_full_record_decides_it() {
    // A blank awsRegion is no region: the IAM region, where Identity Center is read by default.
    let settings = Settings::from_pairs(&[]).unwrap();
    let doc = json!({"Records": [{"eventID": "e-1", "eventTime": "2026-11-30T10:00:00Z",
        "eventSource": "sso.amazonaws.com", "eventName": "CreatePermissionSet", "awsRegion": " ",
        "userIdentity": {"type": "IAMUser", "userName": "alice"}}]});
    let got = object_events(doc.to_string().as_bytes(), &settings).unwrap();
    let reference = parse_log_file(doc.to_string().as_bytes()).unwrap();
    assert!(source_of(&reference.records[0], &settings).is_some());
    assert_eq!((got.items.len(), got.not_collected), (1, 0));
}

#[test]
fn an_identity_field_of_an_odd_type_is_decided_as_the_full_record_decides_it() {
    // The peek sees a root call; the full record cannot read the identity (an ARN that is a
    // number), so it is no root call, and another service's call is not collected.
    let settings = Settings::from_pairs(&[]).unwrap();
    let doc = json!({"Records": [{"eventID": "e-1", "eventTime": "2026-11-30T10:00:00Z",
        "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "awsRegion": "eu-west-1",
        "userIdentity": {"type": "Root", "arn": 5}}]});
    let got = object_events(doc.to_string().as_bytes(), &settings).unwrap();
    let reference = parse_log_file(doc.to_string().as_bytes()).unwrap();
    assert!(source_of(&reference.records[0], &settings).is_none());
    assert_eq!((got.items.len(), got.not_collected), (0, 1));
}

#[test]
fn gzip_members_headers_and_damage() {
    // Every member is read, any header CRC-32 and length checked; a damaged object is an error.
    let settings = Settings::from_pairs(&[]).unwrap();
    let bytes = std::fs::read(&dataset_files()[0]).unwrap();
    let expected = object_events(&bytes, &settings).unwrap().items;
    assert!(!expected.is_empty());
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let members = [gzip(first), gzip(second)].concat();
    assert_eq!(object_events(&members, &settings).unwrap().items, expected);
    let mut named = GzBuilder::new()
        .filename("log.json")
        .comment("a comment")
        .extra(vec![1, 2, 3])
        .write(Vec::new(), Compression::best());
    named.write_all(&bytes).unwrap();
    let named = named.finish().unwrap();
    assert_eq!(object_events(&named, &settings).unwrap().items, expected);

    let zipped = gzip(&bytes);
    let n = zipped.len();
    let mut damaged = Vec::new();
    for at in [n - 8, n - 3, n / 2, 3] {
        let mut bad = zipped.clone();
        bad[at] ^= 0x10;
        damaged.push(bad);
    }
    damaged.push(zipped[..n - 4].to_vec());
    damaged.push(zipped[..n / 2].to_vec());
    damaged.push([&zipped[..], b"garbage"].concat());
    damaged.push([&zipped[..], &[0x1f, 0x8b]].concat());
    for bad in damaged {
        assert!(object_events(&bad, &settings).is_err());
    }
}
