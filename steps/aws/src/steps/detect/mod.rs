//! Detection on stored events, shared by Collect and Realtime (docs/alerts.md): the rules,
//! built-in and Sigma, evaluated on each event with the history they need, their matches
//! queued in the alert outbox (a conditional put per (event, rule)), and failed console
//! logins counted into bursts (`bursts`).
//!
//! Every write is retried a few times; one that still fails is a [`DetectError`]: Collect
//! then fails the slice (the checkpoint stays and the slice is read again), Realtime fails the
//! invocation (the event is retried, and the scheduled run reads it anyway).

mod bursts;

use iamtrail_core::contract::Counts;
use iamtrail_core::outbox::{alert_record, is_alertable, sigma_alert_record, AlertRecord};
use iamtrail_core::record::parse_time;
use iamtrail_core::rules::{evaluate_with, history, History};
use iamtrail_core::sigma::SigmaRules;
use iamtrail_core::{NormalizedEvent, Settings};

use crate::backoff::retry_store;
use crate::ports::{AlertStore, ControlStore, EventStore};
use crate::steps::StepClock;

/// Attempts at an outbox, counter or history call before detection fails (Collect's slice is
/// then read again, and the counters and the outbox take the same entries again).
const WRITE_ATTEMPTS: u32 = 4;

/// Most stored events of one name a batch's history reads (newest first).
const HISTORY_LIMIT: usize = 1000;

/// A write or read of detection that failed after its retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DetectError(pub String);

/// What detection works with.
pub(crate) struct Detector<'a, E, C, A> {
    pub settings: &'a Settings,
    pub events: &'a E,
    pub control: &'a C,
    /// The alert outbox.
    pub alerts: &'a A,
    /// The user's Sigma rules (docs/sigma.md).
    pub sigma: &'a SigmaRules,
    pub clock: StepClock,
    /// Where the events were read, for the log.
    pub region: &'a str,
}

impl<E, C, A> Detector<'_, E, C, A>
where
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
{
    /// Evaluates the rules, built-in and Sigma, on stored events and queues each match in the
    /// outbox (a conditional put: an (event, rule) already queued is left alone). Returns every
    /// match's record, queued now or before.
    pub async fn queue_alerts(
        &self,
        items: &[&NormalizedEvent],
        counts: &mut Counts,
    ) -> Result<Vec<AlertRecord>, DetectError> {
        let now = self.clock.now();
        let alertable: Vec<&NormalizedEvent> = items
            .iter()
            .copied()
            .filter(|item| parse_time(&item.event_time).is_some_and(|t| is_alertable(t, now)))
            .collect();
        let mut records = Vec::new();
        if alertable.is_empty() {
            return Ok(records);
        }
        let history = self.history(&alertable, items).await?;
        for item in alertable {
            for m in evaluate_with(item, &history) {
                records.push(alert_record(&m, item, now));
            }
            // The user's Sigma rules (docs/sigma.md): their matches take the same outbox.
            let outcome = self.sigma.evaluate_all(item);
            for m in &outcome.matches {
                records.push(sigma_alert_record(m, item, now));
            }
            for failure in &outcome.failures {
                tracing::error!(region = %self.region, event_id = %item.event_id,
                    rule = %failure.id, file = %failure.file, error = %failure.message,
                    "a Sigma rule failed on an event; the other rules were evaluated");
            }
        }
        for record in &records {
            self.enqueue(record, counts).await?;
        }
        Ok(records)
    }

    /// Queues one alert (a conditional put: an (event, rule) already queued is left alone).
    async fn enqueue(&self, record: &AlertRecord, counts: &mut Counts) -> Result<(), DetectError> {
        let what = format!("queueing alert {} for {}", record.rule_id, record.event_id);
        let queued = retry_store(&what, WRITE_ATTEMPTS, || self.alerts.enqueue(record))
            .await
            .map_err(|e| DetectError(format!("{what}: {e}")))?;
        if queued {
            counts.alerts_queued += 1;
        }
        Ok(())
    }

    /// What the history rules read to decide about `alertable` (docs/alerts.md, "Rules that
    /// read history"): the stored events of the names they need, and the batch's own events,
    /// which the table's index may not show yet. Nearly always nothing is needed.
    async fn history(
        &self,
        alertable: &[&NormalizedEvent],
        batch: &[&NormalizedEvent],
    ) -> Result<History, DetectError> {
        let names = history::needs(alertable.iter().copied());
        let mut known = History::new();
        if names.is_empty() {
            return Ok(known);
        }
        let until = alertable
            .iter()
            .filter_map(|e| parse_time(&e.event_time))
            .max()
            .unwrap_or_else(|| self.clock.now());
        for name in names {
            let what = format!("reading stored {name} events for the rules");
            let stored = retry_store(&what, WRITE_ATTEMPTS, || {
                self.events.events_named(name, until, HISTORY_LIMIT)
            })
            .await
            .map_err(|e| DetectError(format!("{what}: {e}")))?;
            known.extend(&stored);
        }
        known.extend(batch.iter().copied());
        Ok(known)
    }
}
