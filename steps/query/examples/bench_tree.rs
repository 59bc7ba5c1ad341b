//! Writes a synthetic export tree for the query benchmark (`scripts/bench-queries.py`,
//! `queries/README.md`, "Local query speed"): ROWS events spread evenly over DAYS days ending
//! yesterday (UTC), written by the export's own Parquet writer (`iamtrail-parquet`, snappy) at
//! the export's keys (`iam-events/year=YYYY/month=M/day=D/events.parquet`). Not a test.
//!
//! ```sh
//! cargo run --release -p iamtrail-query --example bench_tree -- /tmp/iamtrail-bench 1000000 30
//! ```
//!
//! The mix, per 100 events: 55 AssumeRole (3 denied), 20 IAM reads, 6 IAM permission changes,
//! 8 console sign-ins (2 failed), 2 root actions, 5 IAM Identity Center changes (one an admin
//! policy on a permission set), 4 IAM Identity Center reads. 500 users, 200 source IPs, realistic
//! text sizes (ARNs, user agent, request and response JSON: about 1.4 KB an event). The same
//! arguments always write the same files except for the dates.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{Duration, NaiveDate, Utc};
use iamtrail_core::NormalizedEvent;
use iamtrail_parquet::{compression, ParquetSink};

const ACCOUNT: &str = "111122223333";

struct Kind {
    name: &'static str,
    source: &'static str,
    event_type: &'static str,
    read_only: bool,
}

const fn kind(
    name: &'static str,
    source: &'static str,
    event_type: &'static str,
    read_only: bool,
) -> Kind {
    Kind {
        name,
        source,
        event_type,
        read_only,
    }
}

/// The kind of event `i` (per 100, see the module comment).
fn kind_of(i: u64) -> Kind {
    const IAM: &str = "iam.amazonaws.com";
    const STS: &str = "sts.amazonaws.com";
    const SIGNIN: &str = "signin.amazonaws.com";
    const SSO: &str = "sso.amazonaws.com";
    match i % 100 {
        0..=54 => kind("AssumeRole", STS, "sts", true),
        55..=64 => kind("GetUser", IAM, "iam", true),
        65..=74 => kind("ListRoles", IAM, "iam", true),
        75 => kind("AttachRolePolicy", IAM, "iam", false),
        76 => kind("PutUserPolicy", IAM, "iam", false),
        77 => kind("CreateAccessKey", IAM, "iam", false),
        78 => kind("UpdateAssumeRolePolicy", IAM, "iam", false),
        79 => kind("AddUserToGroup", IAM, "iam", false),
        80 => kind("DetachUserPolicy", IAM, "iam", false),
        81..=88 => kind("ConsoleLogin", SIGNIN, "signin", false),
        89 => kind("GetAccountSummary", IAM, "iam", true),
        90 => kind("CreateUser", IAM, "iam", false),
        91 => kind("CreatePermissionSet", SSO, "sso", false),
        92 => kind("CreateAccountAssignment", SSO, "sso", false),
        93 => kind("AttachManagedPolicyToPermissionSet", SSO, "sso", false),
        94 => kind("PutInlinePolicyToPermissionSet", SSO, "sso", false),
        95 => kind("CreateApplication", SSO, "sso", false),
        _ => kind("ListPermissionSets", SSO, "sso", true),
    }
}

fn event(i: u64, date: NaiveDate, per_day: u64) -> NormalizedEvent {
    let k = kind_of(i);
    // Spread the day's events evenly over its 86,400 seconds.
    let second = (i % per_day) * 86_400 / per_day.max(1);
    let time = date.and_hms_opt(0, 0, 0).unwrap().and_utc() + Duration::seconds(second as i64);
    let root = i % 100 == 89 || i % 100 == 90;
    let user = if root {
        "root".to_string()
    } else {
        format!("user-{}", i % 500)
    };
    let denied = k.event_type == "sts" && i % 100 < 3;
    let failed_login = k.event_type == "signin" && i % 100 < 83;
    let request_parameters = match k.event_type {
        "sts" => format!(
            r#"{{"roleArn":"arn:aws:iam::{ACCOUNT}:role/Role{}","roleSessionName":"session-{i}","durationSeconds":3600}}"#,
            i % 50
        ),
        "iam" => format!(
            r#"{{"roleName":"Role{}","userName":"user-{}","groupName":"group-{}","policyArn":"arn:aws:iam::aws:policy/{}"}}"#,
            i % 50,
            (i + 7) % 500,
            i % 20,
            [
                "ReadOnlyAccess",
                "AdministratorAccess",
                "IAMFullAccess",
                "PowerUserAccess"
            ][(i / 100 % 4) as usize]
        ),
        "sso" => format!(
            r#"{{"instanceArn":"arn:aws:sso:::instance/ssoins-1","permissionSetArn":"arn:aws:sso:::permissionSet/ssoins-1/ps-{}","name":"PermissionSet{}","managedPolicyArn":"arn:aws:iam::aws:policy/{}","targetId":"{ACCOUNT}","principalType":"USER","principalId":"p-{}","applicationArn":"arn:aws:sso::{ACCOUNT}:application/ssoins-1/apl-{}"}}"#,
            i % 30,
            i % 30,
            ["AdministratorAccess", "ReadOnlyAccess"][(i / 100 % 2) as usize],
            i % 500,
            i % 10
        ),
        _ => String::new(),
    };
    let response_elements = match k.event_type {
        "signin" => format!(
            r#"{{"ConsoleLogin":"{}"}}"#,
            if failed_login { "Failure" } else { "Success" }
        ),
        "sts" if !denied => format!(
            r#"{{"credentials":{{"accessKeyId":"ASIA{i:016X}","expiration":"Nov 24, 2026, 1:00:00 PM","sessionToken":"{}"}},"assumedRoleUser":{{"assumedRoleId":"AROA{:016X}:session-{i}","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/Role{}/session-{i}"}}}}"#,
            "IQoJb3JpZ2luX2VjE".repeat(20),
            i % 50,
            i % 50
        ),
        _ => String::new(),
    };
    NormalizedEvent {
        event_date: date.format("%Y-%m-%d").to_string(),
        event_id: format!("{:08x}-{:04x}-4000-8000-{:012x}", i, i % 65_536, i * 7919),
        event_time: time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        event_name: k.name.into(),
        event_source: k.source.into(),
        event_type: k.event_type.into(),
        user_name: user.clone(),
        user_identity_type: Some(if root { "Root" } else { "IAMUser" }.into()),
        user_arn: Some(if root {
            format!("arn:aws:iam::{ACCOUNT}:root")
        } else {
            format!("arn:aws:iam::{ACCOUNT}:user/{user}")
        }),
        principal_id: Some(format!("AIDA{:016X}", i % 500)),
        account_id: Some(ACCOUNT.into()),
        access_key_id: Some(format!("AKIA{:016X}", i % 700)),
        session_issuer: None,
        session_issuer_arn: None,
        invoked_by: None,
        mfa_authenticated: Some(i.is_multiple_of(3)),
        mfa_used: (k.event_type == "signin").then_some(i.is_multiple_of(2)),
        aws_region: ["us-east-1", "eu-west-1", "ap-southeast-2"][(i % 3) as usize].into(),
        source_ip: Some(format!("203.0.{}.{}", i % 200, i % 250)),
        user_agent: Some(format!(
            "aws-cli/2.15.{} Python/3.11.6 Linux/6.1 exe/x86_64 prompt/off command/{}",
            i % 40,
            k.name
        )),
        request_parameters: (!request_parameters.is_empty()).then_some(request_parameters),
        response_elements: (!response_elements.is_empty()).then_some(response_elements),
        additional_event_data: (k.event_type == "signin")
            .then(|| format!(r#"{{"MFAUsed":"{}"}}"#, if i.is_multiple_of(2) { "Yes" } else { "No" })),
        error_code: if denied {
            Some("AccessDenied".into())
        } else if failed_login {
            None
        } else if i % 100 == 55 && i.is_multiple_of(7) {
            Some("NoSuchEntity".into())
        } else {
            None
        },
        error_message: (denied || failed_login).then(|| {
            if failed_login {
                "Failed authentication".to_string()
            } else {
                format!("User: arn:aws:iam::{ACCOUNT}:user/{user} is not authorized to perform: sts:AssumeRole")
            }
        }),
        read_only: Some(k.read_only),
        recipient_account_id: Some(ACCOUNT.into()),
        ttl: None,
        truncated_fields: Vec::new(),
        original_size: None,
        parse_error: None,
        raw_record: None,
        raw_s3_key: None,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_tree OUT_DIR [ROWS=1000000] [DAYS=30]";
    let out = PathBuf::from(args.next().expect(usage));
    let rows: u64 = args.next().map_or(1_000_000, |a| a.parse().expect(usage));
    let days: u64 = args.next().map_or(30, |a| a.parse().expect(usage));
    assert!(days > 0 && rows >= days, "{usage}: ROWS >= DAYS > 0");
    let started = Instant::now();
    let yesterday = Utc::now().date_naive() - Duration::days(1);
    let per_day = rows / days;
    let mut bytes = 0;
    for d in 0..days {
        let date = yesterday - Duration::days((days - 1 - d) as i64);
        let path = out.join(iamtrail_core::export::object_key(date, None));
        std::fs::create_dir_all(path.parent().unwrap()).expect("create the day's directory");
        let mut sink =
            ParquetSink::create(&path, compression("snappy").unwrap()).expect("create the file");
        let first = d * per_day;
        let last = if d == days - 1 { rows } else { first + per_day };
        sink.push((first..last).map(|i| event(i, date, per_day)))
            .expect("write");
        sink.finish().expect("finish");
        bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    }
    println!(
        "rows={rows} days={days} first_day={} last_day={yesterday} parquet_mib={:.1} seconds={:.1} dir={}",
        yesterday - Duration::days(days as i64 - 1),
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        out.display()
    );
}
