//! Trail data for the local stack, the tests and the benchmarks (docs/ingest.md, "On the local
//! stack"): log files laid out as CloudTrail lays out an organisation trail's bucket, and
//! another account's copy of a log file (account ids and event ids rewritten), so that one
//! dataset stands for several accounts.

use serde_json::Value;

use crate::record::{decompressed, RecordError};

/// The organisation id of the local stack's trail.
pub const LOCAL_ORG_ID: &str = "o-iamtrail0001";

/// The account of the bundled dataset's records (`recipientAccountId`).
pub const DATASET_ACCOUNT: &str = "123837392027";

/// The account in the bundled dataset's file names (the dataset's publisher renamed one and
/// not the other); its objects are laid out under [`DATASET_ACCOUNT`].
pub const DATASET_FILE_ACCOUNT: &str = "218007301253";

/// The second account the local stack makes from the dataset.
pub const SECOND_ACCOUNT: &str = "111122223333";

/// The trail object of one bundled dataset file as `account`'s (the dataset's own account or
/// another): its key under `root` in the organisation layout, and its gzip-compressed body.
pub fn dataset_object(
    root: &str,
    name: &str,
    body: &[u8],
    account: &str,
) -> Result<(String, Vec<u8>), RecordError> {
    let name = name_as_account(name, DATASET_FILE_ACCOUNT, account);
    let name = if name.ends_with(".gz") {
        name
    } else {
        format!("{name}.gz")
    };
    let key = object_key(root, Some(LOCAL_ORG_ID), &name).ok_or_else(|| {
        RecordError::BadFile(format!("{name} is not a CloudTrail log file's name"))
    })?;
    let body = if account == DATASET_ACCOUNT {
        decompressed(body)?.into_owned()
    } else {
        as_account(body, DATASET_ACCOUNT, account)?
    };
    Ok((key, gzip(&body)?))
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

/// A log file's name as another account's: the account id in it replaced.
pub fn name_as_account(name: &str, from: &str, to: &str) -> String {
    name.replace(from, to)
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
