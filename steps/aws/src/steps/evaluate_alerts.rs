//! The EvaluateAlerts step: deliver the outbox's pending alerts to SNS, exactly once per
//! (event, rule) as far as SNS allows.
//!
//! Each alert is claimed (`pending` → `sending`, conditional), published, then marked `sent`
//! with the message id. A failed publish puts it back to `pending` with the error, for the next
//! retry or run; it never fails the step. A claim older than the lease (a delivery that died
//! between publish and mark) is taken over by a later run: that is the one case in which an
//! alert can be delivered twice.

use chrono::{DateTime, Duration, Utc};
use iamtrail_core::Settings;
use serde::{Deserialize, Serialize};

use crate::ports::{AlertStore, Notification, Notifier};
use crate::StepError;

/// How long a claim protects an alert being delivered.
pub const CLAIM_LEASE_MINUTES: i64 = 10;

/// EvaluateAlerts' payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvaluateAlertsInput {
    #[serde(default)]
    pub run_id: Option<String>,
}

/// What EvaluateAlerts did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AlertDelivery {
    pub enabled: bool,
    /// Alerts found waiting.
    pub pending: usize,
    pub sent: usize,
    /// Publishes that failed (left pending).
    pub failed: usize,
    /// Alerts another delivery claimed first.
    pub skipped: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Delivers up to `ALERTS_PER_RUN` pending alerts.
pub async fn evaluate_alerts<A: AlertStore, N: Notifier>(
    _input: EvaluateAlertsInput,
    store: &A,
    notifier: Option<&N>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<AlertDelivery, StepError> {
    let Some(notifier) = notifier.filter(|_| settings.alerts_enabled) else {
        tracing::info!("alert delivery is off (ALERTS_ENABLED=false or no ALERTS_TOPIC_ARN); alerts stay pending");
        return Ok(AlertDelivery {
            enabled: false,
            ..Default::default()
        });
    };
    let stale_before = now - Duration::minutes(CLAIM_LEASE_MINUTES);
    let alerts = store
        .deliverable(settings.alerts_per_run, stale_before)
        .await
        .map_err(StepError::aws)?;
    let mut delivery = AlertDelivery {
        enabled: true,
        pending: alerts.len(),
        ..Default::default()
    };
    for alert in alerts {
        if !store
            .claim(&alert, Utc::now(), stale_before)
            .await
            .map_err(StepError::aws)?
        {
            delivery.skipped += 1;
            continue;
        }
        let notification = Notification {
            subject: alert.subject.clone(),
            body: alert.body.clone(),
            attributes: alert.message_attributes(),
        };
        match notifier.publish(&notification).await {
            Ok(message_id) => {
                store
                    .mark_sent(&alert, &message_id, Utc::now())
                    .await
                    .map_err(StepError::aws)?;
                tracing::info!(event_id = %alert.event_id, rule = %alert.rule_id, %message_id, "alert sent");
                delivery.sent += 1;
            }
            Err(e) => {
                tracing::error!(event_id = %alert.event_id, rule = %alert.rule_id, error = %e, "alert publish failed; left pending");
                store
                    .release(&alert, &e.to_string(), settings.alert_max_attempts)
                    .await
                    .map_err(StepError::aws)?;
                delivery.failed += 1;
                if delivery.errors.len() < 5 {
                    delivery
                        .errors
                        .push(format!("{}/{}: {e}", alert.event_id, alert.rule_id));
                }
            }
        }
    }
    Ok(delivery)
}
