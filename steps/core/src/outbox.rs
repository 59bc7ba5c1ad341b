//! The alert outbox record: one per (event, rule), written `pending` by Collect with a
//! conditional put, delivered and marked `sent` by EvaluateAlerts.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::alert_text::{body, escape_data, subject, AlertContent};
use crate::record::format_time;
use crate::root_sessions::{session_group, session_line};
use crate::rules::AlertMatch;
use crate::sigma::SigmaMatch;
use crate::NormalizedEvent;

/// Sent alerts are kept this long in the alerts table (its TTL, counted from delivery).
pub const ALERT_RETENTION_DAYS: i64 = 30;

/// Outbox states.
pub mod status {
    /// Waiting for delivery.
    pub const PENDING: &str = "pending";
    /// Claimed by a delivery attempt (a lease: reclaimed when it is old).
    pub const SENDING: &str = "sending";
    /// Delivered; carries the SNS message id.
    pub const SENT: &str = "sent";
    /// Publishing failed `ALERT_MAX_ATTEMPTS` times: kept with its last error and counted,
    /// never retried by itself (an operator can set it back to `pending`).
    pub const FAILED: &str = "failed";
}

/// One alert in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Partition key: the CloudTrail event id.
    pub event_id: String,
    /// Sort key: the rule id, so two rules on one event are two alerts.
    pub alert_type: String,
    pub rule_id: String,
    pub alert_title: String,
    pub severity: String,
    pub event_name: String,
    pub event_time: String,
    pub user_name: String,
    pub aws_region: String,
    /// The notification, rendered when the alert is queued (no second read of the event).
    pub subject: String,
    pub body: String,
    pub status: String,
    pub created_at: String,
    /// Epoch seconds at which DynamoDB may expire the record: set when it is sent (sent + 30
    /// days). A pending alert never expires, so an undeliverable one stays visible.
    pub ttl: Option<i64>,
    /// Failed publish attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last publish error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The root session the alert is delivered with (one message for the session's calls;
    /// `None`: delivered alone). See `root_sessions`.
    #[serde(default)]
    pub group: Option<String>,
    /// The call as its session's message lists it.
    #[serde(default)]
    pub group_line: Option<String>,
}

impl AlertRecord {
    /// Delivery order: higher is delivered first (CRITICAL, HIGH, MEDIUM, LOW, anything else).
    pub fn severity_rank(&self) -> u8 {
        match self.severity.as_str() {
            "CRITICAL" => 4,
            "HIGH" => 3,
            "MEDIUM" => 2,
            "LOW" => 1,
            _ => 0,
        }
    }

    /// Sorts alerts into delivery order: highest severity first, newest event first within a
    /// severity (so a fresh CRITICAL alert is never stuck behind old failing ones).
    pub fn sort_for_delivery(alerts: &mut [AlertRecord]) {
        alerts.sort_by(|a, b| {
            b.severity_rank()
                .cmp(&a.severity_rank())
                .then_with(|| b.event_time.cmp(&a.event_time))
                .then_with(|| a.event_id.cmp(&b.event_id))
                .then_with(|| a.alert_type.cmp(&b.alert_type))
        });
    }

    /// The SNS message attributes subscribers filter on: `severity`, `rule_id`, `event_name`.
    pub fn message_attributes(&self) -> Vec<(String, String)> {
        vec![
            ("severity".to_string(), self.severity.clone()),
            ("rule_id".to_string(), self.rule_id.clone()),
            ("event_name".to_string(), escape_data(&self.event_name, 256)),
        ]
    }
}

/// The outbox record of a rule match.
pub fn alert_record(m: &AlertMatch, event: &NormalizedEvent, now: DateTime<Utc>) -> AlertRecord {
    record(m.rule_id.to_string(), m.into(), event, now)
}

/// The outbox record of a Sigma rule's match: rule id `sigma:<id>`, so it is deduplicated per
/// (event, Sigma rule) like a built-in rule's alert (docs/sigma.md).
pub fn sigma_alert_record(
    m: &SigmaMatch,
    event: &NormalizedEvent,
    now: DateTime<Utc>,
) -> AlertRecord {
    record(m.rule_id(), m.into(), event, now)
}

fn record(
    rule_id: String,
    m: AlertContent<'_>,
    event: &NormalizedEvent,
    now: DateTime<Utc>,
) -> AlertRecord {
    let group = session_group(&rule_id, event);
    AlertRecord {
        event_id: event.event_id.clone(),
        alert_type: rule_id.clone(),
        rule_id,
        alert_title: m.title.to_string(),
        severity: m.severity.as_str().to_string(),
        event_name: event.event_name.clone(),
        event_time: event.event_time.clone(),
        user_name: event.user_name.clone(),
        aws_region: event.aws_region.clone(),
        subject: subject(m),
        body: body(m, event),
        status: status::PENDING.to_string(),
        created_at: format_time(now),
        ttl: None,
        attempts: 0,
        last_error: None,
        group_line: group.as_ref().map(|_| session_line(event)),
        group,
    }
}

/// Whether an event is recent enough to alert on: a sent alert is remembered (deduplicated) for
/// [`ALERT_RETENTION_DAYS`] after delivery, so older events are stored but never alerted, or a
/// backfill over them would alert again once the first alert had expired.
pub fn is_alertable(event_time: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    event_time > now - Duration::days(ALERT_RETENTION_DAYS) + Duration::hours(1)
}

/// The expiry of an alert sent at `now`.
pub fn sent_ttl(now: DateTime<Utc>) -> i64 {
    (now + Duration::days(ALERT_RETENTION_DAYS)).timestamp()
}
