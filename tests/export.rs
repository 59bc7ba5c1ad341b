//! The daily export: Parquet written by the Export step, read back by an independent reader
//! (pyarrow, from PyPI, in the project venv), equals the events table; re-exporting a date
//! overwrites its one object (exactly one copy of each row); a re-export never replaces a file
//! with fewer rows unless forced; the export loops on its time budget; multipart uploads keep
//! their metadata.

use std::collections::BTreeMap;
use std::path::Path;

use iamtrail::demo::dataset_emulator;
use iamtrail::local::LocalStack;
use iamtrail_e2e::*;
use serde_json::{json, Value};

/// Runs an execution that must succeed; returns its output.
async fn run_output(stack: &LocalStack, name: &str, input: Value) -> Value {
    let result = stack.run_execution(name, &input, |_| {}).await.unwrap();
    assert_eq!(
        result.status, "SUCCEEDED",
        "{name}: {:?} {:?}",
        result.error, result.cause
    );
    result.output.expect("output")
}

/// Downloads an object and reads it with pyarrow, row by row, as JSON.
async fn read_with_pyarrow(stack: &LocalStack, key: &str, dir: &Path) -> Vec<Value> {
    let body = get_object(stack, key).await;
    let path = dir.join(key.replace('/', "_"));
    std::fs::write(&path, &body).unwrap();
    let python = repo_root().join(".venv/bin/python");
    let script = "import json, sys, pyarrow.parquet as pq\n\
                  t = pq.read_table(sys.argv[1])\n\
                  rows = t.to_pylist()\n\
                  for r in rows:\n    r['event_time'] = r['event_time'].strftime('%Y-%m-%dT%H:%M:%SZ')\n\
                  print(json.dumps({'schema': [f.name + ':' + str(f.type) for f in t.schema], 'rows': rows}))";
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("run pyarrow");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema: Vec<&str> = doc["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(schema.contains(&"event_time:timestamp[ms]"), "{schema:?}");
    assert!(schema.contains(&"mfa_used:bool"), "{schema:?}");
    doc["rows"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_matches_the_events_table_and_reexport_keeps_one_copy() {
    let mut options = options("export");
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    let stack = start(options).await;
    let dir = std::env::temp_dir().join(format!("iamtrail-export-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The scheduled run collects, alerts, and exports the days that are due.
    let (result, summary) = run_ok(&stack, "export-1", json!({})).await;
    let export = &result.output.as_ref().unwrap()["export"];
    println!("export: {export}; due {:?}", summary.export_dates);
    assert!(summary.export_due);
    let items = scan_all(&stack.dynamodb(), &stack.settings().events_table).await;
    let dataset_days: std::collections::BTreeSet<String> = items
        .iter()
        .map(|i| attr(i, "event_date").unwrap().to_string())
        .collect();
    assert_eq!(
        export["rows"].as_u64(),
        Some(items.len() as u64),
        "every stored event exported once"
    );

    // Read every file back with pyarrow and compare with DynamoDB, value by value.
    let keys = objects(&stack, "iam-events/").await;
    assert_eq!(
        keys.len(),
        dataset_days.len(),
        "one file per day with events: {keys:?}"
    );
    let mut rows: BTreeMap<String, Value> = BTreeMap::new();
    for key in &keys {
        assert!(
            key.starts_with("iam-events/year=")
                && key.contains("/month=")
                && key.ends_with("/events.parquet"),
            "one deterministic key per date: {key}"
        );
        for row in read_with_pyarrow(&stack, key, &dir).await {
            let id = row["event_id"].as_str().unwrap().to_string();
            assert!(rows.insert(id, row).is_none(), "a row appears twice");
        }
    }
    assert_eq!(rows.len(), items.len());
    for item in &items {
        let row = &rows[attr(item, "event_id").unwrap()];
        for column in [
            "event_time",
            "event_date",
            "event_name",
            "event_source",
            "event_type",
            "user_name",
            "aws_region",
            "source_ip",
            "user_agent",
            "request_parameters",
            "error_code",
            "user_arn",
            "account_id",
        ] {
            assert_eq!(
                row[column].as_str(),
                attr(item, column),
                "{column} of {}",
                attr(item, "event_id").unwrap()
            );
        }
        let flag = |name: &str| item.get(name).and_then(|v| v.as_bool().ok()).copied();
        assert_eq!(row["read_only"].as_bool(), flag("read_only"));
        assert_eq!(row["mfa_used"].as_bool(), flag("mfa_used"));
        assert_eq!(row["truncated"].as_bool(), Some(false));
    }

    // Re-export the dataset's day twice on demand: still exactly one copy of each row.
    let day = dataset_days.iter().next_back().unwrap().clone();
    for n in 1..=2 {
        let again = stack
            .run_execution(
                &format!("reexport-{n}"),
                &json!({"mode": "export", "dates": [day]}),
                |_| {},
            )
            .await
            .unwrap();
        assert_eq!(
            again.status, "SUCCEEDED",
            "{:?} {:?}",
            again.error, again.cause
        );
        let export = &again.output.as_ref().unwrap()["export"];
        assert_eq!(export["dates"], json!([day]));
        println!("re-export {n}: {export}");
    }
    let (y, m, d) = (
        &day[0..4],
        day[5..7].trim_start_matches('0'),
        day[8..10].trim_start_matches('0'),
    );
    let day_keys = objects(&stack, &format!("iam-events/year={y}/month={m}/day={d}/")).await;
    assert_eq!(
        day_keys,
        vec![format!(
            "iam-events/year={y}/month={m}/day={d}/events.parquet"
        )]
    );
    assert_eq!(
        head_metadata(&stack, &day_keys[0])
            .await
            .get("exported-by")
            .map(String::as_str),
        Some("reexport-2"),
        "the second re-export overwrote the same key"
    );
    let reread = read_with_pyarrow(&stack, &day_keys[0], &dir).await;
    let unique: std::collections::BTreeSet<&str> = reread
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(unique.len(), reread.len(), "no duplicate rows");
    assert_eq!(
        reread.len(),
        items
            .iter()
            .filter(|i| attr(i, "event_date") == Some(day.as_str()))
            .count()
    );
    std::fs::remove_dir_all(&dir).ok();
    stack.stop().await;
}

/// All 15 pre-built queries on the local engine over the bundled dataset's real export.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_queries_run_on_the_dataset_export() {
    use iamtrail_query::{catalog, local::LocalEngine, params::Bindings};
    let mut options = options("queries");
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    let stack = start(options).await;
    run_ok(&stack, "export-for-queries", json!({})).await;
    let items = scan_all(&stack.dynamodb(), &stack.settings().events_table).await;
    let dir = std::env::temp_dir().join(format!("iamtrail-queries-test-{}", std::process::id()));
    let files = iamtrail::demo::download_export(&stack, &dir).await.unwrap();
    assert_eq!(files, 1);

    let queries = catalog::load_dir(repo_root().join("queries")).unwrap();
    assert_eq!(queries.len(), 15);
    let engine = LocalEngine::new(&dir).await.unwrap();
    let now = chrono::Utc::now();
    let mut results = BTreeMap::new();
    for q in &queries {
        let pairs: Vec<String> = if q.distinct_params().iter().any(|p| p.name == "user") {
            vec!["user=bert-jan".into()]
        } else {
            vec![]
        };
        let bindings = Bindings::from_args(q, Some(7), &pairs, now).unwrap();
        let result = engine
            .run(q, &bindings)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", q.name));
        println!(
            "{:<24} {:>3} rows  first: {:?}",
            q.name,
            result.rows.len(),
            result.rows.first()
        );
        results.insert(q.name.clone(), result);
    }
    // Plausible answers, checked against the events table.
    let daily = &results["daily_summary"];
    assert_eq!(daily.rows.len(), 1, "the dataset spans one day");
    assert!(
        daily.rows[0].iter().any(|c| c.as_deref() == Some("439")),
        "{:?}",
        daily.rows[0]
    );
    let assumed: std::collections::BTreeSet<String> = items
        .iter()
        .filter(|i| attr(i, "event_name").is_some_and(|n| n.starts_with("AssumeRole")))
        .map(|i| attr(i, "user_name").unwrap().to_string())
        .collect();
    let listed: std::collections::BTreeSet<String> = results["role_assumptions"]
        .rows
        .iter()
        .filter_map(|r| r[0].clone())
        .collect();
    assert_eq!(
        listed, assumed,
        "role_assumptions lists the dataset's AssumeRole targets"
    );
    assert!(
        results["root_usage"].rows.is_empty(),
        "the dataset has no root activity"
    );
    assert!(
        !results["failed_auth"].rows.is_empty(),
        "the dataset has denied calls"
    );
    assert!(!results["user_lookup"].rows.is_empty());
    for sso in [
        "sso_permission_sets",
        "sso_account_assignments",
        "sso_admin_policies",
        "sso_applications",
        "sso_admin_users",
        "sso_activity_summary",
    ] {
        assert!(
            results[sso].rows.is_empty(),
            "{sso}: the dataset has no SSO events"
        );
    }

    // A parameter is bound, never spliced: the classic injection returns nothing.
    let q = catalog::find(&queries, "user_lookup").unwrap();
    let hostile = Bindings::from_args(q, Some(7), &["user=x' OR '1'='1".to_string()], now).unwrap();
    assert!(engine.run(q, &hostile).await.unwrap().rows.is_empty());
    std::fs::remove_dir_all(&dir).ok();
    stack.stop().await;
}

/// `PARTITION_BY_REGION=true`: one file per region under `region=R`, every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_by_region_writes_one_file_per_region() {
    let mut options = options("export-regions");
    options
        .settings
        .insert("PARTITION_BY_REGION".into(), "true".into());
    options
        .settings
        .insert("EXPORT_COMPRESSION".into(), "zstd".into());
    // Every file above 1 KiB goes up as one multipart upload (in one part: S3's 5 MiB minimum
    // applies to every part but the last).
    options
        .settings
        .insert("EXPORT_PART_SIZE_BYTES".into(), "1024".into());
    let stack = start(options).await;
    let day = chrono::Utc::now() - chrono::Duration::days(2);
    for region in ["us-east-1", "eu-west-1"] {
        let records = (0..3)
            .map(|i| {
                record(
                    &format!("{region}-{i}"),
                    day + chrono::Duration::minutes(i),
                    "sts.amazonaws.com",
                    "AssumeRole",
                    region,
                )
            })
            .collect();
        stack.emulator.add_records(records);
    }
    run_ok(
        &stack,
        "collect-regions",
        json!({"regions": ["us-east-1", "eu-west-1"], "sources": ["sts"]}),
    )
    .await;
    let date = day.format("%Y-%m-%d").to_string();
    let result = stack
        .run_execution(
            "export-regions",
            &json!({"mode": "export", "dates": [date]}),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        result.status, "SUCCEEDED",
        "{:?} {:?}",
        result.error, result.cause
    );
    assert_eq!(result.output.as_ref().unwrap()["export"]["files"], 2);
    let keys = objects(&stack, "iam-events/").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let dir = std::env::temp_dir().join(format!("iamtrail-export-regions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for region in ["us-east-1", "eu-west-1"] {
        let key = keys
            .iter()
            .find(|k| k.contains(&format!("/region={region}/")))
            .unwrap_or_else(|| panic!("{region}: {keys:?}"));
        let rows = read_with_pyarrow(&stack, key, &dir).await;
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r["aws_region"] == region));
        assert!(
            key.ends_with(&format!("/region={region}/events.parquet")),
            "{key}"
        );
        let metadata = head_metadata(&stack, key).await;
        assert_eq!(
            metadata.get("rows").map(String::as_str),
            Some("3"),
            "{metadata:?}"
        );
        assert_eq!(
            metadata.get("exported-by").map(String::as_str),
            Some("export-regions")
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    stack.stop().await;
}

/// A re-export of a day whose items were deleted from DynamoDB (as TTL expiry would) keeps the
/// complete file and says so; `force` replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reexport_of_a_day_whose_items_expired_keeps_the_old_file() {
    let stack = start(options("export-expired")).await;
    let day = chrono::Utc::now() - chrono::Duration::days(2);
    let records = (0..5)
        .map(|i| {
            record(
                &format!("expired-{i}"),
                day + chrono::Duration::minutes(i),
                "sts.amazonaws.com",
                "AssumeRole",
                "us-east-1",
            )
        })
        .collect();
    stack.emulator.add_records(records);
    run_ok(
        &stack,
        "collect-expired",
        json!({"regions": ["us-east-1"], "sources": ["sts"]}),
    )
    .await;
    let date = day.format("%Y-%m-%d").to_string();
    let first = run_output(
        &stack,
        "export-full",
        json!({"mode": "export", "dates": [date]}),
    )
    .await;
    assert_eq!(first["export"]["rows"], 5, "{first}");
    let keys = objects(&stack, "iam-events/").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = keys[0].clone();

    // Three of the day's items expire.
    let table = stack.settings().events_table.clone();
    for i in 0..3 {
        stack
            .dynamodb()
            .delete_item()
            .table_name(&table)
            .key(
                "event_date",
                aws_sdk_dynamodb::types::AttributeValue::S(date.clone()),
            )
            .key(
                "event_id",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("expired-{i}")),
            )
            .send()
            .await
            .unwrap();
    }
    let dir = std::env::temp_dir().join(format!("iamtrail-export-expired-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let again = run_output(
        &stack,
        "export-after-expiry",
        json!({"mode": "export", "dates": [date]}),
    )
    .await;
    println!("re-export after expiry: {}", again["export"]);
    let kept = &again["export"]["kept"];
    assert_eq!(kept.as_array().map(Vec::len), Some(1), "{again}");
    assert_eq!(kept[0]["key"], key.as_str());
    assert_eq!(
        (
            kept[0]["existing_rows"].as_u64(),
            kept[0]["new_rows"].as_u64()
        ),
        (Some(5), Some(2))
    );
    assert!(
        kept[0]["warning"].as_str().unwrap().contains("use force"),
        "{kept}"
    );
    assert_eq!(again["export"]["files"], 0);
    assert_eq!(
        read_with_pyarrow(&stack, &key, &dir).await.len(),
        5,
        "the complete file stays"
    );
    assert_eq!(
        head_metadata(&stack, &key)
            .await
            .get("exported-by")
            .map(String::as_str),
        Some("export-full")
    );

    // Told to, the export replaces it with what the table still holds.
    let forced = run_output(
        &stack,
        "export-forced",
        json!({"mode": "export", "dates": [date], "force": true}),
    )
    .await;
    assert_eq!(forced["export"]["kept"], json!([]), "{forced}");
    assert_eq!(objects(&stack, "iam-events/").await, vec![key.clone()]);
    let rows = read_with_pyarrow(&stack, &key, &dir).await;
    assert_eq!(rows.len(), 2);
    std::fs::remove_dir_all(&dir).ok();
    stack.stop().await;
}

/// With a 1-second budget, the first export of 90 days needs several Export invocations: the
/// workflow loops while Export reports `more`, at most MaxExportInvocations (10) times; what a
/// slow machine leaves undone is reported as `export_dates` and exported by the next execution,
/// and every date is exported exactly once over the executions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_loops_on_its_time_budget_until_every_date_is_done() {
    const MAX_EXPORT_INVOCATIONS: u64 = 10;
    let mut options = options("export-budget");
    options
        .settings
        .insert("EXPORT_TIME_BUDGET_SECONDS".into(), "1".into());
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    let stack = start(options).await;
    let (result, summary) = run_ok(&stack, "export-budget", json!({})).await;
    let due: Vec<String> = summary.export_dates.iter().map(|d| d.to_string()).collect();
    assert!(due.len() >= 80, "{due:?}");
    let mut export = result.output.as_ref().unwrap()["export"].clone();
    println!("export: {export}; {} dates due", due.len());
    assert!(export["invocations"].as_u64().unwrap() >= 2, "{export}");

    let mut exported: Vec<String> = Vec::new();
    let mut rows = 0;
    for round in 1..=5 {
        let done = strings(&export["dates"]);
        let left = strings(&export["export_dates"]);
        // Each execution exports some dates and hands the rest on: nothing twice, nothing lost.
        let mut both: Vec<String> = done.iter().chain(left.iter()).cloned().collect();
        both.sort();
        let mut expected: Vec<String> = due
            .iter()
            .filter(|d| !exported.contains(d))
            .cloned()
            .collect();
        expected.sort();
        assert_eq!(
            both, expected,
            "round {round}: exported + left = still due ({export})"
        );
        exported.extend(done);
        rows += export["rows"].as_u64().unwrap();
        if export["more"] == false {
            assert!(left.is_empty(), "{export}");
            break;
        }
        // Stopped by the cap, not early.
        assert_eq!(
            export["invocations"].as_u64(),
            Some(MAX_EXPORT_INVOCATIONS),
            "{export}"
        );
        let next = run_output(
            &stack,
            &format!("export-budget-rest-{round}"),
            json!({"mode": "export", "dates": left}),
        )
        .await;
        export = next["export"].clone();
        println!("round {}: {export}", round + 1);
    }
    assert_eq!(
        export["more"], false,
        "the remaining dates were exported: {export}"
    );
    exported.sort();
    let mut due_sorted = due.clone();
    due_sorted.sort();
    assert_eq!(
        exported, due_sorted,
        "every due date exported once over the executions"
    );
    let items = scan_all(&stack.dynamodb(), &stack.settings().events_table).await;
    assert_eq!(rows, items.len() as u64);
    stack.stop().await;
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
