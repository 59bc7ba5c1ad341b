//! The real `iamtrail` binary against the local stack, found as a deployed stack is: through the
//! CloudFormation stack `LocalStack::deploy` registers in moto (DescribeStacks → outputs). The
//! CLI gets only the standard AWS environment (`AWS_ENDPOINT_URL` = the gateway, which proxies
//! everything but Lambda and CloudTrail to moto). One stack over the bundled dataset, as the demo
//! uses it, serves the whole scenario: run → status → backfill → export → executions.

mod common;

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use common::{dataset_stack, execution_count, iamtrail_async, Run};
use iamtrail::local::{
    analytics_bucket, find_repo_root, operations_topic_arn, LocalOptions, LocalStack,
};
use iamtrail_core::contract::RunSummary;
use iamtrail_core::record::format_time;
use serde_json::Value;

/// The newest run record's summary, read from the control table directly.
async fn latest_summary(stack: &LocalStack) -> RunSummary {
    let item = stack
        .dynamodb()
        .get_item()
        .table_name(&stack.settings().control_table)
        .key("region", AttributeValue::S("run#latest".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("run#latest");
    serde_json::from_str(item["summary"].as_s().unwrap()).unwrap()
}

/// The cells of the run table's `total` line: fetched, filtered, stored, ...
fn total_line(run: &Run) -> Vec<String> {
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("│ total"))
        .unwrap_or_else(|| panic!("no total line:\n{}", run.transcript()));
    line.split(['│', '┆'])
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_drives_the_stack_it_finds_by_name() {
    let stack = dataset_stack("iamtrail").await;
    let gw = stack.gateway.endpoint();
    let cli = |args: &'static [&'static str]| iamtrail_async(&gw, args);

    // A stack that does not exist: a clear error, nothing else.
    let missing = iamtrail_async(&gw, &["--stack", "nope", "status"])
        .await
        .expect_failure("status of a missing stack");
    assert!(
        missing
            .stderr
            .contains("stack \"nope\" not found in us-east-1"),
        "{}",
        missing.transcript()
    );

    // run: follows the scheduled-style execution to SUCCEEDED and prints the totals.
    let run = cli(&["run"]).await.expect_ok("iamtrail run");
    assert!(
        run.stdout.contains("Started run execution cli-run-"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout.contains(" SUCCEEDED in "),
        "{}",
        run.transcript()
    );
    let summary = latest_summary(&stack).await;
    assert!(summary.run_id.starts_with("cli-run-"), "{}", summary.run_id);
    let total = total_line(&run);
    assert_eq!(
        total[1],
        summary.totals.fetched.to_string(),
        "{}",
        run.transcript()
    );
    assert_eq!(
        total[3],
        summary.totals.stored.to_string(),
        "{}",
        run.transcript()
    );
    assert!(
        summary.totals.stored > 400,
        "the bundled dataset stores 439 events"
    );
    assert!(
        run.stdout
            .contains("Alerts: 12 found waiting, 12 sent, 0 failed"),
        "{}",
        run.transcript()
    );
    assert!(run.stdout.contains("Export: "), "{}", run.transcript());

    // status --format json: checkpoints per region, alerts, last export.
    let status = cli(&["status", "--format", "json"])
        .await
        .expect_ok("status")
        .json();
    assert_eq!(status["stack"], "iamtrail");
    assert_eq!(status["runs"][0]["kind"], "scheduled");
    assert_eq!(status["runs"][0]["status"], "SUCCEEDED");
    let checkpoints = status["checkpoints"].as_array().unwrap();
    let regions: BTreeSet<&str> = checkpoints
        .iter()
        .map(|c| c["region"].as_str().unwrap())
        .collect();
    assert_eq!(regions.len(), summary.regions, "one region per Map item");
    assert_eq!(checkpoints.len(), summary.targets.len());
    for c in checkpoints {
        assert!(
            c["checkpoint"].is_string() && c["lag_seconds"].as_i64().unwrap() >= 0,
            "{c}"
        );
        assert_eq!(c["status"], "active", "{c}");
    }
    assert_eq!(status["alerts"]["pending"], 0);
    assert_eq!(status["alerts"]["failed"], 0);
    let last_export = status["export"]["last_exported_date"]
        .as_str()
        .expect("an exported date")
        .to_string();
    let newest_due = summary.export_dates.iter().max().expect("dates were due");
    assert_eq!(last_export, newest_due.to_string());
    assert_eq!(status["failures"], Value::Array(vec![]));
    let table = cli(&["status"]).await.expect_ok("status (table)");
    assert!(table.stdout.contains(&format!(
        "Checkpoints ({} region/sources)",
        checkpoints.len()
    )));
    assert!(
        table
            .stdout
            .contains("Alerts: 0 pending, 0 sending, 0 failed"),
        "{}",
        table.transcript()
    );

    // Alarms: the local stack's alarms (moto stores them but never evaluates them) start OK;
    // one set to ALARM is listed with its metric, threshold, reason and what to do. An alarm of
    // another stack whose name shares the prefix (`iamtrail-dev-...`) is not this stack's.
    assert_eq!(
        status["alarms"]["operations_topic"],
        operations_topic_arn("iamtrail")
    );
    let total = status["alarms"]["total"].as_u64().unwrap();
    assert_eq!(total, 8, "{}", status["alarms"]);
    assert_eq!(status["alarms"]["in_alarm"], Value::Array(vec![]));
    assert!(
        table
            .stdout
            .contains(&format!("Alarms: none of {total} in ALARM")),
        "{}",
        table.transcript()
    );
    let cloudwatch = stack.cloudwatch();
    cloudwatch
        .put_metric_alarm()
        .alarm_name("iamtrail-dev-partial-run")
        .namespace("IamTrail/iamtrail-dev")
        .metric_name("PartialRun")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Maximum)
        .comparison_operator(
            aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
        )
        .threshold(1.0)
        .period(300)
        .evaluation_periods(1)
        .alarm_actions(operations_topic_arn("iamtrail-dev"))
        .send()
        .await
        .unwrap();
    let reason = "Threshold Crossed: 1 datapoint [1.0 (01/12/26 07:58:00)] was greater than or equal to the threshold (1.0).";
    for name in ["iamtrail-partial-run", "iamtrail-dev-partial-run"] {
        cloudwatch
            .set_alarm_state()
            .alarm_name(name)
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .state_reason(reason)
            .send()
            .await
            .unwrap();
    }
    let status = cli(&["status", "--format", "json"])
        .await
        .expect_ok("status with an alarm")
        .json();
    let alarms = &status["alarms"];
    assert_eq!(alarms["total"], total, "{alarms}");
    let in_alarm = alarms["in_alarm"].as_array().unwrap();
    assert_eq!(in_alarm.len(), 1, "{alarms}");
    assert_eq!(in_alarm[0]["name"], "iamtrail-partial-run");
    assert_eq!(in_alarm[0]["metric"], "IamTrail/iamtrail PartialRun");
    assert_eq!(in_alarm[0]["threshold"], ">= 1");
    assert_eq!(in_alarm[0]["reason"], reason);
    assert!(in_alarm[0]["since"].is_string(), "{alarms}");
    assert!(
        in_alarm[0]["description"]
            .as_str()
            .unwrap()
            .contains("docs/operations.md"),
        "{alarms}"
    );
    let table = cli(&["status"])
        .await
        .expect_ok("status (table) with an alarm");
    assert!(
        table
            .stdout
            .contains(&format!("Alarms: 1 of {total} in ALARM"))
            && table.stdout.contains("iamtrail-partial-run")
            && !table.stdout.contains("iamtrail-dev-partial-run"),
        "{}",
        table.transcript()
    );
    println!("{}", table.stdout);

    // backfill: an invalid request exits non-zero with the reason and starts nothing.
    let before = execution_count(&stack, stack.state_machine_arn.as_deref().unwrap()).await;
    let now = Utc::now();
    let (start, end) = (
        format_time(now - Duration::days(2)),
        format_time(now - Duration::hours(1)),
    );
    for (args, reason) in [
        (
            vec!["backfill", "--start", end.as_str(), "--end", start.as_str()],
            "is not before end",
        ),
        (
            vec!["backfill", "--start", "2026-13-01", "--end", end.as_str()],
            "not an RFC 3339 time",
        ),
        (
            vec![
                "backfill",
                "--start",
                "2020-01-01T00:00:00Z",
                "--end",
                "2020-01-02T00:00:00Z",
            ],
            "nothing CloudTrail can still return",
        ),
        (
            vec![
                "backfill",
                "--start",
                start.as_str(),
                "--end",
                end.as_str(),
                "--sources",
                "s3",
            ],
            "unknown source",
        ),
        (
            vec![
                "backfill",
                "--start",
                start.as_str(),
                "--end",
                end.as_str(),
                "--regions",
                "xx-nowhere-1",
            ],
            "not enabled in this account",
        ),
    ] {
        let refused = iamtrail_async(&gw, &args)
            .await
            .expect_failure("an invalid backfill");
        assert!(
            refused.stderr.contains(reason),
            "{reason}: {}",
            refused.transcript()
        );
    }
    assert_eq!(
        execution_count(&stack, stack.state_machine_arn.as_deref().unwrap()).await,
        before,
        "an invalid backfill started an execution"
    );
    // A valid window runs.
    let backfill = iamtrail_async(
        &gw,
        &[
            "backfill",
            "--start",
            &start,
            "--end",
            &end,
            "--regions",
            "us-east-1",
            "--sources",
            "iam,sts",
        ],
    )
    .await
    .expect_ok("a valid backfill");
    assert!(
        backfill.stdout.contains(" SUCCEEDED in "),
        "{}",
        backfill.transcript()
    );
    let backfilled = latest_summary(&stack).await;
    assert_eq!(backfilled.targets.len(), 2, "us-east-1 iam and sts only");

    // export --dates: writes the day; --force is accepted.
    let export = iamtrail_async(&gw, &["export", "--dates", &last_export, "--force"])
        .await
        .expect_ok("export");
    assert!(
        export
            .stdout
            .contains("Export: 1 day(s) checked, 1 file(s)"),
        "{}",
        export.transcript()
    );
    let date = iamtrail_core::export::parse_date(&last_export).unwrap();
    let head = stack
        .context
        .s3
        .head_object()
        .bucket(analytics_bucket("iamtrail"))
        .key(iamtrail_core::export::object_key(date, None))
        .send()
        .await
        .expect("the exported day's Parquet file");
    assert!(head.metadata().and_then(|m| m.get("rows")).is_some());
    let future = format!("{}", (now + Duration::days(2)).date_naive());
    iamtrail_async(&gw, &["export", "--dates", &future])
        .await
        .expect_failure("an export of a future date");

    // executions: all three, with their kinds, newest first.
    let listed = cli(&["executions", "--format", "json"])
        .await
        .expect_ok("executions")
        .json();
    let kinds: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("export", "SUCCEEDED"),
            ("backfill", "SUCCEEDED"),
            ("scheduled", "SUCCEEDED")
        ]
    );
    assert!(
        listed[2]["summary"]
            .as_str()
            .unwrap()
            .starts_with("succeeded: "),
        "{listed}"
    );
    let failed_only = cli(&["executions", "--status", "FAILED", "--format", "json"])
        .await
        .expect_ok("executions --status");
    assert_eq!(failed_only.json(), Value::Array(vec![]));
    let table = cli(&["executions", "--limit", "2"])
        .await
        .expect_ok("executions (table)");
    assert!(
        table.stdout.contains("export") && table.stdout.contains("backfill"),
        "{}",
        table.transcript()
    );
    assert!(
        !table.stdout.contains("scheduled"),
        "--limit 2 shows two: {}",
        table.transcript()
    );

    // test-alert without --topic-arn: the topic is the stack's AlertsTopicArn output, and the
    // mailbox subscription receives it.
    let sent = cli(&["test-alert"]).await.expect_ok("iamtrail test-alert");
    assert!(
        sent.stdout.contains(&format!(
            "to {}",
            stack.settings().alerts_topic_arn.as_deref().unwrap()
        )),
        "{}",
        sent.transcript()
    );
    let received = stack.received_alerts().await.unwrap();
    assert!(
        received
            .iter()
            .any(|a| a.subject == iamtrail_core::alert_text::TEST_SUBJECT
                && a.attributes
                    .contains(&("rule_id".into(), "test-alert".into()))),
        "{:?}",
        received.iter().map(|a| &a.subject).collect::<Vec<_>>()
    );

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cloudformation_stack_has_the_templates_output_keys() {
    let repo = find_repo_root().unwrap();
    let mut options = LocalOptions::new(&repo);
    options.stack_name = "outputs".into();
    let mut stack = LocalStack::start(options)
        .await
        .unwrap_or_else(|e| panic!("local stack (needs moto: run scripts/setup-venv.sh): {e:#}"));
    let machine = stack.deploy().await.unwrap();
    let described = stack
        .cloudformation()
        .describe_stacks()
        .stack_name("outputs")
        .send()
        .await
        .unwrap();
    let registered = &described.stacks()[0];
    assert_eq!(
        registered.stack_status().unwrap().as_str(),
        "CREATE_COMPLETE"
    );
    let outputs: std::collections::BTreeMap<&str, &str> = registered
        .outputs()
        .iter()
        .map(|o| (o.output_key().unwrap(), o.output_value().unwrap()))
        .collect();
    let template: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo.join("template.yaml")).unwrap())
            .unwrap();
    let template_keys: BTreeSet<&str> = template["Outputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    for key in outputs.keys() {
        assert!(
            template_keys.contains(key),
            "{key} is not an output of template.yaml"
        );
    }
    assert_eq!(outputs["TrackerStateMachineArn"], machine);
    assert_eq!(
        outputs["OperationsTopicArn"],
        operations_topic_arn("outputs")
    );
    assert_eq!(outputs["ControlTableName"], "outputs-control");
    // The typed resolution the CLI uses reads them back.
    let resolved = iamtrail::stack::resolve(&stack.cloudformation(), "outputs")
        .await
        .unwrap();
    assert_eq!(resolved.alerts_table, "outputs-alerts");
    stack.stop().await;
}
