//! Export benchmark: N synthetic events (realistic sizes) through the export's Parquet writer.
//! Prints rows/s, peak RSS and the file size. Not a test: run it with
//! `cargo run --release -p iamtrail-parquet --example export_bench -- 1000000 [snappy|zstd]`.

use std::time::Instant;

use iamtrail_core::NormalizedEvent;
use iamtrail_parquet::{compression, ParquetSink};

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(String::from)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A plausible event: an AssumeRole by one of 500 users from one of 200 IPs.
fn event(i: u64) -> NormalizedEvent {
    let second = i % 86_400;
    let user = format!("user-{}", i % 500);
    NormalizedEvent {
        event_date: "2026-11-24".into(),
        event_id: format!("{:08x}-{:04x}-4000-8000-{:012x}", i, i % 65_536, i * 7919),
        event_time: format!("2026-11-24T{:02}:{:02}:{:02}Z", second / 3600, second % 3600 / 60, second % 60),
        event_name: ["AssumeRole", "GetUser", "ListRoles", "CreateAccessKey"][(i % 4) as usize].into(),
        event_source: "sts.amazonaws.com".into(),
        event_type: "sts".into(),
        user_name: user.clone(),
        user_identity_type: Some("IAMUser".into()),
        user_arn: Some(format!("arn:aws:iam::111122223333:user/{user}")),
        principal_id: Some(format!("AIDA{:016X}", i % 500)),
        account_id: Some("111122223333".into()),
        access_key_id: Some(format!("AKIA{:016X}", i % 700)),
        session_issuer: None,
        session_issuer_arn: None,
        invoked_by: None,
        mfa_authenticated: Some(i.is_multiple_of(3)),
        mfa_used: None,
        aws_region: ["us-east-1", "eu-west-1", "ap-southeast-2"][(i % 3) as usize].into(),
        source_ip: Some(format!("203.0.{}.{}", i % 200, i % 250)),
        user_agent: Some(format!("aws-cli/2.15.{} Python/3.11.6 Linux/6.1 exe/x86_64 prompt/off command/sts.assume-role", i % 40)),
        request_parameters: Some(format!(
            r#"{{"roleArn":"arn:aws:iam::111122223333:role/Role{}","roleSessionName":"session-{}","durationSeconds":3600}}"#,
            i % 50,
            i
        )),
        response_elements: Some(format!(
            r#"{{"credentials":{{"accessKeyId":"ASIA{:016X}","expiration":"Nov 24, 2026, 1:00:00 PM","sessionToken":"{}"}},"assumedRoleUser":{{"assumedRoleId":"AROA{:016X}:session-{}","arn":"arn:aws:sts::111122223333:assumed-role/Role{}/session-{}"}}}}"#,
            i,
            "IQoJb3JpZ2luX2VjE".repeat(20),
            i % 50,
            i,
            i % 50,
            i
        )),
        additional_event_data: None,
        error_code: (i.is_multiple_of(20)).then(|| "AccessDenied".into()),
        error_message: (i.is_multiple_of(20)).then(|| format!("User: arn:aws:iam::111122223333:user/{user} is not authorized to perform: sts:AssumeRole")),
        read_only: Some(false),
        recipient_account_id: Some("111122223333".into()),
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
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let codec_name = args.next().unwrap_or_else(|| "snappy".into());
    let codec = compression(&codec_name).expect("snappy or zstd");
    let path = std::env::temp_dir().join(format!("iamtrail-bench-{n}-{codec_name}.parquet"));
    let started = Instant::now();
    let mut sink = ParquetSink::create(&path, codec).expect("create file");
    // Events arrive as DynamoDB pages do (about 1 MB, a few hundred events each).
    let page = 500;
    let mut i = 0;
    while i < n {
        let end = (i + page).min(n);
        sink.push((i..end).map(event)).expect("write");
        i = end;
    }
    let rows = sink.finish().expect("finish");
    let elapsed = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "events={rows} compression={codec_name} seconds={elapsed:.2} rows_per_second={:.0} peak_rss_mib={:.1} parquet_mib={:.1} bytes_per_row={:.0}",
        rows as f64 / elapsed,
        peak_rss_mib(),
        size as f64 / 1048576.0,
        size as f64 / rows.max(1) as f64
    );
    std::fs::remove_file(&path).ok();
}
