//! The EvaluateAlerts step: deliver the outbox's waiting alerts to SNS, exactly once per
//! (event, rule) as far as SNS allows. See docs/alerts.md.
//!
//! Alerts go out highest severity first and newest first within a severity, so a new CRITICAL
//! alert never waits behind old or failing ones. Each is claimed (`pending` → `sending`,
//! conditional), published, then marked `sent` with the message id. A failed publish counts an
//! attempt and puts the alert back to `pending`, or to `failed` once `ALERT_MAX_ATTEMPTS`
//! attempts have failed (kept and counted for the operator); it never fails the step. A claim
//! older than the lease (a delivery that died between publish and mark) is taken over by a
//! later run: that is the one case in which an alert can be delivered twice.
//!
//! The calls of one root session go out as one message listing them (`root_sessions`): each
//! is claimed, the one message published, and each marked sent with its message id.
//!
//! The step stops on its time budget (`ALERTS_TIME_BUDGET_SECONDS`, within the Lambda
//! deadline) or after `ALERTS_PER_RUN` alerts and reports `more: true` when alerts are left;
//! the workflow then invokes it again with this output, and the counts add up.

use chrono::{DateTime, Duration, Utc};
use iamtrail_core::metrics::{alerts_document, AlertsInvocation};
use iamtrail_core::outbox::AlertRecord;
use iamtrail_core::root_sessions;
use iamtrail_core::Settings;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::ports::{AlertStore, Notifier, Released};
use crate::steps::deliver::{deliver, retried};
use crate::steps::{stop_time, StepClock};
use crate::StepError;

/// How long a claim protects an alert being delivered.
pub const CLAIM_LEASE_MINUTES: i64 = 10;

/// Publishes failing in a row after which the invocation stops (SNS is probably down): the
/// rest wait for the next run instead of each spending an attempt.
pub const MAX_FAILURES_IN_A_ROW: usize = 3;

/// Errors kept in the output (the first ones).
const MAX_ERRORS: usize = 5;

/// EvaluateAlerts' payload. The workflow passes its whole state: `run_id`, and, when it loops
/// (`more: true`), the previous invocation's result under `alerts` (where the state machine
/// keeps it), so that the new output holds the totals of every invocation. `done` is accepted
/// in its place. Every other field is ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvaluateAlertsInput {
    #[serde(default)]
    pub run_id: Option<String>,
    /// Invocations of this run so far (also read from `alerts`).
    #[serde(default)]
    pub invocations: u32,
    /// The previous invocation's result, as the workflow stores it (`$.alerts`).
    #[serde(default)]
    pub alerts: Option<AlertDelivery>,
    /// The same, under another name.
    #[serde(default)]
    pub done: Option<AlertDelivery>,
}

impl EvaluateAlertsInput {
    /// The counts carried over from earlier invocations.
    fn carried(&self) -> AlertDelivery {
        self.alerts
            .clone()
            .or_else(|| self.done.clone())
            .unwrap_or_default()
    }
}

/// What EvaluateAlerts did (totals over the run's invocations).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AlertDelivery {
    #[serde(default)]
    pub enabled: bool,
    /// Alerts found waiting (summed over invocations: an alert left over is counted again).
    #[serde(default)]
    pub pending: usize,
    #[serde(default)]
    pub sent: usize,
    /// Publishes that failed (each counted an attempt).
    #[serde(default)]
    pub failed: usize,
    /// Alerts whose last attempt failed: now `failed`, no longer retried by themselves.
    #[serde(default)]
    pub failed_for_good: usize,
    /// Every alert in the `failed` state after this invocation (the operator's to look at);
    /// `null` when it could not be counted.
    #[serde(default)]
    pub failed_total: Option<u64>,
    /// Alerts another delivery claimed first.
    #[serde(default)]
    pub skipped: usize,
    /// True when the time budget or `ALERTS_PER_RUN` stopped delivery with alerts left: the
    /// workflow invokes the step again with this output.
    #[serde(default)]
    pub more: bool,
    /// Invocations of this run so far, this one included.
    #[serde(default)]
    pub invocations: u32,
    /// The first publish errors.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// Delivers waiting alerts until none is left, the time budget runs out or `ALERTS_PER_RUN`
/// were taken. `deadline` is the Lambda deadline, if any. Writes this invocation's sent and
/// failed counts, and what is left pending with the oldest one's age, as metrics (also when
/// delivery is off; docs/metrics.md).
pub async fn evaluate_alerts<A: AlertStore, N: Notifier>(
    input: EvaluateAlertsInput,
    store: &A,
    notifier: Option<&N>,
    metrics: &Metrics,
    settings: &Settings,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
) -> Result<AlertDelivery, StepError> {
    let stop_at = stop_time(settings.alerts_time_budget, deadline);
    // One clock for claims and marks (the test's, when paused).
    let clock = StepClock::start(now);
    let mut delivery = input.carried();
    delivery.invocations = input.invocations.max(delivery.invocations) + 1;
    delivery.more = false;
    let stale_before = now - Duration::minutes(CLAIM_LEASE_MINUTES);
    let Some(notifier) = notifier.filter(|_| settings.alerts_enabled) else {
        tracing::info!("alert delivery is off (ALERTS_ENABLED=false or no ALERTS_TOPIC_ARN); alerts stay pending");
        delivery.enabled = false;
        delivery.failed_total = failed_total(store).await;
        // What waits is still measured, so that the pending-age alarm sees it.
        match store.deliverable(usize::MAX, stale_before).await {
            Ok(waiting) => emit_metrics(metrics, &waiting, &[], Outcomes::default(), clock.now()),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the waiting alerts for the metrics")
            }
        }
        return Ok(delivery);
    };
    delivery.enabled = true;
    // Every waiting alert (the store reads them all to order them): the first `limit` are
    // delivered, and the rest are measured for the pending metrics.
    let limit = settings.alerts_per_run;
    let mut alerts: Vec<AlertRecord> = retried("reading the waiting alerts", || {
        store.deliverable(usize::MAX, stale_before)
    })
    .await?;
    let beyond = alerts.split_off(limit.min(alerts.len()));
    let beyond_limit = !beyond.is_empty();
    delivery.pending += alerts.len();
    // The alerts this invocation settled (sent, failed for good, or claimed by another
    // delivery): every other one read is still waiting.
    let mut settled = vec![false; alerts.len()];
    let before = Outcomes::of(&delivery);
    let mut failures_in_a_row = 0;
    let mut failed_here = 0;
    let mut left = 0;
    // One message per delivery: an alert alone, or the calls of one root session.
    let deliveries = root_sessions::deliveries(&alerts);
    for (d, members) in deliveries.iter().enumerate() {
        if Instant::now() >= stop_at {
            left = deliveries[d..].iter().map(Vec::len).sum();
            tracing::info!(left, "alert delivery stopped on its time budget");
            break;
        }
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW {
            tracing::warn!(
                left = deliveries[d..].iter().map(Vec::len).sum::<usize>(),
                "{failures_in_a_row} publishes failed in a row; the rest wait for the next run"
            );
            break;
        }
        let done = deliver(
            &alerts,
            members,
            store,
            notifier,
            settings.alert_max_attempts,
            &clock,
            stale_before,
        )
        .await?;
        for &i in &done.skipped {
            delivery.skipped += 1;
            settled[i] = true;
        }
        for &i in &done.sent {
            delivery.sent += 1;
            settled[i] = true;
        }
        if let Some(error) = &done.error {
            failures_in_a_row += 1;
            failed_here += 1;
            for &(i, released) in &done.released {
                delivery.failed += 1;
                if released == Released::Failed {
                    delivery.failed_for_good += 1;
                    settled[i] = true;
                }
                if delivery.errors.len() < MAX_ERRORS {
                    let alert = &alerts[i];
                    delivery
                        .errors
                        .push(format!("{}/{}: {error}", alert.event_id, alert.rule_id));
                }
            }
        } else if !done.sent.is_empty() {
            failures_in_a_row = 0;
        }
    }
    // Loop only while delivery works: after a failed publish the rest wait for the next run,
    // so that a failing channel does not spend every alert's attempts within one execution.
    delivery.more = (left > 0 || beyond_limit) && failed_here == 0;
    delivery.failed_total = failed_total(store).await;
    let waiting: Vec<AlertRecord> = alerts
        .into_iter()
        .zip(settled)
        .filter(|(_, settled)| !settled)
        .map(|(alert, _)| alert)
        .collect();
    let here = Outcomes::of(&delivery).since(&before);
    emit_metrics(metrics, &waiting, &beyond, here, clock.now());
    Ok(delivery)
}

/// Counts of one invocation (the delivery's counts are totals over the run).
#[derive(Debug, Clone, Copy, Default)]
struct Outcomes {
    sent: usize,
    failed: usize,
    failed_for_good: usize,
}

impl Outcomes {
    fn of(d: &AlertDelivery) -> Self {
        Outcomes {
            sent: d.sent,
            failed: d.failed,
            failed_for_good: d.failed_for_good,
        }
    }

    fn since(self, before: &Outcomes) -> Self {
        Outcomes {
            sent: self.sent - before.sent,
            failed: self.failed - before.failed,
            failed_for_good: self.failed_for_good - before.failed_for_good,
        }
    }
}

/// Writes the invocation's metrics: what it did, and the alerts still waiting (those it read
/// and did not settle, and those beyond `ALERTS_PER_RUN`) with the oldest one's age.
fn emit_metrics(
    metrics: &Metrics,
    waiting: &[AlertRecord],
    beyond: &[AlertRecord],
    here: Outcomes,
    now: DateTime<Utc>,
) {
    let oldest = waiting
        .iter()
        .chain(beyond)
        .filter_map(|a| match DateTime::parse_from_rfc3339(&a.created_at) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                tracing::warn!(event_id = %a.event_id, created_at = %a.created_at, error = %e, "an alert's created_at is not a time; left out of the pending age");
                None
            }
        })
        .min();
    let run = AlertsInvocation {
        sent: here.sent as u64,
        failed: here.failed as u64,
        failed_for_good: here.failed_for_good as u64,
        pending: (waiting.len() + beyond.len()) as u64,
        oldest_pending: oldest,
    };
    metrics.emit(&[alerts_document(&run, now)]);
}

/// The `failed` alerts, counted for the operator (a failure to count is logged, not fatal).
async fn failed_total<A: AlertStore>(store: &A) -> Option<u64> {
    match store.failed_count().await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "could not count the failed alerts");
            None
        }
    }
}
