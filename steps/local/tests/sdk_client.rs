//! The real AWS SDK for Rust against the emulator behind the gateway: the wire format (JSON 1.1,
//! epoch-second timestamps, error codes) is what the Collect step will see.

use std::path::Path;
use std::sync::Arc;

use aws_sdk_cloudtrail::config::{Credentials, Region};
use aws_sdk_cloudtrail::error::ProvideErrorMetadata;
use aws_sdk_cloudtrail::operation::lookup_events::LookupEventsError;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_sdk_cloudtrail::Client;
use chrono::TimeDelta;
use iamtrail_local::{CloudTrailEmulator, EmulatorOptions, Gateway, GatewayConfig, TimeShift};

fn client(endpoint: &str, region: &str) -> Client {
    let config = aws_sdk_cloudtrail::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("AKIDLOCAL", "secret", None, None, "test"))
        .retry_config(aws_sdk_cloudtrail::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_pages_the_bundled_dataset() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/invictus-aws-2023/CloudTrail");
    let emulator = Arc::new(
        CloudTrailEmulator::from_dir(
            dir,
            EmulatorOptions {
                time_shift: TimeShift::LatestAt(TimeDelta::days(1)),
                ..EmulatorOptions::default()
            },
        )
        .unwrap(),
    );
    let gateway = Gateway::start(GatewayConfig {
        cloudtrail: Some(emulator.clone()),
        ..GatewayConfig::default()
    })
    .await
    .unwrap();
    let ct = client(&gateway.endpoint(), "us-east-1");

    let mut pages = ct.lookup_events().into_paginator().send();
    let mut count = 0;
    let mut last = None;
    while let Some(page) = pages.next().await {
        let page = page.expect("page");
        for e in page.events() {
            let t = e.event_time().expect("EventTime").secs();
            if let Some(prev) = last {
                assert!(t <= prev, "newest first");
            }
            last = Some(t);
            assert!(e
                .cloud_trail_event()
                .unwrap()
                .contains(e.event_id().unwrap()));
            count += 1;
        }
    }
    assert_eq!(count, 2900);

    let out = ct
        .lookup_events()
        .lookup_attributes(
            LookupAttribute::builder()
                .attribute_key(LookupAttributeKey::EventName)
                .attribute_value("CreateUser")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.events().len(), 4);
    assert!(out.next_token().is_none());
    assert_eq!(out.events()[0].username(), Some("bert-jan"));

    // Typed errors.
    let err = ct
        .lookup_events()
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, LookupEventsError::InvalidNextTokenException(_)),
        "{err:?}"
    );
    let err = ct
        .lookup_events()
        .max_results(51)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, LookupEventsError::InvalidMaxResultsException(_)),
        "{err:?}"
    );

    // Another region sees nothing; a failing region is a 500.
    let west = client(&gateway.endpoint(), "us-west-2");
    assert!(west
        .lookup_events()
        .send()
        .await
        .unwrap()
        .events()
        .is_empty());
    emulator.set_fail_regions(vec!["us-west-2".into()]);
    let err = west.lookup_events().send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert_eq!(emulator.stats().per_region["us-west-2"].requests, 2);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_sees_throttling() {
    let emulator = Arc::new(CloudTrailEmulator::from_records(
        vec![],
        EmulatorOptions {
            throttle_rps: Some(2.0),
            ..EmulatorOptions::default()
        },
    ));
    let gateway = Gateway::start(GatewayConfig {
        cloudtrail: Some(emulator.clone()),
        ..GatewayConfig::default()
    })
    .await
    .unwrap();
    let ct = client(&gateway.endpoint(), "eu-west-1");
    ct.lookup_events().send().await.unwrap();
    ct.lookup_events().send().await.unwrap();
    let err = ct
        .lookup_events()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert_eq!(err.message(), Some("Rate exceeded"));
    assert_eq!(emulator.stats().throttled, 1);
    gateway.shutdown().await;
}
