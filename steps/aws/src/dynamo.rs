//! DynamoDB adapters: the events table and the control table.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use iamtrail_core::contract::RunSummary;
use iamtrail_core::normalize::AttrValue;
use iamtrail_core::record::{format_time, parse_time};
use iamtrail_core::NormalizedEvent;

use crate::backoff::{backoff, BATCH_BACKOFF};
use crate::ports::{
    ControlStore, DayPage, EventReader, EventStore, ExportRecord, IngestLedger, LeaseOutcome,
    PutOutcome, SourceState, StoreError,
};

/// BatchWriteItem takes at most 25 requests.
pub const BATCH_SIZE: usize = 25;
/// Attempts at writing a batch's unprocessed items before giving up.
const MAX_BATCH_ATTEMPTS: u32 = 12;

/// Converts an SDK-free attribute into a DynamoDB one.
pub fn to_attribute(value: &AttrValue) -> AttributeValue {
    match value {
        AttrValue::S(s) => AttributeValue::S(s.clone()),
        AttrValue::N(n) => AttributeValue::N(n.clone()),
        AttrValue::Bool(b) => AttributeValue::Bool(*b),
        AttrValue::List(items) => {
            AttributeValue::L(items.iter().map(|s| AttributeValue::S(s.clone())).collect())
        }
    }
}

/// The DynamoDB item of an event.
pub fn event_item(event: &NormalizedEvent) -> HashMap<String, AttributeValue> {
    event
        .attributes()
        .iter()
        .map(|(name, value)| (name.to_string(), to_attribute(value)))
        .collect()
}

fn store_error(operation: &'static str, err: impl std::error::Error) -> StoreError {
    StoreError {
        operation,
        message: DisplayErrorContext(err).to_string(),
    }
}

/// Whether a DynamoDB call failed only because its condition did not hold (an expected
/// outcome of conditional writes, not an error).
pub(crate) fn conditional_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

/// The events table.
#[derive(Clone)]
pub struct DynamoEventStore {
    client: Client,
    table: String,
}

impl DynamoEventStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoEventStore {
            client,
            table: table.into(),
        }
    }

    /// Writes one batch (≤ 25 distinct keys), retrying `UnprocessedItems` with back-off until
    /// every item is stored.
    async fn write_batch(&self, mut pending: Vec<WriteRequest>) -> Result<(), BatchError> {
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt, BATCH_BACKOFF)).await;
            }
            if attempt >= MAX_BATCH_ATTEMPTS {
                return Err(BatchError::Store(StoreError {
                    operation: "dynamodb:BatchWriteItem",
                    message: format!(
                        "{} items still unprocessed after {attempt} attempts",
                        pending.len()
                    ),
                }));
            }
            attempt += 1;
            let result = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending.clone())
                .send()
                .await;
            match result {
                Ok(output) => {
                    pending = output
                        .unprocessed_items()
                        .and_then(|m| m.get(&self.table))
                        .cloned()
                        .unwrap_or_default();
                    if !pending.is_empty() {
                        tracing::warn!(
                            unprocessed = pending.len(),
                            attempt,
                            "BatchWriteItem left items unprocessed; retrying"
                        );
                    }
                }
                Err(e) => {
                    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                    if code == "ValidationException" {
                        return Err(BatchError::Invalid(
                            e.as_service_error()
                                .and_then(|s| s.message())
                                .unwrap_or("ValidationException")
                                .to_string(),
                        ));
                    }
                    let throttled = code.contains("Throughput")
                        || code.contains("Throttl")
                        || code == "RequestLimitExceeded";
                    let transient = e
                        .raw_response()
                        .is_some_and(|r| r.status().is_server_error())
                        || matches!(
                            e,
                            aws_sdk_dynamodb::error::SdkError::TimeoutError(_)
                                | aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)
                        );
                    if !throttled && !transient {
                        return Err(BatchError::Store(store_error("dynamodb:BatchWriteItem", e)));
                    }
                    tracing::warn!(
                        attempt,
                        code,
                        "BatchWriteItem throttled or failed; retrying"
                    );
                }
            }
        }
        Ok(())
    }
}

/// How a batch write failed.
enum BatchError {
    /// DynamoDB rejected the request as invalid (`ValidationException`): one of its items is.
    Invalid(String),
    Store(StoreError),
}

impl EventStore for DynamoEventStore {
    /// A Query of [`EVENT_NAME_INDEX`], newest first (eventually consistent, as every GSI
    /// read: Collect adds the batch it has just written itself).
    async fn events_named(
        &self,
        name: &str,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<NormalizedEvent>, StoreError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(EVENT_NAME_INDEX)
                .key_condition_expression("event_name = :n AND event_time <= :t")
                .expression_attribute_values(":n", s(name))
                .expression_attribute_values(":t", s(format_time(until)))
                .scan_index_forward(false)
                .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("dynamodb:Query (events by name)", e))?;
            found.extend(out.items().iter().filter_map(event_from_item));
            start = out.last_evaluated_key().cloned();
            if start.is_none() || found.len() >= limit {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Writes in batches of 25. A batch rejected as invalid is split in halves until the
    /// invalid items are isolated: those are reported as rejected, every other item is stored.
    async fn put_events(&self, events: &[NormalizedEvent]) -> Result<PutOutcome, StoreError> {
        // A batch may not name one key twice: keep the last copy of each key.
        let mut unique: Vec<(usize, &NormalizedEvent)> = Vec::with_capacity(events.len());
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (index, e) in events.iter().enumerate() {
            match seen.get(&(e.event_date.as_str(), e.event_id.as_str())) {
                Some(&i) => unique[i] = (index, e),
                None => {
                    seen.insert((&e.event_date, &e.event_id), unique.len());
                    unique.push((index, e));
                }
            }
        }
        let mut outcome = PutOutcome::default();
        let mut work: Vec<Vec<(usize, WriteRequest)>> = Vec::new();
        for chunk in unique.chunks(BATCH_SIZE).rev() {
            let mut batch = Vec::with_capacity(chunk.len());
            for (index, e) in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(event_item(e)))
                    .build()
                    .map_err(|err| store_error("build PutRequest", err))?;
                batch.push((*index, WriteRequest::builder().put_request(put).build()));
            }
            work.push(batch);
        }
        while let Some(batch) = work.pop() {
            let requests = batch.iter().map(|(_, r)| r.clone()).collect();
            match self.write_batch(requests).await {
                Ok(()) => outcome.written += batch.len() as u64,
                Err(BatchError::Store(e)) => return Err(e),
                Err(BatchError::Invalid(reason)) if batch.len() == 1 => {
                    tracing::warn!(index = batch[0].0, %reason, "DynamoDB rejected an item");
                    outcome.rejected.push((batch[0].0, reason));
                }
                Err(BatchError::Invalid(_)) => {
                    let mut older = batch;
                    let newer = older.split_off(older.len() / 2);
                    work.push(newer);
                    work.push(older);
                }
            }
        }
        outcome.rejected.sort();
        Ok(outcome)
    }
}

/// A normalised event back from its DynamoDB item (the inverse of [`event_item`]).
pub fn event_from_item(item: &HashMap<String, AttributeValue>) -> Option<NormalizedEvent> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let flag = |k: &str| item.get(k).and_then(|v| v.as_bool().ok()).copied();
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
    };
    Some(NormalizedEvent {
        event_date: text("event_date")?,
        event_id: text("event_id")?,
        event_time: text("event_time")?,
        event_name: text("event_name").unwrap_or_default(),
        event_source: text("event_source").unwrap_or_default(),
        event_type: text("event_type").unwrap_or_default(),
        user_name: text("user_name").unwrap_or_default(),
        user_identity_type: text("user_identity_type"),
        user_arn: text("user_arn"),
        principal_id: text("principal_id"),
        account_id: text("account_id"),
        access_key_id: text("access_key_id"),
        session_issuer: text("session_issuer"),
        session_issuer_arn: text("session_issuer_arn"),
        invoked_by: text("invoked_by"),
        mfa_authenticated: flag("mfa_authenticated"),
        mfa_used: flag("mfa_used"),
        aws_region: text("aws_region").unwrap_or_default(),
        source_ip: text("source_ip"),
        user_agent: text("user_agent"),
        request_parameters: text("request_parameters"),
        response_elements: text("response_elements"),
        additional_event_data: text("additional_event_data"),
        error_code: text("error_code"),
        error_message: text("error_message"),
        read_only: flag("read_only"),
        recipient_account_id: text("recipient_account_id"),
        ttl: number("ttl"),
        truncated_fields: item
            .get("truncated_fields")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        original_size: number("original_size").map(|n| n as usize),
        parse_error: text("parse_error"),
        raw_record: text("raw_record"),
        raw_s3_key: text("raw_s3_key"),
    })
}

impl EventReader for DynamoEventStore {
    async fn day_page(
        &self,
        date: chrono::NaiveDate,
        after: Option<String>,
    ) -> Result<DayPage, StoreError> {
        let day = date.format("%Y-%m-%d").to_string();
        let start = after.map(|id| {
            HashMap::from([
                ("event_date".to_string(), s(&day)),
                ("event_id".to_string(), s(id)),
            ])
        });
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("event_date = :d")
            .expression_attribute_values(":d", s(&day))
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("dynamodb:Query (events)", e))?;
        Ok(DayPage {
            events: out.items().iter().filter_map(event_from_item).collect(),
            next: out
                .last_evaluated_key()
                .and_then(|k| k.get("event_id"))
                .and_then(|v| v.as_s().ok())
                .cloned(),
        })
    }
}

/// The events table's index by name and time (the history the rules read).
pub const EVENT_NAME_INDEX: &str = "event_name-event_time-index";

/// The control table.
#[derive(Clone)]
pub struct DynamoControlStore {
    client: Client,
    table: String,
}

impl DynamoControlStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoControlStore {
            client,
            table: table.into(),
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Run records expire from the control table after 90 days.
const RUN_RECORD_DAYS: i64 = 90;
/// Leases live under `lease#<name>` (`lease#run`, `lease#region#eu-west-1`).
const LEASE_PREFIX: &str = "lease#";
/// The one item holding every dirty date as a `YYYY-MM-DD` number attribute (its sequence).
const DIRTY_KEY: &str = "export#dirty";

/// A source's state from its control item.
fn source_state_of(item: Option<&HashMap<String, AttributeValue>>) -> SourceState {
    let text = |name: &str| {
        item.and_then(|i| i.get(name))
            .and_then(|v| v.as_s().ok())
            .cloned()
    };
    SourceState {
        checkpoint: text("last_processed_timestamp")
            .as_deref()
            .and_then(parse_time),
        processing_status: text("processing_status"),
    }
}

impl DynamoControlStore {
    /// One control item, read consistently.
    async fn get(
        &self,
        key: &str,
        operation: &'static str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("region", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(operation, e))?;
        Ok(out.item().cloned())
    }
}

impl ControlStore for DynamoControlStore {
    async fn source_state(&self, key: &str) -> Result<SourceState, StoreError> {
        let item = self.get(key, "dynamodb:GetItem (control)").await?;
        Ok(source_state_of(item.as_ref()))
    }

    async fn record_slice(
        &self,
        key: &str,
        checkpoint: Option<DateTime<Utc>>,
        stored: u64,
        now: DateTime<Utc>,
    ) -> Result<SourceState, StoreError> {
        // Never touches a `paused` status: only a new item gets `active`.
        let base = || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("region", s(key))
                .expression_attribute_values(":now", s(format_time(now)))
                .expression_attribute_values(":n", AttributeValue::N(stored.to_string()))
                .expression_attribute_values(":active", s("active"))
                .return_values(ReturnValue::AllNew)
        };
        let mut updated = None;
        if let Some(cp) = checkpoint {
            // The condition keeps a checkpoint from moving back when two runs race.
            let result = base()
                .update_expression(
                    "SET last_processed_timestamp = :cp, last_execution_time = :now, \
                     processing_status = if_not_exists(processing_status, :active) \
                     ADD events_processed_count :n",
                )
                .condition_expression("attribute_not_exists(last_processed_timestamp) OR last_processed_timestamp < :cp")
                .expression_attribute_values(":cp", s(format_time(cp)))
                .send()
                .await;
            match result {
                Ok(out) => updated = Some(out),
                Err(e) if conditional_failed(&e) => {}
                Err(e) => return Err(store_error("dynamodb:UpdateItem (checkpoint)", e)),
            }
        }
        let out = match updated {
            Some(out) => out,
            None => base()
                .update_expression("SET last_execution_time = :now, processing_status = if_not_exists(processing_status, :active) ADD events_processed_count :n")
                .send()
                .await
                .map_err(|e| store_error("dynamodb:UpdateItem (control)", e))?,
        };
        let mut state = source_state_of(out.attributes());
        if state.processing_status.as_deref() == Some("error") {
            // A stored slice ends an error (but never a pause set meanwhile).
            let cleared = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("region", s(key))
                .update_expression("SET processing_status = :active REMOVE last_error")
                .condition_expression("processing_status = :error")
                .expression_attribute_values(":active", s("active"))
                .expression_attribute_values(":error", s("error"))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match cleared {
                Ok(out) => state = source_state_of(out.attributes()),
                Err(e) if conditional_failed(&e) => {}
                Err(e) => return Err(store_error("dynamodb:UpdateItem (clear error)", e)),
            }
        }
        Ok(state)
    }

    async fn record_error(
        &self,
        key: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(2000).collect();
        let update = |expression: &str| {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("region", s(key))
                .update_expression(expression)
                .expression_attribute_values(":e", s(&error))
                .expression_attribute_values(":now", s(format_time(now)))
        };
        let result =
            update("SET last_error = :e, processing_status = :s, last_execution_time = :now")
                .condition_expression(
                    "attribute_not_exists(processing_status) OR processing_status <> :paused",
                )
                .expression_attribute_values(":s", s("error"))
                .expression_attribute_values(":paused", s("paused"))
                .send()
                .await;
        match result {
            Ok(_) => Ok(()),
            // Paused: keep the pause, record the error only.
            Err(e) if conditional_failed(&e) => {
                update("SET last_error = :e, last_execution_time = :now")
                    .send()
                    .await
                    .map_err(|e| store_error("dynamodb:UpdateItem (error)", e))?;
                Ok(())
            }
            Err(e) => Err(store_error("dynamodb:UpdateItem (error)", e)),
        }
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        duration: chrono::Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        let key = format!("{LEASE_PREFIX}{name}");
        let expires = now + duration;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("region", s(&key))
            .item("holder", s(holder))
            .item("expires_at", s(format_time(expires)))
            .item("acquired_at", s(format_time(now)))
            // Expired leases disappear by themselves a day later.
            .item(
                "ttl",
                AttributeValue::N(
                    (expires + chrono::Duration::days(1))
                        .timestamp()
                        .to_string(),
                ),
            )
            .condition_expression("attribute_not_exists(#r) OR holder = :h OR expires_at < :now")
            .expression_attribute_names("#r", "region")
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":now", s(format_time(now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(LeaseOutcome::Acquired { expires }),
            Err(e) if conditional_failed(&e) => {
                let item = self.get(&key, "dynamodb:GetItem (lease)").await?;
                let text = |n: &str| {
                    item.as_ref()
                        .and_then(|i| i.get(n))
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                };
                Ok(LeaseOutcome::Held {
                    holder: text("holder").unwrap_or_else(|| "unknown".into()),
                    expires: text("expires_at")
                        .as_deref()
                        .and_then(parse_time)
                        .unwrap_or(now),
                })
            }
            Err(e) => Err(store_error("dynamodb:PutItem (lease)", e)),
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("region", s(format!("{LEASE_PREFIX}{name}")))
            .condition_expression("holder = :h")
            .expression_attribute_values(":h", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(store_error("dynamodb:DeleteItem (lease)", e)),
        }
    }

    async fn last_export(&self) -> Result<Option<chrono::NaiveDate>, StoreError> {
        let item = self
            .get("export#latest", "dynamodb:GetItem (export)")
            .await?;
        Ok(item
            .as_ref()
            .and_then(|i| i.get("last_exported_date"))
            .and_then(|v| v.as_s().ok())
            .and_then(|d| iamtrail_core::export::parse_date(d)))
    }

    async fn export_record(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Option<ExportRecord>, StoreError> {
        let key = format!("export#{}", date.format("%Y-%m-%d"));
        let Some(item) = self.get(&key, "dynamodb:GetItem (export)").await? else {
            return Ok(None);
        };
        Ok(Some(ExportRecord {
            rows: item
                .get("rows")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            keys: item
                .get("objects")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
            exported_at: item
                .get("exported_at")
                .and_then(|v| v.as_s().ok())
                .and_then(|t| parse_time(t))
                .unwrap_or_default(),
        }))
    }

    async fn record_export(
        &self,
        date: chrono::NaiveDate,
        rows: u64,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let day = date.format("%Y-%m-%d").to_string();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("region", s(format!("export#{day}")))
            .item("rows", AttributeValue::N(rows.to_string()))
            .item(
                "objects",
                AttributeValue::L(keys.iter().map(|k| s(k.clone())).collect()),
            )
            .item("exported_at", s(format_time(now)))
            .send()
            .await
            .map_err(|e| store_error("dynamodb:PutItem (export)", e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("region", s("export#latest"))
            .item("last_exported_date", s(&day))
            .item("exported_at", s(format_time(now)))
            .condition_expression(
                "attribute_not_exists(last_exported_date) OR last_exported_date < :d",
            )
            .expression_attribute_values(":d", s(&day))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(store_error("dynamodb:PutItem (export latest)", e)),
        }
    }

    async fn mark_dirty(&self, dates: &[chrono::NaiveDate]) -> Result<(), StoreError> {
        let mut dates = dates.to_vec();
        dates.sort();
        dates.dedup();
        if dates.is_empty() {
            return Ok(());
        }
        // One atomic update of one item: ADD 1 to a number attribute per date.
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("region", s(DIRTY_KEY))
            .expression_attribute_values(":one", AttributeValue::N("1".into()));
        let mut parts = Vec::with_capacity(dates.len());
        for (i, date) in dates.iter().enumerate() {
            update = update
                .expression_attribute_names(format!("#d{i}"), date.format("%Y-%m-%d").to_string());
            parts.push(format!("#d{i} :one"));
        }
        update
            .update_expression(format!("ADD {}", parts.join(", ")))
            .send()
            .await
            .map_err(|e| store_error("dynamodb:UpdateItem (dirty dates)", e))?;
        Ok(())
    }

    async fn add_to_counter(
        &self,
        key: &str,
        entry: &str,
        expires: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("region", s(key))
            .update_expression("ADD entries :e SET #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":e", AttributeValue::Ss(vec![entry.to_string()]))
            .expression_attribute_values(":ttl", AttributeValue::N(expires.timestamp().to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| store_error("dynamodb:UpdateItem (counter)", e))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get("entries"))
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default())
    }

    async fn claim_burst(
        &self,
        key: &str,
        chain_start: DateTime<Utc>,
        until: DateTime<Utc>,
        trigger: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("region", s(key))
            .update_expression("SET alerted_until = :until, alerted_trigger = :trigger")
            .condition_expression(
                "attribute_not_exists(alerted_until) OR alerted_until < :start OR alerted_trigger = :trigger",
            )
            .expression_attribute_values(":until", AttributeValue::N(until.timestamp().to_string()))
            .expression_attribute_values(
                ":start",
                AttributeValue::N(chain_start.timestamp().to_string()),
            )
            .expression_attribute_values(":trigger", s(trigger))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(store_error("dynamodb:UpdateItem (burst claim)", e)),
        }
    }

    async fn drop_counter_entries(&self, key: &str, entries: &[String]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("region", s(key))
            .update_expression("DELETE entries :e")
            .expression_attribute_values(":e", AttributeValue::Ss(entries.to_vec()))
            .send()
            .await
            .map_err(|e| store_error("dynamodb:UpdateItem (counter)", e))?;
        Ok(())
    }

    async fn dirty_dates(
        &self,
    ) -> Result<std::collections::BTreeMap<chrono::NaiveDate, u64>, StoreError> {
        let item = self
            .get(DIRTY_KEY, "dynamodb:GetItem (dirty dates)")
            .await?;
        Ok(item
            .iter()
            .flatten()
            .filter_map(|(name, value)| {
                let date = iamtrail_core::export::parse_date(name)?;
                let seq = value.as_n().ok()?.parse().ok()?;
                Some((date, seq))
            })
            .collect())
    }

    async fn clear_dirty(&self, date: chrono::NaiveDate, seq: u64) -> Result<bool, StoreError> {
        if seq == 0 {
            return Ok(true);
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("region", s(DIRTY_KEY))
            .update_expression("REMOVE #d")
            .condition_expression("#d = :seq")
            .expression_attribute_names("#d", date.format("%Y-%m-%d").to_string())
            .expression_attribute_values(":seq", AttributeValue::N(seq.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(store_error("dynamodb:UpdateItem (clear dirty)", e)),
        }
    }

    async fn put_run(&self, summary: &RunSummary) -> Result<(), StoreError> {
        let json = serde_json::to_string(summary).map_err(|e| StoreError {
            operation: "serialise run",
            message: e.to_string(),
        })?;
        let finished_at = format_time(summary.finished_at);
        let expires = summary.finished_at + chrono::Duration::days(RUN_RECORD_DAYS);
        let put = |key: String| {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("region", s(key))
                .item("run_id", s(&summary.run_id))
                .item("status", s(&summary.status))
                .item("finished_at", s(&finished_at))
                .item("summary", s(&json))
        };
        put(format!("run#{}", summary.run_id))
            .item("ttl", AttributeValue::N(expires.timestamp().to_string()))
            .send()
            .await
            .map_err(|e| store_error("dynamodb:PutItem (run record)", e))?;
        // `run#latest` never expires, and a redrive of an older run does not overwrite it.
        let latest = put("run#latest".to_string())
            .condition_expression("attribute_not_exists(finished_at) OR finished_at <= :f")
            .expression_attribute_values(":f", s(&finished_at))
            .send()
            .await;
        match latest {
            Ok(_) => {}
            Err(e) if conditional_failed(&e) => {}
            Err(e) => return Err(store_error("dynamodb:PutItem (latest run)", e)),
        }
        Ok(())
    }
}

/// The control-table key of an ingested trail object's mark.
fn ingested_key(object: &str) -> String {
    format!("ingested#{object}")
}

/// The control-table key of a trail bucket's checkpoints.
fn trail_key(bucket: &str) -> String {
    format!("trail#{bucket}")
}

/// The attribute of one account and region's checkpoint on its bucket's item.
const CHECKPOINT_ATTRIBUTE: &str = "cp#";

impl IngestLedger for DynamoControlStore {
    async fn is_ingested(&self, object: &str) -> Result<bool, StoreError> {
        let item = self
            .get(&ingested_key(object), "dynamodb:GetItem (ingested mark)")
            .await?;
        Ok(item.is_some())
    }

    async fn mark_ingested(
        &self,
        object: &str,
        items: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("region", s(ingested_key(object)))
            .item("items", AttributeValue::N(items.to_string()))
            .item("ingested_at", s(format_time(at)))
            .send()
            .await
            .map_err(|e| store_error("dynamodb:PutItem (ingested mark)", e))?;
        Ok(())
    }

    async fn advance_trail_checkpoint(
        &self,
        bucket: &str,
        account: &str,
        region: &str,
        written: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("region", s(trail_key(bucket)))
            .update_expression("SET #cp = :t")
            .condition_expression("attribute_not_exists(#cp) OR #cp < :t")
            .expression_attribute_names("#cp", format!("{CHECKPOINT_ATTRIBUTE}{account}#{region}"))
            .expression_attribute_values(":t", AttributeValue::N(written.timestamp().to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer object is already recorded.
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(store_error("dynamodb:UpdateItem (trail checkpoint)", e)),
        }
    }

    async fn trail_checkpoints(
        &self,
        bucket: &str,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, StoreError> {
        let item = self
            .get(&trail_key(bucket), "dynamodb:GetItem (trail checkpoints)")
            .await?
            .unwrap_or_default();
        let mut out: Vec<(String, String, DateTime<Utc>)> = item
            .iter()
            .filter_map(|(name, value)| {
                let (account, region) = name.strip_prefix(CHECKPOINT_ATTRIBUTE)?.split_once('#')?;
                let seconds = value.as_n().ok()?.parse::<i64>().ok()?;
                Some((
                    account.to_string(),
                    region.to_string(),
                    DateTime::from_timestamp(seconds, 0)?,
                ))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
