//! Throughput of Collect's rule evaluation, with and without Sigma rules (docs/sigma.md,
//! "Throughput").
//!
//! Normalises the tracked records of the bundled invictus-aws-2023 dataset once (465 events:
//! the tracked sources and the root user's calls, as Collect stores them), then evaluates them
//! round after round, about a million events in all, the way `queue_alerts` does for each
//! stored event: (a) the built-in rules (`evaluate_with` and an empty history, which is what
//! Collect passes for nearly every batch: history is loaded only for the few calls that need
//! it), (b) the built-in rules and the Sigma rules of rules/sigma/, (c) as (b), plus the outbox
//! record (subject and body) of every match. Single-threaded, so it measures one core; each
//! case runs three times and the median is shown. Run it in a release build:
//!
//!     cargo run --release -p iamtrail-core --example rules_bench [-- EVENTS]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use iamtrail_core::normalize::{normalize, NormalizeOptions, NormalizedEvent};
use iamtrail_core::outbox::{alert_record, sigma_alert_record};
use iamtrail_core::record::read_log_dir;
use iamtrail_core::rules::{evaluate_with, History};
use iamtrail_core::sigma::SigmaRules;

fn main() {
    let target: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("EVENTS is a number"))
        .unwrap_or(1_000_000);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut events: Vec<NormalizedEvent> = Vec::new();
    for (_, log) in read_log_dir(&repo.join("datasets/invictus-aws-2023/CloudTrail")).unwrap() {
        for record in &log.records {
            if record.is_tracked() {
                events.push(normalize(record, NormalizeOptions::default()));
            }
        }
    }
    let sigma = SigmaRules::load_dir(&repo.join("rules/sigma")).unwrap_or_else(|e| panic!("{e}"));
    let rounds = target.div_ceil(events.len());
    let total = rounds * events.len();
    println!(
        "{} tracked dataset events x {rounds} rounds = {total} events; {} built-in rules, {} \
         Sigma rules from rules/sigma",
        events.len(),
        iamtrail_core::rules::rules().len(),
        sigma.len()
    );
    let history = History::new();
    let now = Utc::now();

    let built_in = || {
        let mut matches = 0;
        for _ in 0..rounds {
            for e in &events {
                matches += black_box(evaluate_with(e, &history)).len();
            }
        }
        matches
    };
    let with_sigma = || {
        let mut matches = 0;
        for _ in 0..rounds {
            for e in &events {
                matches += black_box(evaluate_with(e, &history)).len();
                matches += black_box(sigma.evaluate(e)).len();
            }
        }
        matches
    };
    let with_records = || {
        let mut matches = 0;
        for _ in 0..rounds {
            for e in &events {
                for m in evaluate_with(e, &history) {
                    black_box(alert_record(&m, e, now));
                    matches += 1;
                }
                for m in sigma.evaluate(e) {
                    black_box(sigma_alert_record(&m, e, now));
                    matches += 1;
                }
            }
        }
        matches
    };
    let cases: [(&str, &dyn Fn() -> usize); 3] = [
        ("(a) built-in rules", &built_in),
        ("(b) built-in + Sigma rules", &with_sigma),
        ("(c) (b) + outbox records", &with_records),
    ];
    let mut rows = Vec::new();
    for (what, case) in cases {
        let mut runs: Vec<(f64, usize)> = (0..3)
            .map(|_| {
                let start = Instant::now();
                let matches = case();
                let seconds = start.elapsed().as_secs_f64();
                eprintln!("{what}: {total} events in {seconds:.2} s");
                (seconds, matches)
            })
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        rows.push((what, runs[1].0, runs[1].1));
    }

    println!(
        "\n{:<30} {:>10} {:>9} {:>12} {:>11} {:>9}",
        "what (median of 3)", "events", "seconds", "events/s", "µs/event", "matches"
    );
    for (what, seconds, matches) in rows {
        println!(
            "{what:<30} {total:>10} {seconds:>9.2} {:>12.0} {:>11.2} {matches:>9}",
            total as f64 / seconds,
            seconds * 1e6 / total as f64
        );
    }
}
