//! A small Parquet export tree with the exact schema of docs/parquet-schema.md.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "iamtrail-query-{name}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// The export schema (docs/parquet-schema.md), column for column.
pub fn schema() -> Schema {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let b = |name: &str, nullable: bool| Field::new(name, DataType::Boolean, nullable);
    Schema::new(vec![
        s("event_id", false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        s("event_date", false),
        s("event_name", false),
        s("event_source", false),
        s("event_type", false),
        s("user_name", false),
        s("user_identity_type", true),
        s("user_arn", true),
        s("principal_id", true),
        s("account_id", true),
        s("access_key_id", true),
        s("session_issuer", true),
        s("session_issuer_arn", true),
        s("invoked_by", true),
        b("mfa_authenticated", true),
        b("mfa_used", true),
        s("aws_region", false),
        s("source_ip", true),
        s("user_agent", true),
        s("request_parameters", true),
        s("response_elements", true),
        s("additional_event_data", true),
        s("error_code", true),
        s("error_message", true),
        b("read_only", true),
        s("recipient_account_id", true),
        b("truncated", false),
    ])
}

/// One fixture event (the columns a test cares about; the rest are derived or null).
#[derive(Clone, Debug)]
pub struct Event {
    pub id: &'static str,
    pub time: DateTime<Utc>,
    pub name: &'static str,
    pub source: &'static str,
    pub event_type: &'static str,
    pub user: &'static str,
    pub identity_type: &'static str,
    pub region: &'static str,
    pub source_ip: &'static str,
    pub error_code: Option<&'static str>,
    pub error_message: Option<&'static str>,
    pub request_parameters: Option<&'static str>,
    pub response_elements: Option<&'static str>,
    pub additional_event_data: Option<&'static str>,
    pub session_issuer: Option<&'static str>,
    pub mfa_used: Option<bool>,
    pub read_only: bool,
}

fn event(id: &'static str, time: DateTime<Utc>, name: &'static str, user: &'static str) -> Event {
    Event {
        id,
        time,
        name,
        source: "iam.amazonaws.com",
        event_type: "iam",
        user,
        identity_type: "IAMUser",
        region: "us-east-1",
        source_ip: "198.51.100.7",
        error_code: None,
        error_message: None,
        request_parameters: None,
        response_elements: None,
        additional_event_data: None,
        session_issuer: None,
        mfa_used: None,
        read_only: false,
    }
}

/// The fixture: events on two recent days (yesterday and the day before, UTC) plus one 30 days
/// old (outside the default 7-day window). Users include `x'` and `x`, names next to the
/// classic injection `x' OR '1'='1`.
pub fn events(now: DateTime<Utc>) -> Vec<Event> {
    let midnight = now.duration_trunc(Duration::days(1)).unwrap();
    let d1 = midnight - Duration::days(1);
    let d2 = midnight - Duration::days(2);
    let h = Duration::hours;
    vec![
        Event {
            request_parameters: Some(r#"{"userName":"mallory"}"#),
            ..event("e1", d1 + h(10), "CreateUser", "alice")
        },
        Event {
            request_parameters: Some(
                r#"{"userName":"mallory","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#,
            ),
            ..event(
                "e2",
                d1 + h(10) + Duration::minutes(5),
                "AttachUserPolicy",
                "alice",
            )
        },
        Event {
            source: "signin.amazonaws.com",
            event_type: "signin",
            error_message: Some("Failed authentication"),
            response_elements: Some(r#"{"ConsoleLogin":"Failure"}"#),
            additional_event_data: Some(r#"{"MFAUsed":"No"}"#),
            mfa_used: Some(false),
            ..event("e3", d1 + h(3), "ConsoleLogin", "alice")
        },
        Event {
            source: "signin.amazonaws.com",
            event_type: "signin",
            identity_type: "Root",
            response_elements: Some(r#"{"ConsoleLogin":"Success"}"#),
            mfa_used: Some(true),
            ..event("e4", d2 + h(23), "ConsoleLogin", "root")
        },
        Event {
            source: "sts.amazonaws.com",
            event_type: "sts",
            identity_type: "AssumedRole",
            session_issuer: Some("deployer"),
            error_code: Some("AccessDenied"),
            error_message: Some("User is not authorized to perform: sts:AssumeRole"),
            request_parameters: Some(r#"{"roleArn":"arn:aws:iam::123456789012:role/admin"}"#),
            ..event("e5", d2 + h(14), "AssumeRole", "bob")
        },
        Event {
            source: "sso.amazonaws.com",
            event_type: "sso",
            identity_type: "AssumedRole",
            region: "eu-west-1",
            request_parameters: Some(
                r#"{"name":"AdminAccess","instanceArn":"arn:aws:sso:::instance/ssoins-1"}"#,
            ),
            ..event("e6", d2 + h(9), "CreatePermissionSet", "carol")
        },
        Event {
            source: "sso.amazonaws.com",
            event_type: "sso",
            identity_type: "AssumedRole",
            region: "eu-west-1",
            request_parameters: Some(
                r#"{"permissionSetArn":"arn:aws:sso:::permissionSet/ps-1","targetId":"123456789012","principalType":"USER"}"#,
            ),
            ..event(
                "e7",
                d2 + h(9) + Duration::minutes(2),
                "CreateAccountAssignment",
                "carol",
            )
        },
        Event {
            read_only: true,
            ..event("e8", d1 + h(12), "ListUsers", "x'")
        },
        Event {
            read_only: true,
            ..event("e9", d1 + h(12) + Duration::minutes(1), "GetUser", "x")
        },
        Event {
            source_ip: "203.0.113.9",
            ..event("e10", d1 + h(15), "DeleteUser", "x' OR '1'='1-adjacent")
        },
        event(
            "old",
            midnight - Duration::days(30) + h(12),
            "CreateUser",
            "alice",
        ),
    ]
}

fn batch(events: &[Event]) -> RecordBatch {
    let text = |f: &dyn Fn(&Event) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(events.iter().map(f).collect::<Vec<_>>()))
    };
    let boolean = |f: &dyn Fn(&Event) -> Option<bool>| -> ArrayRef {
        Arc::new(BooleanArray::from(events.iter().map(f).collect::<Vec<_>>()))
    };
    let account = "123456789012";
    let columns: Vec<ArrayRef> = vec![
        text(&|e| Some(e.id.into())),
        Arc::new(TimestampMillisecondArray::from(
            events
                .iter()
                .map(|e| e.time.timestamp_millis())
                .collect::<Vec<_>>(),
        )),
        text(&|e| Some(e.time.format("%Y-%m-%d").to_string())),
        text(&|e| Some(e.name.into())),
        text(&|e| Some(e.source.into())),
        text(&|e| Some(e.event_type.into())),
        text(&|e| Some(e.user.into())),
        text(&|e| Some(e.identity_type.into())),
        text(&|e| Some(format!("arn:aws:iam::{account}:user/{}", e.user))),
        text(&|e| Some(format!("AIDA{}", e.id.to_uppercase()))),
        text(&|_| Some(account.into())),
        text(&|e| Some(format!("AKIA{}", e.id.to_uppercase()))),
        text(&|e| e.session_issuer.map(String::from)),
        text(&|e| {
            e.session_issuer
                .map(|s| format!("arn:aws:iam::{account}:role/{s}"))
        }),
        text(&|_| None),
        boolean(&|e| Some(e.mfa_used.unwrap_or(false))),
        boolean(&|e| e.mfa_used),
        text(&|e| Some(e.region.into())),
        text(&|e| Some(e.source_ip.into())),
        text(&|_| Some("aws-cli/2.15.0".into())),
        text(&|e| e.request_parameters.map(String::from)),
        text(&|e| e.response_elements.map(String::from)),
        text(&|e| e.additional_event_data.map(String::from)),
        text(&|e| e.error_code.map(String::from)),
        text(&|e| e.error_message.map(String::from)),
        boolean(&|e| Some(e.read_only)),
        text(&|_| Some(account.into())),
        boolean(&|_| Some(false)),
    ];
    RecordBatch::try_new(Arc::new(schema()), columns).expect("fixture batch matches the schema")
}

/// Writes `events` as the export does: one snappy Parquet file per day (and per region when
/// `by_region`) at the export's key, `root/iam-events/year=YYYY/month=M/day=D[/region=R]/events.parquet`
/// (`iamtrail_core::export::object_key`).
pub fn write_tree(root: &Path, events: &[Event], by_region: bool) {
    let mut groups: Vec<(String, Vec<Event>)> = Vec::new();
    for e in events {
        let key =
            iamtrail_core::export::object_key(e.time.date_naive(), by_region.then_some(e.region));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(e.clone()),
            None => groups.push((key, vec![e.clone()])),
        }
    }
    for (key, list) in groups {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = File::create(&path).unwrap();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut writer = ArrowWriter::try_new(file, Arc::new(schema()), Some(props)).unwrap();
        writer.write(&batch(&list)).unwrap();
        writer.close().unwrap();
    }
}

/// The fixture's ten recent events (every kind the 15 queries look for: IAM changes, failed and
/// root console sign-ins, a denied AssumeRole, IAM Identity Center changes) copied onto each of
/// `days`, at the same time of day.
pub fn every_day(days: &[chrono::NaiveDate]) -> Vec<Event> {
    let template: Vec<Event> = events(Utc::now())
        .into_iter()
        .filter(|e| e.id != "old")
        .collect();
    let mut out = Vec::new();
    for day in days {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
        for e in &template {
            let time_of_day = e.time - e.time.duration_trunc(Duration::days(1)).unwrap();
            out.push(Event {
                time: midnight + time_of_day,
                ..e.clone()
            });
        }
    }
    out
}
