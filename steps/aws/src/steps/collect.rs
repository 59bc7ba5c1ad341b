//! The Collect step: read one region's sources from CloudTrail into the events table.
//!
//! For each source, the window is fixed on the item's first invocation (DESIGN §5), then worked
//! through oldest slice first: a slice whose first page is not its last is split in two until
//! it is no longer than `MIN_SLICE_SECONDS`; a slice is paged to the end and stored, and only
//! then do the checkpoint and the item's cursor move to its end. Before the time budget runs
//! out the step stops between requests and returns the item with `more: true`; the workflow
//! invokes it again and it resumes after the last stored slice.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use iamtrail_core::contract::{Counts, Mode, SourceProgress, WorkItem};
use iamtrail_core::filter::FilterReason;
use iamtrail_core::normalize::{normalize_unparsed, EventSummary};
use iamtrail_core::outbox::{alert_record, is_alertable};
use iamtrail_core::record::{parse_time, CloudTrailRecord};
use iamtrail_core::rules::evaluate;
use iamtrail_core::source::checkpoint_key;
use iamtrail_core::window::{advance_checkpoint, backfill_window, incremental_window, Window};
use iamtrail_core::{normalize, NormalizedEvent, Settings, Source};

use crate::limiter::RateLimiter;
use crate::ports::{
    AlertStore, ControlStore, EventSource, EventStore, LookupError, LookupEvent, LookupPage,
    LookupRequest,
};
use crate::StepError;

/// The adapters Collect works with.
pub struct CollectDeps<'a, S, E, C, A> {
    pub settings: &'a Settings,
    pub source: &'a S,
    pub events: &'a E,
    pub control: &'a C,
    /// The alert outbox.
    pub alerts: &'a A,
}

/// Time kept in hand before the deadline: a request plus a page's writes (less for short
/// budgets: a fifth of the budget at most).
const SAFETY_MARGIN: StdDuration = StdDuration::from_secs(3);

/// When an invocation must stop: its deadline less a safety margin.
#[derive(Debug, Clone, Copy)]
struct Budget {
    stop_at: Instant,
}

impl Budget {
    fn new(deadline: Instant) -> Budget {
        let total = deadline.saturating_duration_since(Instant::now());
        Budget {
            stop_at: deadline - SAFETY_MARGIN.min(total / 5),
        }
    }

    /// Whether waiting `extra` more would cross the stop time.
    fn exhausted_after(&self, extra: StdDuration) -> bool {
        Instant::now() + extra >= self.stop_at
    }
}
/// Transient failures (network, 5xx) tolerated per request before the source is failed.
const MAX_TRANSIENT_RETRIES: u32 = 5;
/// Longest pause after a throttled request.
const MAX_THROTTLE_BACKOFF: StdDuration = StdDuration::from_secs(20);

/// Why a source stopped before the end of its window.
enum Stop {
    /// The time budget ran out: resume on the next invocation.
    OutOfTime,
    /// A failure that retries did not cure.
    Failed(String),
}

/// Runs Collect for one work item until every source is done or the deadline nears.
pub async fn collect<S, E, C, A>(
    mut item: WorkItem,
    deps: &CollectDeps<'_, S, E, C, A>,
    deadline: Instant,
    now: DateTime<Utc>,
) -> Result<WorkItem, StepError>
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
{
    if item.region.is_empty() || item.sources.is_empty() {
        return Err(StepError::invalid_input(
            "a Collect item needs a region and at least one source",
        ));
    }
    item.invocations += 1;
    item.more = false;
    let limiter = RateLimiter::per_second(deps.settings.lookup_rate_per_second);
    let budget = Budget::new(deadline);
    let sources = item.sources.clone();
    for source in sources {
        let mut progress = item.progress.remove(&source).unwrap_or_default();
        if !progress.done {
            if budget.exhausted_after(StdDuration::ZERO) {
                item.more = true;
            } else {
                let slices_before = progress.counts.slices;
                let outcome =
                    collect_source(&item, source, &mut progress, deps, &limiter, budget, now).await;
                match outcome {
                    Ok(()) => progress.done = true,
                    Err(Stop::OutOfTime) => {
                        item.more = true;
                        if progress.counts.slices == slices_before {
                            progress.stalls += 1;
                            tracing::warn!(region = %item.region, %source, stalls = progress.stalls,
                                "no slice finished in this invocation; using smaller slices");
                        }
                    }
                    Err(Stop::Failed(message)) => {
                        tracing::error!(region = %item.region, %source, error = %message, "source failed");
                        let key = checkpoint_key(&item.region, source);
                        if let Err(e) = deps.control.record_error(&key, &message, Utc::now()).await
                        {
                            tracing::error!(error = %e, "could not record the failure in the control table");
                        }
                        progress.error = Some(message);
                        progress.done = true;
                    }
                }
            }
        }
        item.progress.insert(source, progress);
    }
    Ok(item)
}


async fn collect_source<S, E, C, A>(
    item: &WorkItem,
    source: Source,
    progress: &mut SourceProgress,
    deps: &CollectDeps<'_, S, E, C, A>,
    limiter: &RateLimiter,
    budget: Budget,
    now: DateTime<Utc>,
) -> Result<(), Stop>
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
{
    let key = checkpoint_key(&item.region, source);
    let state = deps
        .control
        .source_state(&key)
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?;
    if state.processing_status.as_deref() == Some("paused") {
        progress.skipped = Some("paused in the control table".into());
        return Ok(());
    }
    let mut checkpoint = state.checkpoint;
    progress.checkpoint = checkpoint;
    if progress.window.is_none() {
        let window = match item.mode {
            Mode::Incremental => incremental_window(checkpoint, now, deps.settings),
            Mode::Export => {
                return Err(Stop::Failed(
                    "an export-only run has no Collect items".into(),
                ))
            }
            Mode::Backfill => {
                let (Some(start), Some(end)) = (item.start, item.end) else {
                    return Err(Stop::Failed("a backfill item needs start and end".into()));
                };
                backfill_window(start, end, now, deps.settings)
                    .map_err(Stop::Failed)?
                    .0
            }
        };
        progress.window = Some(window);
    }
    let Some(Window { start, end }) = progress.window else {
        return Err(Stop::Failed("no window".into()));
    };
    let resume = match progress.cursor {
        Some(cursor) => cursor + Duration::seconds(1),
        None => start,
    };
    let window = Window::new(resume, end);
    if window.is_empty() {
        return Ok(());
    }

    // After stalled invocations, split further than the configured minimum (down to 1 s).
    let min_slice =
        (deps.settings.min_slice / 2i32.pow(progress.stalls.min(20))).max(Duration::seconds(1));
    // Oldest first: the stack always holds newer work below the task on top.
    let mut stack = vec![Task::Query(window)];
    let mut held = 0usize;
    // Held slices are stored only when everything older is: after a stall, hold nothing so
    // that every finished slice is stored at once.
    let hold_cap = if progress.stalls == 0 {
        MAX_HELD_EVENTS
    } else {
        0
    };
    while let Some(task) = stack.pop() {
        let mut counts = Counts::default();
        let (slice, pages) = match task {
            Task::Ready(slice, page) => {
                held -= page.events.len();
                (slice, vec![page])
            }
            Task::Query(slice) => {
                let request = LookupRequest {
                    region: item.region.clone(),
                    event_source: source.event_source().to_string(),
                    start: slice.start,
                    end: slice.end,
                    next_token: None,
                };
                let first =
                    lookup(deps.source, &request, limiter, &mut progress.counts, budget).await?;
                if first.next_token.is_some() {
                    // Every event strictly newer than the page's oldest second is in the page:
                    // hold them as a ready slice and query only the older rest (bounded).
                    if let Some((older, newer, page)) = hold_split(&slice, &first) {
                        if held + page.events.len() <= hold_cap {
                            held += page.events.len();
                            stack.push(Task::Ready(newer, page));
                            stack.push(Task::Query(older));
                            continue;
                        }
                    }
                    if slice.duration() > min_slice {
                        if let Some((older, newer)) = slice.split() {
                            stack.push(Task::Query(newer));
                            stack.push(Task::Query(older));
                            continue;
                        }
                    }
                }
                // A leaf slice: read every page.
                let mut pages = vec![first];
                while let Some(token) = pages.last_mut().and_then(|p| p.next_token.take()) {
                    let next = LookupRequest {
                        next_token: Some(token),
                        ..request.clone()
                    };
                    // Out of time mid-slice: nothing of this slice counts yet; it is read
                    // again next time (stored pages are rewritten idempotently).
                    let page =
                        lookup(deps.source, &next, limiter, &mut progress.counts, budget).await?;
                    if pages.len() >= PAGES_PER_WRITE {
                        store_pages(&pages, &item.region, source, deps, &mut counts).await?;
                        pages.clear();
                    }
                    pages.push(page);
                }
                (slice, pages)
            }
        };
        // Store the slice, then move the checkpoint and the cursor to its end.
        store_pages(&pages, &item.region, source, deps, &mut counts).await?;
        counts.slices = 1;
        progress.counts.add(&counts);
        let new_checkpoint = advance_checkpoint(item.mode, checkpoint, &slice);
        deps.control
            .record_slice(&key, new_checkpoint, counts.stored, Utc::now())
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        if let Some(cp) = new_checkpoint {
            checkpoint = Some(cp);
            progress.checkpoint = Some(cp);
        }
        progress.cursor = Some(slice.end);
    }
    Ok(())
}

/// Most events held in memory as ready slices while older ones are read (a few MB).
const MAX_HELD_EVENTS: usize = 1000;
/// A long leaf slice is written every this many pages, so its memory stays bounded.
const PAGES_PER_WRITE: usize = 20;

/// Work of the slicing loop.
enum Task {
    /// A range to read from CloudTrail.
    Query(Window),
    /// A range already read (the events of a first page), stored once everything older is.
    Ready(Window, LookupPage),
}

/// Splits a slice at the oldest second of its first page `page` (newest first): the newer part
/// `(oldest, end]` holds exactly the page's events newer than that second; the older part
/// `[start, oldest]` still has to be read (it includes the oldest second, which may continue on
/// the next page). `None` when the page does not narrow the slice.
fn hold_split(slice: &Window, page: &LookupPage) -> Option<(Window, Window, LookupPage)> {
    let oldest = page.events.iter().filter_map(|e| e.event_time).min()?;
    if oldest <= slice.start
        || oldest >= slice.end
        || page.events.iter().any(|e| e.event_time.is_none())
    {
        return None;
    }
    let newer = Window::new(oldest + Duration::seconds(1), slice.end);
    let older = Window::new(slice.start, oldest);
    let events = page
        .events
        .iter()
        .filter(|e| e.event_time.is_some_and(|t| t > oldest))
        .cloned()
        .collect();
    Some((
        older,
        newer,
        LookupPage {
            events,
            next_token: None,
        },
    ))
}

/// One LookupEvents request under the region's rate limit, retrying throttles (with growing
/// pauses, for as long as the budget allows) and transient failures (a few times).
async fn lookup<S: EventSource>(
    source: &S,
    request: &LookupRequest,
    limiter: &RateLimiter,
    counts: &mut Counts,
    budget: Budget,
) -> Result<LookupPage, Stop> {
    let mut throttles = 0u32;
    let mut transient = 0u32;
    loop {
        if budget.exhausted_after(StdDuration::ZERO) {
            return Err(Stop::OutOfTime);
        }
        limiter.acquire().await;
        counts.requests += 1;
        match source.lookup(request).await {
            Ok(page) => return Ok(page),
            Err(LookupError::Throttled(message)) => {
                counts.throttled += 1;
                throttles += 1;
                let pause = throttle_backoff(throttles);
                tracing::warn!(region = %request.region, pause_ms = pause.as_millis() as u64, %message, "LookupEvents throttled");
                if budget.exhausted_after(pause) {
                    return Err(Stop::OutOfTime);
                }
                tokio::time::sleep(pause).await;
            }
            Err(LookupError::Transient(message)) => {
                transient += 1;
                if transient > MAX_TRANSIENT_RETRIES {
                    return Err(Stop::Failed(format!(
                        "LookupEvents kept failing: {message}"
                    )));
                }
                tracing::warn!(region = %request.region, attempt = transient, %message, "LookupEvents failed; retrying");
                tokio::time::sleep(StdDuration::from_millis(100 << transient)).await;
            }
            Err(LookupError::Failed(message)) => {
                return Err(Stop::Failed(format!("LookupEvents: {message}")))
            }
        }
    }
}

/// 1 s, 2 s, 4 s, ... capped at 20 s, with up to 25 % jitter so parallel callers spread out.
fn throttle_backoff(attempt: u32) -> StdDuration {
    let base =
        StdDuration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(MAX_THROTTLE_BACKOFF);
    let jitter = StdDuration::from_millis(
        u64::from(Utc::now().timestamp_subsec_millis()) % (base.as_millis() as u64 / 4 + 1),
    );
    base + jitter
}

/// Normalises, filters and stores pages.
async fn store_pages<S, E, C, A>(
    pages: &[LookupPage],
    region: &str,
    source: Source,
    deps: &CollectDeps<'_, S, E, C, A>,
    counts: &mut Counts,
) -> Result<(), Stop>
where
    E: EventStore,
    A: AlertStore,
{
    let mut items: Vec<NormalizedEvent> = Vec::new();
    for event in pages.iter().flat_map(|p| &p.events) {
        counts.fetched += 1;
        match to_item(event, region, source, deps.settings) {
            Ok(Some(item)) => {
                if item.is_truncated() {
                    counts.truncated += 1;
                }
                if item.parse_error.is_some() {
                    counts.malformed += 1;
                }
                items.push(item);
            }
            Ok(None) => counts.malformed += 1,
            Err(FilterReason::AwsService) => counts.filtered_aws_service += 1,
            Err(FilterReason::FilteredRole) => counts.filtered_roles += 1,
        }
    }
    if items.is_empty() {
        return Ok(());
    }
    let outcome = deps
        .events
        .put_events(&items)
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?;
    counts.stored += outcome.written;
    queue_alerts(&items, deps.alerts, counts).await
}

/// One LookupEvents result as an item: `Err` when filtered, `Ok(None)` when there is nothing
/// usable at all (no event id or time, logged), an item flagged with `parse_error` when only
/// the summary fields could be read.
fn to_item(
    event: &LookupEvent,
    region: &str,
    source: Source,
    settings: &Settings,
) -> Result<Option<NormalizedEvent>, FilterReason> {
    let parsed = match event.cloudtrail_event.as_deref() {
        Some(text) => CloudTrailRecord::from_lookup_event_json(text).map_err(|e| e.to_string()),
        None => Err("LookupEvents returned no CloudTrailEvent".to_string()),
    };
    match parsed {
        Ok(record) => {
            if let Some(reason) = settings.filter.classify(&record) {
                return Err(reason);
            }
            Ok(Some(normalize(&record, settings.normalize)))
        }
        Err(error) => {
            let (Some(event_id), Some(event_time)) = (event.event_id.clone(), event.event_time)
            else {
                tracing::error!(%region, %source, %error, "unusable LookupEvents result without event id or time");
                return Ok(None);
            };
            tracing::warn!(%region, %source, %event_id, %error, "keeping an unreadable record from its summary fields");
            let summary = EventSummary {
                event_id,
                event_time,
                event_name: event.event_name.clone().unwrap_or_else(|| "unknown".into()),
                event_source: event
                    .event_source
                    .clone()
                    .unwrap_or_else(|| source.event_source().into()),
                username: event.username.clone(),
            };
            Ok(Some(normalize_unparsed(
                &summary,
                region,
                event.cloudtrail_event.as_deref(),
                &error,
                settings.normalize,
            )))
        }
    }
}

/// Evaluates the rules on stored events and queues each match in the outbox (a conditional put:
/// an (event, rule) already queued is left alone). Runs after the events are stored. A write
/// that still fails after retries fails the slice like a failed event write: the checkpoint
/// stays, so the next run reads the events again and queues the alert then.
async fn queue_alerts<A: AlertStore>(
    items: &[NormalizedEvent],
    alerts: &A,
    counts: &mut Counts,
) -> Result<(), Stop> {
    let now = Utc::now();
    for item in items {
        let Some(time) = parse_time(&item.event_time) else {
            continue;
        };
        if !is_alertable(time, now) {
            continue;
        }
        for m in evaluate(item) {
            let record = alert_record(&m, item, now);
            let mut attempt = 0;
            loop {
                match alerts.enqueue(&record).await {
                    Ok(true) => counts.alerts_queued += 1,
                    Ok(false) => {}
                    Err(e) if attempt < 3 => {
                        attempt += 1;
                        tracing::warn!(event_id = %item.event_id, rule = m.rule_id, error = %e, "queueing an alert failed; retrying");
                        tokio::time::sleep(StdDuration::from_millis(200 << attempt)).await;
                        continue;
                    }
                    Err(e) => {
                        return Err(Stop::Failed(format!(
                            "queueing alert {} for {}: {e}",
                            m.rule_id, item.event_id
                        )))
                    }
                }
                break;
            }
        }
    }
    Ok(())
}
