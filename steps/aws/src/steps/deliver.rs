//! One delivery of the alert outbox (docs/alerts.md, "Delivery"), shared by EvaluateAlerts and
//! Realtime: each alert of the delivery is claimed (`pending` → `sending`, conditional), one
//! message is published for those claimed, and each is marked `sent` with its message id, or,
//! when the publish fails, released (an attempt counted; back to `pending`, or `failed` once
//! its attempts are used up). An alert another delivery claimed first is skipped, so two
//! deliveries racing on one alert publish it once.

use chrono::{DateTime, Utc};
use iamtrail_core::outbox::AlertRecord;
use iamtrail_core::root_sessions;

use crate::backoff::retry_store;
use crate::ports::{AlertStore, Notification, Notifier, Released, StoreError};
use crate::steps::StepClock;
use crate::StepError;

/// Attempts at an outbox read or write before the step fails with `AwsError`.
const STORE_ATTEMPTS: u32 = 3;

/// Retries an outbox call a couple of times with a back-off, then gives up with `AwsError`.
pub(crate) async fn retried<T, F, Fut>(what: &str, call: F) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    retry_store(what, STORE_ATTEMPTS, call)
        .await
        .map_err(StepError::aws)
}

/// What one delivery did, by index into the alerts it was given.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    /// Alerts another delivery had claimed (or sent) first.
    pub skipped: Vec<usize>,
    /// Alerts published and marked sent.
    pub sent: Vec<usize>,
    /// Alerts whose publish failed, and where each went.
    pub released: Vec<(usize, Released)>,
    /// The publish error, when it failed.
    pub error: Option<String>,
}

/// Delivers `members` of `alerts` as one message (an alert alone, or a root session's calls).
pub(crate) async fn deliver<A: AlertStore, N: Notifier>(
    alerts: &[AlertRecord],
    members: &[usize],
    store: &A,
    notifier: &N,
    max_attempts: u32,
    clock: &StepClock,
    stale_before: DateTime<Utc>,
) -> Result<Delivered, StepError> {
    let mut done = Delivered::default();
    let mut claimed = Vec::with_capacity(members.len());
    for &i in members {
        let alert = &alerts[i];
        if retried("claiming an alert", || {
            store.claim(alert, clock.now(), stale_before)
        })
        .await?
        {
            claimed.push(i);
        } else {
            done.skipped.push(i);
        }
    }
    if claimed.is_empty() {
        return Ok(done);
    }
    let notification = notification(alerts, &claimed);
    match notifier.publish(&notification).await {
        Ok(message_id) => {
            for &i in &claimed {
                let alert = &alerts[i];
                retried("marking an alert sent", || {
                    store.mark_sent(alert, &message_id, clock.now())
                })
                .await?;
                tracing::info!(event_id = %alert.event_id, rule = %alert.rule_id, severity = %alert.severity, %message_id, "alert sent");
                done.sent.push(i);
            }
        }
        Err(e) => {
            let error = e.to_string();
            for &i in &claimed {
                let alert = &alerts[i];
                let released = retried("releasing an alert", || {
                    store.release(alert, &error, max_attempts)
                })
                .await?;
                match released {
                    Released::Pending => {
                        tracing::warn!(event_id = %alert.event_id, rule = %alert.rule_id, attempts = alert.attempts + 1, error = %e, "alert publish failed; left pending");
                    }
                    Released::Failed => {
                        tracing::error!(event_id = %alert.event_id, rule = %alert.rule_id, max_attempts, error = %e, "alert publish failed for the last time; the alert is now failed");
                    }
                }
                done.released.push((i, released));
            }
            done.error = Some(error);
        }
    }
    Ok(done)
}

/// The message of one delivery: an alert's own, or one email for a root session's calls
/// (docs/alerts.md, "Root sessions").
fn notification(alerts: &[AlertRecord], members: &[usize]) -> Notification {
    let first = &alerts[members[0]];
    if members.len() == 1 {
        return Notification {
            subject: first.subject.clone(),
            body: first.body.clone(),
            attributes: first.message_attributes(),
        };
    }
    let calls: Vec<&AlertRecord> = members.iter().map(|&i| &alerts[i]).collect();
    let (subject, body) = root_sessions::session_message(&calls);
    let mut attributes = first.message_attributes();
    for (name, value) in attributes.iter_mut() {
        if name == "event_name" {
            *value = "RootSession".to_string();
        }
    }
    Notification {
        subject,
        body,
        attributes,
    }
}
