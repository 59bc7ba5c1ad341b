//! Starts a real moto server behind the gateway: proxying, moto's Step Functions engine calling
//! the gateway's Lambda functions, and the gateway's injected faults as the AWS SDK for Rust
//! sees them. A missing moto fails these tests (see `iamtrail_local::missing_test_dependency`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iamtrail_local::{
    find_moto_server, missing_test_dependency, FaultPlan, FunctionError, Gateway, GatewayConfig,
    InvalidItemFault, LambdaRegistry, MotoOptions, MotoServer, TextMatch, UnprocessedItemsFault,
    UploadPartFault, SETUP_VENV_HINT, SMALL_S3_PART_SIZE,
};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// moto_server; a missing one fails the test with how to install it.
fn moto_bin() -> PathBuf {
    find_moto_server(&repo_root()).unwrap_or_else(|e| {
        missing_test_dependency(format!("moto is not installed: {e}"), SETUP_VENV_HINT)
    })
}

async fn aws_json(
    client: &reqwest::Client,
    endpoint: &str,
    service: &str,
    target: &str,
    body: Value,
) -> (u16, Value) {
    let r = client
        .post(format!("{endpoint}/"))
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/{service}/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00"
            ),
        )
        .header("x-amz-date", "20240101T000000Z")
        .body(body.to_string())
        .send()
        .await
        .expect("request through the gateway");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_behind_the_gateway() {
    let bin = moto_bin();
    let lambda = LambdaRegistry::new()
        .with(
            "echo",
            |payload| async move { Ok(json!({"echo": payload})) },
        )
        .with("fail", |_| async move {
            Err(FunctionError::new("CollectError", "boom"))
        });
    // 1. The gateway first: its port is what moto calls back.
    let gateway = Gateway::start(GatewayConfig {
        lambda: Some(Arc::new(lambda)),
        ..GatewayConfig::default()
    })
    .await
    .unwrap();
    let log = std::env::temp_dir().join(format!("iamtrail-moto-test-{}.log", std::process::id()));
    // 2. moto with MOTO_PORT = the gateway's port.
    let moto = MotoServer::start(MotoOptions {
        moto_server_bin: bin,
        moto_port_env: gateway.port(),
        log_file: Some(log.clone()),
        s3_upload_part_min_size: None,
    })
    .await
    .expect("moto starts");
    // 3. Tell the gateway where moto is.
    gateway.set_upstream(moto.endpoint());
    let pid = moto.pid().expect("running");
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let ep = gateway.endpoint();
    let (status, v) = aws_json(
        &client,
        &ep,
        "dynamodb",
        "DynamoDB_20120810.ListTables",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"TableNames": []}));
    let (status, v) = aws_json(
        &client,
        &ep,
        "dynamodb",
        "DynamoDB_20120810.CreateTable",
        json!({
            "TableName": "t",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST"
        }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = aws_json(
        &client,
        &ep,
        "dynamodb",
        "DynamoDB_20120810.ListTables",
        json!({}),
    )
    .await;
    assert_eq!(v, json!({"TableNames": ["t"]}));

    // moto's Step Functions engine calls the gateway's Lambda handler (via MOTO_PORT).
    let definition = json!({
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:echo",
                    "Payload.$": "$"
                },
                "OutputPath": "$.Payload",
                "Next": "Fail"
            },
            "Fail": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:fail",
                "Catch": [{"ErrorEquals": ["CollectError"], "ResultPath": "$.error", "Next": "Done"}],
                "End": true
            },
            "Done": {"Type": "Pass", "End": true}
        }
    });
    let (status, v) = aws_json(
        &client,
        &ep,
        "states",
        "AWSStepFunctions.CreateStateMachine",
        json!({
            "name": "test",
            "definition": definition.to_string(),
            "roleArn": "arn:aws:iam::123456789012:role/sfn"
        }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let arn = v["stateMachineArn"].as_str().unwrap().to_string();
    let (status, v) = aws_json(
        &client,
        &ep,
        "states",
        "AWSStepFunctions.StartExecution",
        json!({"stateMachineArn": arn, "name": "run-1", "input": "{\"x\":1}"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let execution = v["executionArn"].as_str().unwrap().to_string();
    let started = Instant::now();
    let described = loop {
        let (_, v) = aws_json(
            &client,
            &ep,
            "states",
            "AWSStepFunctions.DescribeExecution",
            json!({"executionArn": execution}),
        )
        .await;
        if v["status"] != "RUNNING" {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "execution hangs: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        described["status"],
        "SUCCEEDED",
        "{described}\n{}",
        moto.log_tail()
    );
    let output: Value = serde_json::from_str(described["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["echo"], json!({"x": 1}));
    assert_eq!(output["error"]["Error"], "CollectError");

    // Stop: nothing left behind.
    moto.stop().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "moto process {pid} still exists"
    );
    gateway.shutdown().await;
    let _ = std::fs::remove_file(log);
}

/// An AWS SDK client config for `endpoint`: test credentials, us-east-1, the SDKs' standard
/// retries (3 attempts) with short pauses for the test.
macro_rules! config {
    ($sdk:ident, $endpoint:expr) => {
        $sdk::Config::builder()
            .behavior_version_latest()
            .endpoint_url($endpoint)
            .region($sdk::config::Region::new("us-east-1"))
            .credentials_provider($sdk::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .retry_config(
                $sdk::config::retry::RetryConfig::standard()
                    .with_initial_backoff(Duration::from_millis(10)),
            )
    };
}

fn put_request(id: &str) -> aws_sdk_dynamodb::types::WriteRequest {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .item("event_id", AttributeValue::S(id.to_string()))
                .item("body", AttributeValue::S(format!("item {id}")))
                .build()
                .unwrap(),
        )
        .build()
}

async fn stored_ids(moto: &aws_sdk_dynamodb::Client) -> Vec<String> {
    let mut ids: Vec<String> = moto
        .scan()
        .table_name("events")
        .send()
        .await
        .unwrap()
        .items()
        .iter()
        .map(|i| i["event_id"].as_s().unwrap().clone())
        .collect();
    ids.sort();
    ids
}

/// The faults the gateway injects, as the AWS SDK for Rust sees them, against real moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_sees_the_injected_faults_on_moto() {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };

    let bin = moto_bin();
    let gateway = Gateway::start(GatewayConfig::default()).await.unwrap();
    let log = std::env::temp_dir().join(format!("iamtrail-moto-faults-{}.log", std::process::id()));
    let moto = MotoServer::start(MotoOptions {
        moto_server_bin: bin,
        moto_port_env: gateway.port(),
        log_file: Some(log.clone()),
        s3_upload_part_min_size: Some(SMALL_S3_PART_SIZE),
    })
    .await
    .expect("moto starts");
    gateway.set_upstream(moto.endpoint());
    let via_gateway = gateway.endpoint();
    let db = aws_sdk_dynamodb::Client::from_conf(config!(aws_sdk_dynamodb, &via_gateway).build());
    let db_direct =
        aws_sdk_dynamodb::Client::from_conf(config!(aws_sdk_dynamodb, moto.endpoint()).build());

    db.create_table()
        .table_name("events")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("event_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("event_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();

    // 1. UnprocessedItems: half of the first batch comes back, exactly as sent; only the rest
    //    is in moto. Re-sending the unprocessed items (as the SDK user must) stores them.
    gateway.set_fault_plan(FaultPlan {
        dynamodb_unprocessed: Some(
            UnprocessedItemsFault::new(11)
                .probability(1.0)
                .fraction(0.5)
                .max_batches(1),
        ),
        ..FaultPlan::default()
    });
    let requests: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| put_request(id))
        .collect();
    let out = db
        .batch_write_item()
        .request_items("events", requests.clone())
        .send()
        .await
        .expect("BatchWriteItem succeeds with unprocessed items");
    let unprocessed = out.unprocessed_items().unwrap()["events"].clone();
    assert_eq!(unprocessed.len(), 2);
    for r in &unprocessed {
        assert!(requests.contains(r), "returned unchanged: {r:?}");
    }
    let mut unprocessed_ids: Vec<String> = unprocessed
        .iter()
        .map(|r| {
            r.put_request().unwrap().item()["event_id"]
                .as_s()
                .unwrap()
                .clone()
        })
        .collect();
    unprocessed_ids.sort();
    let stored = stored_ids(&db_direct).await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|id| !unprocessed_ids.contains(id)));
    let out = db
        .batch_write_item()
        .request_items("events", unprocessed)
        .send()
        .await
        .unwrap();
    assert!(out.unprocessed_items().is_none_or(|m| m.is_empty()));
    assert_eq!(stored_ids(&db_direct).await, ["a", "b", "c", "d"]);
    assert_eq!(gateway.requests("dynamodb", "BatchWriteItem"), 2);
    assert_eq!(gateway.injected("dynamodb", "BatchWriteItem"), 1);

    // 2. A poison item: the whole batch fails with ValidationException (not retried).
    gateway.set_fault_plan(FaultPlan {
        dynamodb_invalid_items: vec![InvalidItemFault::new("event_id", "poison")],
        ..FaultPlan::default()
    });
    let err = db
        .batch_write_item()
        .request_items("events", vec![put_request("e"), put_request("poison")])
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(err
        .message()
        .unwrap()
        .starts_with("One or more parameter values were invalid: "));
    assert_eq!(
        stored_ids(&db_direct).await,
        ["a", "b", "c", "d"],
        "nothing of it stored"
    );
    assert_eq!(gateway.injected("dynamodb", "BatchWriteItem"), 2);

    // 3. S3 through the gateway, path-style, with moto's minimum part size lowered: part 2
    //    fails on every attempt (the SDK retries it 3 times), and the upload can be finished
    //    once the fault is gone; CompleteMultipartUpload failing leaves no object.
    let s3 = aws_sdk_s3::Client::from_conf(
        config!(aws_sdk_s3, &via_gateway)
            .force_path_style(true)
            .build(),
    );
    let bucket = "exports";
    let key = "iam-events/year=2024/month=1/day=2/part-0.parquet";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    gateway.set_fault_plan(FaultPlan {
        s3_upload_part_fail: Some(UploadPartFault::new(2)),
        s3_complete_multipart_fail: Some(TextMatch::contains("day=2")),
        s3_put_object_fail: Some(TextMatch::contains("poison")),
        ..FaultPlan::default()
    });
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap().to_string();
    let part_bytes: Vec<Vec<u8>> = vec![vec![b'1'; 300], vec![b'2'; 300], vec![b'3'; 10]];
    let upload_part = |n: i32| {
        s3.upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(n)
            .body(part_bytes[n as usize - 1].clone().into())
            .send()
    };
    let part1 = upload_part(1).await.unwrap();
    let err = upload_part(2).await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("InternalError"));
    assert_eq!(gateway.requests("s3", "UploadPart"), 4);
    assert_eq!(
        gateway.injected("s3", "UploadPart"),
        3,
        "every SDK attempt failed"
    );
    gateway.update_fault_plan(|plan| plan.s3_upload_part_fail = None);
    let part2 = upload_part(2).await.unwrap();
    let part3 = upload_part(3).await.unwrap();
    let completed = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(
            [(1, &part1), (2, &part2), (3, &part3)]
                .iter()
                .map(|(n, p)| {
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(*n)
                        .e_tag(p.e_tag().unwrap())
                        .build()
                })
                .collect(),
        ))
        .build();
    let complete = || {
        s3.complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(completed.clone())
            .send()
    };
    let err = complete().await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("InternalError"));
    assert!(
        s3.head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .is_err(),
        "no object before CompleteMultipartUpload succeeds"
    );
    gateway.update_fault_plan(|plan| plan.s3_complete_multipart_fail = None);
    complete().await.expect("parts of 300 bytes are accepted");
    let body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(body.to_vec(), part_bytes.concat());
    // PutObject by key pattern.
    let err = s3
        .put_object()
        .bucket(bucket)
        .key("poison.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InternalError"));
    s3.put_object()
        .bucket(bucket)
        .key("fine.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(gateway.requests("s3", "CompleteMultipartUpload"), 4);
    assert_eq!(gateway.injected("s3", "PutObject"), 3);

    // 4. SNS Publish: slow, and failing for matching subjects.
    let sns = aws_sdk_sns::Client::from_conf(config!(aws_sdk_sns, &via_gateway).build());
    let topic = sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    gateway.set_fault_plan(FaultPlan {
        sns_publish_delay: Some(Duration::from_millis(200)),
        sns_publish_fail: Some(TextMatch::contains("Root Account")),
        ..FaultPlan::default()
    });
    let started = Instant::now();
    let sent = sns
        .publish()
        .topic_arn(&topic)
        .subject("[HIGH] IAM Alert: User Created")
        .message("body")
        .send()
        .await
        .unwrap();
    assert!(sent.message_id().is_some());
    assert!(started.elapsed() >= Duration::from_millis(200));
    let err = sns
        .publish()
        .topic_arn(&topic)
        .subject("[CRITICAL] IAM Alert: Root Account Used")
        .message("body")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InternalError"));
    assert_eq!(gateway.requests("sns", "Publish"), 4);
    assert_eq!(gateway.injected("sns", "Publish"), 3);

    moto.stop().unwrap();
    gateway.shutdown().await;
    let _ = std::fs::remove_file(log);
}
