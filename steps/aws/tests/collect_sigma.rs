//! Sigma rules in Collect (docs/sigma.md): their matches are queued in the alert outbox beside
//! the built-in rules' as `sigma:<id>`, once per (event, rule) however often the events are
//! read; a rule set that does not load fails the Collect invocation with every file and
//! reason, before anything is read, and is loaded again on the next invocation.

mod collect_support;

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use collect_support::*;
use iamtrail_aws::{run_step, AwsContext, Endpoints, Step};
use iamtrail_core::sigma::SigmaRules;

const MINUTE: StdDuration = StdDuration::from_secs(60);

const RULE_ID: &str = "5b8f8a52-0c1e-4f7e-9d4a-3c1f2e0a9b77";

fn assume_role_rule() -> String {
    format!(
        "title: Role Assumed by an IAM User\nid: {RULE_ID}\nlevel: high\n\
         description: An IAM user's keys were used to assume a role.\n\
         tags:\n  - attack.privilege_escalation\n  - attack.t1078.004\n\
         logsource:\n  product: aws\n  service: cloudtrail\n\
         detection:\n  selection:\n    eventSource: sts.amazonaws.com\n    eventName: AssumeRole\n\
         \x20   userIdentity.type: IAMUser\n  condition: selection\n"
    )
}

fn rules(files: &[(&str, &str)]) -> SigmaRules {
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    SigmaRules::from_texts(&texts).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(start_paused = true)]
async fn sigma_matches_are_queued_once_per_event_and_rule() {
    let now = Utc::now();
    let mut world = World::new(fast(), events("ev", 3, now - Duration::hours(2)));
    world.sigma = rules(&[("team/assume_role.yml", &assume_role_rule())]);
    let out = run_to_end(item("r1"), &world.deps(), MINUTE, now).await;
    assert_eq!(sts(&out).counts.stored, 3);
    assert_eq!(sts(&out).counts.alerts_queued, 3);

    let alerts = world.alerts.all();
    assert_eq!(alerts.len(), 3);
    let rule_id = format!("sigma:{RULE_ID}");
    for (i, a) in alerts.iter().enumerate() {
        assert_eq!(a.event_id, format!("ev{i:05}"));
        assert_eq!(
            (a.alert_type.as_str(), a.rule_id.as_str()),
            (rule_id.as_str(), rule_id.as_str())
        );
        assert_eq!(
            (a.severity.as_str(), a.status.as_str()),
            ("HIGH", "pending")
        );
        assert_eq!(a.subject, "[HIGH] IAM Alert: Role Assumed by an IAM User");
        assert_eq!(a.event_name, "AssumeRole");
        for line in [
            "\nSigma rule Role Assumed by an IAM User matched AssumeRole by alice\n",
            "\nRule Description: An IAM user's keys were used to assume a role.\n",
            "\n- Rule File: team/assume_role.yml\n",
            "\n- Sigma Level: high\n",
            "\n- ATT&CK: T1078.004\n",
        ] {
            assert!(a.body.contains(line), "{line:?} missing in:\n{}", a.body);
        }
    }

    // The same events read again (a backfill over them): nothing new is queued.
    let again = run_to_end(
        backfill("r2", now - Duration::hours(3), now - Duration::hours(1)),
        &world.deps(),
        MINUTE,
        now,
    )
    .await;
    assert_eq!(sts(&again).counts.stored, 3);
    assert_eq!(sts(&again).counts.alerts_queued, 0);
    assert_eq!(world.alerts.all().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn without_sigma_rules_nothing_but_the_built_in_rules_alert() {
    let now = Utc::now();
    let world = World::new(fast(), events("ev", 3, now - Duration::hours(2)));
    let out = run_to_end(item("r1"), &world.deps(), MINUTE, now).await;
    assert_eq!(sts(&out).counts.stored, 3);
    assert_eq!(sts(&out).counts.alerts_queued, 0);
    assert!(world.alerts.all().is_empty());
}

/// A context whose AWS endpoints point nowhere: nothing here may reach them.
async fn context(sigma_rules: &std::path::Path) -> AwsContext {
    let sdk = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let settings = settings(&[
        ("ANALYTICS_BUCKET", "analytics"),
        ("SIGMA_RULES", sigma_rules.to_str().unwrap()),
    ]);
    let nowhere = Some("http://127.0.0.1:9".to_string());
    AwsContext::new(
        &sdk,
        settings,
        Endpoints {
            aws: nowhere.clone(),
            sns: nowhere.clone(),
            cloudtrail: nowhere,
        },
    )
}

#[tokio::test]
async fn a_rule_set_that_does_not_load_fails_collect_with_every_file_and_reason() {
    let dir = std::env::temp_dir().join(format!("iamtrail-collect-sigma-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("good.yml"), assume_role_rule()).unwrap();
    let typo = assume_role_rule()
        .replace(RULE_ID, "6c1d2e3f-0000-4000-8000-000000000001")
        .replace("eventName: AssumeRole", "eventName|startwith: Assume");
    std::fs::write(dir.join("typo.yml"), &typo).unwrap();
    std::fs::write(dir.join("copy.yml"), assume_role_rule()).unwrap();
    let ctx = context(&dir).await;

    let payload = serde_json::to_value(item("r")).unwrap();
    let err = run_step(Step::Collect, &ctx, payload, None)
        .await
        .expect_err("Collect fails on a rejected rule set");
    assert_eq!(err.error_type, "ConfigError");
    let dir_name = dir.display().to_string();
    assert_eq!(
        err.message,
        format!(
            "SIGMA_RULES={dir_name}: 2 Sigma rule files rejected:\n  \
             good.yml: id {RULE_ID} is also the id of copy.yml\n  \
             typo.yml: field \"eventName\": unknown modifier \"startwith\""
        )
    );

    // Fixed: the next invocation loads the rules (a failed load is not kept).
    std::fs::remove_file(dir.join("copy.yml")).unwrap();
    std::fs::write(
        dir.join("typo.yml"),
        typo.replace("startwith", "startswith"),
    )
    .unwrap();
    let loaded = ctx.sigma_rules().await.expect("the fixed rules load");
    assert_eq!(loaded.len(), 2);
    // Loaded once: later changes wait for a new context (a new Lambda container).
    std::fs::write(dir.join("typo.yml"), "not: [a rule").unwrap();
    assert_eq!(ctx.sigma_rules().await.unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}
