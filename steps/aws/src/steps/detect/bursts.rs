//! Counting failed console logins into bursts (docs/alerts.md, "Console login failures"): each
//! failed IAM-user console login stored (by a Collect slice or by Realtime) is added to its subjects' counters in the
//! control table; a burst the failure belongs to is queued in the outbox, keyed by the failure
//! that reached the threshold, so re-runs, redrives and other regions find it queued already.

use chrono::Duration;
use iamtrail_core::contract::Counts;
use iamtrail_core::outbox::{alert_record, is_alertable, AlertRecord};
use iamtrail_core::record::format_time;
use iamtrail_core::rules::login_failures::{
    burst_alert, bursts, is_counted_failure, subjects, Failure, Subject, COUNTER_RETENTION_HOURS,
};
use iamtrail_core::NormalizedEvent;

use super::{DetectError, Detector, WRITE_ATTEMPTS};
use crate::backoff::retry_store;
use crate::ports::{AlertStore, ControlStore, EventStore};

impl<E, C, A> Detector<'_, E, C, A>
where
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
{
    /// Adds the stored events' failed console logins to their counters and queues the bursts
    /// they belong to; returns the records of the bursts this call claimed.
    pub async fn count_login_failures(
        &self,
        stored: &[&NormalizedEvent],
        counts: &mut Counts,
    ) -> Result<Vec<AlertRecord>, DetectError> {
        // In time order: a burst's threshold is reached by the failure that reaches it, not by
        // whichever the page listed last (LookupEvents pages are newest first).
        let mut failed: Vec<(Failure, &NormalizedEvent)> = stored
            .iter()
            .copied()
            .filter(|e| is_counted_failure(e))
            .filter_map(|e| Some((Failure::of(e)?, e)))
            .collect();
        failed.sort_by(|a, b| (a.0.time, &a.0.event_id).cmp(&(b.0.time, &b.0.event_id)));
        let mut records = Vec::new();
        for (failure, event) in &failed {
            for subject in subjects(event) {
                let failures = self.add_failure(&subject, failure).await?;
                records.extend(
                    self.queue_bursts(&subject, failure, &failures, event, counts)
                        .await?,
                );
            }
        }
        Ok(records)
    }

    /// Adds one failure to a subject's counter; returns the counter's failures of the last
    /// day (older ones are removed, best effort).
    async fn add_failure(
        &self,
        subject: &Subject,
        failure: &Failure,
    ) -> Result<Vec<Failure>, DetectError> {
        let key = subject.counter_key();
        let retention = Duration::hours(COUNTER_RETENTION_HOURS);
        let expires = self.clock.now() + retention;
        let what = format!("counting a failed console login in {key}");
        let entry = failure.entry();
        let entries = retry_store(&what, WRITE_ATTEMPTS, || {
            self.control.add_to_counter(&key, &entry, expires)
        })
        .await
        .map_err(|e| DetectError(format!("{what}: {e}")))?;
        let parsed: Vec<(String, Option<Failure>)> = entries
            .into_iter()
            .map(|e| {
                let f = Failure::parse(&e);
                (e, f)
            })
            .collect();
        let newest = parsed
            .iter()
            .filter_map(|(_, f)| f.as_ref().map(|f| f.time))
            .max()
            .unwrap_or(failure.time);
        let (keep, old): (Vec<_>, Vec<_>) = parsed
            .into_iter()
            .partition(|(_, f)| f.as_ref().is_some_and(|f| f.time >= newest - retention));
        if !old.is_empty() {
            let old: Vec<String> = old.into_iter().map(|(e, _)| e).collect();
            if let Err(e) = self.control.drop_counter_entries(&key, &old).await {
                tracing::warn!(%key, error = %e, "could not drop old entries from a login-failure counter; the next failure tries again");
            }
        }
        Ok(keep.into_iter().filter_map(|(_, f)| f).collect())
    }

    /// Queues the bursts `failure` belongs to (a conditional put: a burst already queued is
    /// left alone).
    async fn queue_bursts(
        &self,
        subject: &Subject,
        failure: &Failure,
        failures: &[Failure],
        event: &NormalizedEvent,
        counts: &mut Counts,
    ) -> Result<Vec<AlertRecord>, DetectError> {
        let mut records = Vec::new();
        let settings = self.settings.login_failures;
        let now = self.clock.now();
        for burst in bursts(failures, settings) {
            if !burst
                .failures
                .iter()
                .any(|f| f.event_id == failure.event_id)
                || !is_alertable(burst.trigger.time, now)
            {
                continue;
            }
            // One alert per burst: a burst found again, or again with a different trigger
            // (failures read late, or by another region), finds the claim taken.
            let key = subject.counter_key();
            let chain_start = burst
                .failures
                .first()
                .map_or(burst.trigger.time, |f| f.time);
            let until = burst.trigger.time + settings.window;
            let what = format!("claiming the login-failure burst alert of {key}");
            let claimed = retry_store(&what, WRITE_ATTEMPTS, || {
                self.control
                    .claim_burst(&key, chain_start, until, &burst.trigger.event_id)
            })
            .await
            .map_err(|e| DetectError(format!("{what}: {e}")))?;
            if !claimed {
                continue;
            }
            let m = burst_alert(subject, &burst, settings);
            let record = alert_record(&m, &trigger_event(event, &burst.trigger), now);
            let what = format!("queueing the login-failure burst of {}", m.summary);
            let queued = retry_store(&what, WRITE_ATTEMPTS, || self.alerts.enqueue(&record))
                .await
                .map_err(|e| DetectError(format!("{what}: {e}")))?;
            if queued {
                counts.alerts_queued += 1;
            }
            records.push(record);
        }
        Ok(records)
    }
}

/// The event a burst's alert is keyed by and shows: the failure that reached the threshold
/// (this event, or another one of the counter, read from its entry).
fn trigger_event(event: &NormalizedEvent, trigger: &Failure) -> NormalizedEvent {
    if trigger.event_id == event.event_id {
        return event.clone();
    }
    NormalizedEvent {
        event_date: trigger.time.format("%Y-%m-%d").to_string(),
        event_id: trigger.event_id.clone(),
        event_time: format_time(trigger.time),
        aws_region: trigger.region.clone(),
        user_name: trigger.user.clone(),
        source_ip: Some(trigger.source.clone()).filter(|s| !s.is_empty()),
        user_agent: None,
        request_parameters: None,
        response_elements: None,
        additional_event_data: None,
        ..event.clone()
    }
}
