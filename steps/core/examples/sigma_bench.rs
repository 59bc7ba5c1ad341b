//! Throughput of Sigma evaluation (docs/sigma.md, "Throughput").
//!
//! Normalises the tracked records of the bundled invictus-aws-2023 dataset once, then runs
//! them through `SigmaRules::evaluate` over and over, about a million events in all, with the
//! rules of rules/sigma/ (and the same rules loaded ten times over, to see how the cost grows
//! with the rule count). Run it in a release build:
//!
//!     cargo run --release -p iamtrail-core --example sigma_bench [-- EVENTS]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use iamtrail_core::normalize::{normalize, NormalizeOptions, NormalizedEvent};
use iamtrail_core::record::read_log_dir;
use iamtrail_core::sigma::{record_document, SigmaRules};

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
    let rules = SigmaRules::load_dir(&repo.join("rules/sigma")).unwrap_or_else(|e| panic!("{e}"));
    let rounds = target.div_ceil(events.len());
    let total = rounds * events.len();
    println!(
        "{} tracked dataset events x {rounds} rounds = {total} events; {} rules from rules/sigma",
        events.len(),
        rules.len()
    );

    let tenfold = tenfold(&repo);
    let mut rows = Vec::new();
    rows.push(run("record_document only", total, || {
        for _ in 0..rounds {
            for e in &events {
                black_box(record_document(e));
            }
        }
        None
    }));
    for (name, set) in [
        ("evaluate, rules/sigma", &rules),
        ("evaluate, rules x10", &tenfold),
    ] {
        let label = format!("{name} ({} rules)", set.len());
        rows.push(run(&label, total, || {
            let mut matches = 0;
            for _ in 0..rounds {
                for e in &events {
                    matches += black_box(set.evaluate(e)).len();
                }
            }
            Some(matches)
        }));
    }

    println!(
        "\n{:<34} {:>10} {:>9} {:>12} {:>9}",
        "what", "events", "seconds", "events/s", "matches"
    );
    for (what, seconds, matches) in rows {
        let matches = matches.map_or("-".to_string(), |m| m.to_string());
        println!(
            "{what:<34} {total:>10} {seconds:>9.2} {:>12.0} {matches:>9}",
            total as f64 / seconds
        );
    }
}

/// The bundled rules loaded ten times, each copy with its own ids.
fn tenfold(repo: &std::path::Path) -> SigmaRules {
    let bundled = SigmaRules::load_dir(&repo.join("rules/sigma")).unwrap();
    let mut texts = Vec::new();
    for copy in 0..10 {
        for rule in &bundled {
            let text = std::fs::read_to_string(repo.join("rules/sigma").join(&rule.file)).unwrap();
            let text = text.replace(&rule.id, &format!("{}-{copy}", rule.id));
            texts.push((format!("{copy}/{}", rule.file), text));
        }
    }
    SigmaRules::from_texts(&texts).unwrap_or_else(|e| panic!("{e}"))
}

fn run(
    what: &str,
    total: usize,
    f: impl FnOnce() -> Option<usize>,
) -> (String, f64, Option<usize>) {
    let start = Instant::now();
    let matches = f();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!("{what}: {total} events in {seconds:.2} s");
    (what.to_string(), seconds, matches)
}
