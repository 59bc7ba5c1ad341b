//! A synthetic CloudTrail dataset of any size for the load bench of `tests/artifacts.rs`
//! (docs/artifacts.md): real records of the bundled dataset (the tracked, non-noise ones, so
//! the mix of sources, event names, sizes and alerting events is the dataset's) rewritten with
//! new event ids, times spread over a span ending at a given time, and the STS and sign-in
//! records spread over the 17 regions enabled by default. Deterministic for a seed. Written as
//! S3 delivery-format log files (`{"Records":[...]}`, 1,000 records a file), which the local
//! CloudTrail emulator serves.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The regions enabled by default in an AWS account (the others are opt-in).
pub const DEFAULT_REGIONS: [&str; 17] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
];

const PER_FILE: usize = 1000;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The bundled dataset's records that the tracker stores (the ids `expected_ids` keeps).
fn templates() -> Vec<Value> {
    let dir = crate::dataset_dir();
    let (kept, _, _) = crate::expected_ids(&dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        for r in doc["Records"].as_array().unwrap() {
            if r["eventID"].as_str().is_some_and(|id| kept.contains(id)) {
                out.push(r.clone());
            }
        }
    }
    out
}

/// Writes `count` records with times in `(end - span, end]` into `dir` (created; files of an
/// earlier run removed) and returns `dir`.
pub fn generate(
    dir: &Path,
    count: usize,
    end: DateTime<Utc>,
    span: chrono::TimeDelta,
    seed: u64,
) -> PathBuf {
    let templates = templates();
    assert!(
        !templates.is_empty(),
        "the bundled dataset has tracked records"
    );
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove the previous bench dataset");
    }
    std::fs::create_dir_all(dir).expect("create the bench dataset directory");
    let span_ms = span.num_milliseconds().max(1) as u64;
    let mut batch = Vec::with_capacity(PER_FILE);
    let mut file_no = 0;
    for i in 0..count {
        let h = splitmix(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut r = templates[i % templates.len()].clone();
        let id = format!("{:08x}-bench-{seed}-{i:09}", (h >> 32) as u32);
        let time = end - chrono::TimeDelta::milliseconds((h % span_ms) as i64);
        let source = r["eventSource"].as_str().unwrap_or("").to_string();
        if source == "sts.amazonaws.com" || source == "signin.amazonaws.com" {
            r["awsRegion"] = json!(DEFAULT_REGIONS[(h >> 8) as usize % DEFAULT_REGIONS.len()]);
        }
        r["eventID"] = json!(id);
        r["requestID"] = json!(format!("req-{id}"));
        r["eventTime"] = json!(time.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        batch.push(r);
        if batch.len() == PER_FILE || i + 1 == count {
            let path = dir.join(format!("bench_CloudTrail_{file_no:05}.json"));
            let text = serde_json::to_vec(&json!({ "Records": batch })).unwrap();
            std::fs::write(path, text).expect("write a bench log file");
            batch.clear();
            file_no += 1;
        }
    }
    dir.to_path_buf()
}
