//! The near-real-time path on the local stack (docs/realtime.md, "On the local stack"): the
//! emulator's records, oldest first, become the EventBridge events CloudTrail would have
//! published as the calls happened; the rule pattern the template deploys selects ours, and
//! each is sent to the Realtime function through the gateway's Lambda `Invoke`, one after the
//! other, as EventBridge would invoke it.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use iamtrail_aws::steps::realtime::{Disposition, RealtimeOutput};
use iamtrail_core::realtime::{
    envelope, event_pattern, matches_pattern, PatternOptions, STS_EVENT_NAMES,
};
use iamtrail_core::{Settings, Source};
use serde_json::Value;

use crate::local::{LocalStack, ReceivedAlert};

/// The pattern the template deploys for these settings: no STS branch when the STS source is
/// off, no root branch when the root source is off.
pub fn pattern_options(settings: &Settings) -> PatternOptions {
    PatternOptions {
        sts_event_names: if settings.is_enabled(Source::Sts) {
            STS_EVENT_NAMES.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        },
        root: settings.is_enabled(Source::Root),
    }
}

/// One event sent to Realtime.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The record's `eventID`.
    pub event_id: String,
    /// When the invoke reached the gateway.
    pub invoked_at: DateTime<Utc>,
    /// What Realtime answered, or its function error.
    pub output: std::result::Result<RealtimeOutput, String>,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// The emulator's records.
    pub records: usize,
    /// Records an `ENABLED` rule can see (read-only calls are not published to it).
    pub published: usize,
    /// Events sent to Realtime, in time order.
    pub events: Vec<Replayed>,
}

impl ReplayReport {
    fn outputs(&self) -> impl Iterator<Item = &RealtimeOutput> {
        self.events.iter().filter_map(|e| e.output.as_ref().ok())
    }

    /// Events Realtime stored.
    pub fn stored(&self) -> usize {
        self.outputs()
            .filter(|o| o.disposition == Disposition::Stored)
            .count()
    }

    /// Alerts Realtime published.
    pub fn sent(&self) -> u64 {
        self.outputs().map(|o| o.sent).sum()
    }

    /// Alerts Realtime queued in the outbox.
    pub fn queued(&self) -> u64 {
        self.outputs().map(|o| o.alerts_queued).sum()
    }

    /// Invocations that failed, with the function error.
    pub fn errors(&self) -> Vec<(&str, &str)> {
        self.events
            .iter()
            .filter_map(|e| {
                e.output
                    .as_ref()
                    .err()
                    .map(|m| (e.event_id.as_str(), m.as_str()))
            })
            .collect()
    }

    /// Per received alert, the time from the event's arrival at the gateway to the message in
    /// the mailbox, in milliseconds (alerts of events this replay did not send are left out).
    pub fn latencies_ms(&self, received: &[ReceivedAlert]) -> Vec<i64> {
        received
            .iter()
            .filter_map(|a| {
                let id = a.event_id()?;
                let sent = self.events.iter().find(|e| e.event_id == id)?;
                Some((a.received_at? - sent.invoked_at).num_milliseconds())
            })
            .collect()
    }
}

/// Median and maximum of a list of milliseconds.
pub fn median_max(values: &[i64]) -> Option<(i64, i64)> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let max = *v.last()?;
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2
    };
    Some((median, max))
}

/// Replays the emulator's records through Realtime (see the module docs). `progress` is told
/// (events sent, events to send) after each one.
pub async fn replay_realtime(
    stack: &LocalStack,
    mut progress: impl FnMut(usize, usize),
) -> Result<ReplayReport> {
    let pattern = event_pattern(&pattern_options(stack.settings()));
    let records = stack.emulator.records();
    let mut report = ReplayReport {
        records: records.len(),
        ..Default::default()
    };
    let mut selected = Vec::new();
    for text in &records {
        let record: Value = serde_json::from_str(text).context("an emulator record")?;
        let Some(event) = envelope(&record) else {
            continue;
        };
        report.published += 1;
        if matches_pattern(&pattern, &event) {
            let id = record["eventID"].as_str().unwrap_or_default().to_string();
            selected.push((id, event));
        }
    }
    let url = format!(
        "{}/2015-03-31/functions/{}-realtime/invocations",
        stack.gateway.endpoint(),
        stack.options.stack_name
    );
    let client = reqwest::Client::new();
    let total = selected.len();
    for (n, (event_id, event)) in selected.into_iter().enumerate() {
        let invoked_at = Utc::now();
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await
            .with_context(|| format!("invoking Realtime for {event_id}"))?;
        let function_error = response.headers().contains_key("x-amz-function-error");
        let bytes = response.bytes().await.context("Realtime's answer")?;
        let body: Value = serde_json::from_slice(&bytes).context("Realtime's answer")?;
        let output = if function_error {
            Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["errorMessage"].as_str().unwrap_or_default()
            ))
        } else {
            Ok(serde_json::from_value(body).context("Realtime's answer")?)
        };
        report.events.push(Replayed {
            event_id,
            invoked_at,
            output,
        });
        progress(n + 1, total);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median_max(&[]), None);
        assert_eq!(median_max(&[5]), Some((5, 5)));
        assert_eq!(median_max(&[9, 1, 5]), Some((5, 9)));
        assert_eq!(median_max(&[4, 1, 3, 2]), Some((2, 4)));
    }
}
