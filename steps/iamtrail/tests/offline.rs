//! Commands that need no AWS: `rules list` and `rules test` (with Sigma rules from a
//! directory), and argument checks that refuse before any call (the endpoint points nowhere,
//! so a command that called AWS would fail differently).

mod common;

use common::iamtrail;

const NOWHERE: &str = "http://127.0.0.1:9";

#[test]
fn rules_list_shows_the_registry() {
    let table = iamtrail(NOWHERE, &["rules", "list"]).expect_ok("rules list");
    let rules = iamtrail_core::rules::rules();
    for rule in rules {
        assert!(
            table.stdout.contains(rule.id),
            "{} missing:\n{}",
            rule.id,
            table.stdout
        );
    }
    assert!(table.stdout.contains(&format!(
        "{} rules ({} built-in, 0 Sigma).",
        rules.len(),
        rules.len()
    )));
    let json = iamtrail(NOWHERE, &["rules", "list", "--format", "json"])
        .expect_ok("rules list --format json")
        .json();
    let listed = json.as_array().unwrap();
    assert_eq!(listed.len(), rules.len());
    assert_eq!(listed[0]["id"], rules[0].id);
    assert_eq!(listed[0]["severity"], rules[0].severity.as_str());
    for (row, rule) in listed.iter().zip(rules) {
        assert_eq!(row["id"], rule.id);
        assert_eq!(row["source"], "built-in");
        assert_eq!(row["attack"], serde_json::json!(rule.attack), "{}", rule.id);
    }
    for t in ["T1098.001", "T1484.002", "T1078.004"] {
        assert!(table.stdout.contains(t), "{t} missing:\n{}", table.stdout);
    }
    assert!(listed
        .iter()
        .all(|r| r["description"].as_str().is_some_and(|d| !d.is_empty())));
}

#[test]
fn bad_requests_are_refused_before_any_aws_call() {
    let backfill = iamtrail(
        NOWHERE,
        &[
            "backfill",
            "--start",
            "2026-11-02T00:00:00Z",
            "--end",
            "2026-11-01T00:00:00Z",
        ],
    )
    .expect_failure("backfill with start after end");
    assert!(
        backfill.stderr.contains("is not before end"),
        "{}",
        backfill.transcript()
    );
    let export = iamtrail(NOWHERE, &["export", "--dates", "2026-02-30"])
        .expect_failure("export of an impossible date");
    assert!(
        export.stderr.contains("is not a YYYY-MM-DD date"),
        "{}",
        export.transcript()
    );
    let status = iamtrail(NOWHERE, &["executions", "--status", "BROKEN"])
        .expect_failure("an unknown status");
    assert!(
        status.stderr.contains("invalid value 'BROKEN'"),
        "{}",
        status.transcript()
    );
}

// ---- Sigma rules: `rules list --sigma`, `rules test` --------------------------------------

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn repo_path(relative: &str) -> String {
    repo().join(relative).display().to_string()
}

/// A scratch directory of rule files, removed when dropped.
struct RuleDir(std::path::PathBuf);

impl RuleDir {
    fn new(name: &str, files: &[(&str, &str)]) -> RuleDir {
        let dir = std::env::temp_dir().join(format!("iamtrail-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        RuleDir(dir)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for RuleDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

const AGENT_RULE: &str = "title: Odd Agent\nid: 11111111-2222-4333-8444-555555555555\n\
    logsource:\n  product: aws\n  service: cloudtrail\n\
    detection:\n  selection:\n    userAgent|contains|foo: x\n  condition: selection\n";

#[test]
fn rules_list_with_sigma_lists_the_users_rules_after_the_built_in_ones() {
    let built_in = iamtrail_core::rules::rules().len();
    let json = iamtrail(
        NOWHERE,
        &[
            "rules",
            "list",
            "--sigma",
            &repo_path("rules/sigma"),
            "--format",
            "json",
        ],
    )
    .expect_ok("rules list --sigma rules/sigma")
    .json();
    let listed = json.as_array().unwrap();
    assert_eq!(listed.len(), built_in + 6);
    assert!(listed[..built_in].iter().all(|r| r["source"] == "built-in"));
    let sigma = &listed[built_in..];
    let credential = sigma
        .iter()
        .find(|r| r["source"] == "iam_user_credential_inventory.yml")
        .expect("the credential inventory rule");
    assert_eq!(
        credential["id"],
        "sigma:de810874-a21d-4bab-8334-0eeef68d327d"
    );
    assert_eq!(credential["severity"], "MEDIUM");
    assert_eq!(credential["level"], "medium");
    assert_eq!(
        credential["attack"],
        serde_json::json!(["T1087.004", "T1098.001"])
    );
    assert_eq!(
        credential["title"],
        "Credentials of Another IAM User Inventoried"
    );
    let files: Vec<&str> = sigma
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted, "Sigma rules in file order");

    let table = iamtrail(
        NOWHERE,
        &["rules", "list", "--sigma", &repo_path("rules/sigma")],
    )
    .expect_ok("rules list --sigma (table)");
    for needle in [
        "sigma:de810874-a21d-4bab-8334-0eeef68d327d",
        "iam_user_credential_inventory.yml",
        "T1087.004",
        "source",
    ] {
        assert!(
            table.stdout.contains(needle),
            "{needle} missing:\n{}",
            table.stdout
        );
    }
    assert!(
        table.stdout.contains(&format!(
            "{} rules ({built_in} built-in, 6 Sigma).",
            built_in + 6
        )),
        "{}",
        table.stdout
    );
}

#[test]
fn a_rule_with_an_unsupported_modifier_fails_rules_list_with_the_file_and_reason() {
    let good =
        std::fs::read_to_string(repo().join("rules/sigma/sts_iam_access_denied.yml")).unwrap();
    let dir = RuleDir::new(
        "bad-modifier",
        &[("agent.yml", AGENT_RULE), ("good.yml", &good)],
    );
    let run = iamtrail(NOWHERE, &["rules", "list", "--sigma", &dir.path()])
        .expect_failure("rules list with a rule of an unknown modifier");
    assert!(run.stdout.is_empty(), "{}", run.transcript());
    assert!(
        run.stderr.contains(&format!(
            "Sigma rules in {}: 1 Sigma rule file rejected:\n  agent.yml: field \"userAgent\": unknown modifier \"foo\"",
            dir.path()
        )),
        "{}",
        run.transcript()
    );
    // The same through SIGMA_RULES, as Collect reads it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_iamtrail"))
        .args(["rules", "list"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SIGMA_RULES", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("agent.yml: field \"userAgent\": unknown modifier \"foo\""),
        "{stderr}"
    );
    // And `rules test` refuses to run without it.
    let run = iamtrail(
        NOWHERE,
        &[
            "rules",
            "test",
            &repo_path("datasets/invictus-aws-2023/CloudTrail"),
            "--sigma",
            &dir.path(),
        ],
    )
    .expect_failure("rules test with a rejected Sigma rule");
    assert!(
        run.stderr.contains("agent.yml: field \"userAgent\""),
        "{}",
        run.transcript()
    );
}

/// The built-in rules' alerts on the dataset (steps/core/tests/rules_dataset.rs), in time order.
const DATASET_ALERTS: [(&str, &str); 12] = [
    ("user-creation", "66d008e1-12cf-4a45-99e7-0be67fc70d71"),
    ("login-profile", "1170c908-ce8d-4c6f-bc65-cf43aae5235b"),
    (
        "console-login-without-mfa",
        "70e5932e-9022-4b38-837e-ca10dad94eb7",
    ),
    (
        "admin-policy-attachment",
        "493e08b7-63e4-49a4-832a-1a7598ce78e5",
    ),
    ("role-trust-policy", "d96d75c7-e715-44ff-9735-9dc51afbd774"),
    ("user-creation", "648d0a9c-6d07-4c99-bd4e-9a27b3ad45d2"),
    (
        "access-key-creation",
        "64b7de64-bf53-47ae-b7e3-d30cb1b5136e",
    ),
    ("user-creation", "85c89720-8103-4281-9e0e-8977b52bcdbe"),
    (
        "admin-policy-attachment",
        "f4923a37-92d5-4dfd-9786-6caef2b5f33c",
    ),
    (
        "access-key-creation",
        "8c282c0b-00d1-4369-95b7-cb50b6eee620",
    ),
    ("user-creation", "564ee71e-5934-49b7-8a5f-d6f4d9248018"),
    ("login-profile", "f0d7bb15-75c8-4770-a500-92d1f71b948c"),
];

/// The example Sigma rules' matches on the dataset (steps/core/tests/sigma.rs): rule file,
/// event ids.
fn dataset_sigma_matches() -> std::collections::BTreeMap<&'static str, Vec<&'static str>> {
    std::collections::BTreeMap::from([
        (
            "iam_account_wide_enumeration.yml",
            vec![
                "2bc34359-3da6-47f3-aa38-f53989696988",
                "4a81a319-3f88-4f76-a01d-4f206b7e1c0d",
                "6396f9c4-8607-417c-b1ca-76396779b9e7",
                "7ab75daa-659a-45e4-b43b-ea90a9cf2f6a",
            ],
        ),
        (
            "iam_user_credential_inventory.yml",
            vec![
                "66cd7904-81c2-47c0-afcc-c0070ed31ee2",
                "b6349c43-9682-40c4-abf2-f57fb09ccaed",
            ],
        ),
        (
            "sts_caller_identity_from_sdk.yml",
            vec!["bf68f8c0-590b-4740-ac89-aad0ed5dfe4f"],
        ),
        (
            "sts_ec2_role_session_discovery.yml",
            vec!["bf68f8c0-590b-4740-ac89-aad0ed5dfe4f"],
        ),
        (
            "sts_iam_access_denied.yml",
            vec![
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
    ])
}

#[test]
fn rules_test_runs_every_rule_over_the_dataset() {
    let dataset = repo_path("datasets/invictus-aws-2023/CloudTrail");
    let sigma = repo_path("rules/sigma");
    let report = iamtrail(
        NOWHERE,
        &[
            "rules", "test", &dataset, "--sigma", &sigma, "--format", "json",
        ],
    )
    .expect_ok("rules test --format json")
    .json();
    assert_eq!(
        (
            &report["files"],
            &report["records"],
            &report["unreadable"],
            &report["kept"]
        ),
        (
            &serde_json::json!(55),
            &serde_json::json!(2900),
            &serde_json::json!(0),
            &serde_json::json!(465)
        )
    );
    assert_eq!(report["sigma_rules"], 6);
    let matches = report["matches"].as_array().unwrap();
    let times: Vec<&str> = matches
        .iter()
        .map(|m| m["event_time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "in event time order");

    let built_in: Vec<(&str, &str)> = matches
        .iter()
        .filter(|m| m["source"] == "built-in")
        .map(|m| {
            (
                m["rule_id"].as_str().unwrap(),
                m["event_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(built_in, DATASET_ALERTS);

    let mut sigma_fired: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for m in matches.iter().filter(|m| m["source"] != "built-in") {
        assert!(m["rule_id"].as_str().unwrap().starts_with("sigma:"), "{m}");
        sigma_fired
            .entry(m["source"].as_str().unwrap())
            .or_default()
            .push(m["event_id"].as_str().unwrap());
    }
    for ids in sigma_fired.values_mut() {
        ids.sort();
    }
    assert_eq!(sigma_fired, dataset_sigma_matches());
    let per_rule = report["matches_per_rule"].as_object().unwrap();
    assert_eq!(per_rule["user-creation"], 4);
    assert_eq!(per_rule["sigma:76e73733-30c4-4e0b-a5f0-4006ccddc06c"], 13);
    assert_eq!(
        per_rule.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        33
    );

    let table = iamtrail(NOWHERE, &["rules", "test", &dataset, "--sigma", &sigma])
        .expect_ok("rules test (table)");
    for needle in [
        "│ time ",
        "2023-07-10T12:23:05Z",
        "66d008e1-12cf-4a45-99e7-0be67fc70d71",
        "sigma:de810874-a21d-4bab-8334-0eeef68d327d",
        "2900 records read from 55 files; 465 kept (tracked sources and root); 27 rules (21 \
         built-in, 6 Sigma); 33 matches: access-key-creation 2, admin-policy-attachment 2, ",
    ] {
        assert!(
            table.stdout.contains(needle),
            "{needle} missing:\n{}",
            table.stdout
        );
    }

    // Without --sigma: the built-in rules only.
    let builtin_only = iamtrail(NOWHERE, &["rules", "test", &dataset, "--format", "json"])
        .expect_ok("rules test without Sigma")
        .json();
    assert_eq!(builtin_only["matches"].as_array().unwrap().len(), 12);
}

#[test]
fn rules_test_refuses_bad_input_clearly() {
    let missing = iamtrail(NOWHERE, &["rules", "test", "/nonexistent/cloudtrail"])
        .expect_failure("rules test on a missing directory");
    assert!(
        missing
            .stderr
            .contains("/nonexistent/cloudtrail is not a directory of CloudTrail log files"),
        "{}",
        missing.transcript()
    );
    let logs = RuleDir::new("bad-log", &[("broken.json", "{\"Records\": 7}")]);
    let broken = iamtrail(NOWHERE, &["rules", "test", &logs.path()])
        .expect_failure("rules test on a file that is no CloudTrail log");
    assert!(
        broken.stderr.contains("broken.json")
            && broken.stderr.contains("\"Records\" is not an array"),
        "{}",
        broken.transcript()
    );
    let empty = RuleDir::new("no-logs", &[("notes.txt", "x")]);
    let none = iamtrail(NOWHERE, &["rules", "test", &empty.path()])
        .expect_failure("rules test on a directory without logs");
    assert!(
        none.stderr.contains("holds no CloudTrail log files"),
        "{}",
        none.transcript()
    );
    let no_rules = iamtrail(NOWHERE, &["rules", "list", "--sigma", &empty.path()])
        .expect_failure("rules list --sigma on a directory without rules");
    assert!(
        no_rules
            .stderr
            .contains("no *.yml or *.yaml rule file there"),
        "{}",
        no_rules.transcript()
    );
}
