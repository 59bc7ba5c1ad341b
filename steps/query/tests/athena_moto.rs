//! The Athena engine against a real moto server (a missing moto fails the test, see
//! `iamtrail_local::missing_test_dependency`), plus the paging logic and cost arithmetic, which
//! moto cannot exercise.
//!
//! What moto's Athena does (moto 5.2.5, `moto/athena/models.py`, `responses.py`):
//! - it runs nothing: `GetQueryResults` answers canned result sets queued with
//!   `POST /moto-api/static/athena/query-results` (the first `GetQueryResults` of an execution
//!   takes the next queued set; an empty queue gives an empty result); rows are returned
//!   verbatim, so a header row is only there if the canned set has one;
//! - `GetQueryResults` ignores `MaxResults` and never returns a `NextToken` (no paging);
//! - `Statistics` are always zero (`DataScannedInBytes: 0`, `EngineExecutionTimeInMillis: 0`);
//! - the state goes QUEUED → RUNNING → SUCCEEDED, immediately by default, or one step per
//!   `GetQueryExecution` every N polls with the state manager
//!   (`POST /moto-api/state-manager/set-transition`, model `athena::execution`);
//! - `StopQueryExecution` sets CANCELLED (no `StateChangeReason`); nothing ever FAILS;
//! - `ExecutionParameters`, the database and the workgroup are stored and echoed by
//!   `GetQueryExecution`; an unknown workgroup is a 400 "WorkGroup does not exist".

mod common;

use std::time::{Duration, Instant};

use aws_sdk_athena::config::{Credentials, Region};
use aws_sdk_athena::types::{ResultConfiguration, WorkGroupConfiguration};
use chrono::{TimeZone, Utc};
use common::repo_root;
use iamtrail_local::{
    find_moto_server, free_port, missing_test_dependency, MotoOptions, MotoServer, SETUP_VENV_HINT,
};
use iamtrail_query::athena::{collect_pages, ResultPage, MB, MIN_BILLED_BYTES, TB};
use iamtrail_query::{athena_cost_usd, AthenaEngine, ColumnType, Error, ParamValue, PollSchedule};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

fn client(endpoint: &str) -> aws_sdk_athena::Client {
    let config = aws_sdk_athena::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .retry_config(aws_sdk_athena::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_athena::Client::from_conf(config)
}

async fn moto_api(http: &reqwest::Client, moto: &MotoServer, path: &str, body: Value) {
    let r = http
        .post(format!("{}{path}", moto.endpoint()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("moto API call");
    assert!(
        r.status().is_success(),
        "{path}: HTTP {}: {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
}

fn varchar_row(cells: &[Option<&str>]) -> Value {
    json!({"Data": cells.iter().map(|c| match c {
        Some(v) => json!({"VarCharValue": v}),
        None => json!({}),
    }).collect::<Vec<_>>()})
}

fn column(name: &str, kind: &str) -> Value {
    json!({"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": name, "Label": name,
           "Type": kind, "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": true})
}

async fn set_manual_transitions(http: &reqwest::Client, moto: &MotoServer, times: u32) {
    moto_api(
        http,
        moto,
        "/moto-api/state-manager/set-transition",
        json!({"model_name": "athena::execution",
               "transition": {"progression": "manual", "times": times}}),
    )
    .await;
}

fn fast_polls() -> PollSchedule {
    PollSchedule {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
        factor: 2.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_on_moto() {
    let bin = find_moto_server(&repo_root()).unwrap_or_else(|e| {
        missing_test_dependency(format!("moto is not installed: {e}"), SETUP_VENV_HINT)
    });
    let log = std::env::temp_dir().join(format!("iamtrail-query-moto-{}.log", std::process::id()));
    let moto = MotoServer::start(MotoOptions {
        moto_server_bin: bin,
        moto_port_env: free_port(),
        log_file: Some(log.clone()),
        s3_upload_part_min_size: None,
    })
    .await
    .expect("moto starts");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let athena = client(&moto.endpoint());

    // The workgroup with its own result location (a bucket in moto's S3).
    let bucket = "iamtrail-athena-results";
    let r = http
        .put(format!("{}/{bucket}", moto.endpoint()))
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/s3/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00"
            ),
        )
        .header("x-amz-date", "20240101T000000Z")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    athena
        .create_work_group()
        .name("iamtrail")
        .configuration(
            WorkGroupConfiguration::builder()
                .result_configuration(
                    ResultConfiguration::builder()
                        .output_location(format!("s3://{bucket}/results/"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("CreateWorkGroup");

    // Two canned result sets: the first with Athena's header row, the second without.
    moto_api(
        &http,
        &moto,
        "/moto-api/static/athena/query-results",
        json!({
            "account_id": ACCOUNT,
            "region": REGION,
            "results": [
                {
                    "rows": [
                        varchar_row(&[Some("user_name"), Some("events"), Some("last_seen")]),
                        varchar_row(&[Some("alice"), Some("3"), Some("2024-05-01 10:00:00.000")]),
                        varchar_row(&[Some("x' OR '1'='1"), Some("1"), None]),
                    ],
                    "column_info": [column("user_name", "varchar"), column("events", "bigint"),
                                    column("last_seen", "timestamp")],
                },
                {
                    "rows": [varchar_row(&[Some("7")])],
                    "column_info": [column("n", "bigint")],
                },
            ],
        }),
    )
    .await;

    // 1. Polling: QUEUED → RUNNING → SUCCEEDED, one step every second poll.
    set_manual_transitions(&http, &moto, 2).await;
    let engine = AthenaEngine::new(athena.clone(), "iamtrail", "iamtrail_analytics")
        .with_poll_schedule(fast_polls())
        .with_output_location(format!("s3://{bucket}/cli/"));
    let since = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
    let values = [
        ParamValue::Timestamp(since),
        ParamValue::String("x' OR '1'='1".into()),
    ];
    let mut seen: Vec<(String, Duration)> = Vec::new();
    let started = Instant::now();
    let result = engine
        .run_sql(
            "SELECT user_name, count(*) AS events, max(event_time) AS last_seen FROM iam_events \
             WHERE event_time >= ? AND user_name <> ? GROUP BY user_name",
            &values,
            |p| seen.push((p.state.to_string(), p.elapsed)),
        )
        .await
        .expect("query succeeds");
    let states: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(states, ["QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"]);
    assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1));
    // Three waits happened: 10 + 20 + 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(70));

    // 2. Header row skipped, NULL kept, types from ColumnInfo.
    assert_eq!(result.columns, ["user_name", "events", "last_seen"]);
    assert_eq!(
        result.column_types,
        [ColumnType::Text, ColumnType::Integer, ColumnType::Timestamp]
    );
    assert_eq!(
        result.rows,
        vec![
            vec![
                Some("alice".to_string()),
                Some("3".to_string()),
                Some("2024-05-01 10:00:00.000".to_string())
            ],
            vec![
                Some("x' OR '1'='1".to_string()),
                Some("1".to_string()),
                None
            ],
        ]
    );

    // 3. Statistics (moto: always 0) and the 10 MB minimum.
    assert_eq!(result.bytes_scanned, Some(0));
    assert_eq!(result.engine_time, Some(Duration::ZERO));
    let minimum = 10.0 * 1_048_576.0 / 1_099_511_627_776.0 * 5.0;
    assert!((result.cost_usd.unwrap() - minimum).abs() < 1e-15);

    // 4. What Athena was sent: the text with its `?`, the values as literals, the context.
    let id = result.execution_id.clone().unwrap();
    let sent = athena
        .get_query_execution()
        .query_execution_id(&id)
        .send()
        .await
        .unwrap();
    let execution = sent.query_execution().unwrap();
    assert!(execution
        .query()
        .unwrap()
        .contains("event_time >= ? AND user_name <> ?"));
    assert_eq!(
        execution.execution_parameters(),
        ["TIMESTAMP '2024-05-01 00:00:00.000'", "'x'' OR ''1''=''1'"]
    );
    assert_eq!(execution.work_group(), Some("iamtrail"));
    assert_eq!(
        execution
            .query_execution_context()
            .and_then(|c| c.database()),
        Some("iamtrail_analytics")
    );
    assert_eq!(
        execution
            .result_configuration()
            .and_then(|c| c.output_location()),
        Some(format!("s3://{bucket}/cli/{id}.csv").as_str())
    );

    // 5. The second canned set: no header row to drop, the single row is data. No parameters
    //    (none are sent), immediate transitions.
    set_manual_transitions(&http, &moto, 0).await;
    let second = engine
        .run_sql("SELECT count(*) AS n FROM iam_events", &[], |_| {})
        .await
        .unwrap();
    assert_eq!(second.columns, ["n"]);
    assert_eq!(second.rows, vec![vec![Some("7".to_string())]]);
    let sent = athena
        .get_query_execution()
        .query_execution_id(second.execution_id.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert!(sent
        .query_execution()
        .unwrap()
        .execution_parameters()
        .is_empty());

    // 6. An empty queue: moto answers no columns and no rows.
    let empty = engine.run_sql("SELECT 1", &[], |_| {}).await.unwrap();
    assert!(empty.columns.is_empty() && empty.rows.is_empty());

    // 7. CANCELLED is an error naming the state (moto gives no StateChangeReason).
    set_manual_transitions(&http, &moto, 1000).await;
    let id = engine.start("SELECT 1", vec![]).await.unwrap();
    engine.stop(&id).await.unwrap();
    let mut states = Vec::new();
    let e = engine
        .wait(&id, Instant::now(), &mut |p| {
            states.push(p.state.to_string())
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Athena(_)));
    assert_eq!(
        e.to_string(),
        format!("Athena query {id} CANCELLED: no reason given")
    );
    assert_eq!(states, ["CANCELLED"]);

    // 8. An unknown workgroup is a clear error.
    let wrong = AthenaEngine::new(athena.clone(), "nope", "iamtrail_analytics");
    let e = wrong.run_sql("SELECT 1", &[], |_| {}).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("StartQueryExecution (workgroup nope, database iamtrail_analytics):"),
        "{text}"
    );
    assert_eq!(
        text,
        "StartQueryExecution (workgroup nope, database iamtrail_analytics): \
         InvalidRequestException: WorkGroup does not exist"
    );

    moto.stop().unwrap();
    let _ = std::fs::remove_file(log);
}

fn page(rows: &[&[&str]], token: Option<&str>, with_columns: bool) -> ResultPage {
    ResultPage {
        columns: if with_columns {
            vec![
                ("a".into(), "varchar".into()),
                ("b".into(), "integer".into()),
            ]
        } else {
            Vec::new()
        },
        rows: rows
            .iter()
            .map(|r| r.iter().map(|c| Some(c.to_string())).collect())
            .collect(),
        next_token: token.map(String::from),
    }
}

/// moto never pages, so the paging loop is tested against fake pages shaped like Athena's:
/// metadata and header only on the first page, NextToken until the last.
#[tokio::test]
async fn paging_follows_next_token_and_drops_only_the_first_header() {
    let pages = [
        page(&[&["a", "b"], &["1", "2"]], Some("t1"), true),
        // A data row that happens to equal the column names on a later page is data.
        page(&[&["a", "b"], &["3", "4"]], Some("t2"), true),
        page(&[&["5", "6"]], None, true),
    ];
    let mut requested = Vec::new();
    let collected = collect_pages(|token| {
        requested.push(token.clone());
        let i = requested.len() - 1;
        let p = pages[i].clone();
        async move { Ok(p) }
    })
    .await
    .unwrap();
    assert_eq!(
        requested,
        [None, Some("t1".to_string()), Some("t2".to_string())]
    );
    assert_eq!(collected.pages, 3);
    assert_eq!(collected.columns, ["a", "b"]);
    assert_eq!(
        collected.column_types,
        [ColumnType::Text, ColumnType::Integer]
    );
    let rows: Vec<Vec<&str>> = collected
        .rows
        .iter()
        .map(|r| r.iter().map(|c| c.as_deref().unwrap()).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["1", "2"],
            vec!["a", "b"],
            vec!["3", "4"],
            vec!["5", "6"]
        ]
    );

    // A header-only first page (a SELECT with no rows) gives no rows.
    let none = collect_pages(|_| async { Ok(page(&[&["a", "b"]], None, true)) })
        .await
        .unwrap();
    assert!(none.rows.is_empty());

    // The same token twice in a row stops instead of looping forever.
    let e = collect_pages(|_| async { Ok(page(&[&["1", "2"]], Some("again"), true)) })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("same NextToken twice"), "{e}");

    // A page error is returned as is.
    let e = collect_pages(|token| async move {
        match token {
            None => Ok(page(&[&["1", "2"]], Some("t"), true)),
            Some(_) => Err(Error::Athena("GetQueryResults q: throttled".into())),
        }
    })
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(e, "GetQueryResults q: throttled");
}

#[test]
fn cost_is_five_dollars_per_binary_terabyte_with_a_ten_megabyte_minimum() {
    assert_eq!(MB, 1_048_576);
    assert_eq!(TB, 1_099_511_627_776);
    assert_eq!(MIN_BILLED_BYTES, 10 * MB);
    let minimum = athena_cost_usd(MIN_BILLED_BYTES);
    assert!((minimum - 0.000_047_683_715_820_312_5).abs() < 1e-18);
    assert_eq!(athena_cost_usd(0), minimum);
    assert_eq!(athena_cost_usd(1), minimum);
    assert_eq!(athena_cost_usd(10 * MB - 1), minimum);
    // Above the minimum, bytes are rounded up to a whole MB.
    assert_eq!(athena_cost_usd(10 * MB + 1), athena_cost_usd(11 * MB));
    assert!(athena_cost_usd(10 * MB + 1) > minimum);
    assert_eq!(athena_cost_usd(TB), 5.0);
    assert_eq!(athena_cost_usd(3 * TB / 2), 7.5);
}
