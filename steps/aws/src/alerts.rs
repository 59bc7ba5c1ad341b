//! The alerts table as an outbox (DynamoDB).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use iamtrail_core::outbox::{sent_ttl, status, AlertRecord};
use iamtrail_core::record::format_time;

use crate::dynamo::conditional_failed;
use crate::ports::{AlertStore, Released, StoreError};

/// Most waiting alerts read to choose the delivery order (the rest wait for a later run).
const MAX_WAITING_READ: usize = 5000;

/// The alerts table's index of delivery states (`status` hash, `created_at` range).
pub const STATUS_INDEX: &str = "status-created_at-index";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn error(operation: &'static str, e: impl std::error::Error) -> StoreError {
    StoreError {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// The DynamoDB item of an outbox record.
pub fn alert_item(a: &AlertRecord) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("event_id".to_string(), s(&a.event_id)),
        ("alert_type".to_string(), s(&a.alert_type)),
        ("rule_id".to_string(), s(&a.rule_id)),
        ("alert_title".to_string(), s(&a.alert_title)),
        ("severity".to_string(), s(&a.severity)),
        ("event_name".to_string(), s(&a.event_name)),
        ("event_time".to_string(), s(&a.event_time)),
        ("user_name".to_string(), s(&a.user_name)),
        ("aws_region".to_string(), s(&a.aws_region)),
        ("subject".to_string(), s(&a.subject)),
        ("body".to_string(), s(&a.body)),
        ("status".to_string(), s(&a.status)),
        ("created_at".to_string(), s(&a.created_at)),
    ]);
    if let Some(ttl) = a.ttl {
        item.insert("ttl".to_string(), AttributeValue::N(ttl.to_string()));
    }
    if a.attempts > 0 {
        item.insert(
            "attempts".to_string(),
            AttributeValue::N(a.attempts.to_string()),
        );
    }
    if let Some(e) = &a.last_error {
        item.insert("last_error".to_string(), s(e));
    }
    if let Some(g) = &a.group {
        item.insert("alert_group".to_string(), s(g));
    }
    if let Some(line) = &a.group_line {
        item.insert("group_line".to_string(), s(line));
    }
    item
}

/// An outbox record from its DynamoDB item.
pub fn alert_from_item(item: &HashMap<String, AttributeValue>) -> Option<AlertRecord> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(AlertRecord {
        event_id: text("event_id")?,
        alert_type: text("alert_type")?,
        rule_id: text("rule_id").unwrap_or_default(),
        alert_title: text("alert_title").unwrap_or_default(),
        severity: text("severity").unwrap_or_default(),
        event_name: text("event_name").unwrap_or_default(),
        event_time: text("event_time").unwrap_or_default(),
        user_name: text("user_name").unwrap_or_default(),
        aws_region: text("aws_region").unwrap_or_default(),
        subject: text("subject").unwrap_or_default(),
        body: text("body").unwrap_or_default(),
        status: text("status").unwrap_or_default(),
        created_at: text("created_at").unwrap_or_default(),
        ttl: item
            .get("ttl")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()),
        attempts: item
            .get("attempts")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        last_error: text("last_error"),
        group: text("alert_group"),
        group_line: text("group_line"),
    })
}

/// The alerts table.
#[derive(Clone)]
pub struct DynamoAlertStore {
    client: Client,
    table: String,
}

impl DynamoAlertStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAlertStore {
            client,
            table: table.into(),
        }
    }

    fn key(&self, a: &AlertRecord) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("event_id".to_string(), s(&a.event_id)),
            ("alert_type".to_string(), s(&a.alert_type)),
        ])
    }

    /// A Query of the status index for one status, from `start`.
    fn status_query(
        &self,
        state: &str,
        start: Option<HashMap<String, AttributeValue>>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(STATUS_INDEX)
            .key_condition_expression("#s = :s")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", s(state))
            .set_exclusive_start_key(start)
    }

    async fn by_status(
        &self,
        state: &str,
        limit: usize,
        stale_before: Option<DateTime<Utc>>,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut query = self.status_query(state, start.take());
            if let Some(stale) = stale_before {
                query = query
                    .filter_expression("claimed_at < :stale")
                    .expression_attribute_values(":stale", s(format_time(stale)));
            }
            let page = query
                .send()
                .await
                .map_err(|e| error("dynamodb:Query (alerts)", e))?;
            out.extend(page.items().iter().filter_map(alert_from_item));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() && out.len() < limit => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

impl AlertStore for DynamoAlertStore {
    async fn enqueue(&self, alert: &AlertRecord) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(alert_item(alert)))
            .condition_expression("attribute_not_exists(event_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(error("dynamodb:PutItem (alert)", e)),
        }
    }

    async fn deliverable(
        &self,
        limit: usize,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        // Every waiting alert is read (up to a bound), so that the order is by severity and
        // recency across all of them, not by the index's creation order.
        let mut alerts = self
            .by_status(status::PENDING, MAX_WAITING_READ, None)
            .await?;
        alerts.extend(
            self.by_status(status::SENDING, MAX_WAITING_READ, Some(stale_before))
                .await?,
        );
        AlertRecord::sort_for_delivery(&mut alerts);
        alerts.truncate(limit);
        Ok(alerts)
    }

    async fn claim(
        &self,
        alert: &AlertRecord,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(alert)))
            .update_expression("SET #s = :sending, claimed_at = :now")
            .condition_expression("#s = :pending OR (#s = :sending AND claimed_at < :stale)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":sending", s(status::SENDING))
            .expression_attribute_values(":pending", s(status::PENDING))
            .expression_attribute_values(":now", s(format_time(now)))
            .expression_attribute_values(":stale", s(format_time(stale_before)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(error("dynamodb:UpdateItem (claim alert)", e)),
        }
    }

    async fn mark_sent(
        &self,
        alert: &AlertRecord,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(alert)))
            .update_expression("SET #s = :sent, message_id = :m, sent_timestamp = :now, #ttl = :ttl REMOVE claimed_at, last_error")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", AttributeValue::N(sent_ttl(now).to_string()))
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":sent", s(status::SENT))
            .expression_attribute_values(":m", s(message_id))
            .expression_attribute_values(":now", s(format_time(now)))
            .send()
            .await
            .map_err(|e| error("dynamodb:UpdateItem (alert sent)", e))?;
        Ok(())
    }

    /// One conditional update that counts the attempt, records the error and moves the status
    /// on together: first as the last attempt (`failed`), else back to `pending`. Nothing is
    /// left half-done by a crash, and a retry after success changes nothing (the alert is no
    /// longer `sending`).
    async fn release(
        &self,
        alert: &AlertRecord,
        message: &str,
        max_attempts: u32,
    ) -> Result<Released, StoreError> {
        let message: String = message.chars().take(1000).collect();
        // This attempt is the last one when `max_attempts - 1` attempts failed before it.
        let before = max_attempts.saturating_sub(1);
        let update = |next: &str| {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(self.key(alert)))
                .update_expression(
                    "SET #s = :next, last_error = :e REMOVE claimed_at ADD attempts :one",
                )
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":sending", s(status::SENDING))
                .expression_attribute_values(":next", s(next))
                .expression_attribute_values(":e", s(message.clone()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
        };
        let last = if before == 0 {
            update(status::FAILED).condition_expression("#s = :sending")
        } else {
            update(status::FAILED)
                .condition_expression("#s = :sending AND attempts >= :before")
                .expression_attribute_values(":before", AttributeValue::N(before.to_string()))
        };
        match last.send().await {
            Ok(_) => return Ok(Released::Failed),
            Err(e) if conditional_failed(&e) => {}
            Err(e) => return Err(error("dynamodb:UpdateItem (release alert)", e)),
        }
        match update(status::PENDING)
            .condition_expression("#s = :sending")
            .send()
            .await
        {
            Ok(_) => Ok(Released::Pending),
            Err(e) if conditional_failed(&e) => {
                // Not ours any more: its claim expired and another delivery took it over.
                tracing::warn!(event_id = %alert.event_id, rule = %alert.alert_type, "alert no longer claimed by this delivery; its release is skipped");
                Ok(Released::Pending)
            }
            Err(e) => Err(error("dynamodb:UpdateItem (release alert)", e)),
        }
    }

    async fn failed_count(&self) -> Result<u64, StoreError> {
        let mut count = 0u64;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .status_query(status::FAILED, start.take())
                .select(Select::Count)
                .send()
                .await
                .map_err(|e| error("dynamodb:Query (failed alerts)", e))?;
            count += page.count().max(0) as u64;
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(count),
            }
        }
    }
}
