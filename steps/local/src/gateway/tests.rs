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
        Err(e) => crate::missing_test_dependency(
            format!("python3 is not available: {e}"),
            "install Python 3.9 or newer (moto server runs on it), then run scripts/setup-venv.sh",
        ),
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
}

// ---- Fault injection and counters ----------------------------------------------------------

/// The (URI, JSON body) of every request a fake upstream received.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A fake upstream that records every request body it receives and answers a `BatchWriteItem`
/// like DynamoDB (nothing unprocessed, with `x-amz-crc32`), anything else `200 {}`.
async fn recording_upstream() -> (String, Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |req: Request| {
        let record = record.clone();
        async move {
            let uri = req.uri().to_string();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            let v = serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
            lock(&record).push((uri, v));
            let answer = br#"{"UnprocessedItems":{}}"#;
            Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/x-amz-json-1.0")
                .header("x-amz-crc32", crc32_header(answer))
                .body(Body::from(&answer[..]))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, seen, task)
}

async fn gateway_on_recorder() -> (Gateway, Seen, tokio::task::JoinHandle<()>) {
    let gw = start(false, None).await;
    let (upstream, seen, task) = recording_upstream().await;
    gw.set_upstream(upstream);
    (gw, seen, task)
}

fn auth(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    )
}

fn put(id: &str) -> Value {
    json!({"PutRequest": {"Item": {"event_date": {"S": "2024-01-01"}, "event_id": {"S": id}, "n": {"N": "1"}}}})
}

fn batch(tables: &[(&str, &[&str])]) -> Value {
    let items: serde_json::Map<String, Value> = tables
        .iter()
        .map(|(t, ids)| (t.to_string(), ids.iter().map(|id| put(id)).collect()))
        .collect();
    json!({"RequestItems": items, "ReturnConsumedCapacity": "NONE"})
}

async fn dynamodb(gw: &Gateway, operation: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/", gw.endpoint()))
        .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("authorization", auth("dynamodb"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The event ids of a `RequestItems`/`UnprocessedItems` map, per table.
fn ids_of(map: &Value) -> Vec<(String, Vec<String>)> {
    map.as_object()
        .map(|o| {
            o.iter()
                .map(|(t, rs)| {
                    let ids = rs
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            r["PutRequest"]["Item"]["event_id"]["S"]
                                .as_str()
                                .unwrap()
                                .to_string()
                        })
                        .collect();
                    (t.clone(), ids)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one batch, checks the response is well-formed DynamoDB and that forwarded and
/// unprocessed items add up to the request; returns (forwarded, unprocessed) ids.
async fn send_batch(
    gw: &Gateway,
    seen: &Mutex<Vec<(String, Value)>>,
    request: &Value,
) -> (Vec<(String, Vec<String>)>, Vec<(String, Vec<String>)>) {
    let before = lock(seen).len();
    let r = dynamodb(gw, "BatchWriteItem", request).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.0");
    let crc: u32 = r.headers()["x-amz-crc32"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let mut c = flate2::Crc::new();
    c.update(&bytes);
    assert_eq!(crc, c.sum(), "x-amz-crc32 matches the (rewritten) body");
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    let unprocessed = ids_of(&answer["UnprocessedItems"]);
    let forwarded = match lock(seen).get(before) {
        Some((_, body)) => {
            // Everything else of the request is forwarded unchanged.
            assert_eq!(body["ReturnConsumedCapacity"], "NONE");
            ids_of(&body["RequestItems"])
        }
        None => Vec::new(),
    };
    // Forwarded + unprocessed = the request, nothing lost or duplicated, order kept.
    for (table, ids) in ids_of(&request["RequestItems"]) {
        let f = forwarded
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let u = unprocessed
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut all: Vec<String> = f.iter().chain(u.iter()).cloned().collect();
        all.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(all, expected, "table {table}");
        assert!(f
            .windows(2)
            .all(|w| ids.iter().position(|x| *x == w[0]) < ids.iter().position(|x| *x == w[1])));
        assert!(u
            .windows(2)
            .all(|w| ids.iter().position(|x| *x == w[0]) < ids.iter().position(|x| *x == w[1])));
    }
    // A table with nothing left is not sent with an empty list (DynamoDB rejects that).
    assert!(forwarded.iter().all(|(_, ids)| !ids.is_empty()));
    (forwarded, unprocessed)
}

fn count_items(v: &[(String, Vec<String>)]) -> usize {
    v.iter().map(|(_, ids)| ids.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_write_item_leaves_unprocessed_items() {
    let (gw, seen, task) = gateway_on_recorder().await;
    let five = batch(&[("events", &["a", "b", "c", "d", "e"])]);

    // Off by default: forwarded whole, nothing unprocessed.
    let (f, u) = send_batch(&gw, &seen, &five).await;
    assert_eq!((count_items(&f), count_items(&u)), (5, 0));

    // Every batch cut, 40% (rounded up: 2 of 5) kept back, at most two batches.
    let fault = UnprocessedItemsFault::new(7)
        .probability(1.0)
        .fraction(0.4)
        .max_batches(2);
    gw.set_fault_plan(FaultPlan {
        dynamodb_unprocessed: Some(fault.clone()),
        ..FaultPlan::default()
    });
    gw.reset_counts();
    let (f1, u1) = send_batch(&gw, &seen, &five).await;
    assert_eq!((count_items(&f1), count_items(&u1)), (3, 2));
    let (f2, u2) = send_batch(&gw, &seen, &five).await;
    assert_eq!((count_items(&f2), count_items(&u2)), (3, 2));
    let (f3, u3) = send_batch(&gw, &seen, &five).await;
    assert_eq!((count_items(&f3), count_items(&u3)), (5, 0), "max_batches");
    assert_eq!(gw.requests("dynamodb", "BatchWriteItem"), 3);
    assert_eq!(gw.injected("dynamodb", "BatchWriteItem"), 2);

    // Deterministic: the same seed keeps back the same items in the same sequence.
    gw.set_fault_plan(FaultPlan {
        dynamodb_unprocessed: Some(fault.clone()),
        ..FaultPlan::default()
    });
    assert_eq!(send_batch(&gw, &seen, &five).await.1, u1);
    assert_eq!(send_batch(&gw, &seen, &five).await.1, u2);
    // ... and a single-item batch is never cut to more than it has.
    gw.set_fault_plan(FaultPlan {
        dynamodb_unprocessed: Some(UnprocessedItemsFault::new(1).probability(1.0).fraction(0.1)),
        ..FaultPlan::default()
    });
    let before = lock(&seen).len();
    let (f, u) = send_batch(&gw, &seen, &batch(&[("events", &["only"])])).await;
    assert_eq!((count_items(&f), count_items(&u)), (0, 1));
    assert_eq!(
        lock(&seen).len(),
        before,
        "nothing left: moto is not called"
    );

    // Everything kept back (as DynamoDB does under heavy throttling).
    gw.set_fault_plan(FaultPlan {
        dynamodb_unprocessed: Some(UnprocessedItemsFault::new(3).probability(1.0).fraction(1.0)),
        ..FaultPlan::default()
    });
    let (f, u) = send_batch(&gw, &seen, &five).await;
    assert_eq!((count_items(&f), count_items(&u)), (0, 5));

    // Probability 0: never.
    gw.set_fault_plan(FaultPlan {
        dynamodb_unprocessed: Some(UnprocessedItemsFault::new(3).probability(0.0)),
        ..FaultPlan::default()
    });
    for _ in 0..5 {
        assert_eq!(count_items(&send_batch(&gw, &seen, &five).await.1), 0);
    }

    // Only the chosen table's items are kept back.
    gw.set_fault_plan(FaultPlan {
        dynamodb_unprocessed: Some(
            UnprocessedItemsFault::new(5)
                .probability(1.0)
                .fraction(1.0)
                .table("events"),
        ),
        ..FaultPlan::default()
    });
    let two = batch(&[("control", &["x", "y"]), ("events", &["a", "b"])]);
    let (f, u) = send_batch(&gw, &seen, &two).await;
    assert_eq!(
        f,
        vec![(
            "control".to_string(),
            vec!["x".to_string(), "y".to_string()]
        )]
    );
    assert_eq!(
        u,
        vec![("events".to_string(), vec!["a".to_string(), "b".to_string()])]
    );
    // A batch without that table is not considered at all.
    let (_, u) = send_batch(&gw, &seen, &batch(&[("control", &["z"])])).await;
    assert!(u.is_empty());

    // About half of many batches with the default probability, the same on every run.
    let mut pattern = Vec::new();
    for round in 0..2 {
        gw.set_fault_plan(FaultPlan {
            dynamodb_unprocessed: Some(UnprocessedItemsFault::new(42)),
            ..FaultPlan::default()
        });
        let mut cut = Vec::new();
        for _ in 0..40 {
            cut.push(count_items(&send_batch(&gw, &seen, &five).await.1));
        }
        if round == 0 {
            pattern = cut;
        } else {
            assert_eq!(cut, pattern, "same seed, same decisions");
        }
    }
    let n = pattern.iter().filter(|&&c| c > 0).count();
    assert!((8..=32).contains(&n), "{n} of 40 cut with probability 0.5");
    assert!(pattern.iter().all(|&c| c == 0 || c == 3), "{pattern:?}");

    gw.set_fault_plan(FaultPlan::default());
    assert!(gw.fault_plan().is_empty());
    gw.shutdown().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_item_fails_the_whole_batch_with_validation_exception() {
    let (gw, seen, task) = gateway_on_recorder().await;
    gw.set_fault_plan(FaultPlan {
        dynamodb_invalid_items: vec![InvalidItemFault::new("event_id", "poison")],
        // Validation comes first: a rejected batch is not also cut.
        dynamodb_unprocessed: Some(UnprocessedItemsFault::new(1).probability(1.0)),
        ..FaultPlan::default()
    });
    let r = dynamodb(
        &gw,
        "BatchWriteItem",
        &batch(&[("events", &["a", "poison", "c"])]),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.0");
    assert!(r.headers().contains_key("x-amzn-requestid"));
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"__type": "com.amazon.coral.validate#ValidationException",
               "message": DEFAULT_VALIDATION_MESSAGE})
    );
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("One or more parameter values were invalid: "));
    // PutItem of that item too.
    let r = dynamodb(
        &gw,
        "PutItem",
        &json!({"TableName": "events", "Item": put("poison")["PutRequest"]["Item"]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        lock(&seen).is_empty(),
        "nothing of a rejected request reaches moto"
    );
    // Without the poison item: forwarded (and cut, as planned).
    let r = dynamodb(&gw, "BatchWriteItem", &batch(&[("events", &["a", "c"])])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(lock(&seen).len(), 1);
    // A number attribute, and the table filter.
    gw.set_fault_plan(FaultPlan {
        dynamodb_invalid_items: vec![InvalidItemFault::new("n", "1").table("other")],
        ..FaultPlan::default()
    });
    let r = dynamodb(&gw, "BatchWriteItem", &batch(&[("events", &["a"])])).await;
    assert_eq!(r.status(), 200);
    let r = dynamodb(&gw, "BatchWriteItem", &batch(&[("other", &["a"])])).await;
    assert_eq!(r.status(), 400);
    assert_eq!(gw.requests("dynamodb", "BatchWriteItem"), 4);
    assert_eq!(gw.injected("dynamodb", "BatchWriteItem"), 3);
    assert_eq!(gw.injected("dynamodb", "PutItem"), 1);
    gw.shutdown().await;
    task.abort();
}

async fn publish(gw: &Gateway, subject: &str, message: &str) -> reqwest::Response {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    client()
        .post(format!("{}/", gw.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth("sns"))
        .body(format!(
            "Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3At&Subject={}&Message={}",
            enc(subject),
            enc(message)
        ))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_publish_slow_or_failing_by_pattern() {
    let (gw, seen, task) = gateway_on_recorder().await;
    gw.set_fault_plan(FaultPlan {
        sns_publish_delay: Some(Duration::from_millis(300)),
        sns_publish_fail: Some(TextMatch::contains("Root Account")),
        ..FaultPlan::default()
    });
    let started = Instant::now();
    let r = publish(&gw, "[HIGH] IAM Alert: User Created", "body").await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300), "delayed");
    // Matched in the decoded subject ...
    let r = publish(&gw, "[CRITICAL] IAM Alert: Root Account Used", "x").await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-amzn-errortype"], "InternalError");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Code>InternalError</Code>"));
    // ... or in the message (percent-encoded on the wire).
    let r = publish(&gw, "s", "Details: Root Account & more").await;
    assert_eq!(r.status(), 500);
    assert_eq!(lock(&seen).len(), 1);
    assert_eq!(gw.requests("sns", "Publish"), 3);
    assert_eq!(gw.injected("sns", "Publish"), 2);
    // Every publish.
    gw.set_fault_plan(FaultPlan {
        sns_publish_fail: Some(TextMatch::Any),
        ..FaultPlan::default()
    });
    assert_eq!(publish(&gw, "a", "b").await.status(), 500);
    // Other SNS calls pass.
    let r = client()
        .post(format!("{}/", gw.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth("sns"))
        .body("Action=ListTopics&Version=2010-03-31")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.requests("sns", "ListTopics"), 1);
    gw.shutdown().await;
    task.abort();
}

async fn s3(gw: &Gateway, method: Method, path_and_query: &str) -> reqwest::Response {
    client()
        .request(method, format!("{}{path_and_query}", gw.endpoint()))
        .header("authorization", auth("s3"))
        .body("part-bytes")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_part_complete_and_put_object_failures() {
    let (gw, seen, task) = gateway_on_recorder().await;
    gw.set_fault_plan(FaultPlan {
        s3_upload_part_fail: Some(UploadPartFault::new(2)),
        s3_complete_multipart_fail: Some(TextMatch::contains("day=2")),
        s3_put_object_fail: Some(TextMatch::contains(".parquet")),
        ..FaultPlan::default()
    });
    let key = "/bucket/iam-events/year=2024/month=1/day=2/part%20x.parquet";
    // Part 1 passes, part 2 fails on every attempt, part 3 passes.
    assert_eq!(
        s3(&gw, Method::PUT, &format!("{key}?partNumber=1&uploadId=u1"))
            .await
            .status(),
        200
    );
    for _ in 0..3 {
        let r = s3(
            &gw,
            Method::PUT,
            &format!("{key}?x-id=UploadPart&partNumber=2&uploadId=u1"),
        )
        .await;
        assert_eq!(r.status(), 500);
        assert_eq!(r.headers()["content-type"], "application/xml");
        assert!(r.headers().contains_key("x-amz-request-id"));
        let text = r.text().await.unwrap();
        assert!(text.contains("<Error><Code>InternalError</Code>"), "{text}");
    }
    assert_eq!(
        s3(&gw, Method::PUT, &format!("{key}?partNumber=3&uploadId=u1"))
            .await
            .status(),
        200
    );
    assert_eq!(gw.requests("s3", "UploadPart"), 5);
    assert_eq!(gw.injected("s3", "UploadPart"), 3);
    // CompleteMultipartUpload for a matching key; CreateMultipartUpload passes.
    assert_eq!(
        s3(&gw, Method::POST, &format!("{key}?uploads"))
            .await
            .status(),
        200
    );
    assert_eq!(
        s3(&gw, Method::POST, &format!("{key}?uploadId=u1"))
            .await
            .status(),
        500
    );
    assert_eq!(
        s3(
            &gw,
            Method::POST,
            "/bucket/iam-events/year=2024/month=1/day=3/p.parquet?uploadId=u2"
        )
        .await
        .status(),
        200
    );
    assert_eq!(gw.requests("s3", "CreateMultipartUpload"), 1);
    assert_eq!(gw.injected("s3", "CompleteMultipartUpload"), 1);
    // PutObject by key pattern (with or without the SDK's x-id), other keys pass.
    assert_eq!(s3(&gw, Method::PUT, key).await.status(), 500);
    assert_eq!(
        s3(&gw, Method::PUT, &format!("{key}?x-id=PutObject"))
            .await
            .status(),
        500
    );
    assert_eq!(
        s3(&gw, Method::PUT, "/bucket/other.json").await.status(),
        200
    );
    assert_eq!(s3(&gw, Method::PUT, "/bucket").await.status(), 200);
    assert_eq!(gw.requests("s3", "PutObject"), 3);
    assert_eq!(gw.requests("s3", "CreateBucket"), 1);

    // A part that fails only once: the retry goes through.
    gw.set_fault_plan(FaultPlan {
        s3_upload_part_fail: Some(UploadPartFault {
            times: Some(1),
            key: TextMatch::contains("day=2"),
            ..UploadPartFault::new(1)
        }),
        ..FaultPlan::default()
    });
    let before = lock(&seen).len();
    assert_eq!(
        s3(&gw, Method::PUT, &format!("{key}?partNumber=1&uploadId=u3"))
            .await
            .status(),
        500
    );
    assert_eq!(
        s3(&gw, Method::PUT, &format!("{key}?partNumber=1&uploadId=u3"))
            .await
            .status(),
        200
    );
    assert_eq!(
        s3(&gw, Method::PUT, "/bucket/day=1/x?partNumber=1&uploadId=u4")
            .await
            .status(),
        200
    );
    assert_eq!(lock(&seen).len(), before + 2);
    gw.shutdown().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_substring_faults_and_counters_of_every_route() {
    let emu = Arc::new(CloudTrailEmulator::new(EmulatorOptions::default()));
    let gw = start(true, Some(emu)).await;
    let (upstream, seen, task) = recording_upstream().await;
    gw.set_upstream(upstream);
    gw.set_fault_plan(FaultPlan {
        sns_publish_delay: Some(Duration::from_millis(1)),
        ..FaultPlan::default()
    });
    gw.set_faults(vec!["Action=Publish".into()]);
    assert_eq!(
        gw.fault_plan().sns_publish_delay,
        Some(Duration::from_millis(1)),
        "set_faults keeps the typed faults"
    );
    let r = publish(&gw, "s", "m").await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-amzn-errortype"], "InternalError");
    gw.set_faults(vec![]);
    assert_eq!(publish(&gw, "s", "m").await.status(), 200);
    assert_eq!(lock(&seen).len(), 1);

    let c = client();
    c.post(format!(
        "{}/2015-03-31/functions/echo/invocations",
        gw.endpoint()
    ))
    .body("{}")
    .send()
    .await
    .unwrap();
    c.post(format!("{}/", gw.endpoint()))
        .header("x-amz-target", "CloudTrail_20131101.LookupEvents")
        .header("authorization", auth("cloudtrail"))
        .body("{}")
        .send()
        .await
        .unwrap();
    // Unsigned JSON-protocol requests are named from their target.
    c.post(format!("{}/", gw.endpoint()))
        .header("x-amz-target", "AWSStepFunctions.ListStateMachines")
        .body("{}")
        .send()
        .await
        .unwrap();
    let counts = gw.request_counts();
    let get = |s: &str, o: &str| counts.get(&(s.to_string(), o.to_string())).copied();
    assert_eq!(
        get("sns", "Publish"),
        Some(OperationCount {
            requests: 2,
            injected: 1
        })
    );
    assert_eq!(get("lambda", "Invoke").map(|c| c.requests), Some(1));
    assert_eq!(
        get("cloudtrail", "LookupEvents").map(|c| c.requests),
        Some(1)
    );
    assert_eq!(
        get("states", "ListStateMachines").map(|c| c.requests),
        Some(1)
    );
    gw.reset_counts();
    assert!(gw.request_counts().is_empty());
    gw.shutdown().await;
    task.abort();
}

#[test]
fn requests_are_named_by_service_and_operation() {
    let name = |method: Method, uri: &str, headers: &[(&str, &str)], body: &str| {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let body = Bytes::from(body.to_string());
        let r = AwsRequest::new(&method, &uri, &map, &body);
        (r.service, r.operation, r.s3_key)
    };
    let s3 = auth("s3");
    let (ddb, sns, ec2) = (auth("dynamodb"), auth("sns"), auth("ec2"));
    let s3h = [("authorization", s3.as_str())];
    // (method, URI, headers, body) → (service, operation, S3 key)
    type Case<'a> = (
        (Method, &'a str, Vec<(&'a str, &'a str)>, &'a str),
        (&'a str, &'a str, &'a str),
    );
    let cases: Vec<Case> = vec![
        ((Method::POST, "/", vec![("authorization", &ddb), ("x-amz-target", "DynamoDB_20120810.BatchWriteItem")], "{}"), ("dynamodb", "BatchWriteItem", "")),
        ((Method::POST, "/", vec![("authorization", &sns), ("content-type", "application/x-www-form-urlencoded; charset=utf-8")], "Action=Publish&Subject=a"), ("sns", "Publish", "")),
        ((Method::POST, "/", vec![("authorization", &ec2)], "Action=DescribeRegions&Version=2016-11-15"), ("ec2", "DescribeRegions", "")),
        ((Method::PUT, "/b/k%2Fa%20b?x-id=PutObject", s3h.to_vec(), ""), ("s3", "PutObject", "k/a b")),
        ((Method::PUT, "/b/dir/k", s3h.to_vec(), ""), ("s3", "PutObject", "dir/k")),
        ((Method::PUT, "/b/k", vec![("authorization", &s3), ("x-amz-copy-source", "/b/j")], ""), ("s3", "CopyObject", "k")),
        ((Method::PUT, "/b/k?partNumber=2&uploadId=x", s3h.to_vec(), ""), ("s3", "UploadPart", "k")),
        ((Method::POST, "/b/k?uploads", s3h.to_vec(), ""), ("s3", "CreateMultipartUpload", "k")),
        ((Method::POST, "/b/k?uploadId=x", s3h.to_vec(), ""), ("s3", "CompleteMultipartUpload", "k")),
        ((Method::DELETE, "/b/k?uploadId=x", s3h.to_vec(), ""), ("s3", "AbortMultipartUpload", "k")),
        ((Method::GET, "/b/k?uploadId=x", s3h.to_vec(), ""), ("s3", "ListParts", "k")),
        ((Method::GET, "/b/k", s3h.to_vec(), ""), ("s3", "GetObject", "k")),
        ((Method::HEAD, "/b/k", s3h.to_vec(), ""), ("s3", "HeadObject", "k")),
        ((Method::HEAD, "/b", s3h.to_vec(), ""), ("s3", "HeadBucket", "")),
        ((Method::GET, "/b?list-type=2&prefix=a", s3h.to_vec(), ""), ("s3", "ListObjectsV2", "")),
        ((Method::POST, "/b?delete", s3h.to_vec(), "<Delete/>"), ("s3", "DeleteObjects", "")),
        ((Method::DELETE, "/b/k", s3h.to_vec(), ""), ("s3", "DeleteObject", "k")),
        ((Method::PUT, "/b", s3h.to_vec(), ""), ("s3", "CreateBucket", "")),
        ((Method::GET, "/", s3h.to_vec(), ""), ("s3", "ListBuckets", "")),
        ((Method::GET, "/b/k?X-Amz-Credential=AK%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0", vec![], ""), ("s3", "GetObject", "k")),
        ((Method::POST, "/", vec![("x-amz-target", "DynamoDB_20120810.Scan")], "{}"), ("dynamodb", "Scan", "")),
        ((Method::GET, "/moto-api/config", vec![], ""), ("unknown", "GET", "config")),
    ];
    for ((method, uri, headers, body), (service, operation, key)) in cases {
        assert_eq!(
            name(method.clone(), uri, &headers, body),
            (service.to_string(), operation.to_string(), key.to_string()),
            "{method} {uri}"
        );
    }
}
