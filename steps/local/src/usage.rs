//! Billable usage of the requests the gateway proxies to moto, for the cost page
//! (docs/cost.md): per (service, operation, resource) the requests, the items and the DynamoDB
//! request units they consume, and the bytes moved; per Lambda function the invocations and
//! their durations. The counts are taken from the requests and responses themselves, by the
//! rules AWS bills with:
//!
//! - **DynamoDB item size**: attribute names plus values (`S` UTF-8 bytes, `N` about one byte
//!   per two significant digits plus one, `B` raw bytes, `BOOL`/`NULL` one byte, `L`/`M` three
//!   bytes plus one per element plus the elements, sets the sum of their elements), as
//!   "Item sizes and formats" in the DynamoDB developer guide gives it.
//! - **Write request units** (on-demand): one per KB of the item written, rounded up per item,
//!   for `PutItem`, `DeleteItem`, `UpdateItem` and each put or delete of `BatchWriteItem` (the
//!   items DynamoDB hands back in `UnprocessedItems` excluded); twice that inside a transaction.
//!   `UpdateItem`'s size is that of the item after the update, read back from moto without being
//!   counted (AWS bills the larger of before and after; an update never shrinks our items). A
//!   write that fails its condition is billed too, so it is counted. Index writes are not seen
//!   here: the cost script adds them from the template's indexes (docs/cost.md).
//! - **Read request units**: one per 4 KB of the items read, rounded up per item for `GetItem`
//!   and `BatchGetItem` and over the whole page for `Query` and `Scan`; half that when the read
//!   is eventually consistent.
//! - **S3**: the request body (`PutObject`, `UploadPart`) and response body (`GetObject`)
//!   bytes, by bucket.
//!
//! A request answered with an error other than a failed condition counts as a request with no
//! items or units.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use percent_encoding::percent_decode_str;

/// What one (service, operation, resource) consumed. The resource is the DynamoDB table, the
/// S3 bucket, the SNS topic or the Lambda function, empty when there is none.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Consumed {
    pub requests: u64,
    /// DynamoDB items written (puts and deletes) or read (returned); S3 objects.
    pub items: u64,
    /// DynamoDB write request units (base table only).
    pub write_units: f64,
    /// DynamoDB read request units.
    pub read_units: f64,
    /// Bytes written: S3 upload bodies, SNS messages, DynamoDB item sizes (puts).
    pub bytes_in: u64,
    /// Response body bytes (S3 downloads, DynamoDB reads).
    pub bytes_out: u64,
    /// Lambda: the sum of the invocations' durations, in milliseconds.
    pub duration_ms: f64,
}

/// Usage by (service, operation, resource).
pub type UsageReport = BTreeMap<(String, String, String), Consumed>;

/// The gateway's usage counters.
#[derive(Debug, Default)]
pub struct Usage {
    report: Mutex<UsageReport>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Usage {
    /// Everything counted so far.
    pub fn report(&self) -> UsageReport {
        lock(&self.report).clone()
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        lock(&self.report).clear();
    }

    fn add(&self, service: &str, operation: &str, resource: &str, c: Consumed) {
        let mut report = lock(&self.report);
        let e = report
            .entry((service.into(), operation.into(), resource.into()))
            .or_default();
        e.requests += c.requests;
        e.items += c.items;
        e.write_units += c.write_units;
        e.read_units += c.read_units;
        e.bytes_in += c.bytes_in;
        e.bytes_out += c.bytes_out;
        e.duration_ms += c.duration_ms;
    }

    /// A Lambda invocation the gateway answered, and how long the function took.
    pub fn lambda_invoked(&self, function: &str, took: Duration) {
        self.add(
            "lambda",
            "Invoke",
            function,
            Consumed {
                requests: 1,
                duration_ms: took.as_secs_f64() * 1000.0,
                ..Consumed::default()
            },
        );
    }

    /// A request proxied to moto and its answer. `path` is the request's URL path (S3's
    /// bucket); `upstream` and `client` read an updated item back for its size.
    #[allow(clippy::too_many_arguments)]
    pub async fn proxied(
        &self,
        client: &reqwest::Client,
        upstream: &str,
        service: &str,
        operation: &str,
        path: &str,
        request: &[u8],
        status: u16,
        response: &[u8],
    ) {
        let consumed = match service {
            "dynamodb" => {
                let doc: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
                let answer: Value = serde_json::from_slice(response).unwrap_or(Value::Null);
                let condition_failed = status == 400
                    && answer["__type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("ConditionalCheckFailedException"));
                if status != 200 && !condition_failed {
                    vec![(table_of(&doc), Consumed::request())]
                } else {
                    dynamodb(client, upstream, operation, &doc, &answer).await
                }
            }
            "s3" => {
                let bucket = path.trim_start_matches('/').split('/').next().unwrap_or("");
                let ok = (200..300).contains(&status);
                let mut c = Consumed::request();
                if ok && matches!(operation, "PutObject" | "UploadPart") {
                    c.bytes_in = payload_len(request);
                    c.items = u64::from(operation == "PutObject");
                }
                if ok && operation == "GetObject" {
                    c.bytes_out = response.len() as u64;
                    c.items = 1;
                }
                vec![(bucket.to_string(), c)]
            }
            "sns" => {
                let text = std::str::from_utf8(request).unwrap_or("");
                let topic = form(text, "TopicArn").unwrap_or_default();
                let mut c = Consumed::request();
                c.bytes_in = form(text, "Message").map_or(0, |m| m.len() as u64);
                vec![(topic, c)]
            }
            _ => vec![(String::new(), Consumed::request())],
        };
        for (resource, c) in consumed {
            self.add(service, operation, &resource, c);
        }
    }
}

impl Consumed {
    fn request() -> Consumed {
        Consumed {
            requests: 1,
            ..Consumed::default()
        }
    }
}

fn table_of(doc: &Value) -> String {
    doc["TableName"].as_str().unwrap_or("").to_string()
}

/// The payload's length: an `aws-chunked` body (the SDKs' uploads with a checksum trailer:
/// `<hex size>[;chunk-signature=...]\r\n<data>\r\n ... 0\r\n<trailers>\r\n\r\n`) counts its data
/// only, as S3 stores it.
fn payload_len(body: &[u8]) -> u64 {
    let mut at = 0;
    let mut total = 0u64;
    loop {
        let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else {
            return body.len() as u64;
        };
        let header = std::str::from_utf8(&body[at..at + eol]).unwrap_or("");
        let size = header.split(';').next().unwrap_or("");
        let Ok(size) = u64::from_str_radix(size, 16) else {
            return body.len() as u64;
        };
        if size == 0 {
            return total;
        }
        at += eol + 2 + size as usize + 2;
        total += size;
        if at > body.len() {
            return body.len() as u64;
        }
    }
}

/// A field of a form-encoded body (SNS's query protocol), decoded.
fn form(text: &str, name: &str) -> Option<String> {
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The size DynamoDB bills for an attribute value (`{"S": ...}`, `{"N": ...}`, ...).
pub fn value_size(v: &Value) -> u64 {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, |s| s.len() as u64),
        "N" => number_size(inner.as_str().unwrap_or("0")),
        "B" => base64_len(inner.as_str().unwrap_or("")),
        "BOOL" | "NULL" => 1,
        "SS" => list(inner)
            .map(|s| s.as_str().map_or(0, |s| s.len() as u64))
            .sum(),
        "NS" => list(inner)
            .map(|n| number_size(n.as_str().unwrap_or("0")))
            .sum(),
        "BS" => list(inner)
            .map(|b| base64_len(b.as_str().unwrap_or("")))
            .sum(),
        "L" => 3 + list(inner).map(|e| 1 + value_size(e)).sum::<u64>(),
        "M" => {
            3 + inner.as_object().map_or(0, |m| {
                m.iter()
                    .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                    .sum::<u64>()
            })
        }
        _ => 0,
    }
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// A number's size: one byte per two significant digits, plus one.
fn number_size(n: &str) -> u64 {
    let digits: String = n
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1) as u64;
    significant.div_ceil(2) + 1
}

fn base64_len(s: &str) -> u64 {
    let s = s.trim_end_matches('=');
    (s.len() as u64 * 3) / 4
}

/// An item's size: its attribute names plus their values.
pub fn item_size(item: &Value) -> u64 {
    item.as_object().map_or(0, |m| {
        m.iter().map(|(k, v)| k.len() as u64 + value_size(v)).sum()
    })
}

/// Write request units for an item of `size` bytes.
pub fn write_units(size: u64) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

/// Read request units for `size` bytes read in one go.
pub fn read_units(size: u64, consistent: bool) -> f64 {
    let units = size.div_ceil(4096).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

/// The units of one DynamoDB request, by table.
async fn dynamodb(
    client: &reqwest::Client,
    upstream: &str,
    operation: &str,
    doc: &Value,
    answer: &Value,
) -> Vec<(String, Consumed)> {
    let consistent = doc["ConsistentRead"] == json!(true);
    let table = table_of(doc);
    let mut c = Consumed::request();
    match operation {
        "PutItem" => {
            c.items = 1;
            c.bytes_in = item_size(&doc["Item"]);
            c.write_units = write_units(c.bytes_in);
        }
        "DeleteItem" => {
            c.items = 1;
            c.write_units = write_units(item_size(&doc["Key"]));
        }
        "UpdateItem" => {
            c.items = 1;
            let after = read_item(client, upstream, &table, &doc["Key"]).await;
            c.write_units = write_units(item_size(after.as_ref().unwrap_or(&doc["Key"])));
        }
        "GetItem" => {
            let size = item_size(&answer["Item"]);
            c.items = u64::from(answer["Item"].is_object());
            c.read_units = read_units(size, consistent);
            c.bytes_out = size;
        }
        "Query" | "Scan" => {
            let items = answer["Items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let size: u64 = items.iter().map(item_size).sum();
            c.items = items.len() as u64;
            c.read_units = read_units(size, consistent);
            c.bytes_out = size;
        }
        "BatchWriteItem" => {
            let mut by_table = Vec::new();
            let requests = doc["RequestItems"].as_object().cloned().unwrap_or_default();
            for (table, writes) in requests {
                let unprocessed = answer["UnprocessedItems"][&table]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let mut t = Consumed::default();
                for w in list(&writes).filter(|w| !unprocessed.contains(*w)) {
                    t.items += 1;
                    let size = if w["PutRequest"].is_object() {
                        item_size(&w["PutRequest"]["Item"])
                    } else {
                        item_size(&w["DeleteRequest"]["Key"])
                    };
                    t.bytes_in += size;
                    t.write_units += write_units(size);
                }
                by_table.push((table, t));
            }
            // The request itself counts once, on the first table.
            if let Some(first) = by_table.first_mut() {
                first.1.requests = 1;
            }
            return by_table;
        }
        "BatchGetItem" => {
            let mut by_table = Vec::new();
            let responses = answer["Responses"].as_object().cloned().unwrap_or_default();
            for (table, items) in responses {
                let consistent = doc["RequestItems"][&table]["ConsistentRead"] == json!(true);
                let mut t = Consumed::default();
                for item in list(&items) {
                    t.items += 1;
                    t.read_units += read_units(item_size(item), consistent);
                    t.bytes_out += item_size(item);
                }
                by_table.push((table, t));
            }
            if let Some(first) = by_table.first_mut() {
                first.1.requests = 1;
            }
            return by_table;
        }
        "TransactWriteItems" => {
            let mut by_table: BTreeMap<String, Consumed> = BTreeMap::new();
            for action in list(&doc["TransactItems"]) {
                let Some((kind, body)) = action.as_object().and_then(|o| o.iter().next()) else {
                    continue;
                };
                let table = table_of(body);
                let size = match kind.as_str() {
                    "Put" => item_size(&body["Item"]),
                    "Update" => read_item(client, upstream, &table, &body["Key"])
                        .await
                        .map_or_else(|| item_size(&body["Key"]), |i| item_size(&i)),
                    _ => item_size(&body["Key"]),
                };
                let t = by_table.entry(table).or_default();
                t.items += 1;
                t.write_units += 2.0 * write_units(size);
            }
            let mut by_table: Vec<_> = by_table.into_iter().collect();
            if let Some(first) = by_table.first_mut() {
                first.1.requests = 1;
            }
            return by_table;
        }
        _ => {}
    }
    vec![(table, c)]
}

/// An item as moto holds it now, read directly (not through the gateway, so not counted).
async fn read_item(
    client: &reqwest::Client,
    upstream: &str,
    table: &str,
    key: &Value,
) -> Option<Value> {
    let response = client
        .post(format!("{upstream}/"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header("X-Amz-Target", "DynamoDB_20120810.GetItem")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(json!({"TableName": table, "Key": key, "ConsistentRead": true}).to_string())
        .send()
        .await
        .ok()?;
    let doc: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    doc.get("Item").filter(|i| i.is_object()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(service: &str, operation: &str, resource: &str) -> (String, String, String) {
        (service.into(), operation.into(), resource.into())
    }

    #[test]
    fn item_sizes_follow_the_developer_guide() {
        // Names count, values by type.
        assert_eq!(item_size(&json!({"a": {"S": "hello"}})), 1 + 5);
        assert_eq!(item_size(&json!({"n": {"N": "123456"}})), 1 + 4);
        assert_eq!(item_size(&json!({"n": {"N": "-1.5e10"}})), 1 + 2);
        assert_eq!(
            item_size(&json!({"b": {"BOOL": true}, "z": {"NULL": true}})),
            4
        );
        assert_eq!(
            item_size(&json!({"l": {"L": [{"S": "ab"}, {"S": "c"}]}})),
            1 + 3 + 3 + 2
        );
        assert_eq!(
            item_size(&json!({"m": {"M": {"k": {"S": "v"}}}})),
            1 + 3 + 1 + 1 + 1
        );
        assert_eq!(item_size(&json!({"s": {"SS": ["ab", "cde"]}})), 1 + 5);
        assert_eq!(item_size(&json!({"x": {"B": "AAAA"}})), 1 + 3);
        // UTF-8 bytes, not characters.
        assert_eq!(item_size(&json!({"é": {"S": "ü"}})), 4);
    }

    #[test]
    fn units_round_up_per_item_and_halve_for_eventual_reads() {
        assert_eq!(write_units(1), 1.0);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(4096, true), 1.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(4097, false), 1.0);
        assert_eq!(read_units(10, false), 0.5);
    }

    #[tokio::test]
    async fn batch_writes_count_processed_items_per_table() {
        let usage = Usage::default();
        let big = "x".repeat(1500);
        let request = json!({"RequestItems": {"events": [
            {"PutRequest": {"Item": {"id": {"S": "1"}, "body": {"S": big}}}},
            {"PutRequest": {"Item": {"id": {"S": "2"}}}},
            {"PutRequest": {"Item": {"id": {"S": "3"}}}}
        ]}});
        let answer = json!({"UnprocessedItems": {"events": [
            {"PutRequest": {"Item": {"id": {"S": "3"}}}}
        ]}});
        let client = reqwest::Client::new();
        usage
            .proxied(
                &client,
                "http://127.0.0.1:9",
                "dynamodb",
                "BatchWriteItem",
                "/",
                request.to_string().as_bytes(),
                200,
                answer.to_string().as_bytes(),
            )
            .await;
        let report = usage.report();
        let c = report[&key("dynamodb", "BatchWriteItem", "events")];
        assert_eq!((c.requests, c.items, c.write_units), (1, 2, 3.0));

        // A failed condition is billed; a throttled request is not.
        let put = json!({"TableName": "control", "Item": {"k": {"S": "v"}}}).to_string();
        let failed =
            json!({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"});
        let throttled = json!({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"});
        for answer in [failed, throttled] {
            usage
                .proxied(
                    &client,
                    "http://127.0.0.1:9",
                    "dynamodb",
                    "PutItem",
                    "/",
                    put.as_bytes(),
                    400,
                    answer.to_string().as_bytes(),
                )
                .await;
        }
        let c = usage.report()[&key("dynamodb", "PutItem", "control")];
        assert_eq!((c.requests, c.items, c.write_units), (2, 1, 1.0));
    }

    #[tokio::test]
    async fn queries_count_the_page_and_s3_the_bytes() {
        let usage = Usage::default();
        let client = reqwest::Client::new();
        let items: Vec<Value> = (0..10)
            .map(|i| json!({"id": {"S": format!("{i}")}, "body": {"S": "y".repeat(999)}}))
            .collect();
        usage
            .proxied(
                &client,
                "http://127.0.0.1:9",
                "dynamodb",
                "Query",
                "/",
                json!({"TableName": "events", "ConsistentRead": true})
                    .to_string()
                    .as_bytes(),
                200,
                json!({"Items": items, "Count": 10}).to_string().as_bytes(),
            )
            .await;
        let c = usage.report()[&key("dynamodb", "Query", "events")];
        // 10 items of 2 + 1 + 4 + 999 = 1,006 bytes: 10,060 bytes, 3 units of 4 KB.
        assert_eq!((c.items, c.read_units, c.bytes_out), (10, 3.0, 10_060));

        usage
            .proxied(
                &client,
                "",
                "s3",
                "PutObject",
                "/bucket/a/b.parquet",
                &[0u8; 777],
                200,
                b"",
            )
            .await;
        let c = usage.report()[&key("s3", "PutObject", "bucket")];
        assert_eq!((c.requests, c.items, c.bytes_in), (1, 1, 777));
        // An aws-chunked upload counts its data, not the framing and the trailer.
        let chunked = b"5\r\nhello\r\n3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        assert_eq!(payload_len(chunked), 8);
        assert_eq!(payload_len(b"PAR1...PAR1"), 11);
        usage.lambda_invoked("collect", Duration::from_millis(1500));
        let c = usage.report()[&key("lambda", "Invoke", "collect")];
        assert_eq!((c.requests, c.duration_ms), (1, 1500.0));
    }
}
