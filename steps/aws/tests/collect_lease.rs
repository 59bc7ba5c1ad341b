//! One collector per region at a time: the region lease (`region#<region>`, held by the item's
//! run id), waiting for it, taking an expired one over, stopping when it is lost, a failing
//! lease store, and the cap on Collect invocations.

mod collect_support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use collect_support::*;
use iamtrail_aws::memory::*;
use iamtrail_aws::ports::*;
use iamtrail_aws::steps::collect::CollectDeps;
use iamtrail_core::contract::RunSummary;

const MINUTE: StdDuration = StdDuration::from_secs(60);

/// Records which collector made each request, and when (tokio's clock).
struct Tagged<'a> {
    inner: &'a MemorySource,
    tag: &'static str,
    log: &'a Mutex<Vec<(&'static str, tokio::time::Instant)>>,
}

impl EventSource for Tagged<'_> {
    async fn lookup(&self, request: &LookupRequest) -> Result<LookupPage, LookupError> {
        self.log
            .lock()
            .unwrap()
            .push((self.tag, tokio::time::Instant::now()));
        self.inner.lookup(request).await
    }
}

/// 740 events: 700 dense ones 30 hours ago and 40 sparse ones over 40 days.
fn workload(now: DateTime<Utc>) -> Vec<LookupEvent> {
    let mut list = events("d", 700, now - Duration::hours(30));
    list.extend((0..40).map(|i| event(&format!("s{i:04}"), now - Duration::days(i + 2), None)));
    list
}

#[tokio::test(start_paused = true)]
async fn two_collectors_on_one_region_make_one_runs_requests() {
    // At the AWS quota of 2 requests per second. A scheduled run and an overlapping one start
    // together on the same region. Without the lease both read the whole window side by side:
    // twice the requests, at twice the rate. With it the second waits, then finds only its
    // own overlap to check.
    let now = Utc::now();
    let quota = settings(&[]);
    let single = {
        let world = World::new(quota.clone(), workload(now));
        run_to_end(item("alone"), &world.deps(), MINUTE, now).await;
        world.requests()
    };

    let world = World::new(quota, workload(now));
    let log = Mutex::new(Vec::new());
    let (a, b) = (
        Tagged {
            inner: &world.source,
            tag: "a",
            log: &log,
        },
        Tagged {
            inner: &world.source,
            tag: "b",
            log: &log,
        },
    );
    let (deps_a, deps_b) = (world.deps_with(&a), world.deps_with(&b));
    let (out_a, out_b) = tokio::join!(
        run_to_end(item("run-a"), &deps_a, MINUTE, now),
        run_to_end(item("run-b"), &deps_b, MINUTE, now),
    );
    let together = world.requests();
    println!(
        "one run alone: {single} requests; two overlapping runs: {together} requests (without the lease: {})",
        2 * single
    );
    assert!(sts(&out_a).done && sts(&out_b).done);
    assert!(sts(&out_a).error.is_none() && sts(&out_b).error.is_none());
    assert_eq!(world.events.all().len(), 740, "every event stored");
    // The second collector re-read only the overlap behind the first one's checkpoint: one
    // request for an empty window.
    assert_eq!(together, single + 1);
    let (first, second) = if sts(&out_a).counts.stored == 740 {
        (&out_a, &out_b)
    } else {
        (&out_b, &out_a)
    };
    assert_eq!(sts(first).counts.stored, 740);
    assert!(
        second.lease_waits > 0 || sts(second).counts.fetched == 0,
        "the second waited and found nothing left"
    );
    // Never side by side: one collector's requests all come before the other's.
    let log = log.into_inner().unwrap();
    let switches = log.windows(2).filter(|p| p[0].0 != p[1].0).count();
    assert_eq!(switches, 1, "requests interleaved");
}

#[tokio::test(start_paused = true)]
async fn backfill_waits_for_the_region_lease() {
    let now = Utc::now();
    let world = World::new(fast(), events("b", 60, now - Duration::days(3)));
    // A scheduled run is reading the region.
    world
        .control
        .acquire_lease(LEASE, "scheduled-run", now, Duration::minutes(15))
        .await
        .unwrap();
    let request = backfill(
        "backfill-1",
        now - Duration::days(4),
        now - Duration::days(2),
    );
    let started = tokio::time::Instant::now();
    let waited = invoke(request, &world.deps(), StdDuration::from_secs(30), now).await;
    assert!(waited.more && waited.lease_waits == 1, "{waited:?}");
    assert_eq!(world.requests(), 0, "no request without the lease");
    assert!(started.elapsed() <= StdDuration::from_secs(30));
    assert_eq!(world.control.lease(LEASE).unwrap().0, "scheduled-run");
    // The scheduled run gives the lease back at the end of its invocation: the backfill
    // goes on from where it was.
    world
        .control
        .release_lease(LEASE, "scheduled-run")
        .await
        .unwrap();
    let done = run_to_end(waited, &world.deps(), MINUTE, now).await;
    assert!(sts(&done).done && sts(&done).error.is_none());
    assert_eq!((done.invocations, done.lease_waits), (2, 1));
    assert_eq!(world.events.all().len(), 60);
    assert_eq!(world.control.lease(LEASE), None, "released at the end");
}

/// Checks, at every request, that the collector `holder` holds the region's lease.
struct LeaseChecked<'a> {
    inner: &'a MemorySource,
    control: &'a MemoryControl,
    holder: &'static str,
    violations: Mutex<u64>,
}

impl EventSource for LeaseChecked<'_> {
    async fn lookup(&self, request: &LookupRequest) -> Result<LookupPage, LookupError> {
        let held = self
            .control
            .lease(LEASE)
            .is_some_and(|(h, expires)| h == self.holder && expires > Utc::now());
        if !held {
            *self.violations.lock().unwrap() += 1;
        }
        self.inner.lookup(request).await
    }
}

#[tokio::test(start_paused = true)]
async fn expired_lease_is_taken_over() {
    let now = Utc::now();
    let world = World::new(fast(), events("x", 120, now - Duration::hours(8)));
    // A collector that crashed two hours ago left its lease behind; it expired long since.
    world
        .control
        .acquire_lease(
            LEASE,
            "crashed-run",
            now - Duration::hours(2),
            Duration::minutes(15),
        )
        .await
        .unwrap();
    let checked = LeaseChecked {
        inner: &world.source,
        control: &world.control,
        holder: "r",
        violations: Mutex::new(0),
    };
    let out = run_to_end(item("r"), &world.deps_with(&checked), MINUTE, now).await;
    assert!(sts(&out).done && out.lease_waits == 0);
    assert_eq!(world.events.all().len(), 120);
    assert!(world.requests() > 0);
    assert_eq!(
        *checked.violations.lock().unwrap(),
        0,
        "every request made under our lease"
    );
    assert_eq!(world.control.lease(LEASE), None, "released at the end");
}

/// Another collector takes the lease over (as if ours had expired) at request `at`.
struct StolenAt<'a> {
    inner: &'a MemorySource,
    control: &'a MemoryControl,
    at: u64,
    calls: Mutex<u64>,
}

impl EventSource for StolenAt<'_> {
    async fn lookup(&self, request: &LookupRequest) -> Result<LookupPage, LookupError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        if call == self.at {
            // Seen from a day later, our lease has expired: the thief gets it.
            let later = Utc::now() + Duration::days(1);
            let taken = self
                .control
                .acquire_lease(LEASE, "thief", later, Duration::hours(1))
                .await
                .unwrap();
            assert!(matches!(taken, LeaseOutcome::Acquired { .. }));
        }
        self.inner.lookup(request).await
    }
}

#[tokio::test(start_paused = true)]
async fn lost_lease_stops_reading() {
    let now = Utc::now();
    let world = World::new(fast(), sparse(now));
    let alone = {
        let w = World::new(fast(), sparse(now));
        run_to_end(item("r"), &w.deps(), MINUTE, now).await;
        w.requests()
    };
    let stealing = StolenAt {
        inner: &world.source,
        control: &world.control,
        at: 2,
        calls: Mutex::new(0),
    };
    let deps = world.deps_with(&stealing);
    let cut = invoke(item("r"), &deps, MINUTE, now).await;
    assert!(cut.more && !sts(&cut).done && sts(&cut).error.is_none());
    let after_theft = world.requests();
    assert!(
        after_theft < alone,
        "stopped at the first stored slice: {after_theft} of {alone} requests"
    );
    assert_eq!(
        sts(&cut).counts.slices,
        1,
        "stopped after the first stored slice"
    );
    assert_eq!(
        world.control.lease(LEASE).unwrap().0,
        "thief",
        "not taken back"
    );
    // While the thief holds it, the next invocation only waits.
    let waited = invoke(cut, &deps, StdDuration::from_secs(10), now).await;
    assert!(waited.more && waited.lease_waits == 1);
    assert_eq!(world.requests(), after_theft);
    println!("lease lost: stopped after {after_theft} requests (a full run makes {alone})");
}

/// 2000 events over 60 days: dozens of requests and slices.
fn sparse(now: DateTime<Utc>) -> Vec<LookupEvent> {
    (0..2000)
        .map(|i| {
            event(
                &format!("l{i:04}"),
                now - Duration::days(60) + Duration::minutes(43 * i),
                None,
            )
        })
        .collect()
}

/// A control table whose lease operations fail (throttled, unreachable...).
struct LeaseStoreDown(MemoryControl);

fn down() -> StoreError {
    StoreError {
        operation: "dynamodb:PutItem (lease)",
        message: "ProvisionedThroughputExceededException (injected)".into(),
    }
}

impl ControlStore for LeaseStoreDown {
    async fn source_state(&self, key: &str) -> Result<SourceState, StoreError> {
        self.0.source_state(key).await
    }
    async fn record_slice(
        &self,
        key: &str,
        checkpoint: Option<DateTime<Utc>>,
        stored: u64,
        now: DateTime<Utc>,
    ) -> Result<SourceState, StoreError> {
        self.0.record_slice(key, checkpoint, stored, now).await
    }
    async fn record_error(
        &self,
        key: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.0.record_error(key, error, now).await
    }
    async fn acquire_lease(
        &self,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
        _: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        Err(down())
    }
    async fn release_lease(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(down())
    }
    async fn put_run(&self, summary: &RunSummary) -> Result<(), StoreError> {
        self.0.put_run(summary).await
    }
    async fn last_export(&self) -> Result<Option<NaiveDate>, StoreError> {
        self.0.last_export().await
    }
    async fn export_record(&self, date: NaiveDate) -> Result<Option<ExportRecord>, StoreError> {
        self.0.export_record(date).await
    }
    async fn record_export(
        &self,
        date: NaiveDate,
        rows: u64,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.0.record_export(date, rows, keys, now).await
    }
    async fn mark_dirty(&self, dates: &[NaiveDate]) -> Result<(), StoreError> {
        self.0.mark_dirty(dates).await
    }
    async fn dirty_dates(&self) -> Result<BTreeMap<NaiveDate, u64>, StoreError> {
        self.0.dirty_dates().await
    }
    async fn clear_dirty(&self, date: NaiveDate, seq: u64) -> Result<bool, StoreError> {
        self.0.clear_dirty(date, seq).await
    }
    async fn add_to_counter(
        &self,
        key: &str,
        entry: &str,
        expires: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.0.add_to_counter(key, entry, expires).await
    }
    async fn claim_burst(
        &self,
        key: &str,
        chain_start: DateTime<Utc>,
        until: DateTime<Utc>,
        trigger: &str,
    ) -> Result<bool, StoreError> {
        self.0.claim_burst(key, chain_start, until, trigger).await
    }
    async fn drop_counter_entries(&self, key: &str, entries: &[String]) -> Result<(), StoreError> {
        self.0.drop_counter_entries(key, entries).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_lease_store_fails_the_sources_not_the_item() {
    let now = Utc::now();
    let world = World::new(fast(), events("f", 10, now - Duration::hours(3)));
    let control = LeaseStoreDown(MemoryControl::new());
    let deps = CollectDeps {
        settings: &world.settings,
        source: &world.source,
        events: &world.events,
        control: &control,
        alerts: &world.alerts,
        objects: &world.objects,
        sigma: &world.sigma,
    };
    let out = invoke(item("r"), &deps, MINUTE, now).await;
    let p = sts(&out);
    assert!(!out.more && p.done);
    let error = p.error.as_deref().unwrap();
    assert!(
        error.starts_with("region lease:") && error.contains("injected"),
        "{error}"
    );
    assert_eq!(control.0.last_error(STS_KEY).as_deref(), Some(error));
    assert_eq!(world.requests(), 0, "nothing read without the lease");
}

#[tokio::test(start_paused = true)]
async fn collect_loop_is_capped() {
    // A window that needs many invocations (a second per request, an 8 s budget) in a run
    // capped at 3 Collect invocations.
    let now = Utc::now();
    let list = (0..400)
        .map(|i| {
            event(
                &format!("k{i:04}"),
                now - Duration::days(10) + Duration::minutes(30 * i),
                None,
            )
        })
        .collect::<Vec<_>>();
    let world = World::new(
        settings(&[
            ("LOOKUP_RATE_PER_SECOND", "100"),
            ("MAX_COLLECT_INVOCATIONS", "3"),
        ]),
        list,
    );
    let slow = Slow {
        inner: &world.source,
        delay: StdDuration::from_secs(1),
    };
    let out = run_to_end(
        item("r"),
        &world.deps_with(&slow),
        StdDuration::from_secs(8),
        now,
    )
    .await;
    let p = sts(&out);
    assert_eq!(
        out.invocations, 3,
        "the old code looped until the window was done"
    );
    assert!(out.capped && !out.more && !p.done && p.error.is_none());
    assert_eq!(
        p.warnings,
        vec!["stopped after 3 Collect invocations (MAX_COLLECT_INVOCATIONS); the next run resumes from the checkpoint".to_string()]
    );
    let stored = world.events.all().len();
    assert!(stored > 0 && stored < 400, "{stored}");
    assert!(world.control.checkpoint(STS_KEY).is_some());
    assert_eq!(world.control.lease(LEASE), None);
    // The next run resumes from the checkpoint and, uncapped, finishes.
    let next_settings = fast();
    let next_deps = CollectDeps {
        settings: &next_settings,
        ..world.deps()
    };
    let next = run_to_end(item("r2"), &next_deps, MINUTE, now).await;
    assert!(sts(&next).done && !next.capped);
    assert_eq!(world.events.all().len(), 400);
    println!("capped after 3 invocations with {stored} of 400 events stored; the next run stored the rest");
}
