//! Poison records never block a source: full records of oversized and unstorable events are
//! kept in S3 under `raw-events/`, an item DynamoDB rejects is stored in a minimal form (or
//! only in S3), and every stored event marks its date dirty for the export.

mod collect_support;

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{Duration, NaiveDate, Utc};
use collect_support::*;
use iamtrail_aws::memory::*;
use iamtrail_aws::ports::*;
use iamtrail_aws::steps::collect::CollectDeps;
use iamtrail_core::raw::{RAW_PREFIX, REJECTED_PREFIX};
use iamtrail_core::NormalizedEvent;
use serde_json::json;

const MINUTE: StdDuration = StdDuration::from_secs(60);

/// An events table that rejects some event ids the way DynamoDB answers a bad item
/// (`ValidationException`, isolated from its batch): `poison` only in its full form, `doomed`
/// in any form.
struct Rejecting<'a> {
    inner: &'a MemoryEvents,
    poison: &'static str,
    doomed: &'static str,
}

impl EventStore for Rejecting<'_> {
    async fn put_events(&self, events: &[NormalizedEvent]) -> Result<PutOutcome, StoreError> {
        let refuse = |e: &NormalizedEvent| {
            let minimal = e
                .parse_error
                .as_deref()
                .is_some_and(|p| p.starts_with(REJECTED_PREFIX));
            e.event_id == self.doomed || (e.event_id == self.poison && !minimal)
        };
        let accepted: Vec<usize> = (0..events.len()).filter(|i| !refuse(&events[*i])).collect();
        let batch: Vec<NormalizedEvent> = accepted.iter().map(|i| events[*i].clone()).collect();
        let inner = self.inner.put_events(&batch).await?;
        let mut rejected: Vec<(usize, String)> = inner
            .rejected
            .into_iter()
            .map(|(i, reason)| (accepted[i], reason))
            .collect();
        rejected.extend((0..events.len()).filter(|i| refuse(&events[*i])).map(|i| {
            (
                i,
                "One or more parameter values were invalid: Type mismatch for attribute".into(),
            )
        }));
        rejected.sort();
        Ok(PutOutcome {
            written: inner.written,
            rejected,
        })
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

fn day(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

#[tokio::test(start_paused = true)]
async fn poison_record_does_not_block_its_source() {
    let now = Utc::now();
    let t = whole(now - Duration::hours(4));
    let list = vec![
        event("good-1", t - Duration::seconds(2), None),
        event("poison", t - Duration::seconds(1), None),
        event("doomed", t, None),
        event("good-2", t + Duration::seconds(1), None),
    ];
    let world = World::new(fast(), list.clone());
    let table = Rejecting {
        inner: &world.events,
        poison: "poison",
        doomed: "doomed",
    };
    let deps = CollectDeps {
        settings: &world.settings,
        source: &world.source,
        events: &table,
        control: &world.control,
        alerts: &world.alerts,
        objects: &world.objects,
        sigma: &world.sigma,
    };
    let out = run_to_end(item("r"), &deps, MINUTE, now).await;
    let p = sts(&out);
    // The source is not blocked: done, no error, checkpoint at the window's end.
    assert!(p.done && p.error.is_none(), "{:?}", p.error);
    assert_eq!(world.control.checkpoint(STS_KEY), p.window.map(|w| w.end));
    assert_eq!(
        (
            p.counts.fetched,
            p.counts.stored,
            p.counts.rejected,
            p.counts.raw_kept
        ),
        (4, 3, 1, 2)
    );
    // Both full records are in S3, byte for byte.
    for original in &list[1..3] {
        let id = original.event_id.as_deref().unwrap();
        let key = format!(
            "{RAW_PREFIX}{}/{REGION}/sts/{id}.json",
            day(original.event_time.unwrap())
        );
        let kept = world
            .objects
            .get(&key)
            .unwrap_or_else(|| panic!("no {key}"));
        assert_eq!(
            Some(kept.bytes),
            original.cloudtrail_event.clone().map(String::into_bytes)
        );
    }
    // The poison event is stored in its minimal form, naming its full record.
    let stored = world.events.all();
    let poison = stored.iter().find(|e| e.event_id == "poison").unwrap();
    assert!(poison
        .parse_error
        .as_deref()
        .unwrap()
        .starts_with("rejected by DynamoDB: One or more parameter values were invalid"));
    assert_eq!(
        poison.raw_s3_key.as_deref(),
        Some(
            format!(
                "{RAW_PREFIX}{}/{REGION}/sts/poison.json",
                day(t - Duration::seconds(1))
            )
            .as_str()
        )
    );
    assert_eq!(
        (poison.event_name.as_str(), poison.user_name.as_str()),
        ("AssumeRole", "alice")
    );
    // The doomed one lives only in S3.
    assert!(!stored.iter().any(|e| e.event_id == "doomed"));
    // A re-run goes through the same way, and the source stays healthy.
    let again = run_to_end(item("r2"), &deps, MINUTE, now).await;
    assert!(sts(&again).error.is_none());
    assert_eq!(world.control.last_error(STS_KEY), None);
}

#[tokio::test(start_paused = true)]
async fn oversized_event_keeps_full_record_in_s3() {
    let now = Utc::now();
    let t = whole(now - Duration::hours(2));
    let huge = json!({"eventID": "big", "eventTime": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": REGION,
        "userIdentity": {"type": "IAMUser", "userName": "alice"},
        "requestParameters": {"policy": "x".repeat(600_000)}})
    .to_string();
    let world = World::new(fast(), vec![event("big", t, Some(huge.clone()))]);
    let out = run_to_end(item("r"), &world.deps(), MINUTE, now).await;
    let p = sts(&out);
    assert_eq!(
        (p.counts.stored, p.counts.truncated, p.counts.raw_kept),
        (1, 1, 1)
    );
    let key = format!("{RAW_PREFIX}{}/{REGION}/sts/big.json", day(t));
    assert_eq!(
        world.objects.get(&key).unwrap().bytes,
        huge.as_bytes(),
        "the full record"
    );
    assert_eq!(
        world.objects.keys(),
        vec![key.clone()],
        "only under the raw prefix"
    );
    let stored = world.events.all();
    assert_eq!(stored[0].raw_s3_key.as_deref(), Some(key.as_str()));
    assert_eq!(
        stored[0].truncated_fields,
        vec!["request_parameters".to_string()]
    );
    println!(
        "oversized event: {} bytes kept in S3, item cut to {} bytes",
        huge.len(),
        stored[0].dynamodb_size()
    );
}

/// A bucket that refuses every write.
struct BucketDown;

impl ObjectStore for BucketDown {
    async fn list(&self, _: &str) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }
    async fn head(&self, _: &str) -> Result<Option<ObjectInfo>, StoreError> {
        Ok(None)
    }
    async fn put_file(
        &self,
        _: &str,
        _: &std::path::Path,
        _: &[(String, String)],
    ) -> Result<(), StoreError> {
        Err(refused())
    }
    async fn put_bytes(&self, _: &str, _: Vec<u8>, _: &str) -> Result<(), StoreError> {
        Err(refused())
    }
}

fn refused() -> StoreError {
    StoreError {
        operation: "s3:PutObject",
        message: "AccessDenied (injected)".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_raw_record_write_keeps_the_checkpoint() {
    let now = Utc::now();
    let t = whole(now - Duration::hours(2));
    let huge = json!({"eventID": "big", "eventTime": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": REGION,
        "requestParameters": {"policy": "x".repeat(600_000)}})
    .to_string();
    let world = World::new(
        fast(),
        vec![event("big", t, Some(huge)), event("small", t, None)],
    );
    let deps = CollectDeps {
        settings: &world.settings,
        source: &world.source,
        events: &world.events,
        control: &world.control,
        alerts: &world.alerts,
        objects: &BucketDown,
        sigma: &world.sigma,
    };
    let out = run_to_end(item("r"), &deps, MINUTE, now).await;
    let error = sts(&out).error.as_deref().unwrap();
    assert!(
        error.contains("S3") && error.contains("AccessDenied"),
        "{error}"
    );
    assert_eq!(
        world.control.checkpoint(STS_KEY),
        None,
        "nothing lost: read again next run"
    );
    // With the bucket back, the next run stores both.
    let next = run_to_end(item("r2"), &world.deps(), MINUTE, now).await;
    assert!(sts(&next).error.is_none());
    assert_eq!(world.events.all().len(), 2);
    assert_eq!(world.objects.keys().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn stored_events_mark_their_dates_dirty() {
    let now = Utc::now();
    let days: Vec<_> = [3, 5, 20]
        .iter()
        .map(|d| whole(now - Duration::days(*d)))
        .collect();
    let list = days
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            (0..3).map(move |j| event(&format!("e{i}-{j}"), *t + Duration::seconds(j), None))
        })
        .collect();
    let world = World::new(fast(), list);
    run_to_end(item("r"), &world.deps(), MINUTE, now).await;
    let dirty = world.control.dirty_dates().await.unwrap();
    let expected: BTreeSet<NaiveDate> = days.iter().map(|t| t.date_naive()).collect();
    assert_eq!(dirty.keys().copied().collect::<BTreeSet<_>>(), expected);
    // An event stored later for a date marks it again (its sequence moves on), so that an
    // export that read the date before sees it changed.
    let before = dirty[&days[0].date_naive()];
    world.source.add(
        REGION,
        [event("late-old", days[0] + Duration::seconds(30), None)],
    );
    let backfill_item = backfill(
        "b",
        days[0] - Duration::hours(1),
        days[0] + Duration::hours(1),
    );
    run_to_end(backfill_item, &world.deps(), MINUTE, now).await;
    let after = world.control.dirty_dates().await.unwrap();
    assert!(after[&days[0].date_naive()] > before);
}
