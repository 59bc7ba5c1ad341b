//! The fault-schedule property suite (docs/reliability.md): random event streams, random faults
//! on every port, random overlapping executions, backfills and redrives — then quiet runs —
//! and the tracker's promises checked after every schedule:
//!
//! 1. the events table holds exactly the tracked events that are not filtered (0 lost,
//!    0 duplicated);
//! 2. every (event, rule) alert of an event younger than 30 days was published at least once
//!    (or is `failed` after its attempts), and more than once only after an injected crash
//!    between its publish and its mark;
//! 3. every date that has events is exported, and each exported file holds exactly the
//!    table's rows of its date, each `event_id` once;
//! 4. no checkpoint ever moved backwards.
//!
//! `PROPERTY_CASES` (default 200) schedules from `PROPERTY_SEED` (default fixed); a failing
//! schedule prints the command that replays it alone (`PROPERTY_SCHEDULE=<seed>`).

mod fault_schedules {
    pub mod driver;
    pub mod faults;
    pub mod world;
}

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use fault_schedules::driver::{execute, Outcome, System};
use fault_schedules::faults::{Faults, Rates};
use fault_schedules::world::{generate, Rng, Templates, World};
use iamtrail_core::export::object_key;
use iamtrail_core::outbox::status;
use iamtrail_core::record::format_time;
use iamtrail_core::Settings;
use serde_json::json;

/// What one schedule did, for the report.
#[derive(Debug, Default)]
struct Tally {
    schedules: u64,
    events: u64,
    late_beyond_overlap: u64,
    executions: u64,
    overlapping: u64,
    skipped: u64,
    backfills: u64,
    redrives: u64,
    failed: u64,
    steps_failed: u64,
    alerts_expected: u64,
    alerts_duplicated: u64,
    alerts_failed: u64,
    dates_exported: u64,
    faults: BTreeMap<&'static str, u64>,
}

fn settings(rng: &mut Rng) -> Settings {
    let min_slice = [30, 120, 300, 900][rng.below(4) as usize].to_string();
    let overrides = [
        ("INITIAL_LOOKBACK_DAYS", "4".to_string()),
        ("OVERLAP_MINUTES", "15".to_string()),
        ("SETTLE_MINUTES", "5".to_string()),
        ("MIN_SLICE_SECONDS", min_slice),
        ("LOOKUP_RATE_PER_SECOND", "2".to_string()),
        (
            "COLLECT_TIME_BUDGET_SECONDS",
            (60 + rng.below(240)).to_string(),
        ),
        ("MAX_COLLECT_INVOCATIONS", "3".to_string()),
        ("ALERTS_PER_RUN", "40".to_string()),
        ("ALERTS_TIME_BUDGET_SECONDS", "30".to_string()),
        ("ALERT_MAX_ATTEMPTS", "5".to_string()),
        ("EXPORT_TIME_BUDGET_SECONDS", "120".to_string()),
        ("RUN_LEASE_SECONDS", "3300".to_string()),
        ("ANALYTICS_BUCKET", "analytics".to_string()),
    ];
    Settings::from_lookup(|k| {
        overrides
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })
    .expect("property settings")
}

/// Makes the events whose delivery time has come visible to LookupEvents.
fn deliver(
    sys: &System,
    world: &World,
    delivered: &mut usize,
    order: &[usize],
    now: DateTime<Utc>,
) {
    while *delivered < order.len() && world.events[order[*delivered]].visible_at <= now {
        let g = &world.events[order[*delivered]];
        sys.source.inner.add(&g.region, [g.event.clone()]);
        *delivered += 1;
    }
}

fn record(tally: &mut Tally, outcome: &Outcome) {
    if std::env::var("PROPERTY_SCHEDULE").is_ok() {
        match outcome {
            Outcome::Succeeded(s) => eprintln!(
                "  {} {:?}: stored {} capped {:?} errors {:?} export {:?}",
                s.run_id, s.mode, s.totals.stored, s.capped_regions, s.errors, s.export_dates
            ),
            other => eprintln!("  {other:?}"),
        }
    }
    tally.executions += 1;
    match outcome {
        Outcome::Skipped => tally.skipped += 1,
        Outcome::Failed(_) => tally.failed += 1,
        Outcome::StepsFailed(_) => tally.steps_failed += 1,
        Outcome::Succeeded(_) => {}
    }
}

/// One schedule: returns the violations found.
async fn run_schedule(seed: u64, templates: &Templates, tally: &mut Tally) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let settings = settings(&mut rng);
    let regions = vec!["us-east-1".to_string(), "eu-west-1".to_string()];
    let today = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    let start = today - Duration::days(3);
    let end = start + Duration::hours(30 + rng.below(18) as i64);
    let count = 80 + rng.below(320) as usize;
    let world = generate(&mut rng, templates, &regions, start, end, count, &settings);
    let faults = Faults::new(rng.next_u64(), Rates::random(&mut rng));
    let sys = System::new(settings.clone(), &regions, faults.clone());
    let mut order: Vec<usize> = (0..world.events.len()).collect();
    order.sort_by_key(|&i| world.events[i].visible_at);
    let mut delivered = 0;

    // The busy phase: scheduled runs every 1-4 hours, sometimes two at once, sometimes a
    // backfill beside them, sometimes a redrive of a failed execution.
    let mut now = start + Duration::minutes(30 + rng.below(60) as i64);
    let mut failed: Vec<(String, serde_json::Value)> = Vec::new();
    let mut n = 0;
    while now < end + Duration::hours(2) {
        deliver(&sys, &world, &mut delivered, &order, now);
        n += 1;
        let name = format!("run-{n}");
        let mut runs = vec![(name.clone(), json!({}))];
        if rng.chance(0.2) {
            tally.overlapping += 1;
            runs.push((format!("{name}-b"), json!({})));
        }
        if rng.chance(0.2) {
            tally.backfills += 1;
            let from = start
                + Duration::minutes(rng.below(((now - start).num_minutes().max(1)) as u64) as i64);
            let to =
                (from + Duration::hours(1 + rng.below(12) as i64)).min(now - Duration::minutes(6));
            if to > from {
                runs.push((
                    format!("{name}-backfill"),
                    json!({"mode": "backfill",
                    "start": format_time(from), "end": format_time(to)}),
                ));
            }
        }
        if !failed.is_empty() && rng.chance(0.5) {
            tally.redrives += 1;
            runs.push(failed.remove(0));
        }
        let outcomes = futures::future::join_all(
            runs.iter()
                .map(|(name, input)| execute(&sys, name, input.clone(), now)),
        )
        .await;
        for ((name, input), outcome) in runs.into_iter().zip(outcomes) {
            record(tally, &outcome);
            if matches!(outcome, Outcome::Failed(_)) {
                failed.push((name, input));
            }
        }
        now += Duration::minutes(60 + rng.below(180) as i64);
    }

    // The quiet phase: no faults; the operator backfills what CloudTrail delivered later
    // than the overlap, then scheduled runs until every date is exported.
    faults.set_enabled(false);
    // The leases of executions that died expire.
    now += Duration::hours(1);
    deliver(
        &sys,
        &world,
        &mut delivered,
        &order,
        now + Duration::days(1),
    );
    if world.late_beyond_overlap > 0 {
        tally.backfills += 1;
        let outcome = execute(
            &sys,
            "quiet-backfill",
            json!({"mode": "backfill",
            "start": format_time(start), "end": format_time(now - Duration::minutes(6))}),
            now,
        )
        .await;
        record(tally, &outcome);
    }
    let last_date = (end - Duration::seconds(1)).date_naive();
    for q in 0..8 {
        now += Duration::hours(3);
        let outcome = execute(&sys, &format!("quiet-{q}"), json!({}), now).await;
        record(tally, &outcome);
        let exported = sys.control.inner.dirty_dates_now().is_empty()
            && sys
                .control
                .inner
                .latest_export()
                .is_some_and(|d| d >= last_date)
            && sys.alerts.inner.with_status(status::PENDING).is_empty();
        if exported && q >= 1 {
            break;
        }
    }
    tally.schedules += 1;
    tally.events += world.events.len() as u64;
    tally.late_beyond_overlap += world.late_beyond_overlap as u64;
    for (kind, n) in faults.injected() {
        *tally.faults.entry(kind).or_default() += n;
    }
    check(&sys, &world, &faults, start, last_date, tally)
}

/// The promises, checked.
fn check(
    sys: &System,
    world: &World,
    faults: &Faults,
    start: DateTime<Utc>,
    last_date: NaiveDate,
    tally: &mut Tally,
) -> Vec<String> {
    let mut violations = Vec::new();
    // 1. The table: exactly the tracked, unfiltered events.
    let stored: Vec<_> = sys.events.inner.all();
    let ids: BTreeSet<String> = stored.iter().map(|e| e.event_id.clone()).collect();
    if ids.len() != stored.len() {
        violations.push(format!("{} duplicated items", stored.len() - ids.len()));
    }
    let lost: Vec<_> = world.expected_ids.difference(&ids).collect();
    let extra: Vec<_> = ids.difference(&world.expected_ids).collect();
    if !lost.is_empty() {
        violations.push(format!(
            "{} events lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(3)]
        ));
    }
    if !extra.is_empty() {
        violations.push(format!(
            "{} unexpected items, e.g. {:?}",
            extra.len(),
            &extra[..extra.len().min(3)]
        ));
    }
    // 2. Alerts: published at least once, more than once only after a publish/mark crash.
    let mut published: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (_, n) in sys.notifier.inner.published() {
        let rule = n
            .attributes
            .iter()
            .find(|(k, _)| k == "rule_id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let event = n
            .body
            .lines()
            .find_map(|l| l.trim().strip_prefix("- Event ID: "))
            .unwrap_or_default()
            .to_string();
        *published.entry((event, rule)).or_default() += 1;
    }
    let failed: BTreeSet<(String, String)> = sys
        .alerts
        .inner
        .with_status(status::FAILED)
        .into_iter()
        .map(|a| (a.event_id, a.rule_id))
        .collect();
    let crashed = faults.publish_crashes.lock().unwrap().clone();
    tally.alerts_expected += world.expected_alerts.len() as u64;
    tally.alerts_failed += failed.len() as u64;
    for key in &world.expected_alerts {
        match published.get(key).copied().unwrap_or(0) {
            0 if failed.contains(key) => {}
            0 => violations.push(format!("alert {key:?} never delivered")),
            1 => {}
            n if crashed.contains(key) => tally.alerts_duplicated += n - 1,
            n => violations.push(format!("alert {key:?} delivered {n} times with no crash")),
        }
    }
    for key in published.keys() {
        if !world.expected_alerts.contains(key) {
            violations.push(format!("unexpected alert {key:?}"));
        }
    }
    // After the quiet runs nothing waits: every alert is sent, or failed after its attempts.
    for a in sys.alerts.inner.all() {
        if a.status != status::SENT && a.status != status::FAILED {
            violations.push(format!(
                "alert {}/{} left {}",
                a.event_id, a.rule_id, a.status
            ));
        }
    }
    // 3. Exports: every date with events, exactly the table's rows.
    let mut day = start.date_naive();
    while day <= last_date {
        let table: BTreeSet<String> = sys
            .events
            .inner
            .day(day)
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        match sys.objects.inner.get(&object_key(day, None)) {
            None if table.is_empty() => {}
            None => violations.push(format!("{day} has {} events and no export", table.len())),
            Some(object) => {
                tally.dates_exported += 1;
                let rows = parquet_event_ids(&object.bytes);
                let unique: BTreeSet<String> = rows.iter().cloned().collect();
                if unique.len() != rows.len() {
                    violations.push(format!(
                        "{day}: {} rows, {} distinct",
                        rows.len(),
                        unique.len()
                    ));
                }
                if unique != table {
                    violations.push(format!(
                        "{day}: the export has {} rows, the table {} (missing {}, extra {})",
                        unique.len(),
                        table.len(),
                        table.difference(&unique).count(),
                        unique.difference(&table).count()
                    ));
                }
            }
        }
        day = day.succ_opt().unwrap();
    }
    // 4. Checkpoints never moved backwards.
    for (key, seen) in faults.checkpoints.lock().unwrap().iter() {
        if let Some(w) = seen.windows(2).find(|w| w[1] < w[0]) {
            violations.push(format!(
                "checkpoint {key} moved back from {} to {}",
                w[0], w[1]
            ));
        }
    }
    violations
}

/// The `event_id` column of a Parquet file.
fn parquet_event_ids(bytes: &[u8]) -> Vec<String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = tempfile_with(bytes);
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .build()
        .expect("a reader");
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.expect("a record batch");
        let column = batch
            .column_by_name("event_id")
            .expect("an event_id column")
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("event_id is a string column")
            .clone();
        ids.extend(column.iter().flatten().map(String::from));
    }
    ids
}

fn tempfile_with(bytes: &[u8]) -> std::fs::File {
    use std::io::{Seek, Write};
    let path = std::env::temp_dir().join(format!(
        "iamtrail-property-{}-{}.parquet",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("a temporary file");
    file.write_all(bytes).unwrap();
    file.rewind().unwrap();
    let _ = std::fs::remove_file(&path);
    file
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(start_paused = true)]
async fn fault_schedules_keep_every_promise() {
    let templates = Templates::load();
    let seeds: Vec<u64> = match env_u64("PROPERTY_SCHEDULE") {
        Some(one) => vec![one],
        None => {
            let base = env_u64("PROPERTY_SEED").unwrap_or(20261201);
            let cases = env_u64("PROPERTY_CASES").unwrap_or(200);
            let mut rng = Rng::new(base);
            (0..cases).map(|_| rng.next_u64()).collect()
        }
    };
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for seed in &seeds {
        let violations = run_schedule(*seed, &templates, &mut tally).await;
        if !violations.is_empty() {
            eprintln!(
                "schedule {seed}: {} violation(s):\n  {}\nreplay: PROPERTY_SCHEDULE={seed} cargo test -p iamtrail-aws --test fault_schedules -- --nocapture",
                violations.len(),
                violations.join("\n  ")
            );
            failures.push(*seed);
        }
    }
    let faults: u64 = tally.faults.values().sum();
    println!(
        "property: {} schedules in {:.1}s, {} events ({} delivered later than the overlap), {} executions \
         ({} overlapping pairs, {} skipped, {} backfills, {} redrives, {} failed, {} with alerts/export caught), \
         {} alerts expected ({} repeated after a publish/mark crash, {} failed after their attempts), {} dates exported",
        tally.schedules,
        started.elapsed().as_secs_f64(),
        tally.events,
        tally.late_beyond_overlap,
        tally.executions,
        tally.overlapping,
        tally.skipped,
        tally.backfills,
        tally.redrives,
        tally.failed,
        tally.steps_failed,
        tally.alerts_expected,
        tally.alerts_duplicated,
        tally.alerts_failed,
        tally.dates_exported,
    );
    println!("property: {faults} faults injected:");
    for (kind, n) in &tally.faults {
        println!("  {kind:<32} {n}");
    }
    println!(
        "property: 4 invariants checked per schedule, {} schedule(s) violated them",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "schedules with violations: {failures:?}"
    );
    assert!(faults > 0, "the suite injected no fault at all");
}

#[test]
fn rng_is_reproducible() {
    let a: Vec<u64> = {
        let mut r = Rng::new(7);
        (0..4).map(|_| r.next_u64()).collect()
    };
    let mut r = Rng::new(7);
    assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
}
