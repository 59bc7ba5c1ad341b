//! The Collect algorithm against in-memory adapters: slicing, paging, checkpoints, unreadable
//! and oversized records, and stalled slices. (The end-to-end tests run the same code against
//! moto and the CloudTrail emulator over HTTP.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use iamtrail_aws::ports::*;
use iamtrail_aws::steps::collect::{collect, CollectDeps};
use iamtrail_core::contract::{RunSummary, WorkItem};
use iamtrail_core::{NormalizedEvent, Settings, Source};
use serde_json::json;

/// LookupEvents semantics over a list: inclusive range, newest first, 50 a page.
#[derive(Default)]
struct FakeCloudTrail {
    events: Vec<LookupEvent>,
    requests: Mutex<u64>,
    delay: StdDuration,
}

impl EventSource for FakeCloudTrail {
    async fn lookup(&self, r: &LookupRequest) -> Result<LookupPage, LookupError> {
        *self.requests.lock().unwrap() += 1;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut matching: Vec<&LookupEvent> = self
            .events
            .iter()
            .filter(|e| e.event_source.as_deref() == Some(r.event_source.as_str()))
            .filter(|e| e.event_time.is_some_and(|t| t >= r.start && t <= r.end))
            .collect();
        matching.sort_by(|a, b| (b.event_time, &b.event_id).cmp(&(a.event_time, &a.event_id)));
        let offset: usize = r
            .next_token
            .as_deref()
            .map(|t| t.parse().unwrap())
            .unwrap_or(0);
        let page: Vec<LookupEvent> = matching
            .iter()
            .skip(offset)
            .take(50)
            .map(|e| (*e).clone())
            .collect();
        let next = (offset + 50 < matching.len()).then(|| (offset + 50).to_string());
        Ok(LookupPage {
            events: page,
            next_token: next,
        })
    }
}

#[derive(Default)]
struct MemoryEvents(Mutex<BTreeMap<(String, String), NormalizedEvent>>);

impl EventStore for MemoryEvents {
    async fn put_events(&self, events: &[NormalizedEvent]) -> Result<u64, StoreError> {
        let mut map = self.0.lock().unwrap();
        for e in events {
            map.insert((e.event_date.clone(), e.event_id.clone()), e.clone());
        }
        Ok(events.len() as u64)
    }
}

#[derive(Default)]
struct MemoryControl(Mutex<HashMap<String, DateTime<Utc>>>);

impl ControlStore for MemoryControl {
    async fn source_state(&self, key: &str) -> Result<SourceState, StoreError> {
        Ok(SourceState {
            checkpoint: self.0.lock().unwrap().get(key).copied(),
            processing_status: None,
        })
    }
    async fn record_slice(
        &self,
        key: &str,
        cp: Option<DateTime<Utc>>,
        _: u64,
        _: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(cp) = cp {
            let mut map = self.0.lock().unwrap();
            let entry = map.entry(key.to_string()).or_insert(cp);
            *entry = (*entry).max(cp);
        }
        Ok(())
    }
    async fn record_error(&self, _: &str, _: &str, _: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn put_run(&self, _: &RunSummary) -> Result<(), StoreError> {
        Ok(())
    }
    async fn last_export(&self) -> Result<Option<chrono::NaiveDate>, StoreError> {
        Ok(None)
    }
    async fn record_export(
        &self,
        _: chrono::NaiveDate,
        _: u64,
        _: &[String],
        _: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// CloudTrail event times are whole seconds.
fn whole(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

/// The outbox, in memory: (event, rule) keys with put-if-absent.
#[derive(Default)]
struct MemoryAlerts(Mutex<std::collections::BTreeSet<(String, String)>>);

impl AlertStore for MemoryAlerts {
    async fn enqueue(&self, a: &iamtrail_core::outbox::AlertRecord) -> Result<bool, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .insert((a.event_id.clone(), a.alert_type.clone())))
    }
    async fn deliverable(
        &self,
        _: usize,
        _: DateTime<Utc>,
    ) -> Result<Vec<iamtrail_core::outbox::AlertRecord>, StoreError> {
        Ok(vec![])
    }
    async fn claim(
        &self,
        _: &iamtrail_core::outbox::AlertRecord,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn mark_sent(
        &self,
        _: &iamtrail_core::outbox::AlertRecord,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn release(
        &self,
        _: &iamtrail_core::outbox::AlertRecord,
        _: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

fn event(id: &str, time: DateTime<Utc>, body: Option<String>) -> LookupEvent {
    let time = whole(time);
    let body = body.unwrap_or_else(|| {
        json!({"eventID": id, "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
               "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": "us-east-1",
               "userIdentity": {"type": "IAMUser", "userName": "alice"}})
        .to_string()
    });
    LookupEvent {
        event_id: Some(id.into()),
        event_name: Some("AssumeRole".into()),
        event_source: Some("sts.amazonaws.com".into()),
        event_time: Some(time),
        username: Some("alice".into()),
        cloudtrail_event: Some(body),
    }
}

fn settings(pairs: &[(&str, &str)]) -> Settings {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|k| map.get(k).cloned()).unwrap()
}

fn item() -> WorkItem {
    WorkItem {
        run_id: "r".into(),
        region: "us-east-1".into(),
        sources: vec![Source::Sts],
        ..Default::default()
    }
}

async fn run_to_end(
    source: &FakeCloudTrail,
    s: &Settings,
    budget: StdDuration,
) -> (WorkItem, MemoryEvents, u32) {
    let (events, control, alerts) = (
        MemoryEvents::default(),
        MemoryControl::default(),
        MemoryAlerts::default(),
    );
    let deps = CollectDeps {
        settings: s,
        source,
        events: &events,
        control: &control,
        alerts: &alerts,
    };
    let now = Utc::now();
    let mut current = item();
    let mut invocations = 0;
    loop {
        invocations += 1;
        assert!(invocations < 500, "the loop must converge");
        current = collect(current, &deps, Instant::now() + budget, now)
            .await
            .unwrap();
        if !current.more {
            return (current, events, invocations);
        }
    }
}

#[tokio::test]
async fn dense_and_sparse_windows_store_everything_once() {
    let now = Utc::now();
    let mut events: Vec<LookupEvent> = (0..700)
        .map(|i| {
            event(
                &format!("d{i:04}"),
                now - Duration::hours(30) + Duration::seconds(i),
                None,
            )
        })
        .collect();
    events.extend((0..40).map(|i| event(&format!("s{i:04}"), now - Duration::days(i + 2), None)));
    let source = FakeCloudTrail {
        events,
        ..Default::default()
    };
    let s = settings(&[("LOOKUP_RATE_PER_SECOND", "100")]);
    let (out, stored, _) = run_to_end(&source, &s, StdDuration::from_secs(60)).await;
    let p = &out.progress[&Source::Sts];
    assert_eq!(stored.0.lock().unwrap().len(), 740);
    assert_eq!(
        (p.counts.fetched, p.counts.stored),
        (740, 740),
        "no slice read twice"
    );
    assert!(p.done && p.error.is_none());
    assert_eq!(p.checkpoint.as_deref(), Some(p.window_end.as_str()));
    println!(
        "740 events: {} requests for {} slices",
        *source.requests.lock().unwrap(),
        p.counts.slices
    );
}

#[tokio::test]
async fn unreadable_and_oversized_records_are_kept() {
    let now = Utc::now() - Duration::hours(1);
    let huge = json!({"eventID": "big", "eventTime": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": "us-east-1",
        "requestParameters": {"policy": "x".repeat(500_000)}})
    .to_string();
    let source = FakeCloudTrail {
        events: vec![
            event(
                "broken",
                now,
                Some("{\"eventID\": \"broken\", truncated".into()),
            ),
            event("big", now, Some(huge)),
            // No record text and no event id: nothing to store; counted as malformed.
            LookupEvent {
                event_id: None,
                cloudtrail_event: None,
                ..event("x", now, None)
            },
        ],
        ..Default::default()
    };
    let (out, stored, _) = run_to_end(
        &source,
        &settings(&[("LOOKUP_RATE_PER_SECOND", "100")]),
        StdDuration::from_secs(60),
    )
    .await;
    let counts = out.progress[&Source::Sts].counts;
    assert_eq!(
        (
            counts.fetched,
            counts.stored,
            counts.malformed,
            counts.truncated
        ),
        (3, 2, 2, 1)
    );
    let map = stored.0.lock().unwrap();
    let broken = map.values().find(|e| e.event_id == "broken").unwrap();
    assert!(broken.parse_error.is_some() && broken.raw_record.is_some());
    assert_eq!(broken.user_name, "alice", "from LookupEvents' Username");
    let big = map.values().find(|e| e.event_id == "big").unwrap();
    assert_eq!(big.truncated_fields, vec!["request_parameters".to_string()]);
}

#[tokio::test]
async fn a_slice_too_dense_for_the_budget_is_split_further_until_it_fits() {
    // 2000 events in ten minutes, 40 ms per request, a 0.5 s budget: a 5-minute slice (20
    // pages) cannot be read in one invocation, so stalls halve the minimum slice.
    let now = Utc::now() - Duration::hours(2);
    let events = (0..2000)
        .map(|i| {
            event(
                &format!("e{i:05}"),
                now + Duration::milliseconds(300 * i),
                None,
            )
        })
        .collect();
    let source = FakeCloudTrail {
        events,
        delay: StdDuration::from_millis(40),
        ..Default::default()
    };
    let s = settings(&[("LOOKUP_RATE_PER_SECOND", "100")]);
    let (out, stored, invocations) = run_to_end(&source, &s, StdDuration::from_millis(500)).await;
    assert_eq!(stored.0.lock().unwrap().len(), 2000);
    assert!(out.progress[&Source::Sts].done);
    println!(
        "dense window: {invocations} invocations, {} requests",
        *source.requests.lock().unwrap()
    );
    assert!(invocations > 3);
}

#[tokio::test]
async fn more_than_a_page_in_one_second_is_paged_not_lost() {
    let burst = whole(Utc::now() - Duration::hours(3));
    let mut events: Vec<LookupEvent> = (0..1100)
        .map(|i| event(&format!("b{i:04}"), burst, None))
        .collect();
    events.extend(
        (0..30).map(|i| event(&format!("n{i:04}"), burst + Duration::seconds(i + 1), None)),
    );
    events.extend(
        (0..30).map(|i| event(&format!("o{i:04}"), burst - Duration::seconds(i + 1), None)),
    );
    let source = FakeCloudTrail {
        events,
        ..Default::default()
    };
    let (out, stored, _) = run_to_end(
        &source,
        &settings(&[("LOOKUP_RATE_PER_SECOND", "100")]),
        StdDuration::from_secs(60),
    )
    .await;
    assert_eq!(stored.0.lock().unwrap().len(), 1160);
    let counts = out.progress[&Source::Sts].counts;
    // 1100 events in one second: a 22-page slice, written in parts; every part is counted.
    assert_eq!(
        (counts.fetched, counts.stored),
        (1160, 1160),
        "each event read and counted once"
    );
}
