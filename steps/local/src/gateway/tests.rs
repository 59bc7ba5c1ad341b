use super::*;
use crate::cloudtrail::{EmulatorOptions, TimeShift};
use axum::http::HeaderValue;
use chrono::TimeDelta;

fn registry() -> Arc<dyn LambdaHandler> {
    Arc::new(
        LambdaRegistry::new()
            .with("echo", |payload| async move { Ok(json!({"got": payload})) })
            .with("fail", |_| async move {
                Err(FunctionError::new(
                    "CollectError",
                    "region us-east-1 failed",
                ))
            })
            .with("boom", |_| async move {
                if true {
                    panic!("kaboom");
                }
                Ok(json!(null))
            }),
    )
}

async fn start(lambda: bool, cloudtrail: Option<Arc<CloudTrailEmulator>>) -> Gateway {
    Gateway::start(GatewayConfig {
        upstream: None,
        lambda: lambda.then(registry),
        cloudtrail,
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn lambda_invoke_by_name_and_arn() {
    let gw = start(true, None).await;
    let c = client();
    let names = [
        "echo".to_string(),
        "echo:$LATEST".to_string(),
        "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aecho".to_string(),
        "arn:aws:lambda:us-east-1:123456789012:function:echo:live".to_string(),
        "123456789012%3Afunction%3Aecho".to_string(),
    ];
    for name in names {
        let r = c
            .post(format!(
                "{}/2015-03-31/functions/{name}/invocations",
                gw.endpoint()
            ))
            .body(r#"{"region":"us-east-1"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.headers()["x-amz-executed-version"], "$LATEST");
        assert!(r.headers().get("x-amz-function-error").is_none());
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v, json!({"got": {"region": "us-east-1"}}), "{name}");
    }
    // An empty body is {}.
    let r = c
        .post(format!(
            "{}/2015-03-31/functions/echo/invocations",
            gw.endpoint()
        ))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v, json!({"got": {}}));
    // Asynchronous and dry-run invocations.
    let r = c
        .post(format!(
            "{}/2015-03-31/functions/echo/invocations",
            gw.endpoint()
        ))
        .header("X-Amz-Invocation-Type", "Event")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .post(format!(
            "{}/2015-03-31/functions/echo/invocations",
            gw.endpoint()
        ))
        .header("X-Amz-Invocation-Type", "DryRun")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Invalid JSON payload.
    let r = c
        .post(format!(
            "{}/2015-03-31/functions/echo/invocations",
            gw.endpoint()
        ))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["x-amzn-errortype"],
        "InvalidRequestContentException"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn lambda_function_errors_and_panics() {
    let gw = start(true, None).await;
    let c = client();
    let call = |name: &'static str| {
        let c = c.clone();
        let url = format!("{}/2015-03-31/functions/{name}/invocations", gw.endpoint());
        async move { c.post(url).body("{}").send().await.unwrap() }
    };
    let r = call("fail").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amz-function-error"], "Unhandled");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"errorType": "CollectError", "errorMessage": "region us-east-1 failed"})
    );
    let r = call("boom").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amz-function-error"], "Unhandled");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["errorType"], "Runtime.ExitError");
    assert!(v["errorMessage"].as_str().unwrap().contains("kaboom"));
    // The server survived the panic.
    assert_eq!(call("echo").await.status(), 200);

    let r = call("nope").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-amzn-errortype"], "ResourceNotFoundException");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["__type"], "ResourceNotFoundException");
    assert!(v["message"].as_str().unwrap().contains("nope"));
    gw.shutdown().await;
}

/// An upstream that echoes what it received.
async fn echo_upstream() -> (String, tokio::task::JoinHandle<()>) {
    async fn echo(req: Request) -> Response {
        let method = req.method().clone();
        let uri = req.uri().to_string();
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
            .collect();
        let body = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap();
        if method == Method::HEAD {
            return Response::builder()
                .status(200)
                .header(header::CONTENT_LENGTH, "1234")
                .header("etag", "\"abc\"")
                .body(Body::empty())
                .unwrap();
        }
        if uri.starts_with("/raw") {
            return Response::builder()
                .status(201)
                .header("x-upstream", "yes")
                .body(Body::from(body))
                .unwrap();
        }
        let info =
            json!({"method": method.as_str(), "uri": uri, "headers": headers, "len": body.len()});
        Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .header("x-upstream", "yes")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(info.to_string()))
            .unwrap()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(echo);
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_everything_else_verbatim() {
    let gw = start(true, None).await;
    let c = client();
    // No upstream yet: a clear 502.
    let r = c
        .get(format!("{}/anything", gw.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("no upstream"));

    let (upstream, task) = echo_upstream().await;
    gw.set_upstream(format!("{upstream}/"));
    assert_eq!(gw.upstream().as_deref(), Some(upstream.as_str()));

    let r = c
        .put(format!("{}/bucket/key%20x?versionId=1&a=b", gw.endpoint()))
        .header("x-amz-target", "DynamoDB_20120810.ListTables")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/dynamodb/aws4_request",
        )
        .header("connection", "keep-alive")
        .header("expect", "100-continue")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-upstream"], "yes");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["uri"], "/bucket/key%20x?versionId=1&a=b");
    assert_eq!(v["len"], 5);
    assert_eq!(v["headers"]["x-amz-target"], "DynamoDB_20120810.ListTables");
    assert!(v["headers"]["authorization"]
        .as_str()
        .unwrap()
        .contains("us-east-1/dynamodb"));
    assert_eq!(v["headers"]["host"], upstream.trim_start_matches("http://"));
    assert!(v["headers"].get("expect").is_none());

    // Lambda paths with other methods (e.g. GetFunction) go to moto.
    let r = c
        .get(format!("{}/2015-03-31/functions/echo", gw.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 418);

    // Large bodies both ways.
    let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let r = c
        .post(format!("{}/raw", gw.endpoint()))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.bytes().await.unwrap().as_ref(), big.as_slice());

    // HEAD keeps the upstream's content-length.
    let r = c
        .head(format!("{}/bucket/key", gw.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()[header::CONTENT_LENGTH],
        HeaderValue::from_static("1234")
    );
    assert_eq!(r.headers()["etag"], "\"abc\"");

    // Concurrency.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        let url = format!("{}/raw?i={i}", gw.endpoint());
        tasks.push(tokio::spawn(async move {
            let body = format!("request {i}");
            let r = c.post(url).body(body.clone()).send().await.unwrap();
            assert_eq!(r.text().await.unwrap(), body);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    gw.shutdown().await;
    task.abort();
}

#[tokio::test]
async fn routes_cloudtrail_to_the_emulator() {
    let now = chrono::Utc::now();
    let emu = Arc::new(CloudTrailEmulator::from_records(
        vec![json!({
            "eventID": "e-1",
            "eventTime": "2023-07-10T12:00:00Z",
            "awsRegion": "us-west-2",
            "eventName": "CreateUser",
            "eventSource": "iam.amazonaws.com",
            "userIdentity": {"type": "IAMUser", "userName": "alice"}
        })],
        EmulatorOptions {
            throttle_rps: Some(1.0),
            time_shift: TimeShift::LatestAt(TimeDelta::hours(1)),
            ..EmulatorOptions::default()
        },
    ));
    let gw = start(false, Some(emu.clone())).await;
    let c = client();
    let post = |target: &str| {
        c.post(format!("{}/", gw.endpoint()))
            .header(
                "x-amz-target",
                format!("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.{target}"),
            )
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/cloudtrail/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body("{\"MaxResults\": 10}")
    };
    let r = post("LookupEvents").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.1");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["Events"][0]["EventId"], "e-1");
    let t = v["Events"][0]["EventTime"].as_i64().unwrap();
    assert!((now.timestamp() - t - 3600).abs() < 60);
    // Second request within the second: throttled (1 rps).
    let r = post("LookupEvents").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-amzn-errortype"], "ThrottlingException");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
    );
    let r = post("DescribeTrails").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["x-amzn-errortype"],
        "UnsupportedOperationException"
    );
    let stats = emu.stats();
    assert_eq!(stats.per_region["us-west-2"].requests, 3);
    assert_eq!(stats.per_region["us-west-2"].throttled, 1);

    let r = c
        .get(format!("{}/_iamtrail/health", gw.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachable_as_localhost_from_python() {
    let gw = start(false, None).await;
    let url = format!("http://localhost:{}/_iamtrail/health", gw.port());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
                &url,
            ])
            .output()
    })
    .await
    .unwrap();
    match out {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
        }
        Err(e) => eprintln!("python3 not available, skipping: {e}"),
    }
    gw.shutdown().await;
}

#[test]
fn function_names() {
    assert_eq!(function_name("collect"), "collect");
    assert_eq!(function_name("collect:3"), "collect");
    assert_eq!(
        function_name("arn:aws:lambda:eu-west-1:123456789012:function:iamtrail-collect:prod"),
        "iamtrail-collect"
    );
    assert_eq!(function_name("123456789012:function:x"), "x");
    assert_eq!(percent_decode("arn%3Aaws%3a%zz%"), "arn:aws:%zz%");
}
