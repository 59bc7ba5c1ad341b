//! The three tables' definitions, as `template.yaml` declares them. The local stack creates
//! its tables from these, and a test holds them equal to the template.

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    SseSpecification, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

/// A global secondary index: name, hash key, range key (projection ALL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: &'static str,
    pub hash: &'static str,
    pub range: &'static str,
}

/// One table's definition (every key attribute is a string; billing on demand; SSE on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Suffix after `{stack}-`.
    pub suffix: &'static str,
    pub hash: &'static str,
    pub range: Option<&'static str>,
    pub indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<&'static str>,
    pub point_in_time_recovery: bool,
}

impl TableSpec {
    /// Every attribute that must be declared (keys of the table and of its indexes).
    pub fn attribute_names(&self) -> Vec<&'static str> {
        let mut names = vec![self.hash];
        names.extend(self.range);
        for index in &self.indexes {
            names.push(index.hash);
            names.push(index.range);
        }
        names.dedup();
        let mut unique = Vec::new();
        for n in names {
            if !unique.contains(&n) {
                unique.push(n);
            }
        }
        unique
    }
}

/// The events, control and alerts tables.
pub fn table_specs() -> Vec<TableSpec> {
    vec![
        TableSpec {
            suffix: "events",
            hash: "event_date",
            range: Some("event_id"),
            indexes: vec![
                IndexSpec {
                    name: "user_name-event_time-index",
                    hash: "user_name",
                    range: "event_time",
                },
                IndexSpec {
                    name: "event_name-event_time-index",
                    hash: "event_name",
                    range: "event_time",
                },
            ],
            ttl_attribute: Some("ttl"),
            point_in_time_recovery: true,
        },
        TableSpec {
            suffix: "control",
            hash: "region",
            range: None,
            indexes: vec![],
            ttl_attribute: Some("ttl"),
            point_in_time_recovery: true,
        },
        TableSpec {
            suffix: "alerts",
            hash: "event_id",
            range: Some("alert_type"),
            indexes: vec![IndexSpec {
                name: "status-created_at-index",
                hash: "status",
                range: "created_at",
            }],
            ttl_attribute: Some("ttl"),
            point_in_time_recovery: true,
        },
    ]
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key schema has its fields")
}

/// Creates a table (if it does not exist) with its TTL and point-in-time recovery.
pub async fn create_table(
    client: &Client,
    stack: &str,
    spec: &TableSpec,
) -> Result<String, String> {
    let name = format!("{stack}-{}", spec.suffix);
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what} {name}: {e}");
    let mut request = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .sse_specification(SseSpecification::builder().enabled(true).build())
        .key_schema(key(spec.hash, KeyType::Hash));
    if let Some(range) = spec.range {
        request = request.key_schema(key(range, KeyType::Range));
    }
    for attr in spec.attribute_names() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition has its fields"),
        );
    }
    for index in &spec.indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.hash, KeyType::Hash))
                .key_schema(key(index.range, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index has its fields"),
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            return Ok(name)
        }
        Err(e) => return Err(err("CreateTable", &DisplayErrorContext(e))),
    }
    if let Some(ttl) = spec.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl)
                    .enabled(true)
                    .build()
                    .expect("ttl spec"),
            )
            .send()
            .await
            .map_err(|e| err("UpdateTimeToLive", &DisplayErrorContext(e)))?;
    }
    if spec.point_in_time_recovery {
        client
            .update_continuous_backups()
            .table_name(&name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()
                    .expect("pitr spec"),
            )
            .send()
            .await
            .map_err(|e| err("UpdateContinuousBackups", &DisplayErrorContext(e)))?;
    }
    Ok(name)
}
