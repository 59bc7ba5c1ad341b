//! DynamoDB adapters: the events table and the control table.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use iamtrail_core::contract::RunSummary;
use iamtrail_core::normalize::AttrValue;
use iamtrail_core::record::{format_time, parse_time};
use iamtrail_core::NormalizedEvent;

use crate::ports::{ControlStore, EventStore, SourceState, StoreError};

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

/// Exponential back-off with a cap: 50 ms, 100 ms, ... up to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(7)).min(5_000))
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
    async fn write_batch(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            if attempt >= MAX_BATCH_ATTEMPTS {
                return Err(StoreError {
                    operation: "dynamodb:BatchWriteItem",
                    message: format!(
                        "{} items still unprocessed after {attempt} attempts",
                        pending.len()
                    ),
                });
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
                    let throttled = e
                        .as_service_error()
                        .and_then(|s| s.code())
                        .is_some_and(|c| {
                            c.contains("Throughput")
                                || c.contains("Throttl")
                                || c == "RequestLimitExceeded"
                        });
                    if !throttled {
                        return Err(store_error("dynamodb:BatchWriteItem", e));
                    }
                    tracing::warn!(attempt, "BatchWriteItem throttled; retrying");
                }
            }
        }
        Ok(())
    }
}

impl EventStore for DynamoEventStore {
    async fn put_events(&self, events: &[NormalizedEvent]) -> Result<u64, StoreError> {
        // A batch may not name one key twice: keep the last copy of each key.
        let mut unique: Vec<&NormalizedEvent> = Vec::with_capacity(events.len());
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for e in events {
            match seen.get(&(e.event_date.as_str(), e.event_id.as_str())) {
                Some(&i) => unique[i] = e,
                None => {
                    seen.insert((&e.event_date, &e.event_id), unique.len());
                    unique.push(e);
                }
            }
        }
        for chunk in unique.chunks(BATCH_SIZE) {
            let requests = chunk
                .iter()
                .map(|e| {
                    let put = PutRequest::builder()
                        .set_item(Some(event_item(e)))
                        .build()
                        .map_err(|err| store_error("build PutRequest", err))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            self.write_batch(requests).await?;
        }
        Ok(unique.len() as u64)
    }
}

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

impl ControlStore for DynamoControlStore {
    async fn source_state(&self, key: &str) -> Result<SourceState, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("region", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("dynamodb:GetItem (control)", e))?;
        let Some(item) = out.item() else {
            return Ok(SourceState::default());
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Ok(SourceState {
            checkpoint: text("last_processed_timestamp")
                .as_deref()
                .and_then(parse_time),
            processing_status: text("processing_status"),
        })
    }

    async fn record_slice(
        &self,
        key: &str,
        checkpoint: Option<DateTime<Utc>>,
        stored: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let base = || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("region", s(key))
                .expression_attribute_values(":now", s(format_time(now)))
                .expression_attribute_values(":n", AttributeValue::N(stored.to_string()))
                .expression_attribute_values(":active", s("active"))
        };
        if let Some(cp) = checkpoint {
            // The condition keeps a checkpoint from moving back when two runs race.
            let result = base()
                .update_expression(
                    "SET last_processed_timestamp = :cp, last_execution_time = :now, processing_status = :active \
                     REMOVE last_error ADD events_processed_count :n",
                )
                .condition_expression("attribute_not_exists(last_processed_timestamp) OR last_processed_timestamp < :cp")
                .expression_attribute_values(":cp", s(format_time(cp)))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(store_error("dynamodb:UpdateItem (checkpoint)", e)),
            }
        }
        base()
            .update_expression("SET last_execution_time = :now, processing_status = :active REMOVE last_error ADD events_processed_count :n")
            .send()
            .await
            .map_err(|e| store_error("dynamodb:UpdateItem (control)", e))?;
        Ok(())
    }

    async fn record_error(
        &self,
        key: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(2000).collect();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("region", s(key))
            .update_expression(
                "SET last_error = :e, processing_status = :s, last_execution_time = :now",
            )
            .expression_attribute_values(":e", s(error))
            .expression_attribute_values(":s", s("error"))
            .expression_attribute_values(":now", s(format_time(now)))
            .send()
            .await
            .map_err(|e| store_error("dynamodb:UpdateItem (error)", e))?;
        Ok(())
    }

    async fn put_run(&self, summary: &RunSummary) -> Result<(), StoreError> {
        let json = serde_json::to_string(summary).map_err(|e| StoreError {
            operation: "serialise run",
            message: e.to_string(),
        })?;
        let expires = parse_time(&summary.finished_at).unwrap_or_else(Utc::now)
            + chrono::Duration::days(RUN_RECORD_DAYS);
        let put = |key: String| {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("region", s(key))
                .item("run_id", s(&summary.run_id))
                .item("status", s(&summary.status))
                .item("finished_at", s(&summary.finished_at))
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
            .expression_attribute_values(":f", s(&summary.finished_at))
            .send()
            .await;
        match latest {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(store_error("dynamodb:PutItem (latest run)", e)),
        }
        Ok(())
    }
}
