//! Storing a slice's pages (docs/collection.md, "Storing a slice" and "Poison records"):
//!
//! 1. each LookupEvents result is normalised or filtered out
//!    ([`iamtrail_core::lookup::lookup_item`]);
//! 2. the full original record of every item cut to fit 400 KB, and of every result with
//!    nothing to key an item by, is written to the analytics bucket under `raw-events/`;
//! 3. the items are written to the events table; an item DynamoDB rejects has its full record
//!    kept in S3 and is written again in a minimal form (or, if even that is rejected, lives
//!    only in S3 and is counted as `rejected`), so no record ever blocks its source;
//! 4. the dates of the stored events are marked dirty for the export;
//! 5. the stored events' rule matches are queued in the alert outbox, and failed console
//!    logins are counted into bursts (`crate::steps::detect`, shared with Realtime).
//!
//! Any write that still fails after its retries fails the slice: the checkpoint stays where it
//! was and the next run reads the slice again (every write is idempotent).

use std::collections::BTreeSet;

use chrono::NaiveDate;
use iamtrail_core::contract::Counts;
use iamtrail_core::filter::FilterReason;
use iamtrail_core::lookup::{lookup_item, LookupFields, Outcome};
use iamtrail_core::raw::{minimal_item, raw_key};
use iamtrail_core::record::format_time;
use iamtrail_core::{NormalizedEvent, Source};

use super::{Invocation, Stop};
use crate::ports::{
    AlertStore, ControlStore, EventSource, EventStore, LookupEvent, LookupPage, ObjectStore,
};
use crate::steps::detect::Detector;

impl<S, E, C, A, O> Invocation<'_, S, E, C, A, O>
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
    O: ObjectStore,
{
    /// Normalises, filters and stores pages; returns what it did.
    pub(super) async fn store_pages(
        &self,
        pages: &[LookupPage],
        source: Source,
    ) -> Result<Counts, Stop> {
        let mut counts = Counts::default();
        let mut items: Vec<NormalizedEvent> = Vec::new();
        let mut origins: Vec<&LookupEvent> = Vec::new();
        for event in pages.iter().flat_map(|p| &p.events) {
            counts.fetched += 1;
            if self.read_elsewhere(event, source) {
                counts.read_elsewhere += 1;
                continue;
            }
            match lookup_item(&fields(event), &self.region, source, self.deps.settings) {
                Outcome::Stored(mut item) => {
                    if let Some(error) = &item.parse_error {
                        counts.malformed += 1;
                        tracing::warn!(region = %self.region, %source, event_id = %item.event_id, %error,
                            "keeping an unreadable record from its summary fields");
                    }
                    if item.is_truncated() {
                        counts.truncated += 1;
                        // The item names its full record, so the record goes first.
                        item.raw_s3_key = Some(self.keep_raw(event, Some(&item), source).await?);
                        counts.raw_kept += 1;
                    }
                    items.push(item);
                    origins.push(event);
                }
                Outcome::Unusable(reason) => {
                    counts.malformed += 1;
                    let key = self.keep_raw(event, None, source).await?;
                    counts.raw_kept += 1;
                    tracing::error!(region = %self.region, %source, %reason, raw_s3_key = %key,
                        "unusable LookupEvents result: nothing to key an item by; its record is kept in S3 only");
                }
                Outcome::Filtered(FilterReason::AwsService) => counts.filtered_aws_service += 1,
                Outcome::Filtered(FilterReason::FilteredRole) => counts.filtered_roles += 1,
            }
        }
        if items.is_empty() {
            return Ok(counts);
        }
        let outcome = self.deps.events.put_events(&items).await?;
        counts.stored += outcome.written;
        let rejected: BTreeSet<usize> = outcome.rejected.iter().map(|(i, _)| *i).collect();
        let mut dates: BTreeSet<NaiveDate> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| !rejected.contains(i))
            .filter_map(|(_, item)| event_date(item))
            .collect();
        if !outcome.rejected.is_empty() {
            let minimal = self
                .store_rejected(&items, &origins, &outcome.rejected, source, &mut counts)
                .await?;
            dates.extend(minimal.iter().filter_map(event_date));
        }
        if !dates.is_empty() {
            let dates: Vec<NaiveDate> = dates.into_iter().collect();
            self.deps.control.mark_dirty(&dates).await?;
        }
        let stored: Vec<&NormalizedEvent> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| !rejected.contains(i))
            .map(|(_, item)| item)
            .collect();
        let detector = self.detector();
        detector.queue_alerts(&stored, &mut counts).await?;
        detector.count_login_failures(&stored, &mut counts).await?;
        Ok(counts)
    }

    /// Whether the `root` source leaves this record to another source of the region, which
    /// stores it (a root IAM call is read by `iam` too).
    fn read_elsewhere(&self, event: &LookupEvent, source: Source) -> bool {
        source == Source::Root
            && event
                .event_source
                .as_deref()
                .and_then(Source::reading)
                .is_some_and(|s| s != Source::Root && self.sources.contains(&s))
    }

    /// Items DynamoDB rejected: full records to S3, then a minimal form of each to the table.
    /// Returns the minimal items stored.
    async fn store_rejected(
        &self,
        items: &[NormalizedEvent],
        origins: &[&LookupEvent],
        rejected: &[(usize, String)],
        source: Source,
        counts: &mut Counts,
    ) -> Result<Vec<NormalizedEvent>, Stop> {
        let mut minimal = Vec::with_capacity(rejected.len());
        for (index, reason) in rejected {
            let (item, origin) = (&items[*index], origins[*index]);
            tracing::warn!(region = %self.region, %source, event_id = %item.event_id, %reason,
                "DynamoDB rejected an event; keeping its full record in S3 and a minimal item");
            let key = match &item.raw_s3_key {
                Some(key) => key.clone(),
                None => {
                    counts.raw_kept += 1;
                    self.keep_raw(origin, Some(item), source).await?
                }
            };
            minimal.push(minimal_item(item, reason, &key));
        }
        let outcome = self.deps.events.put_events(&minimal).await?;
        counts.stored += outcome.written;
        counts.rejected += outcome.rejected.len() as u64;
        for (index, reason) in &outcome.rejected {
            tracing::error!(region = %self.region, %source, event_id = %minimal[*index].event_id, %reason,
                raw_s3_key = minimal[*index].raw_s3_key.as_deref().unwrap_or(""),
                "DynamoDB rejected even the minimal item; the event is kept only in S3");
        }
        let refused: BTreeSet<usize> = outcome.rejected.iter().map(|(i, _)| *i).collect();
        Ok(minimal
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains(i))
            .map(|(_, m)| m)
            .collect())
    }

    /// Writes an event's full original record under `raw-events/` and returns its key: the
    /// LookupEvents `CloudTrailEvent` text, or the summary fields as JSON when there is none.
    async fn keep_raw(
        &self,
        event: &LookupEvent,
        item: Option<&NormalizedEvent>,
        source: Source,
    ) -> Result<String, Stop> {
        let body = match &event.cloudtrail_event {
            Some(text) => text.clone().into_bytes(),
            None => summary_json(event).into_bytes(),
        };
        let date = item
            .and_then(event_date)
            .or_else(|| event.event_time.map(|t| t.date_naive()));
        let id = item
            .map(|i| i.event_id.as_str())
            .or(event.event_id.as_deref());
        let key = raw_key(date, &self.region, source, id, &body);
        self.deps
            .objects
            .put_bytes(&key, body, "application/json")
            .await
            .map_err(|e| Stop::Failed(format!("keeping a full record in S3 ({key}): {e}")))?;
        Ok(key)
    }

    /// The detection of this invocation's stored events (`crate::steps::detect`).
    fn detector(&self) -> Detector<'_, E, C, A> {
        Detector {
            settings: self.deps.settings,
            events: self.deps.events,
            control: self.deps.control,
            alerts: self.deps.alerts,
            sigma: self.deps.sigma,
            clock: self.budget.clock,
            region: &self.region,
        }
    }
}

/// An item's `event_date` as a date (every storable item has one).
fn event_date(item: &NormalizedEvent) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&item.event_date, "%Y-%m-%d").ok()
}

/// A LookupEvents result without its record text, as JSON with the API's field names.
fn summary_json(event: &LookupEvent) -> String {
    serde_json::json!({
        "EventId": event.event_id,
        "EventName": event.event_name,
        "EventSource": event.event_source,
        "EventTime": event.event_time.map(format_time),
        "Username": event.username,
        "CloudTrailEvent": null,
    })
    .to_string()
}

/// The fields `lookup_item` decides on.
fn fields(event: &LookupEvent) -> LookupFields<'_> {
    LookupFields {
        event_id: event.event_id.as_deref(),
        event_name: event.event_name.as_deref(),
        event_source: event.event_source.as_deref(),
        event_time: event.event_time,
        username: event.username.as_deref(),
        cloudtrail_event: event.cloudtrail_event.as_deref(),
    }
}
