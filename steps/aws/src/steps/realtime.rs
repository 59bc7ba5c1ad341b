//! The Realtime step (docs/realtime.md): one CloudTrail event from EventBridge, within a
//! minute of the call, through what Collect does with it and on to the mailbox.
//!
//! 1. The event's `detail` is read as a CloudTrail record, given the source the scheduled run
//!    reads it with (`iamtrail_core::realtime::source_of`; an event no source collects is left
//!    alone), filtered by the same noise filters, and normalised by the same code.
//! 2. The item is written to the events table (the same idempotent batch write) and its date
//!    marked dirty. An item that had to be cut to fit, or that DynamoDB rejects, is left to
//!    the scheduled run, which keeps its full record in S3 first.
//! 3. The rules, built-in and Sigma, are evaluated with the history they need; matches go to
//!    the same outbox rows (event, rule), and failed console logins are counted into bursts.
//! 4. Each match is delivered at once through the same claim → publish → mark path as
//!    EvaluateAlerts, so an alert both paths see is published once. A root session's calls
//!    are the exception: its first call goes out at once (the session's claim in the control
//!    table), and the rest wait for the scheduled run's one email listing them.
//!
//! A failed publish leaves the alert pending for the scheduled run; it does not fail the
//! invocation. A write that fails after its retries does (`AwsError`): Lambda retries the
//! event, then sends it to the dead-letter queue, and the scheduled run reads the event anyway.
//! An event that is not a CloudTrail record fails with `InvalidInput`, so it lands in the
//! dead-letter queue where an operator sees it.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use iamtrail_core::contract::Counts;
use iamtrail_core::lookup::{record_outcome, Outcome};
use iamtrail_core::outbox::AlertRecord;
use iamtrail_core::realtime::{source_of, RealtimeEvent};
use iamtrail_core::record::parse_time;
use iamtrail_core::root_sessions::SESSION_GAP_MINUTES;
use iamtrail_core::sigma::SigmaRules;
use iamtrail_core::{CloudTrailRecord, NormalizedEvent, Settings, Source};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backoff::retry_store;
use crate::ports::{AlertStore, ControlStore, EventStore, Notifier};
use crate::steps::deliver::deliver;
use crate::steps::detect::{DetectError, Detector};
use crate::steps::evaluate_alerts::CLAIM_LEASE_MINUTES;
use crate::steps::StepClock;
use crate::StepError;

/// Attempts at a write before the invocation fails.
const WRITE_ATTEMPTS: u32 = 4;

/// The adapters Realtime works with.
pub struct RealtimeDeps<'a, E, C, A, N> {
    pub settings: &'a Settings,
    pub events: &'a E,
    pub control: &'a C,
    /// The alert outbox.
    pub alerts: &'a A,
    /// The alerts topic; `None` (or `ALERTS_ENABLED=false`) leaves the alerts pending.
    pub notifier: Option<&'a N>,
    /// The user's Sigma rules (docs/sigma.md).
    pub sigma: &'a SigmaRules,
}

/// What became of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Stored, evaluated, its alerts delivered.
    Stored,
    /// Evaluated and its alerts delivered, the item left to the scheduled run (cut to fit, or
    /// rejected by DynamoDB).
    LeftToSchedule,
    /// Noise, by the configured filters.
    Filtered,
    /// No source the tracker reads collects it (a switched-off source, a region it is not
    /// read in, another service's call by someone other than root).
    NotCollected,
}

/// Realtime's answer (also its log line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealtimeOutput {
    /// The record's `eventID`.
    pub event_id: String,
    pub event_name: String,
    /// The source the scheduled run reads it with.
    pub source: Option<Source>,
    pub disposition: Disposition,
    /// The event's matches: queued in the outbox now (the rest were queued before).
    pub alerts_matched: u64,
    pub alerts_queued: u64,
    /// Alerts published by this invocation.
    pub sent: u64,
    /// Alerts another delivery had claimed or sent first.
    pub skipped: u64,
    /// Alerts whose publish failed (left pending, or failed for good).
    pub failed: u64,
    /// Later calls of a root session, left for the session's email.
    pub held_for_session: u64,
    /// Publish errors.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// Runs one EventBridge event through the pipeline (see the module docs).
pub async fn realtime<E, C, A, N>(
    payload: Value,
    deps: &RealtimeDeps<'_, E, C, A, N>,
    now: DateTime<Utc>,
) -> Result<RealtimeOutput, StepError>
where
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
    N: Notifier,
{
    let clock = StepClock::start(now);
    let event: RealtimeEvent = serde_json::from_value(payload).map_err(|e| {
        StepError::invalid_input(format!(
            "Realtime expects an EventBridge event with detail-type and detail: {e}"
        ))
    })?;
    if !event.is_cloudtrail() {
        return Err(StepError::invalid_input(format!(
            "Realtime reads CloudTrail events (detail-type \"AWS API Call via CloudTrail\" or \"AWS Console Signin via CloudTrail\"), not {:?}; check the EventBridge rule's pattern",
            event.detail_type
        )));
    }
    let record = CloudTrailRecord::from_value(event.detail).map_err(|e| {
        StepError::invalid_input(format!(
            "the event's detail is not a usable CloudTrail record ({e}); the scheduled run reads it from CloudTrail"
        ))
    })?;
    let mut out = RealtimeOutput {
        event_id: record.event_id.clone(),
        event_name: record.event_name.clone(),
        source: source_of(&record, deps.settings),
        disposition: Disposition::NotCollected,
        alerts_matched: 0,
        alerts_queued: 0,
        sent: 0,
        skipped: 0,
        failed: 0,
        held_for_session: 0,
        errors: Vec::new(),
    };
    if out.source.is_none() {
        return Ok(out);
    }
    let item = match record_outcome(&record, deps.settings) {
        Outcome::Stored(item) => item,
        Outcome::Filtered(reason) => {
            tracing::debug!(event_id = %out.event_id, ?reason, "filtered out");
            out.disposition = Disposition::Filtered;
            return Ok(out);
        }
        Outcome::Unusable(problem) => {
            return Err(StepError::invalid_input(format!(
                "event {} cannot be stored: {problem}",
                out.event_id
            )))
        }
    };
    out.disposition = store(&item, deps).await?;
    let region = item.aws_region.clone();
    let detector = Detector {
        settings: deps.settings,
        events: deps.events,
        control: deps.control,
        alerts: deps.alerts,
        sigma: deps.sigma,
        clock,
        region: &region,
    };
    let mut counts = Counts::default();
    let failed = |e: DetectError| StepError::aws(e.0);
    let mut records = detector
        .queue_alerts(&[&item], &mut counts)
        .await
        .map_err(failed)?;
    records.extend(
        detector
            .count_login_failures(&[&item], &mut counts)
            .await
            .map_err(failed)?,
    );
    out.alerts_matched = records.len() as u64;
    out.alerts_queued = counts.alerts_queued;
    match deps.notifier.filter(|_| deps.settings.alerts_enabled) {
        Some(notifier) => deliver_now(&records, deps, notifier, &clock, &mut out).await?,
        None => tracing::info!(
            "alert delivery is off (ALERTS_ENABLED=false or no ALERTS_TOPIC_ARN); alerts stay pending"
        ),
    }
    tracing::info!(event_id = %out.event_id, event_name = %out.event_name, disposition = ?out.disposition,
        matched = out.alerts_matched, sent = out.sent, skipped = out.skipped, failed = out.failed,
        held = out.held_for_session, "realtime event done");
    Ok(out)
}

/// Writes the item (when whole) and marks its date dirty.
async fn store<E, C, A, N>(
    item: &NormalizedEvent,
    deps: &RealtimeDeps<'_, E, C, A, N>,
) -> Result<Disposition, StepError>
where
    E: EventStore,
    C: ControlStore,
{
    if item.is_truncated() {
        tracing::info!(event_id = %item.event_id, "the event had to be cut to fit; the scheduled run stores it with its full record");
        return Ok(Disposition::LeftToSchedule);
    }
    let what = format!("storing event {}", item.event_id);
    let outcome = retry_store(&what, WRITE_ATTEMPTS, || {
        deps.events.put_events(std::slice::from_ref(item))
    })
    .await
    .map_err(|e| StepError::aws(format!("{what}: {e}")))?;
    if let Some((_, reason)) = outcome.rejected.first() {
        tracing::warn!(event_id = %item.event_id, %reason, "DynamoDB rejected the event; the scheduled run keeps its full record in S3 and a minimal item");
        return Ok(Disposition::LeftToSchedule);
    }
    let date = NaiveDate::parse_from_str(&item.event_date, "%Y-%m-%d")
        .map_err(|e| StepError::invalid_input(format!("event_date {}: {e}", item.event_date)))?;
    retry_store("marking the event's date dirty", WRITE_ATTEMPTS, || {
        deps.control.mark_dirty(std::slice::from_ref(&date))
    })
    .await
    .map_err(|e| StepError::aws(format!("marking {date} dirty for the export: {e}")))?;
    Ok(Disposition::Stored)
}

/// Delivers the event's alerts one by one (a root session's later calls wait for its email).
async fn deliver_now<E, C, A, N>(
    records: &[AlertRecord],
    deps: &RealtimeDeps<'_, E, C, A, N>,
    notifier: &N,
    clock: &StepClock,
    out: &mut RealtimeOutput,
) -> Result<(), StepError>
where
    C: ControlStore,
    A: AlertStore,
    N: Notifier,
{
    let stale_before = clock.now() - Duration::minutes(CLAIM_LEASE_MINUTES);
    for (i, record) in records.iter().enumerate() {
        if !opens_its_delivery(record, deps.control, clock).await? {
            out.held_for_session += 1;
            continue;
        }
        let done = deliver(
            records,
            &[i],
            deps.alerts,
            notifier,
            deps.settings.alert_max_attempts,
            clock,
            stale_before,
        )
        .await?;
        out.skipped += done.skipped.len() as u64;
        out.sent += done.sent.len() as u64;
        out.failed += done.released.len() as u64;
        if let Some(error) = done.error {
            out.errors
                .push(format!("{}/{}: {error}", record.event_id, record.rule_id));
        }
    }
    Ok(())
}

/// Whether Realtime delivers this alert now: any alert but a root session's call, and a
/// session's first call (docs/alerts.md, "Root sessions"). A session is claimed in the control
/// table (`rootsession#<session>`) by its first call for [`SESSION_GAP_MINUTES`]; the claim is
/// the call's own, so a retry of the same event claims again.
async fn opens_its_delivery<C: ControlStore>(
    record: &AlertRecord,
    control: &C,
    clock: &StepClock,
) -> Result<bool, StepError> {
    let Some(group) = &record.group else {
        return Ok(true);
    };
    let Some(time) = parse_time(&record.event_time) else {
        return Ok(true);
    };
    let key = format!("rootsession#{group}");
    let gap = Duration::minutes(SESSION_GAP_MINUTES);
    // The counter write gives the claim its expiry (a day after the call).
    let what = format!("claiming the root session {group}");
    retry_store(&what, WRITE_ATTEMPTS, || {
        control.add_to_counter(&key, &record.event_id, clock.now() + Duration::days(1))
    })
    .await
    .map_err(|e| StepError::aws(format!("{what}: {e}")))?;
    retry_store(&what, WRITE_ATTEMPTS, || {
        control.claim_burst(&key, time, time + gap, &record.event_id)
    })
    .await
    .map_err(|e| StepError::aws(format!("{what}: {e}")))
}
