//! Commands that need no AWS: `rules list`, and argument checks that refuse before any call
//! (the endpoint points nowhere, so a command that called AWS would fail differently).

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
    assert!(table.stdout.contains(&format!("{} rules.", rules.len())));
    let json = iamtrail(NOWHERE, &["rules", "list", "--format", "json"])
        .expect_ok("rules list --format json")
        .json();
    let listed = json.as_array().unwrap();
    assert_eq!(listed.len(), rules.len());
    assert_eq!(listed[0]["id"], rules[0].id);
    assert_eq!(listed[0]["severity"], rules[0].severity.as_str());
    for (row, rule) in listed.iter().zip(rules) {
        assert_eq!(row["id"], rule.id);
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
