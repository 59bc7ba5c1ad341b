//! Starts a real moto server behind the gateway (skipped when moto is not installed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iamtrail_local::{
    find_moto_server, FunctionError, Gateway, GatewayConfig, LambdaRegistry, MotoOptions,
    MotoServer,
};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
    let bin = match find_moto_server(&repo_root()) {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("SKIPPED: moto is not installed: {e}");
            return;
        }
    };
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
