//! The Collect algorithm against the in-memory adapters (`iamtrail_aws::memory`): slicing,
//! paging, checkpoints, unreadable and oversized records, stalled slices, throttles, the
//! clipped-checkpoint warning, pages out of order, a pause set during a run and a slow store.
//! (The end-to-end tests run the same code against moto and the CloudTrail emulator.)

mod collect_support;

use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use collect_support::*;
use iamtrail_aws::memory::*;
use iamtrail_aws::ports::*;
use iamtrail_aws::steps::collect::CollectDeps;
use iamtrail_core::NormalizedEvent;
use serde_json::json;

const MINUTE: StdDuration = StdDuration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn dense_and_sparse_windows_store_everything_once() {
    let now = Utc::now();
    let mut list: Vec<LookupEvent> = events("d", 700, now - Duration::hours(30));
    list.extend((0..40).map(|i| event(&format!("s{i:04}"), now - Duration::days(i + 2), None)));
    let world = World::new(fast(), list);
    let out = run_to_end(item("r"), &world.deps(), MINUTE, now).await;
    let p = sts(&out);
    assert_eq!(world.events.all().len(), 740);
    assert_eq!(
        (p.counts.fetched, p.counts.stored),
        (740, 740),
        "no slice read twice"
    );
    assert!(p.done && p.error.is_none());
    assert_eq!(p.checkpoint, p.window.map(|w| w.end));
    assert_eq!(world.control.checkpoint(STS_KEY), p.checkpoint);
    println!(
        "740 events: {} requests for {} slices",
        world.requests(),
        p.counts.slices
    );
}

#[tokio::test(start_paused = true)]
async fn unreadable_and_oversized_records_are_kept() {
    let now = Utc::now() - Duration::hours(1);
    let huge =
        json!({"eventID": "big", "eventTime": whole(now).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": REGION,
        "requestParameters": {"policy": "x".repeat(500_000)}})
        .to_string();
    let world = World::new(
        fast(),
        vec![
            event(
                "broken",
                now,
                Some("{\"eventID\": \"broken\", truncated".into()),
            ),
            event("big", now, Some(huge)),
            // No record text and no event id: nothing to store; counted as malformed, and
            // its summary kept in S3.
            LookupEvent {
                event_id: None,
                cloudtrail_event: None,
                ..event("x", now, None)
            },
        ],
    );
    let out = run_to_end(item("r"), &world.deps(), MINUTE, Utc::now()).await;
    let counts = sts(&out).counts;
    assert_eq!(
        (
            counts.fetched,
            counts.stored,
            counts.malformed,
            counts.truncated,
            counts.raw_kept
        ),
        (3, 2, 2, 1, 2)
    );
    let stored = world.events.all();
    let broken = stored.iter().find(|e| e.event_id == "broken").unwrap();
    assert!(broken.parse_error.is_some() && broken.raw_record.is_some());
    assert_eq!(broken.user_name, "alice", "from LookupEvents' Username");
    let big = stored.iter().find(|e| e.event_id == "big").unwrap();
    assert_eq!(big.truncated_fields, vec!["request_parameters".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_slice_too_dense_for_the_budget_is_split_further_until_it_fits() {
    // 2000 events in ten minutes, 40 ms per request, a 0.5 s budget: a 5-minute slice (20
    // pages) cannot be read in one invocation, so stalls halve the minimum slice.
    let now = Utc::now() - Duration::hours(2);
    let list = (0..2000)
        .map(|i| {
            event(
                &format!("e{i:05}"),
                now + Duration::milliseconds(300 * i),
                None,
            )
        })
        .collect();
    let world = World::new(
        settings(&[
            ("LOOKUP_RATE_PER_SECOND", "100"),
            ("MAX_COLLECT_INVOCATIONS", "1000"),
        ]),
        list,
    );
    let slow = Slow {
        inner: &world.source,
        delay: StdDuration::from_millis(40),
    };
    let out = run_to_end(
        item("r"),
        &world.deps_with(&slow),
        StdDuration::from_millis(500),
        Utc::now(),
    )
    .await;
    assert_eq!(world.events.all().len(), 2000);
    assert!(sts(&out).done && !out.capped);
    println!(
        "dense window: {} invocations, {} requests",
        out.invocations,
        world.requests()
    );
    assert!(out.invocations > 3);
}

#[tokio::test(start_paused = true)]
async fn more_than_a_page_in_one_second_is_paged_not_lost() {
    let burst = whole(Utc::now() - Duration::hours(3));
    let mut list: Vec<LookupEvent> = (0..1100)
        .map(|i| event(&format!("b{i:04}"), burst, None))
        .collect();
    list.extend(
        (0..30).map(|i| event(&format!("n{i:04}"), burst + Duration::seconds(i + 1), None)),
    );
    list.extend(
        (0..30).map(|i| event(&format!("o{i:04}"), burst - Duration::seconds(i + 1), None)),
    );
    let world = World::new(fast(), list);
    let out = run_to_end(item("r"), &world.deps(), MINUTE, Utc::now()).await;
    assert_eq!(world.events.all().len(), 1160);
    let counts = sts(&out).counts;
    // 1100 events in one second: a 22-page slice, written in parts; every part is counted.
    assert_eq!(
        (counts.fetched, counts.stored),
        (1160, 1160),
        "each event read and counted once"
    );
}

/// Throttles every request whose number is in `throttled` (1-based), like LookupEvents'
/// `ThrottlingException`.
struct Throttling<'a> {
    inner: &'a MemorySource,
    calls: Mutex<u64>,
    throttled: std::ops::RangeInclusive<u64>,
}

impl EventSource for Throttling<'_> {
    async fn lookup(&self, request: &LookupRequest) -> Result<LookupPage, LookupError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        if self.throttled.contains(&call) {
            return Err(LookupError::Throttled("Rate exceeded".into()));
        }
        self.inner.lookup(request).await
    }
}

#[tokio::test(start_paused = true)]
async fn throttled_requests_are_retried_with_the_backoff() {
    let now = Utc::now();
    let world = World::new(fast(), events("t", 120, now - Duration::hours(5)));
    let throttling = Throttling {
        inner: &world.source,
        calls: Mutex::new(0),
        throttled: 2..=4,
    };
    let started = tokio::time::Instant::now();
    let out = run_to_end(item("r"), &world.deps_with(&throttling), MINUTE, now).await;
    let p = sts(&out);
    assert!(p.done && p.error.is_none());
    assert_eq!(world.events.all().len(), 120);
    assert_eq!(p.counts.throttled, 3);
    // Three throttles in a row: pauses of 1, 2 and 4 s (plus up to 25 % jitter).
    let waited = started.elapsed();
    assert!(
        waited >= StdDuration::from_secs(7) && waited < StdDuration::from_secs(10),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_paused_source_is_skipped() {
    let now = Utc::now();
    let world = World::new(fast(), events("p", 10, now - Duration::hours(5)));
    world.control.set_status(STS_KEY, "paused");
    let out = run_to_end(item("r"), &world.deps(), MINUTE, now).await;
    assert_eq!(
        sts(&out).skipped.as_deref(),
        Some("paused in the control table")
    );
    assert_eq!(world.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn clipped_checkpoint_warns() {
    let now = Utc::now();
    let stale = now - Duration::days(100);
    let world = World::new(fast(), events("c", 5, now - Duration::days(3)));
    world.control.set_checkpoint(STS_KEY, stale);
    let out = run_to_end(item("r"), &world.deps(), MINUTE, now).await;
    let p = sts(&out);
    assert!(p.done && p.error.is_none());
    assert_eq!(
        world.events.all().len(),
        5,
        "what is still in the history is read"
    );
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    let warning = &p.warnings[0];
    assert!(
        warning.contains("older than CloudTrail's 90-day event history")
            && warning.contains(&stale.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            && warning.contains("lost"),
        "{warning}"
    );
}

/// LookupEvents that answers oldest first (it never does, but nothing checked it).
struct OldestFirst {
    events: Vec<LookupEvent>,
}

impl EventSource for OldestFirst {
    async fn lookup(&self, r: &LookupRequest) -> Result<LookupPage, LookupError> {
        let mut matching: Vec<&LookupEvent> = self
            .events
            .iter()
            .filter(|e| e.event_time.is_some_and(|t| t >= r.start && t <= r.end))
            .collect();
        matching.sort_by_key(|e| (e.event_time, e.event_id.clone()));
        let offset: usize = r.next_token.as_deref().map_or(0, |t| t.parse().unwrap());
        let events = matching
            .iter()
            .skip(offset)
            .take(50)
            .map(|e| (*e).clone())
            .collect();
        let next = (offset + 50 < matching.len()).then(|| (offset + 50).to_string());
        Ok(LookupPage {
            events,
            next_token: next,
        })
    }
}

#[tokio::test(start_paused = true)]
async fn unordered_page_is_not_held() {
    // Holding a first page's events is only right when the page is the slice's newest 50.
    // Given oldest-first pages, the old code held the oldest 50 as if they were everything
    // newer than their oldest second: it stored 50 of the 320 events.
    let now = Utc::now();
    let list = events("u", 320, now - Duration::hours(6));
    let world = World::new(fast(), vec![]);
    let source = OldestFirst {
        events: list.clone(),
    };
    let out = run_to_end(item("r"), &world.deps_with(&source), MINUTE, now).await;
    let p = sts(&out);
    assert!(p.done && p.error.is_none());
    assert_eq!(world.events.all().len(), 320, "nothing skipped");
    assert_eq!(p.counts.fetched, 320);
}

/// Pauses the source in the control table (as an operator would) at its `after`-th request.
struct PausesAfter<'a> {
    inner: &'a MemorySource,
    control: &'a MemoryControl,
    after: u64,
    calls: Mutex<u64>,
}

impl EventSource for PausesAfter<'_> {
    async fn lookup(&self, request: &LookupRequest) -> Result<LookupPage, LookupError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        if call == self.after {
            self.control.set_status(STS_KEY, "paused");
        }
        self.inner.lookup(request).await
    }
}

#[tokio::test(start_paused = true)]
async fn pause_during_run_is_kept() {
    // 200 events spread over 40 hours: several slices. Paused at the first request: the first
    // slice is stored, then the source stops; the old code read every slice regardless.
    let now = Utc::now();
    let list = (0..200)
        .map(|i| {
            event(
                &format!("p{i:04}"),
                now - Duration::hours(45) + Duration::minutes(12 * i),
                None,
            )
        })
        .collect();
    let world = World::new(fast(), list);
    let pauser = PausesAfter {
        inner: &world.source,
        control: &world.control,
        after: 1,
        calls: Mutex::new(0),
    };
    let out = run_to_end(item("r"), &world.deps_with(&pauser), MINUTE, now).await;
    let p = sts(&out);
    assert_eq!(
        p.skipped.as_deref(),
        Some("paused in the control table during the run")
    );
    assert!(p.done && p.error.is_none() && !out.more);
    assert_eq!(p.counts.slices, 1, "stopped after the slice being read");
    let stored = world.events.all().len();
    assert!(stored > 0 && stored < 200, "{stored}");
    assert_eq!(p.counts.stored as usize, stored);
    assert_eq!(
        world.control.checkpoint(STS_KEY),
        p.checkpoint,
        "its slices are kept"
    );
    assert!(
        world
            .control
            .source_state(STS_KEY)
            .await
            .unwrap()
            .is_paused(),
        "the pause stays"
    );
    // The next run skips the source at once.
    let requests = world.requests();
    let again = run_to_end(item("r2"), &world.deps(), MINUTE, now).await;
    assert_eq!(
        sts(&again).skipped.as_deref(),
        Some("paused in the control table")
    );
    assert_eq!(world.requests(), requests);
    println!("paused during the run: {stored} of 200 events stored, then stopped");
}

/// An events table that takes `delay` to answer each write.
struct SlowEvents<'a> {
    inner: &'a MemoryEvents,
    delay: StdDuration,
}

impl EventStore for SlowEvents<'_> {
    async fn put_events(&self, events: &[NormalizedEvent]) -> Result<PutOutcome, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.put_events(events).await
    }

    async fn events_named(
        &self,
        name: &str,
        until: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<NormalizedEvent>, StoreError> {
        self.inner.events_named(name, until, limit).await
    }
}

#[tokio::test(start_paused = true)]
async fn slow_store_is_bounded_by_the_budget() {
    // One slice whose write takes 5 minutes, in an invocation with a 30 s budget: the old code
    // waited for the write (returning after 300 s); now the invocation returns by its deadline
    // with more: true, and nothing moved.
    let now = Utc::now();
    let world = World::new(fast(), events("w", 10, now - Duration::hours(1)));
    let slow = SlowEvents {
        inner: &world.events,
        delay: StdDuration::from_secs(300),
    };
    let deps = CollectDeps {
        settings: &world.settings,
        source: &world.source,
        events: &slow,
        control: &world.control,
        alerts: &world.alerts,
        objects: &world.objects,
        sigma: &world.sigma,
    };
    let budget = StdDuration::from_secs(30);
    let started = tokio::time::Instant::now();
    let out = invoke(item("r"), &deps, budget, now).await;
    let took = started.elapsed();
    assert!(took <= budget, "returned after {took:?}");
    assert!(out.more && !sts(&out).done);
    assert_eq!(sts(&out).counts.slices, 0);
    assert_eq!(
        world.control.checkpoint(STS_KEY),
        None,
        "the checkpoint did not move"
    );
    assert_eq!(world.control.lease(LEASE), None, "the lease is given back");
    println!("slow store: invocation returned after {took:?} of a {budget:?} budget");
}
