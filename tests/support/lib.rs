//! Shared helpers of the end-to-end tests: start a local stack on free loopback ports, run real
//! executions, read the tables back over DynamoDB's HTTP API on moto. The steps' AWS traffic
//! goes through the gateway, where tests inject faults and count requests (`LocalStack`'s
//! fault and counter methods); the helpers here read moto directly.

pub mod bench_dataset;
pub mod runtime_api;
pub mod template_env;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use iamtrail::local::{ExecutionResult, LocalOptions, LocalStack};
use iamtrail_core::contract::RunSummary;
use serde_json::{json, Value};

// The gateway's fault plan and counters, for the tests' `use iamtrail_e2e::*` (set through
// `LocalStack::set_faults`, `dynamodb_unprocessed_items`, `reject_dynamodb_item`, ...).
pub use iamtrail_local::{
    EmulatorStats, FaultPlan, InvalidItemFault, OperationCount, RequestCounts, TextMatch,
    UnprocessedItemsFault, UploadPartFault,
};

/// One DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The bundled dataset's CloudTrail directory.
pub fn dataset_dir() -> PathBuf {
    repo_root().join("datasets/invictus-aws-2023/CloudTrail")
}

/// Options for a test stack: its own stack name, fast request pacing (no emulator throttling
/// unless a test sets it), moto's log in the target directory.
pub fn options(name: &str) -> LocalOptions {
    let mut options = LocalOptions::new(repo_root());
    options.stack_name = format!("t-{name}");
    options
        .settings
        .insert("LOOKUP_RATE_PER_SECOND".into(), "25".into());
    let log_dir = std::env::temp_dir().join("iamtrail-e2e");
    std::fs::create_dir_all(&log_dir).ok();
    options.moto_log = Some(log_dir.join(format!("moto-{name}.log")));
    options
}

/// Starts a stack and deploys it.
pub async fn start(options: LocalOptions) -> LocalStack {
    let mut stack = LocalStack::start(options)
        .await
        .expect("local stack starts");
    stack
        .deploy()
        .await
        .expect("tables and state machine are created");
    stack
}

/// Runs an execution to its end and requires SUCCEEDED; returns the result and the summary.
pub async fn run_ok(stack: &LocalStack, name: &str, input: Value) -> (ExecutionResult, RunSummary) {
    let result = stack
        .run_execution(name, &input, |_| {})
        .await
        .expect("execution runs");
    assert_eq!(
        result.status, "SUCCEEDED",
        "execution {name}: {:?} {:?} (moto log: {:?})",
        result.error, result.cause, stack.options.moto_log
    );
    let summary: RunSummary =
        serde_json::from_value(result.output.clone().expect("output")).expect("run summary");
    (result, summary)
}

fn sort_key(item: &Item) -> (String, String) {
    let s = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    (s("event_date").max(s("region")), s("event_id"))
}

/// Every item of a table, in key order (Scan: test-only).
pub async fn scan_all(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    items.sort_by_key(sort_key);
    items
}

/// The `event_id`s of items.
pub fn ids(items: &[Item]) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|i| i.get("event_id")?.as_s().ok().cloned())
        .collect()
}

/// A string attribute of an item.
pub fn attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

/// The control table's item for a key.
pub async fn control_item(stack: &LocalStack, key: &str) -> Option<Item> {
    stack
        .dynamodb()
        .get_item()
        .table_name(&stack.settings().control_table)
        .key("region", AttributeValue::S(key.to_string()))
        .consistent_read(true)
        .send()
        .await
        .expect("get control item")
        .item()
        .cloned()
}

/// The event ids the tracker must store from a directory of CloudTrail logs, computed
/// independently of the tracker's code: records of the four tracked sources that LookupEvents
/// serves where the tracker reads them (IAM and SSO in us-east-1, STS and sign-in anywhere),
/// minus AWS-service noise (the `AWSService` identity, `AwsServiceEvent`s, service-linked
/// role sessions).
pub fn expected_ids(dir: &Path) -> (BTreeSet<String>, usize, usize) {
    let mut kept = BTreeSet::new();
    let (mut tracked, mut noise) = (0, 0);
    for entry in std::fs::read_dir(dir).expect("dataset dir") {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        for r in doc["Records"].as_array().unwrap() {
            let source = r["eventSource"].as_str().unwrap_or("");
            let region = r["awsRegion"].as_str().unwrap_or("");
            let read_here = match source {
                "iam.amazonaws.com" | "sso.amazonaws.com" => region == "us-east-1",
                "sts.amazonaws.com" | "signin.amazonaws.com" => true,
                _ => false,
            };
            if !read_here {
                continue;
            }
            tracked += 1;
            let arns = [
                r["userIdentity"]["arn"].as_str(),
                r["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"].as_str(),
            ];
            let service_linked = arns.iter().flatten().any(|a| {
                a.contains(":role/aws-service-role/")
                    || a.contains("assumed-role/AWSServiceRoleFor")
            });
            if r["userIdentity"]["type"] == "AWSService"
                || r["eventType"] == "AwsServiceEvent"
                || service_linked
            {
                noise += 1;
            } else {
                kept.insert(r["eventID"].as_str().unwrap().to_string());
            }
        }
    }
    (kept, tracked, noise)
}

/// A synthetic CloudTrail record in AWS's documented shape (an IAM user's call).
pub fn record(id: &str, time: DateTime<Utc>, source: &str, name: &str, region: &str) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::111122223333:user/alice",
                         "accountId": "111122223333", "accessKeyId": "AKIAEXAMPLE", "userName": "alice"},
        "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"roleArn": "arn:aws:iam::111122223333:role/Deployer", "roleSessionName": "s"},
        "responseElements": null,
        "requestID": format!("req-{id}"),
        "eventID": id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management"
    })
}

/// A synthetic record by the account's root user.
pub fn root_record(id: &str, time: DateTime<Utc>, source: &str, name: &str) -> Value {
    let mut r = record(id, time, source, name, "us-east-1");
    r["userIdentity"] = json!({"type": "Root", "principalId": "111122223333", "arn": "arn:aws:iam::111122223333:root",
                               "accountId": "111122223333", "accessKeyId": "ASIAROOTEXAMPLE"});
    r["requestParameters"] = json!({"userName": "backdoor"});
    r
}

/// Invokes a step's Lambda function through the gateway, exactly as moto's Step Functions
/// engine does (and as a redrive of that state would): `POST /2015-03-31/functions/NAME/invocations`.
pub async fn invoke_via_gateway(stack: &LocalStack, step: &str, payload: &Value) -> Value {
    let url = format!(
        "{}/2015-03-31/functions/{}/invocations",
        stack.gateway.endpoint(),
        iamtrail::local::function_arn(&stack.options.stack_name, step)
    );
    let response = reqwest::Client::new()
        .post(url)
        .body(payload.to_string())
        .send()
        .await
        .expect("invoke");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("x-amz-function-error").is_none(),
        "function error"
    );
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// The stack's analytics bucket.
pub fn analytics_bucket(stack: &LocalStack) -> String {
    stack
        .settings()
        .analytics_bucket
        .clone()
        .expect("the local stack has an analytics bucket")
}

/// Every object key under a prefix of the analytics bucket.
pub async fn objects(stack: &LocalStack, prefix: &str) -> Vec<String> {
    let out = stack
        .context
        .s3
        .list_objects_v2()
        .bucket(analytics_bucket(stack))
        .prefix(prefix)
        .send()
        .await
        .expect("list objects");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
}

/// An object of the analytics bucket, whole.
pub async fn get_object(stack: &LocalStack, key: &str) -> Vec<u8> {
    stack
        .context
        .s3
        .get_object()
        .bucket(analytics_bucket(stack))
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// An object's user metadata (`x-amz-meta-*`).
pub async fn head_metadata(stack: &LocalStack, key: &str) -> HashMap<String, String> {
    stack
        .context
        .s3
        .head_object()
        .bucket(analytics_bucket(stack))
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("head {key}: {e}"))
        .metadata()
        .cloned()
        .unwrap_or_default()
}

/// The CloudWatch metrics one EMF document defines: one entry per namespace, metric name and
/// dimension values (`"<namespace> <name> [Region=..,Source=..]"`), which is what CloudWatch
/// bills as one custom metric. Empty for a line that is not an EMF document.
pub fn emf_series(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for directive in doc["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let namespace = directive["Namespace"].as_str().unwrap_or("");
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            let dims: Vec<String> = set
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| format!("{k}={}", doc[k].as_str().unwrap_or("")))
                .collect();
            for metric in directive["Metrics"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{namespace} {} [{}]",
                    metric["Name"].as_str().unwrap_or(""),
                    dims.join(",")
                ));
            }
        }
    }
    out
}
