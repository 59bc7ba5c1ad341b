//! Throughput of the S3 ingestion's record path on one core (docs/ingest.md, "The record
//! path"): read a gzip-compressed CloudTrail log object, parse it, keep the records a collected
//! source reads, filter, normalise into the items the events table holds, and evaluate every
//! built-in rule on each item (with an empty history, as for nearly every batch).
//!
//! The objects are the bundled invictus-aws-2023 dataset's 55 files, gzip-compressed in memory
//! as CloudTrail delivers them; they are processed round after round until about a million
//! records have been read (every record counts, kept or not, as in a trail bucket). Each case
//! runs three times and the median is shown. Run it in a release build:
//!
//!     cargo run --release -p iamtrail-core --example record_path_bench [-- RECORDS]

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;
use iamtrail_core::ingest::object_events;
use iamtrail_core::record::log_file_paths;
use iamtrail_core::rules::{evaluate_with, History};
use iamtrail_core::Settings;

/// Every log file under `dir`, gzip-compressed (as a trail bucket holds them).
fn gzipped_objects(dir: &Path) -> Vec<Vec<u8>> {
    log_file_paths(dir)
        .unwrap()
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                return bytes;
            }
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            gz.write_all(&bytes).unwrap();
            gz.finish().unwrap()
        })
        .collect()
}

fn main() {
    let target: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("RECORDS is a number"))
        .unwrap_or(1_000_000);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let objects = gzipped_objects(&repo.join("datasets/invictus-aws-2023/CloudTrail"));
    let settings = Settings::from_pairs(&[]).unwrap();
    let per_round: usize = objects
        .iter()
        .map(|o| object_events(o, &settings).unwrap().records)
        .sum();
    let rounds = target.div_ceil(per_round);
    let total = rounds * per_round;
    let gz_bytes: usize = objects.iter().map(Vec::len).sum();
    println!(
        "{} objects ({gz_bytes} bytes gzip-compressed), {per_round} records each round x {rounds} rounds = {total} records",
        objects.len()
    );
    let history = History::new();
    let run = || {
        let (mut kept, mut matches) = (0usize, 0usize);
        for _ in 0..rounds {
            for object in &objects {
                let events = object_events(object, &settings).unwrap();
                kept += events.items.len();
                for item in &events.items {
                    matches += black_box(evaluate_with(item, &history)).len();
                }
            }
        }
        (kept, matches)
    };
    let mut rates = Vec::new();
    let mut last = (0, 0);
    for _ in 0..3 {
        let started = Instant::now();
        last = black_box(run());
        rates.push(total as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "record path (gunzip, parse, keep, filter, normalise, every built-in rule): {:.0} records/s (median of 3; {:.0}..{:.0}); {} items kept, {} rule matches",
        rates[1], rates[0], rates[2], last.0, last.1
    );
}
