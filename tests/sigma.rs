//! Sigma rules on the local stack (docs/sigma.md), through real executions on moto: with
//! `SIGMA_RULES` = the repository's `rules/sigma`, the example rules' matches on the bundled
//! dataset are queued and delivered to SNS as `sigma:<id>` beside the built-in rules' alerts,
//! and a second run sends nothing new. Rules read from an S3 prefix: a rejected rule fails
//! Collect with the file and the reason, nothing is stored, and once the rule is removed the
//! next run reads the same events again and alerts on them.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_s3::primitives::ByteStream;
use chrono::{Duration as Span, Utc};
use iamtrail::demo::dataset_emulator;
use iamtrail_e2e::*;
use serde_json::json;

/// The example rules' matches on the dataset (steps/core/tests/sigma.rs): alert rule id,
/// event ids.
fn expected_sigma_alerts() -> BTreeSet<(String, String)> {
    let by_rule: [(&str, &[&str]); 5] = [
        (
            // iam_account_wide_enumeration.yml
            "sigma:6645e4e0-4288-458f-ac68-3da192aa49d1",
            &[
                "2bc34359-3da6-47f3-aa38-f53989696988",
                "4a81a319-3f88-4f76-a01d-4f206b7e1c0d",
                "6396f9c4-8607-417c-b1ca-76396779b9e7",
                "7ab75daa-659a-45e4-b43b-ea90a9cf2f6a",
            ],
        ),
        (
            // iam_user_credential_inventory.yml
            "sigma:de810874-a21d-4bab-8334-0eeef68d327d",
            &[
                "66cd7904-81c2-47c0-afcc-c0070ed31ee2",
                "b6349c43-9682-40c4-abf2-f57fb09ccaed",
            ],
        ),
        (
            // sts_caller_identity_from_sdk.yml
            "sigma:59ed6ba2-df33-40c8-9aa9-abe2df3dda97",
            &["bf68f8c0-590b-4740-ac89-aad0ed5dfe4f"],
        ),
        (
            // sts_ec2_role_session_discovery.yml
            "sigma:fd65fb29-8459-44c1-a367-40a37565ec39",
            &["bf68f8c0-590b-4740-ac89-aad0ed5dfe4f"],
        ),
        (
            // sts_iam_access_denied.yml
            "sigma:76e73733-30c4-4e0b-a5f0-4006ccddc06c",
            &[
                "073c57c4-c3bb-4d4c-908e-29fa31eefc0d",
                "30a952c1-cb48-458c-b023-bec3b45b68ec",
                "33199f42-3ffc-4217-9ebf-d92d16ef5557",
                "687233bb-a84e-4fe8-850d-9044b68c9603",
                "6deb168c-5255-4ffb-a480-cddcad47f63b",
                "7ce820b7-0055-47d8-999b-ccfdf1c4c81b",
                "8008b7c4-dc1f-433d-aa55-e2a3d46c7a35",
                "851f80ef-dfca-4286-998c-dd8c10885ef4",
                "9cca03e9-a7da-47cc-85a8-f5fde08125a5",
                "c1432796-7033-4913-ad4d-3052644bcfba",
                "cff65c60-62bd-45d6-a635-d0a51277d14b",
                "e4bad408-6272-4892-bf47-bd41b435ce40",
                "f738d576-f2a5-4197-889f-2e14c893f82f",
            ],
        ),
    ];
    by_rule
        .iter()
        .flat_map(|(rule, ids)| ids.iter().map(move |id| (rule.to_string(), id.to_string())))
        .collect()
}

fn attribute<'a>(alert: &'a iamtrail::local::ReceivedAlert, name: &str) -> &'a str {
    alert
        .attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} attribute: {alert:?}"))
}

/// The (rule id, event id) of every outbox item.
fn outbox(items: &[Item]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|i| {
            (
                attr(i, "alert_type").unwrap().to_string(),
                attr(i, "event_id").unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigma_alerts_on_the_dataset_are_delivered_once() {
    let mut options = options("sigma-dataset");
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    options.settings.insert(
        "SIGMA_RULES".into(),
        repo_root().join("rules/sigma").display().to_string(),
    );
    let stack = start(options).await;
    let alerts_table = stack.settings().alerts_table.clone();

    let (first, summary) = run_ok(&stack, "sigma-1", json!({})).await;
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let outbox_items = scan_all(&stack.dynamodb(), &alerts_table).await;
    let queued = outbox(&outbox_items);
    let sigma_queued: BTreeSet<(String, String)> = queued
        .iter()
        .filter(|(rule, _)| rule.starts_with("sigma:"))
        .cloned()
        .collect();
    assert_eq!(sigma_queued, expected_sigma_alerts());
    assert_eq!(
        queued.len() - sigma_queued.len(),
        12,
        "the built-in rules' alerts beside them: {queued:?}"
    );
    assert_eq!(summary.totals.alerts_queued as usize, queued.len());
    assert!(outbox_items
        .iter()
        .all(|i| attr(i, "status") == Some("sent")));

    let received = stack.received_alerts().await.unwrap();
    let delivery = &first.output.as_ref().unwrap()["alerts"];
    println!(
        "run 1: {} alerts queued ({} Sigma), delivery {delivery}, {} messages received",
        queued.len(),
        sigma_queued.len(),
        received.len()
    );
    let mut sigma_received: BTreeMap<String, usize> = BTreeMap::new();
    for a in &received {
        let rule = attribute(a, "rule_id");
        if !rule.starts_with("sigma:") {
            continue;
        }
        *sigma_received.entry(rule.to_string()).or_default() += 1;
        assert_eq!(attribute(a, "severity"), "MEDIUM", "{}", a.subject);
        assert!(
            a.subject.starts_with("[MEDIUM] IAM Alert: "),
            "{}",
            a.subject
        );
        for part in [
            "\nSeverity: MEDIUM\n",
            "\nRule Description: ",
            "\nEvent Details:\n",
            &format!("\n- Sigma Rule: {}\n", rule.trim_start_matches("sigma:")),
            "\n- Rule File: ",
            "\n- Sigma Level: ",
            "\n- ATT&CK: T",
            "\nAction Required: ",
        ] {
            assert!(a.body.contains(part), "{part:?} missing in:\n{}", a.body);
        }
    }
    let mut expected_per_rule: BTreeMap<String, usize> = BTreeMap::new();
    for (rule, _) in expected_sigma_alerts() {
        *expected_per_rule.entry(rule).or_default() += 1;
    }
    assert_eq!(
        sigma_received, expected_per_rule,
        "one message per Sigma alert"
    );
    let credential = received
        .iter()
        .find(|a| attribute(a, "rule_id") == "sigma:de810874-a21d-4bab-8334-0eeef68d327d")
        .unwrap();
    assert_eq!(
        credential.subject,
        "[MEDIUM] IAM Alert: Credentials of Another IAM User Inventoried"
    );
    assert_eq!(attribute(credential, "event_name"), "ListAccessKeys");
    assert!(credential
        .body
        .contains("\n- Rule File: iam_user_credential_inventory.yml\n- Sigma Level: medium\n- ATT&CK: T1087.004, T1098.001\n"));

    // The same job again: every (event, rule) is in the outbox already; nothing is sent.
    let (second, again) = run_ok(&stack, "sigma-2", json!({})).await;
    assert_eq!(again.totals.alerts_queued, 0);
    assert_eq!(second.output.as_ref().unwrap()["alerts"]["sent"], 0);
    assert!(stack.received_alerts().await.unwrap().is_empty());
    assert_eq!(
        outbox(&scan_all(&stack.dynamodb(), &alerts_table).await),
        queued
    );
    stack.stop().await;
}

const USER_RULE_ID: &str = "0f3c8f9e-5a1b-4c7d-9e2f-8a6b4c3d2e1f";

fn user_rule() -> String {
    format!(
        "title: IAM User Created by alice\nid: {USER_RULE_ID}\nlevel: high\n\
         description: alice creates no users.\ntags: [attack.persistence, attack.t1136.003]\n\
         logsource:\n  product: aws\n  service: cloudtrail\n\
         detection:\n  selection:\n    eventSource: iam.amazonaws.com\n    eventName: CreateUser\n\
         \x20   userIdentity.userName: alice\n  condition: selection\n"
    )
}

const AGENT_RULE: &str = "title: Odd Agent\nid: 11111111-2222-4333-8444-555555555555\n\
    logsource:\n  product: aws\n  service: cloudtrail\n\
    detection:\n  selection:\n    userAgent|contains|foo: x\n  condition: selection\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_from_s3_a_rejected_rule_fails_collect_until_it_is_removed() {
    let bucket = "t-sigma-rules";
    let mut options = options("sigma-s3");
    options
        .settings
        .insert("SIGMA_RULES".into(), format!("s3://{bucket}/team/sigma/"));
    let stack = start(options).await;
    let s3 = &stack.context.s3;
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    for (key, text) in [
        ("team/sigma/users.yml", user_rule()),
        ("team/sigma/broken/agent.yml", AGENT_RULE.to_string()),
        ("team/sigma/README.md", "not a rule".to_string()),
        ("elsewhere/ignored.yml", "not: [yaml".to_string()),
    ] {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(text.into_bytes()))
            .send()
            .await
            .unwrap();
    }
    let when = Utc::now() - Span::hours(1);
    stack.emulator.add_records(vec![
        record(
            "new-user",
            when,
            "iam.amazonaws.com",
            "CreateUser",
            "us-east-1",
        ),
        record("quiet", when, "iam.amazonaws.com", "GetUser", "us-east-1"),
    ]);
    let input = json!({"regions": ["us-east-1"], "sources": ["iam"]});

    // A rule the engine cannot use: Collect fails before reading, naming the file and why.
    let (_, failed) = run_ok(&stack, "sigma-s3-1", input.clone()).await;
    assert_eq!(failed.totals.stored, 0);
    assert_eq!(failed.totals.alerts_queued, 0);
    assert_eq!(failed.errors.len(), 1, "{:?}", failed.errors);
    let error = &failed.errors[0].error;
    for part in [
        "ConfigError",
        "SIGMA_RULES=s3://t-sigma-rules/team/sigma/: 1 Sigma rule file rejected:",
        "team/sigma/broken/agent.yml: field \"userAgent\": unknown modifier \"foo\"",
    ] {
        assert!(error.contains(part), "{part:?} missing in {error}");
    }
    assert!(stack.received_alerts().await.unwrap().is_empty());

    // Removed: the next run loads the rules and reads the same events (the checkpoint did not
    // move), so the Sigma rule and the built-in rule both alert.
    s3.delete_object()
        .bucket(bucket)
        .key("team/sigma/broken/agent.yml")
        .send()
        .await
        .unwrap();
    let (_, fixed) = run_ok(&stack, "sigma-s3-2", input).await;
    assert!(fixed.errors.is_empty(), "{:?}", fixed.errors);
    assert_eq!(fixed.totals.stored, 2);
    let queued = outbox(&scan_all(&stack.dynamodb(), &stack.settings().alerts_table).await);
    assert_eq!(
        queued,
        BTreeSet::from([
            ("user-creation".to_string(), "new-user".to_string()),
            (format!("sigma:{USER_RULE_ID}"), "new-user".to_string()),
        ])
    );
    let received = stack.received_alerts().await.unwrap();
    let sigma: Vec<_> = received
        .iter()
        .filter(|a| attribute(a, "rule_id") == format!("sigma:{USER_RULE_ID}"))
        .collect();
    assert_eq!(sigma.len(), 1, "{received:?}");
    assert_eq!(attribute(sigma[0], "severity"), "HIGH");
    assert_eq!(
        sigma[0].subject,
        "[HIGH] IAM Alert: IAM User Created by alice"
    );
    assert!(
        sigma[0].body.contains(
            "\n- Rule File: team/sigma/users.yml\n- Sigma Level: high\n- ATT&CK: T1136.003\n"
        ),
        "{}",
        sigma[0].body
    );
    stack.stop().await;
}
