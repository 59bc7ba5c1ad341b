//! Field helpers over CloudTrail's JSON: case-insensitive keys, scalars as text, IAM's "one or
//! many" lists.

use serde_json::Value;

/// `obj[key]`, matching the key exactly first, then ignoring ASCII case.
pub(crate) fn get_ci<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let map = v.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A scalar as text (strings as-is, numbers and booleans printed); `None` for null and
/// containers.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A string or a list of strings (IAM's "one or many" form); other values are ignored.
pub(crate) fn string_list(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The value, or `unknown` for a summary.
pub(crate) fn or_unknown(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("unknown")
}
