//! Shared set-up of the Collect tests (`collect_*.rs`): events, settings, work items, the
//! in-memory adapters of `iamtrail_aws::memory`, and a driver that plays the workflow's
//! Collect loop.
#![allow(dead_code)]

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use iamtrail_aws::memory::*;
use iamtrail_aws::ports::*;
use iamtrail_aws::steps::collect::{collect, CollectDeps};
use iamtrail_core::contract::{Mode, SourceProgress, WorkItem};
use iamtrail_core::sigma::SigmaRules;
use iamtrail_core::{Settings, Source};
use serde_json::json;

/// The region every test reads.
pub const REGION: &str = "us-east-1";
/// The control-table key of the tests' source.
pub const STS_KEY: &str = "us-east-1-sts";
/// The region's lease.
pub const LEASE: &str = "region#us-east-1";

/// CloudTrail event times are whole seconds.
pub fn whole(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

/// An STS AssumeRole event by alice, with `body` as its record (a valid one by default).
pub fn event(id: &str, time: DateTime<Utc>, body: Option<String>) -> LookupEvent {
    let time = whole(time);
    let body = body.unwrap_or_else(|| {
        json!({"eventID": id, "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
               "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": REGION,
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

/// `n` events one second apart from `from`, ids `<prefix>00000`, ...
pub fn events(prefix: &str, n: i64, from: DateTime<Utc>) -> Vec<LookupEvent> {
    (0..n)
        .map(|i| {
            event(
                &format!("{prefix}{i:05}"),
                from + chrono::Duration::seconds(i),
                None,
            )
        })
        .collect()
}
pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    Settings::from_pairs(pairs).unwrap()
}

/// Settings with a fast rate limit (the tests are about the algorithm, not the quota).
pub fn fast() -> Settings {
    settings(&[("LOOKUP_RATE_PER_SECOND", "100")])
}

/// A scheduled run's item for the region's `sts` source.
pub fn item(run_id: &str) -> WorkItem {
    WorkItem {
        run_id: run_id.into(),
        region: REGION.into(),
        sources: vec![Source::Sts],
        ..Default::default()
    }
}

/// A backfill item of `[start, end]`.
pub fn backfill(run_id: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> WorkItem {
    WorkItem {
        mode: Mode::Backfill,
        start: Some(start),
        end: Some(end),
        ..item(run_id)
    }
}

/// The `sts` progress of an item.
pub fn sts(item: &WorkItem) -> &SourceProgress {
    &item.progress[&Source::Sts]
}

/// Every in-memory adapter.
pub struct World {
    pub settings: Settings,
    pub source: MemorySource,
    pub events: MemoryEvents,
    pub control: MemoryControl,
    pub alerts: MemoryAlerts,
    pub objects: MemoryObjects,
    /// The Sigma rules Collect evaluates (none unless a test loads some).
    pub sigma: SigmaRules,
}

impl World {
    pub fn new(settings: Settings, events: Vec<LookupEvent>) -> World {
        let source = MemorySource::new();
        source.add(REGION, events);
        World {
            settings,
            source,
            events: MemoryEvents::new(),
            control: MemoryControl::new(),
            alerts: MemoryAlerts::new(),
            objects: MemoryObjects::new(),
            sigma: SigmaRules::default(),
        }
    }

    pub fn deps(
        &self,
    ) -> CollectDeps<'_, MemorySource, MemoryEvents, MemoryControl, MemoryAlerts, MemoryObjects>
    {
        self.deps_with(&self.source)
    }

    /// The world's adapters with another event source (usually a wrapper of the world's).
    pub fn deps_with<'a, S: EventSource>(
        &'a self,
        source: &'a S,
    ) -> CollectDeps<'a, S, MemoryEvents, MemoryControl, MemoryAlerts, MemoryObjects> {
        CollectDeps {
            settings: &self.settings,
            source,
            events: &self.events,
            control: &self.control,
            alerts: &self.alerts,
            objects: &self.objects,
            sigma: &self.sigma,
        }
    }

    /// Requests the region received.
    pub fn requests(&self) -> u64 {
        self.source.requests(REGION)
    }
}

/// A deadline `budget` from now on tokio's clock (paused in most tests).
pub fn deadline(budget: StdDuration) -> std::time::Instant {
    (tokio::time::Instant::now() + budget).into_std()
}

/// One Collect invocation with `budget`.
pub async fn invoke<S, E, C, A, O>(
    item: WorkItem,
    deps: &CollectDeps<'_, S, E, C, A, O>,
    budget: StdDuration,
    now: DateTime<Utc>,
) -> WorkItem
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
    O: ObjectStore,
{
    collect(
        item,
        deps,
        &iamtrail_aws::metrics::Metrics::discard(),
        deadline(budget),
        now,
    )
    .await
    .unwrap()
}

/// Plays the workflow's loop: invokes Collect while it answers `more: true`. Returns the last
/// answer.
pub async fn run_to_end<S, E, C, A, O>(
    mut item: WorkItem,
    deps: &CollectDeps<'_, S, E, C, A, O>,
    budget: StdDuration,
    now: DateTime<Utc>,
) -> WorkItem
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
    O: ObjectStore,
{
    loop {
        assert!(item.invocations < 500, "the loop must converge");
        item = invoke(item, deps, budget, now).await;
        if !item.more {
            return item;
        }
    }
}

/// An event source that takes `delay` (on tokio's clock) to answer.
pub struct Slow<'a, S> {
    pub inner: &'a S,
    pub delay: StdDuration,
}

impl<S: EventSource> EventSource for Slow<'_, S> {
    async fn lookup(&self, request: &LookupRequest) -> Result<LookupPage, LookupError> {
        tokio::time::sleep(self.delay).await;
        self.inner.lookup(request).await
    }
}
