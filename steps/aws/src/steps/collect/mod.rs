//! The Collect step: read one region's sources from CloudTrail into the events table. The
//! algorithm, the region lease, the loop cap and the handling of poison records are described
//! for newcomers in docs/collection.md.
//!
//! - this module: the entry point [`collect`], the time budget, the region lease (one
//!   collector reads a region at a time) and the cap on Collect invocations;
//! - `slicing`: a source's window, worked through oldest slice first, and the checkpoint;
//! - `lookup`: one rate-limited LookupEvents request, with its retries;
//! - `store`: normalising, filtering and writing a slice's events, full records of poison
//!   records to S3, dirty dates and alert queueing;
//! - `crate::steps::detect`: the rules on the stored events, the outbox, and failed console
//!   logins counted into bursts (shared with Realtime).
//!
//! Every retry loop pauses with [`crate::backoff::backoff`].

mod lookup;
mod slicing;
mod store;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use iamtrail_core::contract::{Counts, Mode, SourceProgress, WorkItem};
use iamtrail_core::metrics::collect_documents;
use iamtrail_core::sigma::SigmaRules;
use iamtrail_core::source::checkpoint_key;
use iamtrail_core::{Settings, Source};
use tokio::time::Instant;

use crate::limiter::RateLimiter;
use crate::metrics::Metrics;
use crate::ports::{
    AlertStore, ControlStore, EventSource, EventStore, LeaseOutcome, ObjectStore, StoreError,
};
use crate::steps::StepClock;
use crate::StepError;

/// The adapters Collect works with.
pub struct CollectDeps<'a, S, E, C, A, O> {
    pub settings: &'a Settings,
    pub source: &'a S,
    pub events: &'a E,
    pub control: &'a C,
    /// The alert outbox.
    pub alerts: &'a A,
    /// The analytics bucket: full records of events the events table cannot hold whole go
    /// under `raw-events/`.
    pub objects: &'a O,
    /// The user's Sigma rules, evaluated beside the built-in rules (empty: none; docs/sigma.md).
    pub sigma: &'a SigmaRules,
}

/// Runs Collect for one work item until every source is done, the time budget nears its end,
/// or the region's lease cannot be had. `deadline` is when the invocation must have answered
/// (on tokio's clock, which is the system clock outside tests). Writes one metrics line per
/// source with this invocation's counts (docs/metrics.md).
pub async fn collect<S, E, C, A, O>(
    mut item: WorkItem,
    deps: &CollectDeps<'_, S, E, C, A, O>,
    metrics: &Metrics,
    deadline: std::time::Instant,
    now: DateTime<Utc>,
) -> Result<WorkItem, StepError>
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
    O: ObjectStore,
{
    if item.region.is_empty() || item.sources.is_empty() {
        return Err(StepError::invalid_input(
            "a Collect item needs a region and at least one source",
        ));
    }
    item.invocations += 1;
    item.more = false;
    for source in &item.sources {
        item.progress.entry(*source).or_default();
    }
    // The item carries its counts over the loop: the metrics are this invocation's share.
    let counts_before: BTreeMap<Source, Counts> =
        item.progress.iter().map(|(s, p)| (*s, p.counts)).collect();
    if item.progress.values().any(|p| !p.done) {
        let run = Invocation::new(&item, deps, deadline, now);
        match run.lease.take(deps.control, &run.budget).await {
            Ok(true) => {
                run.collect_sources(&mut item, now).await;
                run.lease.release(deps.control).await;
            }
            Ok(false) => {
                item.more = true;
                item.lease_waits += 1;
            }
            Err(e) => {
                let message = format!("region lease: {e}");
                for source in item.sources.clone() {
                    run.fail_source(source, &mut item, &message).await;
                }
            }
        }
    }
    apply_cap(&mut item, deps.settings.max_collect_invocations);
    metrics.emit(&collect_documents(
        &item.region,
        &counts_before,
        &item.progress,
        now,
        deps.settings.detailed_metrics,
    ));
    Ok(item)
}

/// Ends the workflow's Collect loop for an item that used its `MAX_COLLECT_INVOCATIONS`
/// invocations with work left: `more: false`, `capped: true`, and a warning on each
/// unfinished source. Its checkpoints hold everything stored; the next run resumes there.
fn apply_cap(item: &mut WorkItem, max_invocations: u32) {
    if !item.more || item.invocations < max_invocations {
        return;
    }
    item.more = false;
    item.capped = true;
    let warning = format!(
        "stopped after {} Collect invocations (MAX_COLLECT_INVOCATIONS); the next run resumes from the checkpoint",
        item.invocations
    );
    for (source, progress) in item.progress.iter_mut().filter(|(_, p)| !p.done) {
        tracing::warn!(region = %item.region, %source, invocations = item.invocations, "Collect loop capped");
        progress.warnings.push(warning.clone());
    }
}

/// Time kept in hand before the deadline: a request plus a page's writes (less for short
/// budgets: a fifth of the budget at most).
const SAFETY_MARGIN: StdDuration = StdDuration::from_secs(3);

/// When an invocation must stop starting work (`stop_at`), and when it must have answered
/// (`deadline`). On tokio's clock, so that tests can pause it. It is also the invocation's
/// clock: the wall time it was given at its start plus the time elapsed since, so that
/// leases, checkpoint records and alert times follow one clock (the test's, when paused).
#[derive(Debug, Clone, Copy)]
struct Budget {
    stop_at: Instant,
    deadline: Instant,
    clock: StepClock,
}

impl Budget {
    fn new(deadline: std::time::Instant, now: DateTime<Utc>) -> Budget {
        let deadline = Instant::from_std(deadline);
        let total = deadline.saturating_duration_since(Instant::now());
        Budget {
            stop_at: deadline - SAFETY_MARGIN.min(total / 5),
            deadline,
            clock: StepClock::start(now),
        }
    }

    /// The current wall time on the invocation's clock.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Whether waiting `extra` more would cross the stop time.
    fn exhausted_after(&self, extra: StdDuration) -> bool {
        Instant::now() + extra >= self.stop_at
    }

    /// Time left until the deadline: what a write already under way may still use.
    fn remaining(&self) -> StdDuration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Why a source stopped before the end of its window.
#[derive(Debug)]
enum Stop {
    /// The time budget ran out: resume on the next invocation.
    OutOfTime,
    /// Another collector took the region's lease over (ours had expired): stop reading at
    /// once and resume on the next invocation.
    LeaseLost,
    /// A failure that retries did not cure.
    Failed(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Failed(e.to_string())
    }
}

impl From<crate::steps::detect::DetectError> for Stop {
    fn from(e: crate::steps::detect::DetectError) -> Stop {
        Stop::Failed(e.0)
    }
}

/// How often a collector waiting for a region's lease asks again.
const LEASE_POLL: StdDuration = StdDuration::from_secs(2);

/// The region lease `region#<region>`, held by the item's run id while this invocation reads.
struct RegionLease {
    name: String,
    holder: String,
    duration: chrono::Duration,
    /// Until when we hold it, once taken.
    expires: Mutex<Option<DateTime<Utc>>>,
}

impl RegionLease {
    fn expires(&self) -> Option<DateTime<Utc>> {
        *self.expires.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_expires(&self, expires: Option<DateTime<Utc>>) {
        *self.expires.lock().unwrap_or_else(|e| e.into_inner()) = expires;
    }

    /// Takes the lease, waiting (polling every 2 s) while another collector holds it. `false`
    /// when the budget ran out first.
    async fn take<C: ControlStore>(
        &self,
        control: &C,
        budget: &Budget,
    ) -> Result<bool, StoreError> {
        let mut logged = false;
        loop {
            match control
                .acquire_lease(&self.name, &self.holder, budget.now(), self.duration)
                .await?
            {
                LeaseOutcome::Acquired { expires } => {
                    self.set_expires(Some(expires));
                    return Ok(true);
                }
                LeaseOutcome::Held { holder, expires } => {
                    if !logged {
                        tracing::info!(lease = %self.name, %holder, %expires, "another collector is reading the region; waiting for its lease");
                        logged = true;
                    }
                    if budget.exhausted_after(LEASE_POLL) {
                        tracing::warn!(lease = %self.name, %holder, "the region's lease stayed held for the whole budget; trying again next invocation");
                        return Ok(false);
                    }
                    tokio::time::sleep(LEASE_POLL).await;
                }
            }
        }
    }

    /// Renews the lease (after every stored slice). Someone else holding it means ours expired
    /// and was taken over: stop reading.
    async fn renew<C: ControlStore>(&self, control: &C, clock: &Budget) -> Result<(), Stop> {
        match control
            .acquire_lease(&self.name, &self.holder, clock.now(), self.duration)
            .await
            .map_err(|e| Stop::Failed(format!("renewing the region lease: {e}")))?
        {
            LeaseOutcome::Acquired { expires } => {
                self.set_expires(Some(expires));
                Ok(())
            }
            LeaseOutcome::Held { holder, .. } => {
                tracing::warn!(lease = %self.name, %holder, "the region's lease was taken over; stopping");
                self.set_expires(None);
                Err(Stop::LeaseLost)
            }
        }
    }

    /// Before a request: renews the lease when less than a quarter of it is left, so that
    /// no request is ever made without it (a long slice may outlast a short lease).
    async fn ensure<C: ControlStore>(&self, control: &C, clock: &Budget) -> Result<(), Stop> {
        match self.expires() {
            Some(expires) if clock.now() + self.duration / 4 < expires => Ok(()),
            Some(_) => self.renew(control, clock).await,
            None => Err(Stop::LeaseLost),
        }
    }

    /// Gives the lease back, so that a waiting collector can read between our invocations.
    async fn release<C: ControlStore>(&self, control: &C) {
        if self.expires().is_none() {
            return;
        }
        if let Err(e) = control.release_lease(&self.name, &self.holder).await {
            tracing::warn!(lease = %self.name, error = %e, "could not release the region's lease; it expires by itself");
        }
        self.set_expires(None);
    }
}

/// One Collect invocation of one work item: the ports, the item's identity, the budget, the
/// region's rate limiter and its lease.
struct Invocation<'a, S, E, C, A, O> {
    deps: &'a CollectDeps<'a, S, E, C, A, O>,
    region: String,
    /// The item's sources (the `root` source leaves to them the records they read).
    sources: Vec<Source>,
    mode: Mode,
    backfill: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    budget: Budget,
    limiter: RateLimiter,
    lease: RegionLease,
}

impl<'a, S, E, C, A, O> Invocation<'a, S, E, C, A, O>
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
    O: ObjectStore,
{
    fn new(
        item: &WorkItem,
        deps: &'a CollectDeps<'a, S, E, C, A, O>,
        deadline: std::time::Instant,
        now: DateTime<Utc>,
    ) -> Self {
        Invocation {
            deps,
            region: item.region.clone(),
            sources: item.sources.clone(),
            mode: item.mode,
            backfill: (item.start, item.end),
            budget: Budget::new(deadline, now),
            limiter: RateLimiter::per_second(deps.settings.lookup_rate_per_second),
            lease: RegionLease {
                name: format!("region#{}", item.region),
                holder: item.run_id.clone(),
                duration: deps.settings.region_lease,
                expires: Mutex::new(None),
            },
        }
    }

    /// Reads the item's unfinished sources in turn, under the lease.
    async fn collect_sources(&self, item: &mut WorkItem, now: DateTime<Utc>) {
        let mut lease_lost = false;
        for source in item.sources.clone() {
            let mut progress = item.progress.remove(&source).unwrap_or_default();
            if !progress.done {
                if lease_lost || self.budget.exhausted_after(StdDuration::ZERO) {
                    item.more = true;
                } else {
                    let slices_before = progress.counts.slices;
                    match self.collect_source(source, &mut progress, now).await {
                        Ok(()) => progress.done = true,
                        Err(Stop::OutOfTime) => {
                            item.more = true;
                            if progress.counts.slices == slices_before {
                                progress.stalls += 1;
                                tracing::warn!(region = %self.region, %source, stalls = progress.stalls,
                                    "no slice finished in this invocation; using smaller slices");
                            }
                        }
                        Err(Stop::LeaseLost) => {
                            item.more = true;
                            lease_lost = true;
                        }
                        Err(Stop::Failed(message)) => {
                            self.record_failure(source, &mut progress, message).await
                        }
                    }
                }
            }
            item.progress.insert(source, progress);
        }
    }

    /// Fails one source of the item (when it is not done yet).
    async fn fail_source(&self, source: Source, item: &mut WorkItem, message: &str) {
        let mut progress = item.progress.remove(&source).unwrap_or_default();
        if !progress.done {
            self.record_failure(source, &mut progress, message.to_string())
                .await;
        }
        item.progress.insert(source, progress);
    }

    /// A source failed: reported in its progress and in the control table; the others go on.
    async fn record_failure(&self, source: Source, progress: &mut SourceProgress, message: String) {
        tracing::error!(region = %self.region, %source, error = %message, "source failed");
        let key = checkpoint_key(&self.region, source);
        if let Err(e) = self
            .deps
            .control
            .record_error(&key, &message, self.budget.now())
            .await
        {
            tracing::error!(error = %e, "could not record the failure in the control table");
        }
        progress.error = Some(message);
        progress.done = true;
    }
}
