//! Fault injection on every port: each adapter call may be throttled, fail, fail after part of
//! its work, or "crash" (the call never returns, so the invocation dies like a Lambda at its
//! deadline, possibly after the call's effect). Decisions come from one seeded RNG, so a
//! schedule replays exactly from its seed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use iamtrail_aws::ports::*;
use iamtrail_core::contract::RunSummary;
use iamtrail_core::outbox::AlertRecord;
use iamtrail_core::NormalizedEvent;

use super::world::Rng;

/// Per-call fault probabilities.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub throttle: f64,
    pub transient: f64,
    pub store_error: f64,
    pub partial_write: f64,
    pub crash: f64,
    pub publish_error: f64,
}

impl Rates {
    pub fn random(rng: &mut Rng) -> Rates {
        let scale = [0.0, 0.01, 0.03, 0.08][rng.below(4) as usize];
        Rates {
            throttle: scale * 2.0,
            transient: scale,
            store_error: scale,
            partial_write: scale,
            crash: scale / 2.0,
            publish_error: scale * 2.0,
        }
    }
}

/// The shared fault state of one schedule.
pub struct Faults {
    rng: Mutex<Rng>,
    rates: Rates,
    enabled: AtomicBool,
    injected: Mutex<BTreeMap<&'static str, u64>>,
    /// Alerts published whose mark may not have happened (a crash between publish and mark).
    pub publish_crashes: Mutex<BTreeSet<(String, String)>>,
    /// Every checkpoint value seen per key, in order.
    pub checkpoints: Mutex<HashMap<String, Vec<DateTime<Utc>>>>,
}

impl Faults {
    pub fn new(seed: u64, rates: Rates) -> Arc<Faults> {
        Arc::new(Faults {
            rng: Mutex::new(Rng::new(seed)),
            rates,
            enabled: AtomicBool::new(true),
            injected: Mutex::new(BTreeMap::new()),
            publish_crashes: Mutex::new(BTreeSet::new()),
            checkpoints: Mutex::new(HashMap::new()),
        })
    }

    /// Turns injection on or off (the quiet runs at the end run without faults).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<&'static str, u64> {
        self.injected.lock().unwrap().clone()
    }

    fn roll(&self, kind: &'static str, p: f64) -> bool {
        if !self.enabled.load(Ordering::SeqCst) || p <= 0.0 {
            return false;
        }
        let hit = self.rng.lock().unwrap().chance(p);
        if hit {
            *self.injected.lock().unwrap().entry(kind).or_default() += 1;
        }
        hit
    }

    fn error(operation: &'static str) -> StoreError {
        StoreError {
            operation,
            message: "InternalServerError (injected)".into(),
        }
    }

    fn record_checkpoint(&self, key: &str, state: &SourceState) {
        if let Some(cp) = state.checkpoint {
            self.checkpoints
                .lock()
                .unwrap()
                .entry(key.to_string())
                .or_default()
                .push(cp);
        }
    }
}

/// The invocation dies here: the call never returns.
async fn crash<T>() -> T {
    std::future::pending().await
}

/// An adapter with faults.
pub struct Faulty<T> {
    pub inner: Arc<T>,
    pub faults: Arc<Faults>,
}

impl<T> Faulty<T> {
    pub fn new(inner: Arc<T>, faults: Arc<Faults>) -> Self {
        Faulty { inner, faults }
    }
}

impl<T: EventSource> EventSource for Faulty<T> {
    async fn lookup(&self, request: &LookupRequest) -> Result<LookupPage, LookupError> {
        tokio::task::yield_now().await;
        let r = self.faults.rates;
        if self.faults.roll("lookup throttled", r.throttle) {
            return Err(LookupError::Throttled("Rate exceeded (injected)".into()));
        }
        if self.faults.roll("lookup 5xx", r.transient) {
            return Err(LookupError::Transient("HTTP 503 (injected)".into()));
        }
        if self.faults.roll("lookup timeout", r.transient / 2.0) {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            return Err(LookupError::Transient(
                "request timed out (injected)".into(),
            ));
        }
        if self.faults.roll("crash in lookup", r.crash) {
            return crash().await;
        }
        self.inner.lookup(request).await
    }
}

impl<T: EventStore> EventStore for Faulty<T> {
    async fn put_events(&self, events: &[NormalizedEvent]) -> Result<PutOutcome, StoreError> {
        tokio::task::yield_now().await;
        let r = self.faults.rates;
        if self.faults.roll("BatchWriteItem 5xx", r.store_error) {
            return Err(Faults::error("dynamodb:BatchWriteItem"));
        }
        if events.len() > 1 && self.faults.roll("UnprocessedItems left", r.partial_write) {
            // Part of the batch is written, the rest stays unprocessed after the retries.
            let part = events.len() / 2;
            self.inner.put_events(&events[..part]).await?;
            return Err(StoreError {
                operation: "dynamodb:BatchWriteItem",
                message: format!("{} items still unprocessed (injected)", events.len() - part),
            });
        }
        let outcome = self.inner.put_events(events).await?;
        if self.faults.roll("crash after write", r.crash) {
            return crash().await;
        }
        Ok(outcome)
    }

    async fn events_named(
        &self,
        name: &str,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<NormalizedEvent>, StoreError> {
        tokio::task::yield_now().await;
        if self.faults.roll("Query 5xx", self.faults.rates.store_error) {
            return Err(Faults::error("dynamodb:Query"));
        }
        self.inner.events_named(name, until, limit).await
    }
}

impl<T: EventReader> EventReader for Faulty<T> {
    async fn day_page(
        &self,
        date: NaiveDate,
        after: Option<String>,
    ) -> Result<DayPage, StoreError> {
        tokio::task::yield_now().await;
        if self.faults.roll("Query 5xx", self.faults.rates.store_error) {
            return Err(Faults::error("dynamodb:Query"));
        }
        if self
            .faults
            .roll("crash in export read", self.faults.rates.crash)
        {
            return crash().await;
        }
        self.inner.day_page(date, after).await
    }
}

impl<T: ControlStore> ControlStore for Faulty<T> {
    async fn source_state(&self, key: &str) -> Result<SourceState, StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("GetItem 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("dynamodb:GetItem"));
        }
        let state = self.inner.source_state(key).await?;
        self.faults.record_checkpoint(key, &state);
        Ok(state)
    }

    async fn record_slice(
        &self,
        key: &str,
        checkpoint: Option<DateTime<Utc>>,
        stored: u64,
        now: DateTime<Utc>,
    ) -> Result<SourceState, StoreError> {
        tokio::task::yield_now().await;
        let r = self.faults.rates;
        if self.faults.roll("crash before checkpoint", r.crash) {
            return crash().await;
        }
        if self.faults.roll("checkpoint write 5xx", r.store_error) {
            return Err(Faults::error("dynamodb:UpdateItem"));
        }
        let state = self
            .inner
            .record_slice(key, checkpoint, stored, now)
            .await?;
        self.faults.record_checkpoint(key, &state);
        Ok(state)
    }

    async fn record_error(
        &self,
        key: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.record_error(key, error, now).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        duration: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("lease write 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("dynamodb:PutItem (lease)"));
        }
        self.inner.acquire_lease(name, holder, now, duration).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("lease release 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("dynamodb:DeleteItem (lease)"));
        }
        self.inner.release_lease(name, holder).await
    }

    async fn put_run(&self, summary: &RunSummary) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("run record 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("dynamodb:PutItem (run)"));
        }
        self.inner.put_run(summary).await
    }

    async fn last_export(&self) -> Result<Option<NaiveDate>, StoreError> {
        self.inner.last_export().await
    }

    async fn export_record(&self, date: NaiveDate) -> Result<Option<ExportRecord>, StoreError> {
        self.inner.export_record(date).await
    }

    async fn record_export(
        &self,
        date: NaiveDate,
        rows: u64,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("crash before export record", self.faults.rates.crash)
        {
            return crash().await;
        }
        self.inner.record_export(date, rows, keys, now).await
    }

    async fn mark_dirty(&self, dates: &[NaiveDate]) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("dirty mark 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("dynamodb:UpdateItem (dirty)"));
        }
        self.inner.mark_dirty(dates).await
    }

    async fn add_to_counter(
        &self,
        key: &str,
        entry: &str,
        expires: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("counter 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("dynamodb:UpdateItem (counter)"));
        }
        self.inner.add_to_counter(key, entry, expires).await
    }

    async fn claim_burst(
        &self,
        key: &str,
        chain_start: DateTime<Utc>,
        until: DateTime<Utc>,
        trigger: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .claim_burst(key, chain_start, until, trigger)
            .await
    }
    async fn drop_counter_entries(&self, key: &str, entries: &[String]) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        self.inner.drop_counter_entries(key, entries).await
    }

    async fn dirty_dates(&self) -> Result<BTreeMap<NaiveDate, u64>, StoreError> {
        tokio::task::yield_now().await;
        self.inner.dirty_dates().await
    }

    async fn clear_dirty(&self, date: NaiveDate, seq: u64) -> Result<bool, StoreError> {
        tokio::task::yield_now().await;
        self.inner.clear_dirty(date, seq).await
    }
}

impl<T: ObjectStore> ObjectStore for Faulty<T> {
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        tokio::task::yield_now().await;
        self.inner.head(key).await
    }

    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        let r = self.faults.rates;
        if self
            .faults
            .roll("upload failed between parts", r.store_error)
        {
            return Err(Faults::error("s3:UploadPart"));
        }
        if self.faults.roll("crash during upload", r.crash) {
            return crash().await;
        }
        self.inner.put_file(key, path, metadata).await
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("PutObject 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("s3:PutObject"));
        }
        self.inner.put_bytes(key, bytes, content_type).await
    }
}

impl<T: AlertStore> AlertStore for Faulty<T> {
    async fn enqueue(&self, alert: &AlertRecord) -> Result<bool, StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("outbox write 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("dynamodb:PutItem (alert)"));
        }
        self.inner.enqueue(alert).await
    }

    async fn deliverable(
        &self,
        limit: usize,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("outbox read 5xx", self.faults.rates.store_error)
        {
            return Err(Faults::error("dynamodb:Query (alerts)"));
        }
        self.inner.deliverable(limit, stale_before).await
    }

    async fn claim(
        &self,
        alert: &AlertRecord,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        tokio::task::yield_now().await;
        self.inner.claim(alert, now, stale_before).await
    }

    async fn mark_sent(
        &self,
        alert: &AlertRecord,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        if self.faults.roll(
            "crash between publish and mark",
            self.faults.rates.crash * 4.0,
        ) {
            self.faults
                .publish_crashes
                .lock()
                .unwrap()
                .insert((alert.event_id.clone(), alert.rule_id.clone()));
            return crash().await;
        }
        self.inner.mark_sent(alert, message_id, now).await
    }

    async fn release(
        &self,
        alert: &AlertRecord,
        error: &str,
        max_attempts: u32,
    ) -> Result<Released, StoreError> {
        self.inner.release(alert, error, max_attempts).await
    }

    async fn failed_count(&self) -> Result<u64, StoreError> {
        self.inner.failed_count().await
    }
}

impl<T: Notifier> Notifier for Faulty<T> {
    async fn publish(&self, notification: &Notification) -> Result<String, StoreError> {
        tokio::task::yield_now().await;
        if self
            .faults
            .roll("publish failed", self.faults.rates.publish_error)
        {
            return Err(Faults::error("sns:Publish"));
        }
        self.inner.publish(notification).await
    }
}
