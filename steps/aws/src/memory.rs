//! In-memory adapters for every port, faithful to the AWS APIs they stand for (inclusive
//! LookupEvents ranges, newest first, 50 a page; DynamoDB's key and item-size validation and
//! conditional writes; S3 objects replaced whole). Behind the `memory` feature, so that every
//! step can be unit-tested and property-tested without a network. See docs/reliability.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use iamtrail_core::contract::RunSummary;
use iamtrail_core::normalize::DYNAMODB_MAX_ITEM_BYTES;
use iamtrail_core::outbox::{sent_ttl, status, AlertRecord};
use iamtrail_core::source::LookupKey;
use iamtrail_core::targets::RegionInfo;
use iamtrail_core::NormalizedEvent;

use crate::ports::*;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// LookupEvents over lists of events per region.
#[derive(Default)]
pub struct MemorySource {
    events: Mutex<HashMap<String, Vec<LookupEvent>>>,
    requests: Mutex<HashMap<String, u64>>,
}

/// LookupEvents' page size.
pub const LOOKUP_PAGE_SIZE: usize = 50;

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes events visible in a region (as CloudTrail does once it has delivered them).
    pub fn add(&self, region: &str, events: impl IntoIterator<Item = LookupEvent>) {
        lock(&self.events)
            .entry(region.to_string())
            .or_default()
            .extend(events);
    }

    /// Requests received for a region.
    pub fn requests(&self, region: &str) -> u64 {
        lock(&self.requests).get(region).copied().unwrap_or(0)
    }

    /// Requests received in all regions.
    pub fn total_requests(&self) -> u64 {
        lock(&self.requests).values().sum()
    }
}

impl EventSource for MemorySource {
    async fn lookup(&self, r: &LookupRequest) -> Result<LookupPage, LookupError> {
        *lock(&self.requests).entry(r.region.clone()).or_default() += 1;
        let events = lock(&self.events);
        let mut matching: Vec<&LookupEvent> = events
            .get(&r.region)
            .map(|list| {
                list.iter()
                    .filter(|e| {
                        let (key, value) = r.source.lookup();
                        let field = match key {
                            LookupKey::EventSource => &e.event_source,
                            LookupKey::Username => &e.username,
                        };
                        field.as_deref() == Some(value)
                    })
                    .filter(|e| e.event_time.is_some_and(|t| t >= r.start && t <= r.end))
                    .collect()
            })
            .unwrap_or_default();
        matching.sort_by(|a, b| (b.event_time, &b.event_id).cmp(&(a.event_time, &a.event_id)));
        let offset: usize = match r.next_token.as_deref() {
            None => 0,
            Some(t) => t
                .parse()
                .map_err(|_| LookupError::Failed(format!("InvalidNextTokenException: {t}")))?,
        };
        let page = matching
            .iter()
            .skip(offset)
            .take(LOOKUP_PAGE_SIZE)
            .map(|e| (*e).clone())
            .collect();
        let next = (offset + LOOKUP_PAGE_SIZE < matching.len())
            .then(|| (offset + LOOKUP_PAGE_SIZE).to_string());
        Ok(LookupPage {
            events: page,
            next_token: next,
        })
    }
}

/// The events table: items by (`event_date`, `event_id`).
#[derive(Default)]
pub struct MemoryEvents {
    items: Mutex<BTreeMap<(String, String), NormalizedEvent>>,
    writes: Mutex<u64>,
}

/// Items per Query page of [`MemoryEvents`] (small, so paging is exercised).
pub const DAY_PAGE_SIZE: usize = 100;

impl MemoryEvents {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored item, in key order.
    pub fn all(&self) -> Vec<NormalizedEvent> {
        lock(&self.items).values().cloned().collect()
    }

    /// The stored items of a date.
    pub fn day(&self, date: NaiveDate) -> Vec<NormalizedEvent> {
        let d = date.format("%Y-%m-%d").to_string();
        lock(&self.items)
            .iter()
            .filter(|((day, _), _)| *day == d)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Removes a date's items (as DynamoDB's TTL expiry would).
    pub fn expire_day(&self, date: NaiveDate) {
        let d = date.format("%Y-%m-%d").to_string();
        lock(&self.items).retain(|(day, _), _| *day != d);
    }

    /// Item writes made (each put counts, rewrites included).
    pub fn writes(&self) -> u64 {
        *lock(&self.writes)
    }
}

/// Why DynamoDB would reject an event item, if it would.
pub fn invalid_item(event: &NormalizedEvent) -> Option<String> {
    if event.event_id.is_empty() || event.event_date.is_empty() {
        return Some(
            "One or more parameter values were invalid: the key attributes must not be empty"
                .into(),
        );
    }
    if event.dynamodb_size() > DYNAMODB_MAX_ITEM_BYTES {
        return Some("Item size has exceeded the maximum allowed size".into());
    }
    None
}

impl EventStore for MemoryEvents {
    async fn put_events(&self, events: &[NormalizedEvent]) -> Result<PutOutcome, StoreError> {
        let mut outcome = PutOutcome::default();
        let mut items = lock(&self.items);
        for (i, e) in events.iter().enumerate() {
            if let Some(reason) = invalid_item(e) {
                outcome.rejected.push((i, reason));
                continue;
            }
            items.insert((e.event_date.clone(), e.event_id.clone()), e.clone());
            outcome.written += 1;
        }
        *lock(&self.writes) += outcome.written;
        Ok(outcome)
    }

    async fn events_named(
        &self,
        name: &str,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<NormalizedEvent>, StoreError> {
        let until = iamtrail_core::record::format_time(until);
        let mut found: Vec<NormalizedEvent> = lock(&self.items)
            .values()
            .filter(|e| e.event_name == name && e.event_time <= until)
            .cloned()
            .collect();
        found.sort_by(|a, b| b.event_time.cmp(&a.event_time));
        found.truncate(limit);
        Ok(found)
    }
}

impl EventReader for MemoryEvents {
    async fn day_page(
        &self,
        date: NaiveDate,
        after: Option<String>,
    ) -> Result<DayPage, StoreError> {
        let d = date.format("%Y-%m-%d").to_string();
        let items = lock(&self.items);
        let from = (d.clone(), after.clone().unwrap_or_default());
        let events: Vec<NormalizedEvent> = items
            .range(from..)
            .take_while(|((day, _), _)| *day == d)
            .filter(|((_, id), _)| after.as_ref().is_none_or(|a| id > a))
            .take(DAY_PAGE_SIZE)
            .map(|(_, e)| e.clone())
            .collect();
        let next = (events.len() == DAY_PAGE_SIZE)
            .then(|| events.last().map(|e| e.event_id.clone()))
            .flatten();
        Ok(DayPage { events, next })
    }
}

#[derive(Debug, Clone, Default)]
struct SourceRow {
    state: SourceState,
    count: u64,
    last_error: Option<String>,
}

#[derive(Default)]
struct ControlData {
    sources: HashMap<String, SourceRow>,
    leases: HashMap<String, (String, DateTime<Utc>)>,
    runs: Vec<RunSummary>,
    latest_export: Option<NaiveDate>,
    exports: BTreeMap<NaiveDate, ExportRecord>,
    dirty: BTreeMap<NaiveDate, u64>,
    counters: HashMap<String, (std::collections::BTreeSet<String>, DateTime<Utc>)>,
    /// Per counter: until when its last alerted burst reaches, and that burst's trigger.
    burst_claims: HashMap<String, (DateTime<Utc>, String)>,
    /// Ingested trail objects and their item counts.
    ingested: BTreeMap<String, u64>,
    /// Per bucket: (account, region) -> newest object's time.
    trail_checkpoints: HashMap<String, BTreeMap<(String, String), DateTime<Utc>>>,
}

/// The control table.
#[derive(Default)]
pub struct MemoryControl {
    data: Mutex<ControlData>,
}

impl MemoryControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// A source's checkpoint.
    pub fn checkpoint(&self, key: &str) -> Option<DateTime<Utc>> {
        lock(&self.data)
            .sources
            .get(key)
            .and_then(|r| r.state.checkpoint)
    }

    /// Sets a source's status, as an operator would (`paused`, `active`).
    pub fn set_status(&self, key: &str, value: &str) {
        lock(&self.data)
            .sources
            .entry(key.to_string())
            .or_default()
            .state
            .processing_status = Some(value.to_string());
    }

    /// Sets a source's checkpoint directly (test set-up).
    pub fn set_checkpoint(&self, key: &str, checkpoint: DateTime<Utc>) {
        lock(&self.data)
            .sources
            .entry(key.to_string())
            .or_default()
            .state
            .checkpoint = Some(checkpoint);
    }

    /// A source's last error.
    pub fn last_error(&self, key: &str) -> Option<String> {
        lock(&self.data)
            .sources
            .get(key)
            .and_then(|r| r.last_error.clone())
    }

    /// The run records stored, in order.
    pub fn runs(&self) -> Vec<RunSummary> {
        lock(&self.data).runs.clone()
    }

    /// The dirty dates and their sequence numbers.
    pub fn dirty_dates_now(&self) -> BTreeMap<NaiveDate, u64> {
        lock(&self.data).dirty.clone()
    }

    /// The newest exported date (`export#latest`).
    pub fn latest_export(&self) -> Option<NaiveDate> {
        lock(&self.data).latest_export
    }

    /// A counter's entries and expiry.
    pub fn counter(&self, key: &str) -> Option<(Vec<String>, DateTime<Utc>)> {
        lock(&self.data)
            .counters
            .get(key)
            .map(|(entries, expires)| (entries.iter().cloned().collect(), *expires))
    }

    /// Who holds a lease, and until when (expired leases included).
    pub fn lease(&self, name: &str) -> Option<(String, DateTime<Utc>)> {
        lock(&self.data).leases.get(name).cloned()
    }
}

impl ControlStore for MemoryControl {
    async fn source_state(&self, key: &str) -> Result<SourceState, StoreError> {
        Ok(lock(&self.data)
            .sources
            .get(key)
            .map(|r| r.state.clone())
            .unwrap_or_default())
    }

    async fn record_slice(
        &self,
        key: &str,
        checkpoint: Option<DateTime<Utc>>,
        stored: u64,
        _now: DateTime<Utc>,
    ) -> Result<SourceState, StoreError> {
        let mut data = lock(&self.data);
        let row = data.sources.entry(key.to_string()).or_default();
        if let Some(cp) = checkpoint {
            if row.state.checkpoint.is_none_or(|old| old < cp) {
                row.state.checkpoint = Some(cp);
            }
        }
        row.count += stored;
        if row.state.processing_status.as_deref() != Some("paused") {
            row.state.processing_status = Some("active".into());
            row.last_error = None;
        }
        Ok(row.state.clone())
    }

    async fn record_error(
        &self,
        key: &str,
        error: &str,
        _now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        let row = data.sources.entry(key.to_string()).or_default();
        row.last_error = Some(error.to_string());
        if row.state.processing_status.as_deref() != Some("paused") {
            row.state.processing_status = Some("error".into());
        }
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        duration: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        let mut data = lock(&self.data);
        if let Some((other, expires)) = data.leases.get(name) {
            if other != holder && *expires > now {
                return Ok(LeaseOutcome::Held {
                    holder: other.clone(),
                    expires: *expires,
                });
            }
        }
        let expires = now + duration;
        data.leases
            .insert(name.to_string(), (holder.to_string(), expires));
        Ok(LeaseOutcome::Acquired { expires })
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        if data.leases.get(name).is_some_and(|(h, _)| h == holder) {
            data.leases.remove(name);
        }
        Ok(())
    }

    async fn put_run(&self, summary: &RunSummary) -> Result<(), StoreError> {
        lock(&self.data).runs.push(summary.clone());
        Ok(())
    }

    async fn last_export(&self) -> Result<Option<NaiveDate>, StoreError> {
        Ok(lock(&self.data).latest_export)
    }

    async fn export_record(&self, date: NaiveDate) -> Result<Option<ExportRecord>, StoreError> {
        Ok(lock(&self.data).exports.get(&date).cloned())
    }

    async fn record_export(
        &self,
        date: NaiveDate,
        rows: u64,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        data.exports.insert(
            date,
            ExportRecord {
                rows,
                keys: keys.to_vec(),
                exported_at: now,
            },
        );
        if data.latest_export.is_none_or(|d| d < date) {
            data.latest_export = Some(date);
        }
        Ok(())
    }

    async fn mark_dirty(&self, dates: &[NaiveDate]) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        for d in dates {
            *data.dirty.entry(*d).or_default() += 1;
        }
        Ok(())
    }

    async fn dirty_dates(&self) -> Result<BTreeMap<NaiveDate, u64>, StoreError> {
        Ok(lock(&self.data).dirty.clone())
    }

    async fn clear_dirty(&self, date: NaiveDate, seq: u64) -> Result<bool, StoreError> {
        let mut data = lock(&self.data);
        match data.dirty.get(&date) {
            Some(s) if *s == seq => {
                data.dirty.remove(&date);
                Ok(true)
            }
            None if seq == 0 => Ok(true),
            _ => Ok(false),
        }
    }

    async fn add_to_counter(
        &self,
        key: &str,
        entry: &str,
        expires: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let mut data = lock(&self.data);
        let counter = data
            .counters
            .entry(key.to_string())
            .or_insert_with(|| (Default::default(), expires));
        counter.0.insert(entry.to_string());
        counter.1 = expires;
        Ok(counter.0.iter().cloned().collect())
    }

    async fn claim_burst(
        &self,
        key: &str,
        chain_start: DateTime<Utc>,
        until: DateTime<Utc>,
        trigger: &str,
    ) -> Result<bool, StoreError> {
        let mut data = lock(&self.data);
        let free = match data.burst_claims.get(key) {
            None => true,
            Some((alerted_until, alerted_trigger)) => {
                *alerted_until < chain_start || alerted_trigger == trigger
            }
        };
        if free {
            data.burst_claims
                .insert(key.to_string(), (until, trigger.to_string()));
        }
        Ok(free)
    }

    async fn drop_counter_entries(&self, key: &str, entries: &[String]) -> Result<(), StoreError> {
        if let Some(counter) = lock(&self.data).counters.get_mut(key) {
            for e in entries {
                counter.0.remove(e);
            }
        }
        Ok(())
    }
}

/// One object version.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryObject {
    pub bytes: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
}

/// A versioned bucket: each put adds a version; the newest is current.
#[derive(Default)]
pub struct MemoryObjects {
    objects: Mutex<BTreeMap<String, Vec<MemoryObject>>>,
}

impl MemoryObjects {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current version of an object.
    pub fn get(&self, key: &str) -> Option<MemoryObject> {
        lock(&self.objects).get(key).and_then(|v| v.last().cloned())
    }

    /// Every current key.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    /// How many versions an object has.
    pub fn versions(&self, key: &str) -> usize {
        lock(&self.objects).get(key).map_or(0, Vec::len)
    }
}

impl ObjectReader for MemoryObjects {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(MemoryObjects::get(self, key).map(|o| o.bytes))
    }
}

impl ObjectStore for MemoryObjects {
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.objects)
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        Ok(self.get(key).map(|o| ObjectInfo {
            size: o.bytes.len() as u64,
            metadata: o.metadata,
        }))
    }

    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        let bytes = std::fs::read(path).map_err(|e| StoreError {
            operation: "read export file",
            message: e.to_string(),
        })?;
        lock(&self.objects)
            .entry(key.to_string())
            .or_default()
            .push(MemoryObject {
                bytes,
                metadata: metadata
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
            });
        Ok(())
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        lock(&self.objects)
            .entry(key.to_string())
            .or_default()
            .push(MemoryObject {
                bytes,
                metadata: BTreeMap::new(),
            });
        Ok(())
    }
}

impl MemoryControl {
    /// The ingested trail objects (`bucket/key`) and their item counts.
    pub fn ingested_objects(&self) -> BTreeMap<String, u64> {
        lock(&self.data).ingested.clone()
    }
}

impl IngestLedger for MemoryControl {
    async fn is_ingested(&self, object: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.data).ingested.contains_key(object))
    }

    async fn mark_ingested(
        &self,
        object: &str,
        items: u64,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        lock(&self.data).ingested.insert(object.to_string(), items);
        Ok(())
    }

    async fn advance_trail_checkpoint(
        &self,
        bucket: &str,
        account: &str,
        region: &str,
        written: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        let at = data
            .trail_checkpoints
            .entry(bucket.to_string())
            .or_default()
            .entry((account.to_string(), region.to_string()))
            .or_insert(written);
        *at = (*at).max(written);
        Ok(())
    }

    async fn trail_checkpoints(
        &self,
        bucket: &str,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, StoreError> {
        Ok(lock(&self.data)
            .trail_checkpoints
            .get(bucket)
            .map(|m| {
                m.iter()
                    .map(|((a, r), t)| (a.clone(), r.clone(), *t))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// A trail bucket over a [`MemoryObjects`]: folders are the key prefixes up to the next `/`.
impl TrailBucket for MemoryObjects {
    async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut folders: Vec<String> = lock(&self.objects)
            .keys()
            .filter_map(|k| {
                let rest = k.strip_prefix(prefix)?;
                let end = rest.find('/')?;
                Some(format!("{prefix}{}", &rest[..=end]))
            })
            .collect();
        folders.dedup();
        Ok(folders)
    }

    async fn objects(
        &self,
        prefix: &str,
    ) -> Result<Vec<iamtrail_core::trail::PlannedObject>, StoreError> {
        Ok(lock(&self.objects)
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, versions)| {
                Some(iamtrail_core::trail::PlannedObject {
                    key: k.clone(),
                    size: versions.last()?.bytes.len() as u64,
                })
            })
            .collect())
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(MemoryObjects::get(self, key).map(|o| o.bytes))
    }
}

#[derive(Debug, Clone)]
struct AlertRow {
    record: AlertRecord,
    claimed_at: Option<DateTime<Utc>>,
    message_id: Option<String>,
}

/// The alerts table (outbox).
#[derive(Default)]
pub struct MemoryAlerts {
    rows: Mutex<BTreeMap<(String, String), AlertRow>>,
}

impl MemoryAlerts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every alert record, in key order.
    pub fn all(&self) -> Vec<AlertRecord> {
        lock(&self.rows)
            .values()
            .map(|r| r.record.clone())
            .collect()
    }

    /// The message id an alert was sent with.
    pub fn message_id(&self, event_id: &str, alert_type: &str) -> Option<String> {
        lock(&self.rows)
            .get(&(event_id.to_string(), alert_type.to_string()))
            .and_then(|r| r.message_id.clone())
    }

    /// The alerts in a status.
    pub fn with_status(&self, wanted: &str) -> Vec<AlertRecord> {
        lock(&self.rows)
            .values()
            .filter(|r| r.record.status == wanted)
            .map(|r| r.record.clone())
            .collect()
    }

    fn update<T>(
        &self,
        alert: &AlertRecord,
        f: impl FnOnce(&mut AlertRow) -> T,
    ) -> Result<T, StoreError> {
        let mut rows = lock(&self.rows);
        let row = rows
            .get_mut(&(alert.event_id.clone(), alert.alert_type.clone()))
            .ok_or_else(|| StoreError {
                operation: "dynamodb:UpdateItem (alert)",
                message: format!("no alert {}/{}", alert.event_id, alert.alert_type),
            })?;
        Ok(f(row))
    }
}

impl AlertStore for MemoryAlerts {
    async fn enqueue(&self, alert: &AlertRecord) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let key = (alert.event_id.clone(), alert.alert_type.clone());
        if rows.contains_key(&key) {
            return Ok(false);
        }
        rows.insert(
            key,
            AlertRow {
                record: alert.clone(),
                claimed_at: None,
                message_id: None,
            },
        );
        Ok(true)
    }

    async fn deliverable(
        &self,
        limit: usize,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let mut out: Vec<AlertRecord> = lock(&self.rows)
            .values()
            .filter(|r| {
                r.record.status == status::PENDING
                    || (r.record.status == status::SENDING
                        && r.claimed_at.is_some_and(|c| c < stale_before))
            })
            .map(|r| r.record.clone())
            .collect();
        AlertRecord::sort_for_delivery(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    async fn claim(
        &self,
        alert: &AlertRecord,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update(alert, |row| {
            let free = row.record.status == status::PENDING
                || (row.record.status == status::SENDING
                    && row.claimed_at.is_some_and(|c| c < stale_before));
            if free {
                row.record.status = status::SENDING.to_string();
                row.claimed_at = Some(now);
            }
            free
        })
    }

    async fn mark_sent(
        &self,
        alert: &AlertRecord,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update(alert, |row| {
            row.record.status = status::SENT.to_string();
            row.record.ttl = Some(sent_ttl(now));
            row.record.last_error = None;
            row.claimed_at = None;
            row.message_id = Some(message_id.to_string());
        })
    }

    async fn release(
        &self,
        alert: &AlertRecord,
        error: &str,
        max_attempts: u32,
    ) -> Result<Released, StoreError> {
        self.update(alert, |row| {
            row.record.attempts += 1;
            row.record.last_error = Some(error.to_string());
            row.claimed_at = None;
            if row.record.attempts >= max_attempts {
                row.record.status = status::FAILED.to_string();
                Released::Failed
            } else {
                row.record.status = status::PENDING.to_string();
                Released::Pending
            }
        })
    }

    async fn failed_count(&self) -> Result<u64, StoreError> {
        Ok(self.with_status(status::FAILED).len() as u64)
    }
}

/// The alert channel: records what it published; can be told to fail.
#[derive(Default)]
pub struct MemoryNotifier {
    published: Mutex<Vec<(String, Notification)>>,
    failing: Mutex<Vec<String>>,
}

impl MemoryNotifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes whose subject or body contains one of these fail.
    pub fn fail_matching(&self, patterns: Vec<String>) {
        *lock(&self.failing) = patterns;
    }

    /// What was published, with message ids, in order.
    pub fn published(&self) -> Vec<(String, Notification)> {
        lock(&self.published).clone()
    }
}

impl Notifier for MemoryNotifier {
    async fn publish(&self, n: &Notification) -> Result<String, StoreError> {
        if lock(&self.failing)
            .iter()
            .any(|p| n.subject.contains(p.as_str()) || n.body.contains(p.as_str()))
        {
            return Err(StoreError {
                operation: "sns:Publish",
                message: "InternalError (injected)".into(),
            });
        }
        let mut published = lock(&self.published);
        let id = format!("msg-{}", published.len() + 1);
        published.push((id.clone(), n.clone()));
        Ok(id)
    }
}

/// DescribeRegions over a fixed list.
pub struct MemoryRegions(pub Vec<RegionInfo>);

impl MemoryRegions {
    /// Enabled regions by name.
    pub fn enabled(names: &[&str]) -> Self {
        MemoryRegions(
            names
                .iter()
                .map(|n| RegionInfo {
                    name: n.to_string(),
                    opt_in_status: Some("opt-in-not-required".into()),
                })
                .collect(),
        )
    }
}

impl RegionLister for MemoryRegions {
    async fn regions(&self) -> Result<Vec<RegionInfo>, StoreError> {
        Ok(self.0.clone())
    }
}
