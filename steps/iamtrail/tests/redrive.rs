//! `iamtrail redrive` against recorded API responses. moto does not implement
//! RedriveExecution (nor DescribeExecution's redrive fields), so a small HTTP server answers
//! the CLI's requests with responses shaped as the AWS API references document them:
//! CloudFormation `DescribeStacks` (awsQuery, XML), and Step Functions `DescribeExecution`,
//! `RedriveExecution` and `GetExecutionHistory` (awsJson1_0: `X-Amz-Target:
//! AWSStepFunctions.*`, errors as `{"__type", "message"}` with HTTP 400). Each execution plays
//! a script: what DescribeExecution says before the redrive, and then on each later call.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::Utc;
use common::iamtrail_async;
use serde_json::{json, Value};

const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:iamtrail-tracker";

fn arn(name: &str) -> String {
    format!("arn:aws:states:us-east-1:123456789012:execution:iamtrail-tracker:{name}")
}

/// Epoch seconds `hours` ago, as Step Functions' JSON timestamps are.
fn ago(hours: i64) -> f64 {
    (Utc::now() - chrono::Duration::hours(hours)).timestamp() as f64
}

/// A DescribeExecution response (API reference: DescribeExecution, "Response Syntax").
fn described(name: &str, status: &str, extra: Value) -> Value {
    let mut out = json!({
        "executionArn": arn(name),
        "stateMachineArn": MACHINE,
        "name": name,
        "status": status,
        "startDate": ago(3),
        "input": "{}",
        "inputDetails": {"included": true},
        "redriveCount": 0,
    });
    out.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    out
}

fn failed_redrivable(name: &str) -> Value {
    described(
        name,
        "FAILED",
        json!({"stopDate": ago(2), "error": "RunStepsFailed",
               "cause": "EvaluateAlerts or Export failed after its retries",
               "redriveStatus": "REDRIVABLE"}),
    )
}

/// The run summary a redriven scheduled run ends with (its output).
fn summary_output(name: &str) -> String {
    json!({
        "run_id": name, "mode": "incremental", "status": "succeeded", "regions": 1,
        "totals": {"fetched": 12, "stored": 12, "filtered_aws_service": 0, "filtered_roles": 0,
                   "malformed": 0, "truncated": 0, "requests": 2, "throttled": 0, "slices": 1},
        "per_source": {}, "targets": [
            {"region": "us-east-1", "source": "iam",
             "counts": {"fetched": 12, "stored": 12, "filtered_aws_service": 0, "filtered_roles": 0,
                        "malformed": 0, "truncated": 0, "requests": 2, "throttled": 0, "slices": 1},
             "checkpoint": "2026-11-25T07:53:37Z"}],
        "errors": [], "collect_invocations": 1, "finished_at": "2026-11-25T07:58:43Z",
        "export_due": false,
        "alerts": {"enabled": true, "pending": 0, "sent": 0, "failed": 0, "failed_for_good": 0,
                   "failed_total": 0, "skipped": 0, "more": false, "invocations": 1}
    })
    .to_string()
}

/// The recorded world: per execution, the description before a redrive and the ones after.
struct World {
    before: HashMap<String, Value>,
    after: HashMap<String, Vec<Value>>,
    redriven: Vec<String>,
    calls_after: HashMap<String, usize>,
}

fn world() -> World {
    let mut before = HashMap::new();
    let mut after = HashMap::new();
    // Failed and redrivable: the first read after the redrive still shows the failed attempt
    // (reads are eventually consistent), then it runs and succeeds.
    before.insert("failed-run".into(), failed_redrivable("failed-run"));
    after.insert(
        "failed-run".into(),
        vec![
            failed_redrivable("failed-run"),
            described("failed-run", "RUNNING", json!({"redriveCount": 1, "redriveDate": ago(0), "redriveStatus": "NOT_REDRIVABLE", "redriveStatusReason": "Execution is RUNNING and cannot be redriven"})),
            described("failed-run", "SUCCEEDED", json!({"redriveCount": 1, "redriveDate": ago(0), "stopDate": ago(0),
                "output": summary_output("failed-run"), "outputDetails": {"included": true},
                "redriveStatus": "NOT_REDRIVABLE", "redriveStatusReason": "Execution is SUCCEEDED and cannot be redriven"})),
        ],
    );
    // Redriven, and failing again: the CLI exits non-zero with the error and cause.
    before.insert("fails-again".into(), failed_redrivable("fails-again"));
    after.insert(
        "fails-again".into(),
        vec![described("fails-again", "FAILED", json!({"redriveCount": 1, "redriveDate": ago(0), "stopDate": ago(0),
            "error": "RunStepsFailed", "cause": "Export failed: s3:PutObject AccessDenied", "redriveStatus": "REDRIVABLE"}))],
    );
    before.insert(
        "succeeded-run".into(),
        described(
            "succeeded-run",
            "SUCCEEDED",
            json!({"stopDate": ago(2), "output": summary_output("succeeded-run"),
            "outputDetails": {"included": true}, "redriveStatus": "NOT_REDRIVABLE",
            "redriveStatusReason": "Execution is SUCCEEDED and cannot be redriven"}),
        ),
    );
    before.insert(
        "old-run".into(),
        described(
            "old-run",
            "FAILED",
            json!({"startDate": ago(24 * 20 + 1), "stopDate": ago(24 * 20),
            "error": "States.Timeout", "redriveStatus": "NOT_REDRIVABLE",
            "redriveStatusReason": "Execution redrivable period exceeded"}),
        ),
    );
    before.insert(
        "too-long".into(),
        described(
            "too-long",
            "TIMED_OUT",
            json!({"stopDate": ago(5), "redriveStatus": "NOT_REDRIVABLE",
            "redriveStatusReason": "Execution has exceeded the max execution time"}),
        ),
    );
    World {
        before,
        after,
        redriven: Vec::new(),
        calls_after: HashMap::new(),
    }
}

/// DescribeStacks (API reference: DescribeStacks; awsQuery XML).
fn describe_stacks(body: &str) -> Response {
    if !body.contains("StackName=iamtrail") {
        let error = "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id other does not exist</Message></Error><RequestId>5ccc7dcd-744c-11e5-be70-example</RequestId></ErrorResponse>";
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "text/xml")],
            error,
        )
            .into_response();
    }
    let outputs = [
        ("EventsTableName", "iamtrail-events".to_string()),
        ("ControlTableName", "iamtrail-control".to_string()),
        ("AlertsTableName", "iamtrail-alerts".to_string()),
        ("TrackerStateMachineArn", MACHINE.to_string()),
    ]
    .iter()
    .map(|(k, v)| {
        format!("<member><OutputKey>{k}</OutputKey><OutputValue>{v}</OutputValue></member>")
    })
    .collect::<String>();
    let xml = format!(
        "<DescribeStacksResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><DescribeStacksResult><Stacks><member>\
         <StackName>iamtrail</StackName><StackId>arn:aws:cloudformation:us-east-1:123456789012:stack/iamtrail/aaf549a0-a413-11df-adb3-5081b3858e83</StackId>\
         <CreationTime>2026-10-01T08:00:00Z</CreationTime><StackStatus>UPDATE_COMPLETE</StackStatus><DisableRollback>false</DisableRollback>\
         <Outputs>{outputs}</Outputs></member></Stacks></DescribeStacksResult>\
         <ResponseMetadata><RequestId>b9b4b068-3a41-11e5-94eb-example</RequestId></ResponseMetadata></DescribeStacksResponse>"
    );
    (StatusCode::OK, [("content-type", "text/xml")], xml).into_response()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(execution: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"__type": "com.amazonaws.swf.service.v2.model#ExecutionDoesNotExist",
               "message": format!("Execution Does Not Exist: '{execution}'")}),
    )
}

fn states(world: &Mutex<World>, target: &str, body: &Value) -> Response {
    let execution = body["executionArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = execution.rsplit(':').next().unwrap_or_default().to_string();
    let mut guard = world.lock().unwrap();
    let w = &mut *guard;
    match target {
        "AWSStepFunctions.DescribeExecution" => {
            if w.redriven.contains(&name) {
                let n = w.calls_after.entry(name.clone()).or_default();
                let script = &w.after[&name];
                let answer = script[(*n).min(script.len() - 1)].clone();
                *n += 1;
                return json_response(StatusCode::OK, answer);
            }
            match w.before.get(&name) {
                Some(d) => json_response(StatusCode::OK, d.clone()),
                None => not_found(&execution),
            }
        }
        "AWSStepFunctions.RedriveExecution" => {
            if !w.after.contains_key(&name) {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"__type": "ExecutionNotRedrivable",
                    "message": "Execution is SUCCEEDED and cannot be redriven"}),
                );
            }
            w.redriven.push(name);
            json_response(StatusCode::OK, json!({"redriveDate": ago(0)}))
        }
        "AWSStepFunctions.GetExecutionHistory" => json_response(
            StatusCode::OK,
            json!({"events": [
                {"timestamp": ago(3), "type": "ExecutionStarted", "id": 1, "previousEventId": 0,
                 "executionStartedEventDetails": {"input": "{}", "roleArn": "arn:aws:iam::123456789012:role/r"}},
                {"timestamp": ago(0), "type": "ExecutionRedriven", "id": 2, "previousEventId": 1,
                 "executionRedrivenEventDetails": {"redriveCount": 1}},
                {"timestamp": ago(0), "type": "TaskStateEntered", "id": 3, "previousEventId": 2,
                 "stateEnteredEventDetails": {"name": "Export", "input": "{}"}}
            ]}),
        ),
        other => json_response(
            StatusCode::BAD_REQUEST,
            json!({"__type": "UnknownOperationException", "message": other}),
        ),
    }
}

async fn handle(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        Some(target) => states(
            &world,
            target,
            &serde_json::from_str(&body).unwrap_or(Value::Null),
        ),
        None if body.contains("Action=DescribeStacks") => describe_stacks(&body),
        None => (StatusCode::BAD_REQUEST, "unexpected request").into_response(),
    }
}

async fn serve() -> (String, Arc<Mutex<World>>) {
    let world = Arc::new(Mutex::new(world()));
    let app = Router::new().fallback(handle).with_state(world.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, world)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_checks_first_then_redrives_and_follows() {
    let (endpoint, world) = serve().await;

    // A failed, redrivable execution is redriven and followed past the stale first read.
    // The transcripts are printed (`--nocapture`) for docs/cli.md.
    let ok = iamtrail_async(&endpoint, &["redrive", "failed-run"])
        .await
        .expect_ok("redrive failed-run");
    println!("$ iamtrail redrive failed-run\n{}", ok.transcript());
    assert!(
        ok.stdout
            .contains("Redrove execution failed-run (FAILED before, redrive 1 at "),
        "{}",
        ok.transcript()
    );
    assert!(
        ok.stdout.contains("Execution failed-run SUCCEEDED in "),
        "{}",
        ok.transcript()
    );
    assert!(
        ok.stdout.contains("│ total"),
        "the run table: {}",
        ok.transcript()
    );

    // By ARN, redriven, failing again: non-zero, with the error and the cause.
    let again = iamtrail_async(&endpoint, &["redrive", &arn("fails-again")])
        .await
        .expect_failure("redrive fails-again");
    println!(
        "$ iamtrail redrive {}\n{}",
        arn("fails-again"),
        again.transcript()
    );
    assert!(
        again.stdout.contains("Execution fails-again FAILED in "),
        "{}",
        again.transcript()
    );
    assert!(
        again
            .stderr
            .contains("ended FAILED: RunStepsFailed Export failed: s3:PutObject AccessDenied"),
        "{}",
        again.transcript()
    );

    // Refused with the reason, without calling RedriveExecution.
    for (name, reason) in [
        ("succeeded-run", "execution succeeded-run succeeded; only a failed, timed-out or aborted execution can be redriven"),
        ("old-run", "more than 14 days ago: Step Functions redrives only within 14 days"),
        ("too-long", "not redrivable: Execution has exceeded the max execution time"),
        ("no-such-run", "execution no-such-run not found in arn:aws:states:us-east-1:123456789012:stateMachine:iamtrail-tracker"),
    ] {
        let refused = iamtrail_async(&endpoint, &["redrive", name]).await.expect_failure(name);
        println!("$ iamtrail redrive {name}\n{}", refused.transcript());
        assert!(refused.stderr.contains(reason), "{name}: {}", refused.transcript());
    }
    assert_eq!(
        world.lock().unwrap().redriven,
        ["failed-run", "fails-again"]
    );

    // The stack is resolved first: another stack name is a clear error.
    let missing = iamtrail_async(&endpoint, &["--stack", "other", "redrive", "failed-run"])
        .await
        .expect_failure("other stack");
    assert!(
        missing.stderr.contains("stack \"other\" not found"),
        "{}",
        missing.transcript()
    );
}
