//! Trail data for the local stack, the tests and the benchmarks (docs/ingest.md, "On the local
//! stack"): records laid out as CloudTrail lays out an organisation trail's bucket, and
//! another account's copy of them (account ids and event ids rewritten), so that one dataset
//! stands for several accounts.

use serde_json::Value;

use crate::record::{decompressed, RecordError};

/// The organisation id of the local stack's trail.
pub const LOCAL_ORG_ID: &str = "o-iamtrail0001";

/// The account of the bundled dataset's records (`recipientAccountId`).
pub const DATASET_ACCOUNT: &str = "123837392027";

/// The second account the local stack makes from the dataset.
pub const SECOND_ACCOUNT: &str = "111122223333";

/// How long one log object gathers a region's records (CloudTrail writes about every five
/// minutes).
pub const OBJECT_MINUTES: i64 = 5;

/// One log object: its key and its body, plain JSON (upload it compressed with [`gzip`], as
/// CloudTrail does).
#[derive(Debug, Clone, PartialEq)]
pub struct TrailObject {
    pub key: String,
    pub body: Vec<u8>,
}

/// Lays records out as CloudTrail delivers them to an organisation trail's bucket under
/// `root`: one object per account (`recipientAccountId`), region (`awsRegion`) and five
/// minutes of `eventTime`, named for the end of those five minutes, records in time order.
/// Records without those fields are left out.
pub fn layout<'a>(records: impl IntoIterator<Item = &'a str>, root: &str) -> Vec<TrailObject> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(String, String, i64), Vec<(String, Value)>> = BTreeMap::new();
    for text in records {
        let Ok(record) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let field = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(account), Some(region), Some(time)) = (
            field("recipientAccountId"),
            field("awsRegion"),
            field("eventTime").and_then(|t| crate::record::parse_time(&t)),
        ) else {
            continue;
        };
        let window = time.timestamp().div_euclid(OBJECT_MINUTES * 60);
        groups
            .entry((account, region, window))
            .or_default()
            .push((field("eventTime").unwrap_or_default(), record));
    }
    groups
        .into_iter()
        .map(|((account, region, window), mut records)| {
            records.sort_by(|a, b| a.0.cmp(&b.0));
            let written = chrono::DateTime::from_timestamp((window + 1) * OBJECT_MINUTES * 60, 0)
                .unwrap_or_default();
            let name = format!(
                "{account}_CloudTrail_{region}_{}_{:08x}.json.gz",
                written.format("%Y%m%dT%H%MZ"),
                window as u32
            );
            let records: Vec<Value> = records.into_iter().map(|(_, r)| r).collect();
            TrailObject {
                key: object_key(root, Some(LOCAL_ORG_ID), &name).unwrap_or(name),
                body: serde_json::to_vec(&serde_json::json!({ "Records": records }))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The same objects as another account's (see [`as_account`]): keys and records.
pub fn objects_as_account(
    objects: &[TrailObject],
    from: &str,
    to: &str,
) -> Result<Vec<TrailObject>, RecordError> {
    objects
        .iter()
        .map(|o| {
            Ok(TrailObject {
                key: o.key.replace(from, to),
                body: as_account(&o.body, from, to)?,
            })
        })
        .collect()
}

/// gzip, as CloudTrail compresses its log objects.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, RecordError> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// The key CloudTrail gives a log file named `name`
/// (`ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_UNIQUE.json[.gz]`) under the `AWSLogs/` folder
/// `root` (see `trail::logs_root`), in an organisation trail's layout when `org_id` is given;
/// `None` when the name is not a log file's.
pub fn object_key(root: &str, org_id: Option<&str>, name: &str) -> Option<String> {
    let mut fields = name.split('_');
    let (Some(account), Some("CloudTrail"), Some(region), Some(time)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    if time.len() < 8 || !time.is_char_boundary(8) {
        return None;
    }
    let (year, month, day) = (&time[0..4], &time[4..6], &time[6..8]);
    let org = org_id.map(|o| format!("{o}/")).unwrap_or_default();
    Some(format!(
        "{root}{org}{account}/CloudTrail/{region}/{year}/{month}/{day}/{name}"
    ))
}

/// A delivery file's records as account `to`'s instead of `from`'s: every occurrence of the
/// account id replaced (ARNs, `recipientAccountId`, `userIdentity.accountId`, ...), and each
/// `eventID` made that account's own (its last 12 hex digits replaced by the account id), so
/// the copy's events are new events. The result is plain JSON (compress it as needed).
pub fn as_account(body: &[u8], from: &str, to: &str) -> Result<Vec<u8>, RecordError> {
    let body = decompressed(body)?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| RecordError::BadFile(format!("not UTF-8: {e}")))?
        .replace(from, to);
    let mut doc: Value = serde_json::from_str(&text)?;
    if let Some(records) = doc.get_mut("Records").and_then(Value::as_array_mut) {
        for record in records {
            if let Some(id) = record.get_mut("eventID") {
                if let Some(text) = id.as_str() {
                    *id = Value::String(event_id_as_account(text, to));
                }
            }
        }
    }
    Ok(serde_json::to_vec(&doc)?)
}

/// An event id made account `account`'s: its last 12 characters replaced by the account id.
pub fn event_id_as_account(id: &str, account: &str) -> String {
    match id.len().checked_sub(12) {
        Some(cut) if id.is_char_boundary(cut) => format!("{}{account}", &id[..cut]),
        _ => format!("{id}-{account}"),
    }
}

/// A large synthetic trail for benchmarks (docs/ingest.md, "A million events"): the records
/// of a dataset repeated over `accounts` accounts (ids `100000000000 + n`), one region, and
/// consecutive five-minute objects of `records_per_object` records each, starting at `start`.
/// Each copy is a new event: its `eventID` is unique, its `eventTime` inside its object's five
/// minutes, every occurrence of the dataset's account replaced by the copy's. Objects are made
/// one at a time (`next`), so a trail of millions of records never sits in memory.
pub struct SyntheticTrail<'a> {
    base: &'a [String],
    accounts: u32,
    records_per_object: usize,
    objects: usize,
    start: chrono::DateTime<chrono::Utc>,
    made: usize,
    next_record: usize,
}

impl<'a> SyntheticTrail<'a> {
    /// `base`: record texts (each a JSON object with `eventID`, `eventTime` and the dataset's
    /// account); `objects` objects in all, spread over the accounts in turn.
    pub fn new(
        base: &'a [String],
        accounts: u32,
        objects: usize,
        records_per_object: usize,
        start: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        SyntheticTrail {
            base,
            accounts: accounts.max(1),
            records_per_object,
            objects,
            start,
            made: 0,
            next_record: 0,
        }
    }

    /// The account of the `n`th synthetic account.
    pub fn account(n: u32) -> String {
        format!("{}", 100_000_000_000u64 + u64::from(n))
    }
}

impl Iterator for SyntheticTrail<'_> {
    type Item = TrailObject;

    fn next(&mut self) -> Option<TrailObject> {
        if self.made >= self.objects || self.base.is_empty() {
            return None;
        }
        let n = self.made;
        self.made += 1;
        let account = Self::account(n as u32 % self.accounts);
        let window = (n as u32 / self.accounts) as i64;
        let from = self.start + chrono::Duration::minutes(window * OBJECT_MINUTES);
        let step_ms = (OBJECT_MINUTES * 60_000) / self.records_per_object.max(1) as i64;
        let mut body = String::from("{\"Records\":[");
        for i in 0..self.records_per_object {
            let serial = self.next_record;
            self.next_record += 1;
            let text = &self.base[serial % self.base.len()];
            let time = from + chrono::Duration::milliseconds(step_ms * i as i64);
            if i > 0 {
                body.push(',');
            }
            body.push_str(&rewrite(text, &account, serial, time));
        }
        body.push_str("]}");
        let region = "us-east-1";
        let written = from + chrono::Duration::minutes(OBJECT_MINUTES);
        let name = format!(
            "{account}_CloudTrail_{region}_{}_{n:08x}.json.gz",
            written.format("%Y%m%dT%H%MZ")
        );
        Some(TrailObject {
            key: object_key("AWSLogs/", Some(LOCAL_ORG_ID), &name).unwrap_or(name),
            body: body.into_bytes(),
        })
    }
}

/// A record's text as a new event: the dataset's account replaced, a new `eventID` (unique
/// per `serial`), the `eventTime` and `awsRegion` set.
fn rewrite(
    text: &str,
    account: &str,
    serial: usize,
    time: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut out = text.replace(DATASET_ACCOUNT, account);
    let id = format!(
        "{:08x}-5e7a-4c0d-9a11-{:012x}",
        serial as u32,
        account.parse::<u64>().unwrap_or(0) ^ serial as u64
    );
    replace_value(&mut out, "\"eventID\":\"", &id);
    replace_value(
        &mut out,
        "\"eventTime\":\"",
        &time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    replace_value(&mut out, "\"awsRegion\":\"", "us-east-1");
    out
}

/// Replaces the string value after the first `prefix` (`"field":"`).
fn replace_value(text: &mut String, prefix: &str, value: &str) {
    if let Some(at) = text.find(prefix) {
        let from = at + prefix.len();
        if let Some(len) = text[from..].find('"') {
            text.replace_range(from..from + len, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_cloudtrails_layout() {
        let name = "218007301253_CloudTrail_us-east-1_20230710T1220Z_WMiHxZgr5Hdd6UDc.json.gz";
        assert_eq!(
            object_key("AWSLogs/", Some(LOCAL_ORG_ID), name).unwrap(),
            format!("AWSLogs/{LOCAL_ORG_ID}/218007301253/CloudTrail/us-east-1/2023/07/10/{name}")
        );
        let key = object_key("AWSLogs/", None, name).unwrap();
        assert!(crate::trail::LogObjectKey::parse(&key).is_some());
        assert_eq!(object_key("AWSLogs/", None, "notes.txt"), None);
    }

    #[test]
    fn records_are_grouped_by_account_region_and_five_minutes() {
        let record = |id: &str, time: &str, region: &str| {
            format!(
                r#"{{"eventID":"{id}","eventTime":"{time}","awsRegion":"{region}","recipientAccountId":"123837392027"}}"#
            )
        };
        let records = [
            record("b", "2023-07-10T12:03:00Z", "us-east-1"),
            record("a", "2023-07-10T12:01:00Z", "us-east-1"),
            record("c", "2023-07-10T12:06:00Z", "us-east-1"),
            record("d", "2023-07-10T12:01:00Z", "eu-west-1"),
            "not json".to_string(),
        ];
        let objects = layout(records.iter().map(String::as_str), "AWSLogs/");
        let keys: Vec<crate::trail::LogObjectKey> = objects
            .iter()
            .map(|o| crate::trail::LogObjectKey::parse(&o.key).unwrap())
            .collect();
        assert_eq!(objects.len(), 3);
        assert_eq!(
            (keys[0].region.as_str(), keys[0].written.to_rfc3339()),
            ("eu-west-1", "2023-07-10T12:05:00+00:00".to_string())
        );
        let first: Value = serde_json::from_slice(&objects[1].body).unwrap();
        let ids: Vec<&str> = first["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["eventID"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(keys[2].written.to_rfc3339(), "2023-07-10T12:10:00+00:00");
        let copy = objects_as_account(&objects, DATASET_ACCOUNT, SECOND_ACCOUNT).unwrap();
        assert!(copy[0].key.contains("/111122223333/CloudTrail/eu-west-1/"));
    }

    #[test]
    fn a_synthetic_trail_makes_new_events_in_consecutive_objects() {
        let base = vec![
            r#"{"eventID":"a","eventTime":"2023-07-10T11:00:00Z","awsRegion":"eu-west-1","recipientAccountId":"123837392027"}"#.to_string(),
            r#"{"eventID":"b","eventTime":"2023-07-10T11:01:00Z","awsRegion":"us-east-1","recipientAccountId":"123837392027"}"#.to_string(),
        ];
        let start = crate::record::parse_time("2024-01-01T00:00:00Z").unwrap();
        let objects: Vec<TrailObject> = SyntheticTrail::new(&base, 2, 4, 3, start).collect();
        assert_eq!(objects.len(), 4);
        let mut ids = std::collections::BTreeSet::new();
        for (n, object) in objects.iter().enumerate() {
            let key = crate::trail::LogObjectKey::parse(&object.key).unwrap();
            assert_eq!(key.account, SyntheticTrail::account(n as u32 % 2));
            let doc: Value = serde_json::from_slice(&object.body).unwrap();
            for record in doc["Records"].as_array().unwrap() {
                assert_eq!(record["recipientAccountId"], key.account.as_str());
                assert_eq!(record["awsRegion"], "us-east-1");
                let time =
                    crate::record::parse_time(record["eventTime"].as_str().unwrap()).unwrap();
                assert!(time < key.written && time >= key.written - chrono::Duration::minutes(5));
                ids.insert(record["eventID"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(ids.len(), 12, "every event is new");
    }

    #[test]
    fn another_accounts_copy_has_new_event_ids() {
        let body = br#"{"Records":[{"eventID":"2bc34359-3da6-47f3-aa38-f53989696988","recipientAccountId":"218007301253","userIdentity":{"arn":"arn:aws:iam::218007301253:user/a"}}]}"#;
        let copy: Value =
            serde_json::from_slice(&as_account(body, "218007301253", "111122223333").unwrap())
                .unwrap();
        let record = &copy["Records"][0];
        assert_eq!(record["eventID"], "2bc34359-3da6-47f3-aa38-111122223333");
        assert_eq!(record["recipientAccountId"], "111122223333");
        assert_eq!(
            record["userIdentity"]["arn"],
            "arn:aws:iam::111122223333:user/a"
        );
    }
}
