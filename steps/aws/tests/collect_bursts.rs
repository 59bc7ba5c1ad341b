//! Failed console logins counted into bursts by Collect (docs/alerts.md, "Console login
//! failures"): one alert per burst, none again on a re-run, a redrive, or a second region that
//! adds failures of the same burst.

mod collect_support;

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use collect_support::*;
use iamtrail_aws::ports::LookupEvent;
use iamtrail_core::contract::WorkItem;
use iamtrail_core::rules::login_failures::RULE_ID;
use iamtrail_core::Source;
use serde_json::json;

const BUDGET: StdDuration = StdDuration::from_secs(600);

/// A failed console login of IAM user `user` from `ip`, in `region`.
fn failure(id: &str, time: DateTime<Utc>, user: &str, ip: &str, region: &str) -> LookupEvent {
    let time = whole(time);
    let body = json!({
        "eventVersion": "1.08", "eventID": id,
        "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
        "awsRegion": region, "sourceIPAddress": ip, "userAgent": "Mozilla/5.0",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": "111122223333",
                         "userName": user},
        "errorMessage": "Failed authentication",
        "responseElements": {"ConsoleLogin": "Failure"},
        "additionalEventData": {"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/"},
        "recipientAccountId": "111122223333", "eventType": "AwsConsoleSignIn"
    })
    .to_string();
    LookupEvent {
        event_id: Some(id.into()),
        event_name: Some("ConsoleLogin".into()),
        event_source: Some("signin.amazonaws.com".into()),
        event_time: Some(time),
        username: Some(user.into()),
        cloudtrail_event: Some(body),
    }
}

fn signin_item(run_id: &str, region: &str) -> WorkItem {
    WorkItem {
        run_id: run_id.into(),
        region: region.into(),
        sources: vec![Source::Signin],
        ..Default::default()
    }
}

fn burst_alerts(world: &World) -> Vec<(String, String)> {
    world
        .alerts
        .all()
        .into_iter()
        .filter(|a| a.rule_id == RULE_ID)
        .map(|a| (a.event_id, a.subject))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn six_failures_in_ten_minutes_alert_once_and_never_again() {
    let now = Utc::now();
    let start = now - Duration::minutes(40);
    let fails: Vec<LookupEvent> = (0..6)
        .map(|i| {
            failure(
                &format!("fail-{i}"),
                start + Duration::minutes(i),
                "alice",
                "203.0.113.7",
                REGION,
            )
        })
        .collect();
    let world = World::new(fast(), fails);
    let deps = world.deps();

    let first = run_to_end(signin_item("run-1", REGION), &deps, BUDGET, now).await;
    assert_eq!(first.progress[&Source::Signin].counts.stored, 6);
    let alerts = burst_alerts(&world);
    assert_eq!(alerts.len(), 1, "one burst, one alert: {alerts:?}");
    assert_eq!(alerts[0].0, "fail-4", "keyed by the failure that reached 5");
    assert_eq!(
        alerts[0].1, "[HIGH] IAM Alert: Console Login Failures",
        "subject"
    );
    let body = &world.alerts.all()[0].body;
    assert!(
        body.contains(
            "5 failed console logins for user alice (account 111122223333) within 10 minutes"
        ),
        "{body}"
    );
    assert_eq!(first.progress[&Source::Signin].counts.alerts_queued, 1);

    // Re-run: a new scheduled run reads the overlap again; a redrive replays run-1's item.
    let rerun = run_to_end(
        signin_item("run-2", REGION),
        &deps,
        BUDGET,
        now + Duration::minutes(60),
    )
    .await;
    let redrive = run_to_end(signin_item("run-1", REGION), &deps, BUDGET, now).await;
    for item in [&rerun, &redrive] {
        assert_eq!(item.progress[&Source::Signin].counts.alerts_queued, 0);
    }
    assert_eq!(burst_alerts(&world).len(), 1, "still one alert");
    let counter = world
        .control
        .counter("loginfail#user#111122223333#alice")
        .expect("the user's counter");
    assert_eq!(counter.0.len(), 6, "each failure counted once");
}

#[tokio::test(start_paused = true)]
async fn four_failures_or_failures_spread_out_do_not_alert() {
    let now = Utc::now();
    let start = now - Duration::hours(3);
    let mut fails: Vec<LookupEvent> = (0..4)
        .map(|i| {
            failure(
                &format!("few-{i}"),
                start + Duration::minutes(i),
                "bob",
                "198.51.100.1",
                REGION,
            )
        })
        .collect();
    // Five of carol's, 11 minutes apart: never five within ten minutes.
    fails.extend((0..5).map(|i| {
        failure(
            &format!("slow-{i}"),
            start + Duration::minutes(30 + 11 * i),
            "carol",
            "198.51.100.2",
            REGION,
        )
    }));
    let world = World::new(fast(), fails);
    run_to_end(signin_item("run-1", REGION), &world.deps(), BUDGET, now).await;
    assert_eq!(burst_alerts(&world), vec![]);
}

#[tokio::test(start_paused = true)]
async fn a_burst_split_across_two_regions_alerts_once_in_either_order() {
    // Sign-in events are regional: three failures recorded in us-east-1, three in eu-west-1,
    // read by two Collect items. The counter is shared, so whichever adds the fifth sees it;
    // when the later region adds failures older than the first trigger, the burst's claim in
    // the counter keeps it at one alert.
    for (order, expected_trigger) in [
        ([REGION, "eu-west-1"], "us-4"),
        (["eu-west-1", REGION], "eu-5"),
    ] {
        let now = Utc::now();
        let start = now - Duration::minutes(30);
        let at = |i: i64| start + Duration::minutes(i);
        let world = World::new(fast(), Vec::new());
        world.source.add(
            REGION,
            [0, 2, 4].map(|i| failure(&format!("us-{i}"), at(i), "dave", "192.0.2.1", REGION)),
        );
        world.source.add(
            "eu-west-1",
            [1, 3, 5].map(|i| failure(&format!("eu-{i}"), at(i), "dave", "192.0.2.1", "eu-west-1")),
        );
        let deps = world.deps();
        run_to_end(signin_item("run-1", order[0]), &deps, BUDGET, now).await;
        assert_eq!(burst_alerts(&world), vec![], "three failures are no burst");
        run_to_end(signin_item("run-1", order[1]), &deps, BUDGET, now).await;
        let alerts = burst_alerts(&world);
        assert_eq!(alerts.len(), 1, "{order:?}: {alerts:?}");
        assert_eq!(alerts[0].0, expected_trigger, "{order:?}");
        // The user and the address each reached 5: one alert, not two.
        assert!(world.control.counter("loginfail#ip#192.0.2.1").is_some());
        // Both regions again (a re-run): nothing new.
        for region in order {
            run_to_end(signin_item("run-2", region), &deps, BUDGET, now).await;
        }
        assert_eq!(burst_alerts(&world).len(), 1, "{order:?}");
    }
}
