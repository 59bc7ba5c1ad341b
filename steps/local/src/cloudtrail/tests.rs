use super::*;
use std::collections::HashSet;
use std::io::Write;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn secs(s: &str) -> Value {
    Value::from(t(s).timestamp())
}

const NOW: &str = "2024-03-01T12:00:00Z";

fn options() -> EmulatorOptions {
    EmulatorOptions {
        clock: Clock::fixed(t(NOW)),
        ..EmulatorOptions::default()
    }
}

fn rec(id: &str, time: &str, region: &str, name: &str) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "arn": "arn:aws:iam::111122223333:user/alice",
            "accountId": "111122223333",
            "accessKeyId": "AKIAEXAMPLE",
            "userName": "alice"
        },
        "eventTime": time,
        "eventSource": "iam.amazonaws.com",
        "eventName": name,
        "awsRegion": region,
        "readOnly": name.starts_with("Get") || name.starts_with("List"),
        "eventID": id,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "eventCategory": "Management",
        "recipientAccountId": "111122223333"
    })
}

fn ids(v: &Value) -> Vec<String> {
    v["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["EventId"].as_str().unwrap().to_string())
        .collect()
}

fn lookup(emu: &CloudTrailEmulator, req: Value) -> Value {
    emu.lookup_events("us-east-1", &req).unwrap()
}

/// Pages through everything, returning event ids in order and the number of pages.
fn page_all(emu: &CloudTrailEmulator, region: &str, mut req: Value) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let v = emu.lookup_events(region, &req).unwrap();
        pages += 1;
        out.extend(ids(&v));
        match v.get("NextToken") {
            Some(tok) => req["NextToken"] = tok.clone(),
            None => return (out, pages),
        }
        assert!(pages < 10_000, "paging does not terminate");
    }
}

#[test]
fn newest_first_with_ties_broken_by_event_id() {
    let emu = CloudTrailEmulator::from_records(
        vec![
            rec("b", "2024-02-20T10:00:00Z", "us-east-1", "CreateUser"),
            rec("a", "2024-02-20T10:00:00Z", "us-east-1", "CreateUser"),
            rec("c", "2024-02-21T10:00:00Z", "us-east-1", "CreateUser"),
            rec("z", "2024-02-19T10:00:00Z", "us-east-1", "CreateUser"),
            rec("other", "2024-02-22T10:00:00Z", "eu-west-1", "CreateUser"),
        ],
        options(),
    );
    let v = lookup(&emu, json!({}));
    assert_eq!(ids(&v), ["c", "b", "a", "z"]);
    assert!(v.get("NextToken").is_none());
    let e = &v["Events"][0];
    assert_eq!(e["EventTime"], secs("2024-02-21T10:00:00Z"));
    assert_eq!(e["EventName"], "CreateUser");
    assert_eq!(e["EventSource"], "iam.amazonaws.com");
    assert_eq!(e["Username"], "alice");
    assert_eq!(e["AccessKeyId"], "AKIAEXAMPLE");
    assert_eq!(e["ReadOnly"], "false");
    assert_eq!(e["Resources"], json!([]));
    let inner: Value = serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
    assert_eq!(
        inner,
        rec("c", "2024-02-21T10:00:00Z", "us-east-1", "CreateUser")
    );
    assert_eq!(
        ids(&emu.lookup_events("eu-west-1", &json!({})).unwrap()),
        ["other"]
    );
    assert_eq!(emu.regions(), ["eu-west-1", "us-east-1"]);
}

#[test]
fn time_bounds_are_inclusive_and_fractional() {
    let emu = CloudTrailEmulator::from_records(
        vec![
            rec("t0", "2024-02-20T10:00:00Z", "us-east-1", "A"),
            rec("t1", "2024-02-20T10:00:01Z", "us-east-1", "A"),
            rec("t2", "2024-02-20T10:00:02Z", "us-east-1", "A"),
            rec("t3", "2024-02-20T10:00:03Z", "us-east-1", "A"),
        ],
        options(),
    );
    let start = t("2024-02-20T10:00:01Z").timestamp();
    let end = t("2024-02-20T10:00:02Z").timestamp();
    let v = lookup(&emu, json!({"StartTime": start, "EndTime": end}));
    assert_eq!(ids(&v), ["t2", "t1"]);
    let v = lookup(
        &emu,
        json!({"StartTime": start as f64 + 0.5, "EndTime": end as f64 + 0.999}),
    );
    assert_eq!(ids(&v), ["t2"]);
    let v = lookup(&emu, json!({"StartTime": start, "EndTime": start}));
    assert_eq!(ids(&v), ["t1"]);
    // Only one bound given: the other defaults (90 days back / now).
    assert_eq!(ids(&lookup(&emu, json!({"StartTime": end}))), ["t3", "t2"]);
    assert_eq!(ids(&lookup(&emu, json!({"EndTime": start}))), ["t1", "t0"]);
}

#[test]
fn ninety_day_window_relative_to_the_clock() {
    let clock = ManualClock::new(t(NOW));
    let emu = CloudTrailEmulator::from_records(
        vec![
            rec("old", "2023-11-01T00:00:00Z", "us-east-1", "A"), // 121 days before NOW
            rec("edge", "2023-12-02T12:00:00Z", "us-east-1", "A"), // exactly 90 days
            rec("recent", "2024-02-29T00:00:00Z", "us-east-1", "A"),
            rec("future", "2024-03-02T00:00:00Z", "us-east-1", "A"),
        ],
        EmulatorOptions {
            clock: clock.clock(),
            ..EmulatorOptions::default()
        },
    );
    assert_eq!(ids(&lookup(&emu, json!({}))), ["recent", "edge"]);
    let explicit =
        json!({"StartTime": secs("2020-01-01T00:00:00Z"), "EndTime": secs("2030-01-01T00:00:00Z")});
    assert_eq!(
        ids(&lookup(&emu, explicit.clone())),
        ["future", "recent", "edge"]
    );
    clock.advance(TimeDelta::days(1));
    assert_eq!(ids(&lookup(&emu, json!({}))), ["future", "recent"]);
}

#[test]
fn paging_is_stable_over_thousands_of_equal_timestamps() {
    let mut records = Vec::new();
    for i in 0..1234 {
        records.push(rec(
            &format!("same-{i:05}"),
            "2024-02-20T10:00:00Z",
            "us-east-1",
            "A",
        ));
    }
    for i in 0..30 {
        records.push(rec(
            &format!("before-{i:02}"),
            "2024-02-20T09:59:59Z",
            "us-east-1",
            "A",
        ));
        records.push(rec(
            &format!("after-{i:02}"),
            "2024-02-20T10:00:01Z",
            "us-east-1",
            "A",
        ));
    }
    let emu = CloudTrailEmulator::from_records(records, options());
    let req = json!({
        "StartTime": secs("2024-02-20T10:00:00Z"),
        "EndTime": secs("2024-02-20T10:00:00Z"),
    });
    let (got, pages) = page_all(&emu, "us-east-1", req.clone());
    assert_eq!(got.len(), 1234);
    assert_eq!(pages, 25); // 24 full pages + 34
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 1234, "duplicates");
    let mut expected: Vec<String> = (0..1234).map(|i| format!("same-{i:05}")).collect();
    expected.reverse();
    assert_eq!(got, expected);
    // Deterministic: the same request gives the same token.
    let a = lookup(&emu, req.clone());
    let b = lookup(&emu, req.clone());
    assert_eq!(a["NextToken"], b["NextToken"]);
    // Small pages over everything.
    let mut small = json!({"MaxResults": 7});
    small["StartTime"] = secs("2024-02-01T00:00:00Z");
    let (all, _) = page_all(&emu, "us-east-1", small);
    assert_eq!(all.len(), 1294);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 1294);
    assert!(all[..30].iter().all(|i| i.starts_with("after-")));
}

#[test]
fn late_records_show_up_without_duplicates() {
    let emu = CloudTrailEmulator::from_records(
        (0..120)
            .map(|i| {
                rec(
                    &format!("e{i:03}"),
                    "2024-02-20T10:00:00Z",
                    "us-east-1",
                    "A",
                )
            })
            .collect(),
        options(),
    );
    let first = lookup(&emu, json!({"MaxResults": 50}));
    let report = emu.add_records(vec![
        rec("late-old", "2024-02-20T09:00:00Z", "us-east-1", "A"),
        rec("e000", "2024-02-20T10:00:00Z", "us-east-1", "A"),
    ]);
    assert_eq!(report.records, 1);
    assert_eq!(report.duplicates, 1);
    let mut got = ids(&first);
    let (rest, _) = page_all(
        &emu,
        "us-east-1",
        json!({"MaxResults": 50, "NextToken": first["NextToken"]}),
    );
    got.extend(rest);
    assert_eq!(got.len(), 121);
    assert_eq!(got.last().unwrap(), "late-old");
    assert_eq!(emu.len(), 121);
}

#[test]
fn one_lookup_attribute_and_each_key_filters() {
    let mut special = rec("sts-1", "2024-02-20T11:00:00Z", "us-east-1", "AssumeRole");
    special["eventSource"] = json!("sts.amazonaws.com");
    special["userIdentity"] = json!({
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLE:deploy-session",
        "arn": "arn:aws:sts::111122223333:assumed-role/Deployer/deploy-session",
        "accessKeyId": "ASIAEXAMPLE",
        "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "Deployer"}}
    });
    special["resources"] = json!([{
        "ARN": "arn:aws:iam::111122223333:role/Target",
        "accountId": "111122223333",
        "type": "AWS::IAM::Role"
    }]);
    let emu = CloudTrailEmulator::from_records(
        vec![
            rec("u-1", "2024-02-20T10:00:00Z", "us-east-1", "CreateUser"),
            rec("g-1", "2024-02-20T10:00:01Z", "us-east-1", "GetUser"),
            special,
        ],
        options(),
    );
    let by = |k: &str, v: &str| {
        ids(&lookup(
            &emu,
            json!({"LookupAttributes": [{"AttributeKey": k, "AttributeValue": v}]}),
        ))
    };
    assert_eq!(by("EventName", "CreateUser"), ["u-1"]);
    assert_eq!(by("EventId", "g-1"), ["g-1"]);
    assert_eq!(by("ReadOnly", "true"), ["g-1"]);
    assert_eq!(by("ReadOnly", "false"), ["sts-1", "u-1"]);
    assert_eq!(by("Username", "alice"), ["g-1", "u-1"]);
    assert_eq!(by("Username", "deploy-session"), ["sts-1"]);
    assert_eq!(by("EventSource", "sts.amazonaws.com"), ["sts-1"]);
    assert_eq!(by("AccessKeyId", "ASIAEXAMPLE"), ["sts-1"]);
    assert_eq!(by("ResourceType", "AWS::IAM::Role"), ["sts-1"]);
    assert_eq!(
        by("ResourceName", "arn:aws:iam::111122223333:role/Target"),
        ["sts-1"]
    );
    assert!(by("EventName", "createuser").is_empty(), "case-sensitive");
    let e = &lookup(
        &emu,
        json!({"LookupAttributes": [{"AttributeKey": "EventId", "AttributeValue": "sts-1"}]}),
    )["Events"][0];
    assert_eq!(
        e["Resources"],
        json!([{"ResourceType": "AWS::IAM::Role", "ResourceName": "arn:aws:iam::111122223333:role/Target"}])
    );

    let two = json!({"LookupAttributes": [
        {"AttributeKey": "EventName", "AttributeValue": "CreateUser"},
        {"AttributeKey": "Username", "AttributeValue": "alice"}
    ]});
    let err = emu.lookup_events("us-east-1", &two).unwrap_err();
    assert_eq!(err.error_type(), "InvalidLookupAttributesException");
    let unknown =
        json!({"LookupAttributes": [{"AttributeKey": "SourceIp", "AttributeValue": "1.2.3.4"}]});
    let err = emu.lookup_events("us-east-1", &unknown).unwrap_err();
    assert_eq!(err.error_type(), "InvalidLookupAttributesException");
    let empty_value =
        json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": ""}]});
    assert!(emu.lookup_events("us-east-1", &empty_value).is_err());
    // An empty list is no filter.
    assert_eq!(ids(&lookup(&emu, json!({"LookupAttributes": []}))).len(), 3);
}

#[test]
fn usernames_follow_cloudtrail_conventions() {
    let with = |identity: Value| {
        let mut r = rec("x", "2024-02-20T10:00:00Z", "us-east-1", "A");
        r["userIdentity"] = identity;
        let emu = CloudTrailEmulator::from_records(vec![r], options());
        lookup(&emu, json!({}))["Events"][0]
            .get("Username")
            .cloned()
    };
    assert_eq!(
        with(json!({"type": "Root", "arn": "arn:aws:iam::111122223333:root"})),
        Some(json!("root"))
    );
    assert_eq!(
        with(json!({"type": "AWSService", "invokedBy": "rds.amazonaws.com"})),
        Some(json!("rds.amazonaws.com"))
    );
    assert_eq!(
        with(
            json!({"type": "FederatedUser", "arn": "arn:aws:sts::111122223333:federated-user/Bob"})
        ),
        Some(json!("Bob"))
    );
    assert_eq!(
        with(json!({"type": "AssumedRole", "principalId": "AROA:sess"})),
        Some(json!("sess"))
    );
    assert_eq!(with(json!({"accountId": "111122223333"})), None);
}

#[test]
fn next_token_validation() {
    let emu = CloudTrailEmulator::from_records(
        (0..10)
            .map(|i| rec(&format!("e{i}"), "2024-02-20T10:00:00Z", "us-east-1", "A"))
            .collect(),
        options(),
    );
    let first = lookup(&emu, json!({"MaxResults": 3}));
    let token = first["NextToken"].clone();
    assert!(token.is_string());
    for bad in [json!("garbage"), json!("zz"), json!(""), json!(42)] {
        let err = emu
            .lookup_events("us-east-1", &json!({"NextToken": bad}))
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidNextTokenException");
    }
    // Same token with different parameters.
    let other = json!({"NextToken": token, "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "A"}]});
    let err = emu.lookup_events("us-east-1", &other).unwrap_err();
    assert_eq!(err.error_type(), "InvalidNextTokenException");
    let err = emu
        .lookup_events("us-west-2", &json!({"MaxResults": 3, "NextToken": token}))
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidNextTokenException");
    // A different page size with the same token is accepted.
    let v = lookup(&emu, json!({"MaxResults": 5, "NextToken": token}));
    assert_eq!(ids(&v), ["e6", "e5", "e4", "e3", "e2"]);
}

#[test]
fn parameter_validation() {
    let emu = CloudTrailEmulator::from_records(vec![], options());
    let err = |req: Value| {
        emu.lookup_events("us-east-1", &req)
            .unwrap_err()
            .error_type()
    };
    assert_eq!(
        err(json!({"StartTime": 1_700_000_100, "EndTime": 1_700_000_000})),
        "InvalidTimeRangeException"
    );
    assert_eq!(
        err(json!({"StartTime": "not a time"})),
        "InvalidTimeRangeException"
    );
    assert_eq!(err(json!({"MaxResults": 0})), "InvalidMaxResultsException");
    assert_eq!(err(json!({"MaxResults": 51})), "InvalidMaxResultsException");
    assert_eq!(
        err(json!({"MaxResults": "5"})),
        "InvalidMaxResultsException"
    );
    assert_eq!(
        err(json!({"EventCategory": "data"})),
        "InvalidEventCategoryException"
    );
    assert_eq!(err(json!([])), "SerializationException");
    assert!(emu
        .lookup_events(
            "us-east-1",
            &json!({"MaxResults": 50, "EventCategory": "insight"})
        )
        .is_ok());
}

#[test]
fn http_handling_region_errors_and_counters() {
    let emu = CloudTrailEmulator::from_records(
        vec![
            rec("east", "2024-02-20T10:00:00Z", "us-east-1", "A"),
            rec("west", "2024-02-20T10:00:00Z", "us-west-2", "A"),
        ],
        EmulatorOptions {
            fail_regions: vec!["eu-west-1".into()],
            ..options()
        },
    );
    let target = format!("{TARGET_PREFIX}LookupEvents");
    let auth = "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/cloudtrail/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
    let r = emu.handle_request(&target, Some(auth), b"{}");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(ids(&v), ["west"]);
    let r = emu.handle_request(&target, None, b"");
    assert_eq!(ids(&serde_json::from_slice(&r.body).unwrap()), ["east"]);
    // The AWS SDK for Rust sends the short target form.
    let r = emu.handle_request("CloudTrail_20131101.LookupEvents", None, b"{}");
    assert_eq!(ids(&serde_json::from_slice(&r.body).unwrap()), ["east"]);
    let r = emu.handle_request(&target, None, b"{not json");
    assert_eq!(
        (r.status, r.error_type),
        (400, Some("SerializationException"))
    );
    let r = emu.handle_request(&format!("{TARGET_PREFIX}CreateTrail"), None, b"{}");
    assert_eq!(
        (r.status, r.error_type),
        (400, Some("UnsupportedOperationException"))
    );
    let eu = auth.replace("us-west-2", "eu-west-1");
    let r = emu.handle_request(&target, Some(&eu), b"{}");
    assert_eq!((r.status, r.error_type), (500, Some("InternalFailure")));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["__type"], "InternalFailure");
    emu.set_fail_regions(vec![]);
    assert_eq!(emu.handle_request(&target, Some(&eu), b"{}").status, 200);
    let stats = emu.stats();
    assert_eq!(stats.requests, 7);
    assert_eq!(stats.failed, 1);
    assert_eq!(stats.per_region["eu-west-1"].requests, 2);
    assert_eq!(stats.per_region["us-east-1"].requests, 4);
}

#[test]
fn throttling_per_region() {
    let emu = CloudTrailEmulator::from_records(
        vec![rec("e", "2024-02-20T10:00:00Z", "us-east-1", "A")],
        EmulatorOptions {
            throttle_rps: Some(2.0),
            ..options()
        },
    );
    assert!(emu.lookup_events("us-east-1", &json!({})).is_ok());
    assert!(emu.lookup_events("us-east-1", &json!({})).is_ok());
    let err = emu.lookup_events("us-east-1", &json!({})).unwrap_err();
    assert_eq!(err, LookupError::Throttling);
    assert_eq!(
        err.body(),
        json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
    );
    assert_eq!(err.status(), 400);
    // Another region has its own bucket.
    assert!(emu.lookup_events("eu-west-1", &json!({})).is_ok());
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(emu.lookup_events("us-east-1", &json!({})).is_ok());
    assert!(emu.lookup_events("us-east-1", &json!({})).is_err());
    let stats = emu.stats();
    assert_eq!(stats.throttled, 2);
    assert_eq!(stats.per_region["us-east-1"].throttled, 2);
    assert_eq!(stats.per_region["us-east-1"].requests, 5);
    assert_eq!(stats.per_region["eu-west-1"].throttled, 0);
}

#[test]
fn time_shift_latest_at_rewrites_event_time() {
    let emu = CloudTrailEmulator::from_records(
        vec![
            rec("new", "2023-07-10T12:37:50Z", "us-east-1", "A"),
            rec("old", "2023-07-10T11:42:18Z", "us-east-1", "A"),
        ],
        EmulatorOptions {
            time_shift: TimeShift::LatestAt(TimeDelta::days(1)),
            ..options()
        },
    );
    let expected_new = t("2024-02-29T12:00:00Z");
    assert_eq!(emu.shift(), Some(expected_new - t("2023-07-10T12:37:50Z")));
    let v = lookup(&emu, json!({}));
    assert_eq!(ids(&v), ["new", "old"]);
    assert_eq!(
        v["Events"][0]["EventTime"],
        Value::from(expected_new.timestamp())
    );
    let inner: Value =
        serde_json::from_str(v["Events"][0]["CloudTrailEvent"].as_str().unwrap()).unwrap();
    assert_eq!(inner["eventTime"], "2024-02-29T12:00:00Z");
    let inner: Value =
        serde_json::from_str(v["Events"][1]["CloudTrailEvent"].as_str().unwrap()).unwrap();
    assert_eq!(inner["eventTime"], "2024-02-29T11:04:28Z");
    // Later records get the same shift.
    emu.add_records(vec![rec("late", "2023-07-10T12:00:00Z", "us-east-1", "A")]);
    assert_eq!(ids(&lookup(&emu, json!({}))), ["new", "late", "old"]);
}

#[test]
fn time_shift_fixed() {
    let emu = CloudTrailEmulator::from_records(
        vec![rec("e", "2024-01-01T00:00:00Z", "us-east-1", "A")],
        EmulatorOptions {
            time_shift: TimeShift::Fixed(TimeDelta::days(30) + TimeDelta::milliseconds(400)),
            ..options()
        },
    );
    let v = lookup(&emu, json!({}));
    assert_eq!(v["Events"][0]["EventTime"], secs("2024-01-31T00:00:00Z"));
    let inner: Value =
        serde_json::from_str(v["Events"][0]["CloudTrailEvent"].as_str().unwrap()).unwrap();
    assert_eq!(inner["eventTime"], "2024-01-31T00:00:00Z");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "iamtrail-local-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn loads_json_and_gzip_recursively_and_skips_bad_records() {
    let dir = TempDir::new("load");
    let nested = dir
        .0
        .join("AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/20");
    std::fs::create_dir_all(&nested).unwrap();
    let doc = |records: Vec<Value>| json!({"Records": records}).to_string().into_bytes();
    std::fs::write(
        nested.join("a.json.gz"),
        gzip(&doc(vec![
            rec("gz-1", "2024-02-20T10:00:00Z", "us-east-1", "A"),
            rec("dup", "2024-02-20T10:00:01Z", "us-east-1", "A"),
        ])),
    )
    .unwrap();
    // Gzip content under a plain .json name is detected by its magic bytes.
    std::fs::write(
        nested.join("b.json"),
        gzip(&doc(vec![rec(
            "gz-2",
            "2024-02-20T10:00:02Z",
            "us-east-1",
            "A",
        )])),
    )
    .unwrap();
    let mut no_id = rec("x", "2024-02-20T10:00:00Z", "us-east-1", "A");
    no_id.as_object_mut().unwrap().remove("eventID");
    let mut bad_time = rec("bad-time", "yesterday", "us-east-1", "A");
    bad_time["eventTime"] = json!("yesterday");
    let mut no_region = rec("no-region", "2024-02-20T10:00:00Z", "us-east-1", "A");
    no_region.as_object_mut().unwrap().remove("awsRegion");
    let mut data = rec("data", "2024-02-20T10:00:00Z", "us-east-1", "GetObject");
    data["managementEvent"] = json!(false);
    data["eventCategory"] = json!("Data");
    std::fs::write(
        dir.0.join("c.json"),
        doc(vec![
            rec("plain", "2024-02-20T10:00:03Z", "eu-west-1", "A"),
            rec("dup", "2024-02-20T10:00:01Z", "us-east-1", "A"),
            no_id,
            bad_time,
            no_region,
            data,
        ]),
    )
    .unwrap();
    std::fs::write(dir.0.join("notes.txt"), "not a log file").unwrap();
    let digest = dir.0.join("AWSLogs/111122223333/CloudTrail-Digest");
    std::fs::create_dir_all(&digest).unwrap();
    std::fs::write(
        digest.join("d.json.gz"),
        gzip(b"{\"digestStartTime\":\"x\"}"),
    )
    .unwrap();

    let emu = CloudTrailEmulator::from_dir(&dir.0, options()).unwrap();
    let report = emu.load_report();
    assert_eq!(report.files, 3);
    assert_eq!(report.records, 4);
    assert_eq!(report.duplicates, 1);
    assert_eq!(report.skipped.len(), 4, "{:?}", report.skipped);
    assert!(report.skipped.iter().all(|(f, _)| f.ends_with("c.json")));
    let reasons: Vec<&str> = report.skipped.iter().map(|(_, r)| r.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("eventID")));
    assert!(reasons
        .iter()
        .any(|r| r.contains("bad-time") && r.contains("RFC 3339")));
    assert!(reasons.iter().any(|r| r.contains("awsRegion")));
    assert!(reasons.iter().any(|r| r.contains("management")));
    assert_eq!(ids(&lookup(&emu, json!({}))), ["gz-2", "dup", "gz-1"]);
    assert_eq!(
        ids(&emu.lookup_events("eu-west-1", &json!({})).unwrap()),
        ["plain"]
    );

    // A broken file is an error naming it.
    std::fs::write(dir.0.join("broken.json"), "{\"Records\": [").unwrap();
    let err = CloudTrailEmulator::from_dir(&dir.0, options()).unwrap_err();
    assert!(matches!(err, LoadError::Parse { .. }));
    assert!(err.to_string().contains("broken.json"), "{err}");
    std::fs::write(dir.0.join("broken.json"), "{\"records\": []}").unwrap();
    let err = CloudTrailEmulator::from_dir(&dir.0, options()).unwrap_err();
    assert!(matches!(err, LoadError::NoRecords { .. }));
    assert!(err.to_string().contains("broken.json"), "{err}");
    assert!(CloudTrailEmulator::from_dir(dir.0.join("missing"), options()).is_err());
}

fn dataset_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/invictus-aws-2023/CloudTrail")
}

#[test]
fn real_dataset_pages_completely_with_time_shift() {
    let emu = CloudTrailEmulator::from_dir(
        dataset_dir(),
        EmulatorOptions {
            time_shift: TimeShift::LatestAt(TimeDelta::days(1)),
            ..EmulatorOptions::default()
        },
    )
    .expect("the bundled dataset loads");
    let report = emu.load_report();
    assert_eq!(report.files, 55);
    assert_eq!(report.records, 2900);
    assert!(report.skipped.is_empty());
    assert_eq!(emu.regions(), ["us-east-1"]);

    // Everything is inside the default 90-day window after the shift.
    let (all, pages) = page_all(&emu, "us-east-1", json!({}));
    assert_eq!(all.len(), 2900);
    assert_eq!(pages, 58);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 2900);
    let (none, _) = page_all(&emu, "eu-west-1", json!({}));
    assert!(none.is_empty());

    // Newest first, and the newest lands one day before now.
    let first = emu.lookup_events("us-east-1", &json!({})).unwrap();
    let times: Vec<i64> = first["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["EventTime"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
    let lag = Utc::now().timestamp() - times[0];
    assert!((86_400..86_400 + 60).contains(&lag), "lag {lag}");

    let by = |k: &str, v: &str| {
        page_all(
            &emu,
            "us-east-1",
            json!({"LookupAttributes": [{"AttributeKey": k, "AttributeValue": v}]}),
        )
        .0
        .len()
    };
    assert_eq!(by("EventName", "CreateUser"), 4);
    assert_eq!(by("EventName", "CreateAccessKey"), 2);
    assert_eq!(by("EventName", "ConsoleLogin"), 2);
    assert_eq!(by("Username", "benjamin"), 105);
    assert_eq!(by("ReadOnly", "true") + by("ReadOnly", "false"), 2900);
}
