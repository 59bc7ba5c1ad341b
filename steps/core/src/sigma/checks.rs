//! Checks run on a rule file's YAML before the engine sees it: what the engine would accept
//! but iamtrail cannot evaluate faithfully (a correlation, a `timeframe`, an `expand`
//! modifier, a field the normalised event does not keep, another log source), and the
//! metadata an alert needs (`id`).

use std::str::FromStr;

use rsigma_parser::ast::Modifier;
use yaml_serde::{Mapping, Value};

use super::document::is_available;
use super::load::RejectReason;

/// The one YAML document of a rule file.
pub(super) fn single_document(text: &str) -> Result<Value, RejectReason> {
    use serde::Deserialize;
    let mut documents = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        // After an error the stream's state is undefined: stop reading it.
        let value = Value::deserialize(document).map_err(|e| RejectReason::Yaml(e.to_string()))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    match documents.len() {
        0 => Err(RejectReason::Empty),
        1 => Ok(documents.remove(0)),
        n => Err(RejectReason::SeveralDocuments(n)),
    }
}

/// The rule's `id`, when it is text (whether or not it is usable).
pub(super) fn rule_id(document: &Value) -> Option<String> {
    let id = document.get("id")?.as_str()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// Every problem of a rule document; empty when the engine may have it.
pub(super) fn check_rule(document: &Value) -> Vec<RejectReason> {
    let Some(rule) = document.as_mapping() else {
        return vec![RejectReason::NotARule(
            "the document is not a YAML mapping".into(),
        )];
    };
    if rule.contains_key("correlation") {
        return vec![RejectReason::Correlation];
    }
    if rule.contains_key("filter") {
        return vec![RejectReason::Filter];
    }
    if let Some(action) = rule.get("action") {
        return vec![RejectReason::Collection(scalar(action))];
    }
    let mut problems = Vec::new();
    match rule.get("id") {
        None | Some(Value::Null) => problems.push(RejectReason::MissingId),
        Some(Value::String(id)) if id.is_empty() => problems.push(RejectReason::MissingId),
        Some(Value::String(id)) if usable_id(id) => {}
        Some(other) => problems.push(RejectReason::InvalidId(scalar(other))),
    }
    if rule.get("status").and_then(Value::as_str) == Some("unsupported") {
        problems.push(RejectReason::StatusUnsupported);
    }
    if let Some(found) = wrong_logsource(rule.get("logsource")) {
        problems.push(RejectReason::Logsource(found));
    }
    if rule.contains_key("timeframe") {
        problems.push(RejectReason::Timeframe);
    }
    match rule.get("detection").and_then(Value::as_mapping) {
        None => problems.push(RejectReason::MissingDetection),
        Some(detection) => check_detection(detection, &mut problems),
    }
    problems
}

/// Printable ASCII without spaces, at most 100 characters: it becomes part of a DynamoDB key
/// and an SNS message attribute.
fn usable_id(id: &str) -> bool {
    (1..=100).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// What is wrong with a `logsource`, if anything. `definition` is free text and ignored.
fn wrong_logsource(logsource: Option<&Value>) -> Option<String> {
    let Some(logsource) = logsource.and_then(Value::as_mapping) else {
        return Some("no logsource mapping".into());
    };
    let get = |key: &str| logsource.get(key).map(scalar);
    let product = get("product");
    let service = get("service");
    let others: Vec<String> = logsource
        .iter()
        .filter_map(|(k, v)| {
            let k = scalar(k);
            (!["product", "service", "definition"].contains(&k.as_str()))
                .then(|| format!("{k}: {}", scalar(v)))
        })
        .collect();
    if product.as_deref() == Some("aws")
        && service.as_deref() == Some("cloudtrail")
        && others.is_empty()
    {
        return None;
    }
    let mut found = vec![
        format!("product: {}", product.as_deref().unwrap_or("(none)")),
        format!("service: {}", service.as_deref().unwrap_or("(none)")),
    ];
    found.extend(others);
    Some(found.join(", "))
}

fn check_detection(detection: &Mapping, problems: &mut Vec<RejectReason>) {
    match detection.get("condition") {
        None | Some(Value::Null) => problems.push(RejectReason::MissingCondition),
        Some(condition) => {
            let conditions = match condition {
                Value::Sequence(list) => list.iter().map(scalar).collect(),
                other => vec![scalar(other)],
            };
            // `|` only appears in a condition as the aggregation pipe (`sel | count() > 5`).
            for c in conditions.into_iter().filter(|c| c.contains('|')) {
                problems.push(RejectReason::Aggregation(c));
            }
        }
    }
    if detection.contains_key("timeframe") {
        problems.push(RejectReason::Timeframe);
    }
    for (name, search) in detection {
        if !matches!(name.as_str(), Some("condition" | "timeframe")) {
            check_search(search, problems);
        }
    }
}

/// Checks the field keys of one search identifier: a mapping of fields, a list of such
/// mappings, or keywords (no fields).
fn check_search(search: &Value, problems: &mut Vec<RejectReason>) {
    match search {
        Value::Mapping(fields) => {
            for (key, values) in fields {
                check_field(&scalar(key), values, problems);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| check_search(i, problems)),
        _ => {}
    }
}

/// `field|modifier|...: values`: every modifier known to the engine and evaluable here, the
/// field (and a `fieldref` target) present in the rebuilt record.
fn check_field(key: &str, values: &Value, problems: &mut Vec<RejectReason>) {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mut fieldref = false;
    for modifier in parts {
        match Modifier::from_str(modifier) {
            Err(()) => problems.push(RejectReason::UnknownModifier {
                field: field.to_string(),
                modifier: modifier.to_string(),
            }),
            Ok(Modifier::Expand) => problems.push(RejectReason::UnsupportedModifier {
                field: field.to_string(),
                modifier: modifier.to_string(),
                why: "its %placeholders% need values from a processing pipeline, which iamtrail \
                      does not have",
            }),
            Ok(Modifier::FieldRef) => fieldref = true,
            Ok(_) => {}
        }
    }
    if !field.is_empty() && !is_available(field) {
        problems.push(RejectReason::UnavailableField(field.to_string()));
    }
    if fieldref {
        let targets = match values {
            Value::Sequence(list) => list.iter().map(scalar).collect(),
            other => vec![scalar(other)],
        };
        for target in targets.into_iter().filter(|t| !is_available(t)) {
            problems.push(RejectReason::UnavailableField(target));
        }
    }
}

/// A YAML value as one line of text, for messages and comparisons.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => yaml_serde::to_string(other)
            .unwrap_or_default()
            .trim()
            .replace('\n', " "),
    }
}
