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

use crate::ports::{ControlStore, DayPage, EventReader, EventStore, SourceState, StoreError};

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
    })
}

impl EventReader for DynamoEventStore {
    async fn day_page(
        &self,
        date: chrono::NaiveDate,
        start: Option<HashMap<String, AttributeValue>>,
    ) -> Result<DayPage, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("event_date = :d")
            .expression_attribute_values(
                ":d",
                AttributeValue::S(date.format("%Y-%m-%d").to_string()),
            )
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("dynamodb:Query (events)", e))?;
        Ok(DayPage {
            events: out.items().iter().filter_map(event_from_item).collect(),
            next: out.last_evaluated_key().filter(|k| !k.is_empty()).cloned(),
        })
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
                Err(e) if conditional_failed(&e) => {}
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

    async fn last_export(&self) -> Result<Option<chrono::NaiveDate>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("region", s("export#latest"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("dynamodb:GetItem (export)", e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("last_exported_date"))
            .and_then(|v| v.as_s().ok())
            .and_then(|d| iamtrail_core::export::parse_date(d)))
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
            Err(e) if conditional_failed(&e) => {}
            Err(e) => return Err(store_error("dynamodb:PutItem (latest run)", e)),
        }
        Ok(())
    }
}
