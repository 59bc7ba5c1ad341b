//! The layout of a CloudTrail trail bucket and the plan of an S3 ingestion (docs/ingest.md,
//! "The trail bucket" and "Planning"). No I/O: the planning step lists the bucket with these
//! prefixes and batches what it finds with [`batches`].
//!
//! CloudTrail writes each log object under
//! `[PREFIX/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/` with the name
//! `ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_UNIQUE.json.gz`, the time being when the object
//! was written (its records happened up to about 15 minutes before).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// How long after its last record CloudTrail may write a log object: objects written up to
/// this long after a range's end are read, and their records outside the range left alone.
pub const DELIVERY_LAG_MINUTES: i64 = 60;

/// What the key of one CloudTrail log object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogObjectKey {
    /// The organisation id (`o-...`) of an organisation trail's key.
    pub org_id: Option<String>,
    pub account: String,
    pub region: String,
    /// The day folder the object is in (UTC).
    pub date: NaiveDate,
    /// When CloudTrail wrote the object (from its name).
    pub written: DateTime<Utc>,
}

impl LogObjectKey {
    /// Reads a trail object's key; `None` for anything that is not a CloudTrail log object
    /// (digests under `CloudTrail-Digest/`, Insights, a folder marker, other files).
    pub fn parse(key: &str) -> Option<LogObjectKey> {
        let parts: Vec<&str> = key.split('/').collect();
        let at = parts.iter().rposition(|p| *p == "CloudTrail")?;
        if parts.len() != at + 6 {
            return None;
        }
        let account = parts.get(at.checked_sub(1)?)?;
        if !is_account_id(account) {
            return None;
        }
        let logs = parts.get(at.checked_sub(2)?)?;
        let org_id = if logs.starts_with("o-") {
            (parts.get(at.checked_sub(3)?)? == &"AWSLogs").then_some(())?;
            Some(logs.to_string())
        } else {
            (logs == &"AWSLogs").then_some(())?;
            None
        };
        let [region, year, month, day, name] = [
            parts[at + 1],
            parts[at + 2],
            parts[at + 3],
            parts[at + 4],
            parts[at + 5],
        ];
        let date =
            NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)?;
        // ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_UNIQUE.json[.gz]
        let mut fields = name.split('_');
        let (Some(a), Some("CloudTrail"), Some(r), Some(time)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        if a != *account || r != region || !(name.ends_with(".json.gz") || name.ends_with(".json"))
        {
            return None;
        }
        let written = NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%MZ").ok()?;
        Some(LogObjectKey {
            org_id,
            account: account.to_string(),
            region: region.to_string(),
            date,
            written: Utc.from_utc_datetime(&written),
        })
    }
}

/// Whether a key segment is an AWS account id (12 digits).
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a key segment is an organisation id folder (`o-` and 10 to 32 lower-case letters
/// or digits).
pub fn is_org_id(text: &str) -> bool {
    text.strip_prefix("o-").is_some_and(|rest| {
        (10..=32).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// The `AWSLogs/` folder under a trail's key prefix (`""` or `logs` or `logs/`).
pub fn logs_root(prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        "AWSLogs/".to_string()
    } else if prefix.ends_with("AWSLogs") || prefix.contains("AWSLogs/") {
        format!("{prefix}/")
    } else {
        format!("{prefix}/AWSLogs/")
    }
}

/// The folder of one account and region's log objects, under an account folder
/// (`.../AWSLogs/[o-id/]ACCOUNT/`).
pub fn region_folder(account_folder: &str, region: &str) -> String {
    format!("{account_folder}CloudTrail/{region}/")
}

/// The fewest date folders (`YYYY/`, `YYYY/MM/` or `YYYY/MM/DD/`, relative to a region
/// folder) that hold every object written in `[start, end + DELIVERY_LAG_MINUTES)`: whole years
/// and whole months are listed as one folder, the days at either end one by one.
pub fn date_folders(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let mut folders = Vec::new();
    if end <= start {
        return folders;
    }
    let first = start.date_naive();
    let last = (end + Duration::minutes(DELIVERY_LAG_MINUTES) - Duration::seconds(1)).date_naive();
    let mut day = first;
    while day <= last {
        let year_end = NaiveDate::from_ymd_opt(day.year(), 12, 31).unwrap_or(day);
        let month_end = last_of_month(day);
        if day.ordinal() == 1 && year_end <= last {
            folders.push(format!("{:04}/", day.year()));
            day = year_end.succ_opt().unwrap_or(year_end);
            if day == year_end {
                break;
            }
        } else if day.day() == 1 && month_end <= last {
            folders.push(format!("{:04}/{:02}/", day.year(), day.month()));
            day = month_end.succ_opt().unwrap_or(month_end);
            if day == month_end {
                break;
            }
        } else {
            folders.push(format!(
                "{:04}/{:02}/{:02}/",
                day.year(),
                day.month(),
                day.day()
            ));
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
    }
    folders
}

fn last_of_month(day: NaiveDate) -> NaiveDate {
    let (y, m) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .unwrap_or(day)
}

/// Whether an object written at `written` belongs to the range `[start, end)`: written in it,
/// or up to [`DELIVERY_LAG_MINUTES`] after its end.
pub fn written_in_range(written: DateTime<Utc>, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    written >= start && written < end + Duration::minutes(DELIVERY_LAG_MINUTES)
}

/// One log object of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedObject {
    pub key: String,
    /// Its size in bytes, as listed (compressed).
    pub size: u64,
}

/// One child execution's work: a few log objects of one bucket, and the time range whose
/// records are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestBatch {
    /// The ingestion run (the execution's name): where the batch's result is written.
    pub run_id: String,
    /// The batch's number in the run's manifest, from 0.
    pub batch: u32,
    /// The trail bucket.
    pub bucket: String,
    /// Records outside `[start, end)` are left alone (the neighbouring range holds them).
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub objects: Vec<PlannedObject>,
    /// Read objects already ingested again (their marks are ignored).
    #[serde(default)]
    pub force: bool,
}

/// Limits of one batch: a child execution reads at most this many objects and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLimits {
    pub max_objects: usize,
    pub max_bytes: u64,
}

impl Default for BatchLimits {
    /// 100 objects or 64 MiB compressed: CloudTrail's objects are mostly a few KB to a few MB,
    /// and 64 MiB of them read at the measured rate take well under the Lambda time budget
    /// (docs/ingest.md, "Batches").
    fn default() -> Self {
        BatchLimits {
            max_objects: 100,
            max_bytes: 64 << 20,
        }
    }
}

/// Groups objects, in the given order, into batches of at most `limits` (an object larger
/// than `max_bytes` is a batch of its own).
pub fn batches(objects: Vec<PlannedObject>, limits: BatchLimits) -> Vec<Vec<PlannedObject>> {
    let mut out: Vec<Vec<PlannedObject>> = Vec::new();
    let mut bytes = 0u64;
    for object in objects {
        let fits = out.last().is_some_and(|last| {
            last.len() < limits.max_objects.max(1)
                && bytes.saturating_add(object.size) <= limits.max_bytes
        });
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes = bytes.saturating_add(object.size);
        if let Some(last) = out.last_mut() {
            last.push(object);
        }
    }
    out
}

/// The analytics-bucket folder of one ingestion run: its manifest, the batches' results and
/// its summary.
pub fn run_folder(run_id: &str) -> String {
    format!("ingest/{run_id}/")
}

/// The key of a run's manifest (the batches the Distributed Map reads).
pub fn manifest_key(run_id: &str) -> String {
    format!("{}manifest.json", run_folder(run_id))
}

/// The key of one batch's result.
pub fn result_key(run_id: &str, batch: u32) -> String {
    format!("{}results/{batch:06}.json", run_folder(run_id))
}

/// The key of a run's batches left to do (failed or never run), for a retry.
pub fn retry_key(run_id: &str) -> String {
    format!("{}retry.json", run_folder(run_id))
}

/// The key of a run's summary.
pub fn summary_key(run_id: &str) -> String {
    format!("{}summary.json", run_folder(run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn keys_of_account_and_organisation_trails() {
        let key = LogObjectKey::parse(
            "AWSLogs/o-aa111bb222/111122223333/CloudTrail/eu-west-1/2024/02/29/111122223333_CloudTrail_eu-west-1_20240229T2355Z_abcDEF123.json.gz",
        )
        .unwrap();
        assert_eq!(key.org_id.as_deref(), Some("o-aa111bb222"));
        assert_eq!(key.account, "111122223333");
        assert_eq!(key.region, "eu-west-1");
        assert_eq!(key.date, NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        assert_eq!(key.written, t("2024-02-29T23:55:00Z"));
        let plain = LogObjectKey::parse(
            "logs/AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/218007301253_CloudTrail_us-east-1_20230710T1220Z_WMiHxZgr5Hdd6UDc.json",
        )
        .unwrap();
        assert_eq!(plain.org_id, None);
        assert_eq!(plain.account, "218007301253");
    }

    #[test]
    fn other_objects_are_not_log_objects() {
        for key in [
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/01/01/111122223333_CloudTrail-Digest_us-east-1_x_20240101T0000Z.json.gz",
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/01/",
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/01/notes.txt",
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/13/01/111122223333_CloudTrail_us-east-1_20240101T0000Z_a.json.gz",
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/01/999999999999_CloudTrail_us-east-1_20240101T0000Z_a.json.gz",
            "AWSLogs/11112222333/CloudTrail/us-east-1/2024/01/01/11112222333_CloudTrail_us-east-1_20240101T0000Z_a.json.gz",
            "Other/111122223333/CloudTrail/us-east-1/2024/01/01/111122223333_CloudTrail_us-east-1_20240101T0000Z_a.json.gz",
        ] {
            assert_eq!(LogObjectKey::parse(key), None, "{key}");
        }
    }

    #[test]
    fn date_folders_take_whole_years_and_months_at_once() {
        assert_eq!(
            date_folders(t("2023-07-10T11:00:00Z"), t("2023-07-10T13:00:00Z")),
            ["2023/07/10/"]
        );
        // The delivery lag reaches into the next day.
        assert_eq!(
            date_folders(t("2023-07-10T11:00:00Z"), t("2023-07-10T23:30:00Z")),
            ["2023/07/10/", "2023/07/11/"]
        );
        assert_eq!(
            date_folders(t("2023-11-30T00:00:00Z"), t("2025-02-02T00:00:00Z")),
            [
                "2023/11/30/",
                "2023/12/",
                "2024/",
                "2025/01/",
                "2025/02/01/",
                "2025/02/02/"
            ]
        );
        assert!(date_folders(t("2023-07-10T11:00:00Z"), t("2023-07-10T11:00:00Z")).is_empty());
    }

    #[test]
    fn batches_respect_both_limits() {
        let objects: Vec<PlannedObject> = [5, 5, 5, 20, 1, 1, 1]
            .iter()
            .enumerate()
            .map(|(i, size)| PlannedObject {
                key: format!("k{i}"),
                size: *size,
            })
            .collect();
        let limits = BatchLimits {
            max_objects: 2,
            max_bytes: 10,
        };
        let sizes: Vec<Vec<u64>> = batches(objects, limits)
            .iter()
            .map(|b| b.iter().map(|o| o.size).collect())
            .collect();
        assert_eq!(
            sizes,
            vec![vec![5, 5], vec![5], vec![20], vec![1, 1], vec![1]]
        );
        assert!(batches(Vec::new(), limits).is_empty());
    }

    #[test]
    fn prefixes_and_ids() {
        assert_eq!(logs_root(""), "AWSLogs/");
        assert_eq!(logs_root("trail/"), "trail/AWSLogs/");
        assert_eq!(logs_root("trail/AWSLogs"), "trail/AWSLogs/");
        assert_eq!(logs_root("AWSLogs/o-aa111bb222/"), "AWSLogs/o-aa111bb222/");
        assert!(is_org_id("o-aa111bb222"));
        assert!(!is_org_id("o-short"));
        assert!(is_account_id("111122223333"));
        assert!(!is_account_id("11112222333x"));
        assert!(written_in_range(
            t("2023-07-10T13:30:00Z"),
            t("2023-07-10T11:00:00Z"),
            t("2023-07-10T13:00:00Z")
        ));
        assert!(!written_in_range(
            t("2023-07-10T10:59:00Z"),
            t("2023-07-10T11:00:00Z"),
            t("2023-07-10T13:00:00Z")
        ));
    }
}
