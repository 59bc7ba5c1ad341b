//! Deterministic, seeded fuzzing of the record parser, the normaliser and the LookupEvents
//! decision (`lookup::lookup_item`), and of the S3 delivery-file reader, with mutated real
//! records of the bundled invictus-aws-2023 dataset. See docs/testing.md, "Fuzzing the record
//! parser and normaliser".
//!
//! ```sh
//! cargo test -p iamtrail-core --test fuzz_records -- --nocapture        # CI bound: 20,000 cases
//! FUZZ_CASES=1000000 cargo test --release -p iamtrail-core --test fuzz_records -- --nocapture
//! FUZZ_SEED=S FUZZ_CASE=I cargo test -p iamtrail-core --test fuzz_records -- --nocapture  # replay
//! ```

mod fuzz_support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use fuzz_support::{case_mutations, file_case, lookup_case, Mutation, Rng, Summary};
use iamtrail_core::lookup::{lookup_item, LookupFields, Outcome};
use iamtrail_core::normalize::{normalize, NormalizedEvent, DYNAMODB_MAX_ITEM_BYTES};
use iamtrail_core::record::{format_time, parse_log_file, parse_time, CloudTrailRecord};
use iamtrail_core::{Settings, Source};
use serde_json::Value;

const DEFAULT_CASES: u64 = 20_000;
const DEFAULT_SEED: u64 = 20_240_115;
/// One case in this many feeds a delivery file to the S3-format reader.
const FILE_CASE_EVERY: usize = 20;

struct Corpus {
    records: Vec<Value>,
    files: Vec<Vec<u8>>,
    settings: Vec<Settings>,
}

fn corpus() -> Corpus {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/invictus-aws-2023/CloudTrail");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dataset directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".json") || name.ends_with(".json.gz")
        })
        .collect();
    paths.sort();
    let files: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("dataset file"))
        .collect();
    let records: Vec<Value> = files
        .iter()
        .flat_map(|b| parse_log_file(b).expect("dataset file parses").records)
        .map(|r| r.raw)
        .collect();
    assert_eq!(records.len(), 2900, "the seeds are the dataset's records");
    let default = Settings::from_lookup(|_| None).expect("default settings");
    let custom = Settings::from_lookup(|name| {
        match name {
            "FILTER_AWS_SERVICE_EVENTS" => Some("false"),
            "FILTERED_ROLES" => Some("*scanner*, arn:aws:iam::*:role/Admin*, *e*x*"),
            "RETENTION_DAYS" => Some("36500"),
            _ => None,
        }
        .map(String::from)
    })
    .expect("custom settings");
    Corpus {
        records,
        files,
        settings: vec![default, custom],
    }
}

/// One generated case, kept so that a failure can be written out.
enum Input {
    Lookup {
        summary: Summary,
        settings: usize,
        region: &'static str,
        source: Source,
    },
    File(Vec<u8>),
}

fn generate(corpus: &Corpus, seed: u64, case: u64) -> (Vec<Mutation>, Input) {
    let mut rng = Rng::for_case(seed, case);
    let mutations = case_mutations(&mut rng);
    if rng.below(FILE_CASE_EVERY) == 0 {
        let bytes = file_case(&mut rng, &corpus.files, &corpus.records, &mutations);
        return (mutations, Input::File(bytes));
    }
    let record = rng.pick(&corpus.records).clone();
    let summary = lookup_case(&mut rng, &record, &mutations);
    let settings = rng.below(corpus.settings.len());
    let region = *rng.pick(&["us-east-1", "eu-north-1", "ap-southeast-2"]);
    let source = *rng.pick(&Source::ALL);
    (
        mutations,
        Input::Lookup {
            summary,
            settings,
            region,
            source,
        },
    )
}

fn fields(s: &Summary) -> LookupFields<'_> {
    LookupFields {
        event_id: s.event_id.as_deref(),
        event_name: s.event_name.as_deref(),
        event_source: s.event_source.as_deref(),
        event_time: s.event_time,
        username: s.username.as_deref(),
        cloudtrail_event: s.cloudtrail_event.as_deref(),
    }
}

/// What one case came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Stored,
    StoredParseError,
    Filtered,
    Unusable,
    FileOk,
    FileError,
}

// The harness's own definitions of a usable key, independent of lookup.rs.
fn usable_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= 1024
}

fn usable_time(t: DateTime<Utc>) -> bool {
    (0..=9999).contains(&t.year())
}

fn valid_date(d: &str) -> bool {
    d.len() == 10
        && d.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
        && NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()
}

/// What DynamoDB needs of an item: usable keys (table: event_date, event_id; indexes:
/// user_name/event_name with event_time) and a size under the 400 KB item limit.
fn check_item(e: &NormalizedEvent) -> Result<(), String> {
    if !usable_id(&e.event_id) {
        return Err(format!("event_id of {} bytes", e.event_id.len()));
    }
    if !valid_date(&e.event_date) {
        return Err(format!("event_date {:?}", e.event_date));
    }
    match parse_time(&e.event_time) {
        Some(t) if format_time(t) == e.event_time && e.event_time.starts_with(&e.event_date) => {}
        _ => return Err(format!("event_time {:?}", e.event_time)),
    }
    for (name, v) in [("user_name", &e.user_name), ("event_name", &e.event_name)] {
        if v.trim().is_empty() || v.len() > 2048 {
            return Err(format!("index key {name} of {} bytes", v.len()));
        }
    }
    let size = e.dynamodb_size();
    if size > DYNAMODB_MAX_ITEM_BYTES {
        return Err(format!(
            "item of {size} bytes > {DYNAMODB_MAX_ITEM_BYTES} (truncated {:?})",
            e.truncated_fields
        ));
    }
    Ok(())
}

fn check_lookup(s: &Summary, settings: &Settings, outcome: &Outcome) -> Result<Kind, String> {
    let record = s
        .cloudtrail_event
        .as_deref()
        .and_then(|t| CloudTrailRecord::from_lookup_event_json(t).ok())
        .filter(|r| usable_id(&r.event_id));
    let summary_id = s.event_id.as_deref().filter(|id| usable_id(id));
    let summary_time = s.event_time.filter(|t| usable_time(*t));
    match outcome {
        Outcome::Stored(e) => {
            check_item(e)?;
            match (&e.parse_error, &record) {
                (None, Some(r)) => {
                    if settings.filter.classify(r).is_some() {
                        return Err("a filtered record was stored".into());
                    }
                    if e.event_id != r.event_id || e.event_time != format_time(r.event_time) {
                        return Err("stored keys are not the record's".into());
                    }
                    if e.raw_record.is_some() {
                        return Err("a readable record kept its raw text".into());
                    }
                    Ok(Kind::Stored)
                }
                (None, None) => {
                    Err("stored without parse_error, but the record is unreadable".into())
                }
                (Some(_), Some(_)) => Err("parse_error set on a readable record".into()),
                (Some(_), None) => {
                    let (Some(id), Some(t)) = (summary_id, summary_time) else {
                        return Err("kept from a summary with no usable id/time".into());
                    };
                    if e.event_id != id || e.event_time != format_time(t) {
                        return Err("stored keys are not the summary's".into());
                    }
                    let cut = e.truncated_fields.iter().any(|f| f == "raw_record");
                    if !cut && e.raw_record.as_deref() != s.cloudtrail_event.as_deref() {
                        return Err("the raw record text was not kept".into());
                    }
                    Ok(Kind::StoredParseError)
                }
            }
        }
        Outcome::Filtered(reason) => match &record {
            Some(r) if settings.filter.classify(r) == Some(*reason) => Ok(Kind::Filtered),
            _ => Err(format!("Filtered({reason:?}) does not match the filter")),
        },
        Outcome::Unusable(reason) => {
            if record.is_some() {
                Err(format!("a readable record was Unusable: {reason}"))
            } else if summary_id.is_some() && summary_time.is_some() {
                Err(format!("Unusable with a usable summary: {reason}"))
            } else {
                Ok(Kind::Unusable)
            }
        }
    }
}

fn check_file(bytes: &[u8]) -> Result<Kind, String> {
    match parse_log_file(bytes) {
        Err(e) => {
            if e.to_string().is_empty() {
                return Err("an error without a message".into());
            }
            Ok(Kind::FileError)
        }
        Ok(log) => {
            let mut last = None;
            for (i, e) in &log.rejected {
                if last.is_some_and(|l| l >= *i) || e.to_string().is_empty() {
                    return Err(format!("rejected record {i}: {e}"));
                }
                last = Some(*i);
            }
            for r in &log.records {
                if [&r.event_id, &r.event_name, &r.event_source]
                    .iter()
                    .any(|v| v.trim().is_empty())
                {
                    return Err("a parsed record with a blank required field".into());
                }
                // A record with a usable id normalises into a writable item (an over-long
                // eventID is lookup_item's business: it falls back to the summary id).
                if usable_id(&r.event_id) {
                    check_item(&normalize(r, Default::default()))
                        .map_err(|e| format!("file record {}: {e}", r.event_id))?;
                }
            }
            Ok(Kind::FileOk)
        }
    }
}

fn run_case(corpus: &Corpus, input: &Input) -> Result<Kind, String> {
    match input {
        Input::Lookup {
            summary,
            settings,
            region,
            source,
        } => {
            let settings = &corpus.settings[*settings];
            let outcome = lookup_item(&fields(summary), region, *source, settings);
            check_lookup(summary, settings, &outcome)
        }
        Input::File(bytes) => check_file(bytes),
    }
}

thread_local! {
    /// Set on fuzz worker threads: their panics are counted and reported, not printed.
    static FUZZING: Cell<bool> = const { Cell::new(false) };
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Installs a hook that keeps a fuzz worker's panic message for the report (instead of
/// printing thousands of them) and leaves other threads' panics to `previous`.
fn quiet_panics(previous: Arc<PanicHook>) {
    std::panic::set_hook(Box::new(move |info| {
        if FUZZING.with(Cell::get) {
            PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
        } else {
            previous(info);
        }
    }));
}

#[derive(Default)]
struct Tally {
    cases: u64,
    kinds: BTreeMap<Kind, u64>,
    mutations: BTreeMap<Mutation, u64>,
    panics: u64,
    violations: u64,
    /// The first (lowest-index) failures: case, what happened.
    failures: Vec<(u64, String)>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.cases += other.cases;
        for (k, n) in other.kinds {
            *self.kinds.entry(k).or_default() += n;
        }
        for (k, n) in other.mutations {
            *self.mutations.entry(k).or_default() += n;
        }
        self.panics += other.panics;
        self.violations += other.violations;
        self.failures.extend(other.failures);
        self.failures.sort();
        self.failures.truncate(10);
    }

    fn count(&self, k: Kind) -> u64 {
        self.kinds.get(&k).copied().unwrap_or(0)
    }
}

fn run_one(corpus: &Corpus, seed: u64, case: u64, tally: &mut Tally) {
    tally.cases += 1;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let (mutations, input) = generate(corpus, seed, case);
        (mutations, run_case(corpus, &input))
    }));
    match result {
        Ok((mutations, outcome)) => {
            for m in mutations {
                *tally.mutations.entry(m).or_default() += 1;
            }
            match outcome {
                Ok(kind) => *tally.kinds.entry(kind).or_default() += 1,
                Err(violation) => {
                    tally.violations += 1;
                    tally
                        .failures
                        .push((case, format!("invariant violated: {violation}")));
                }
            }
        }
        Err(payload) => {
            tally.panics += 1;
            let message = PANIC
                .with(|p| p.borrow_mut().take())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            tally.failures.push((case, format!("panic: {message}")));
        }
    }
    if tally.failures.len() > 100 {
        tally.failures.sort();
        tally.failures.truncate(10);
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim().replace('_', "");
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
}

/// Writes a case's input (and what happened) under the temp directory; returns the report's
/// path.
fn write_case(corpus: &Corpus, seed: u64, case: u64, what: &str) -> PathBuf {
    let dir = std::env::temp_dir();
    let stem = format!("iamtrail-fuzz-seed{seed}-case{case}");
    let (mutations, input) = generate(corpus, seed, case);
    let input_path = dir.join(format!("{stem}.input"));
    let mut report = format!(
        "seed {seed}, case {case}\n{what}\nmutations: {mutations:?}\ninput: {}\n",
        input_path.display()
    );
    let bytes: Vec<u8> = match &input {
        Input::Lookup {
            summary,
            settings,
            region,
            source,
        } => {
            let short = |s: &Option<String>| match s {
                None => "missing".to_string(),
                Some(s) => {
                    let cut: String = s.chars().take(200).collect();
                    format!("{cut:?} ({} bytes)", s.len())
                }
            };
            report.push_str(&format!(
                "LookupEvents result (region {region}, source {source}, settings #{settings}):\n  event_id {}\n  event_name {}\n  event_source {}\n  event_time {:?}\n  username {}\n  cloudtrail_event: {}\n",
                short(&summary.event_id),
                short(&summary.event_name),
                short(&summary.event_source),
                summary.event_time,
                short(&summary.username),
                if summary.cloudtrail_event.is_some() { "the input file" } else { "none" },
            ));
            summary
                .cloudtrail_event
                .clone()
                .unwrap_or_default()
                .into_bytes()
        }
        Input::File(bytes) => {
            report.push_str("S3 delivery file (the input file, raw bytes)\n");
            bytes.clone()
        }
    };
    let report_path = dir.join(format!("{stem}.txt"));
    std::fs::write(&input_path, bytes).expect("write the case input");
    std::fs::write(&report_path, report).expect("write the case report");
    report_path
}

fn print_file(path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        println!("{text}");
    }
}

#[test]
fn fuzz_records_ci() {
    let seed = env_u64("FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let corpus = corpus();
    let replay = env_u64("FUZZ_CASE");
    let cases = env_u64("FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let threads = env_u64("FUZZ_THREADS")
        .map(|n| n.max(1) as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(16);

    let previous_hook: Arc<PanicHook> = Arc::new(std::panic::take_hook());
    quiet_panics(Arc::clone(&previous_hook));
    let started = Instant::now();
    let mut tally = Tally::default();
    if let Some(case) = replay {
        FUZZING.with(|f| f.set(true));
        run_one(&corpus, seed, case, &mut tally);
        FUZZING.with(|f| f.set(false));
    } else {
        let corpus = &corpus;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads as u64)
                .map(|w| {
                    scope.spawn(move || {
                        FUZZING.with(|f| f.set(true));
                        let mut t = Tally::default();
                        let mut case = w;
                        while case < cases {
                            run_one(corpus, seed, case, &mut t);
                            case += threads as u64;
                        }
                        t
                    })
                })
                .collect();
            for w in workers {
                tally.merge(w.join().expect("a fuzz worker"));
            }
        });
    }
    let wall = started.elapsed();
    let _quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous_hook(info)));

    let lookups = tally.count(Kind::Stored)
        + tally.count(Kind::StoredParseError)
        + tally.count(Kind::Filtered)
        + tally.count(Kind::Unusable);
    println!(
        "fuzz: {} cases, seed {seed}, {} panics, {} invariant violations; \
         lookup_item: {lookups} (stored {} + stored with parse_error {}, filtered {}, unusable {}); \
         delivery files: {} (read {}, rejected as a whole {}); wall time {:.1} s on {} threads",
        tally.cases,
        tally.panics,
        tally.violations,
        tally.count(Kind::Stored),
        tally.count(Kind::StoredParseError),
        tally.count(Kind::Filtered),
        tally.count(Kind::Unusable),
        tally.count(Kind::FileOk) + tally.count(Kind::FileError),
        tally.count(Kind::FileOk),
        tally.count(Kind::FileError),
        wall.as_secs_f64(),
        if replay.is_some() { 1 } else { threads },
    );
    println!("fuzz: mutations applied: {:?}", tally.mutations);
    if let Some(case) = replay {
        let what = match tally.failures.first() {
            Some((_, what)) => what.clone(),
            None => match tally.kinds.keys().next() {
                Some(kind) => format!("ok: {kind:?}"),
                None => "ok".to_string(),
            },
        };
        let path = write_case(&corpus, seed, case, &what);
        println!("fuzz: replayed case {case}; report in {}", path.display());
        print_file(&path);
    }
    if let Some((case, what)) = tally.failures.first() {
        let path = write_case(&corpus, seed, *case, what);
        for (case, what) in &tally.failures {
            println!("fuzz: case {case}: {what}");
        }
        panic!(
            "fuzz: {} panics and {} invariant violations; first: seed {seed}, case {case}: {what}\n\
             input and report: {}\nreplay: FUZZ_SEED={seed} FUZZ_CASE={case} cargo test -p iamtrail-core --test fuzz_records -- --nocapture",
            tally.panics,
            tally.violations,
            path.display()
        );
    }
}

#[test]
fn cases_are_a_function_of_seed_and_index() {
    let corpus = corpus();
    for case in [0, 1, 17, 123_456] {
        let a = generate(&corpus, 7, case);
        let b = generate(&corpus, 7, case);
        assert_eq!(a.0, b.0);
        match (a.1, b.1) {
            (Input::File(x), Input::File(y)) => assert_eq!(x, y),
            (Input::Lookup { summary: x, .. }, Input::Lookup { summary: y, .. }) => {
                assert_eq!(x.cloudtrail_event, y.cloudtrail_event);
                assert_eq!(x.event_id, y.event_id);
                assert_eq!(x.event_time, y.event_time);
            }
            _ => panic!("case {case} changed kind"),
        }
    }
}
