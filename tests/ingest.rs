//! The S3 ingestion end to end on the local stack (docs/ingest.md): the dataset LookupEvents
//! serves, laid out in a moto S3 bucket as an organisation trail of two accounts, ingested by
//! real executions of `statemachine/s3-ingest.asl.json` (moto's Distributed Map reading the
//! planner's manifest, IngestObjects children through the gateway). The S3 mode stores exactly
//! the items the LookupEvents mode stores; both together still 439; the second account adds
//! 439 of its own; a re-run writes nothing and queues nothing; a corrupt object fails the run
//! naming its key while the rest is stored, and a retry finishes the job.

use std::collections::BTreeMap;

use chrono::{Duration as Span, Utc};
use iamtrail::demo::dataset_emulator;
use iamtrail::local::LocalStack;
use iamtrail_aws::steps::ingest::plan::IngestRequest;
use iamtrail_core::synthetic_trail::{DATASET_ACCOUNT, SECOND_ACCOUNT};
use iamtrail_e2e::*;
use serde_json::json;

async fn dataset_stack(name: &str) -> LocalStack {
    let mut options = options(name);
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    start(options).await
}

/// The last three days: the shifted dataset's whole range.
fn range() -> IngestRequest {
    let now = Utc::now();
    IngestRequest {
        start: Some(now - Span::days(3)),
        end: Some(now),
        batch_objects: Some(3),
        ..Default::default()
    }
}

async fn items(stack: &LocalStack) -> BTreeMap<String, Item> {
    scan_all(&stack.dynamodb(), &stack.settings().events_table)
        .await
        .into_iter()
        .map(|i| (attr(&i, "event_id").unwrap_or_default().to_string(), i))
        .collect()
}

fn per_account(items: &BTreeMap<String, Item>) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for item in items.values() {
        let account = attr(item, "recipient_account_id")
            .unwrap_or("?")
            .to_string();
        *per.entry(account).or_insert(0) += 1;
    }
    per
}

/// How many log objects the local trail bucket holds for an account.
async fn trail_objects(stack: &LocalStack, account: &str) -> u64 {
    stack
        .context
        .s3
        .list_objects_v2()
        .bucket(iamtrail::local::trail_bucket(&stack.options.stack_name))
        .prefix(format!("AWSLogs/o-iamtrail0001/{account}/"))
        .send()
        .await
        .unwrap()
        .key_count()
        .unwrap_or(0) as u64
}

async fn outbox_len(stack: &LocalStack) -> usize {
    scan_all(&stack.dynamodb(), &stack.settings().alerts_table)
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_s3_mode_stores_what_lookup_events_stores_and_each_account_once() {
    let (expected, _, _) = expected_ids(&dataset_dir());
    let stack = dataset_stack("ingest-modes").await;

    // The dataset's own account through S3.
    let one = IngestRequest {
        accounts: vec![DATASET_ACCOUNT.into()],
        ..range()
    };
    let run = stack.run_ingestion("s3-1", &one, false).await.unwrap();
    println!("{}", iamtrail::commands::ingest::report(&run));
    assert_eq!(run.status, "SUCCEEDED", "{:?}", run.error);
    let summary = run.summary.expect("summary");
    let n = trail_objects(&stack, DATASET_ACCOUNT).await;
    assert_eq!(trail_objects(&stack, SECOND_ACCOUNT).await, n);
    assert_eq!(
        (summary.objects, summary.counts.ingested, summary.left_to_do),
        (n, n, 0)
    );
    assert_eq!(summary.counts.stored, 439);
    let by_s3 = items(&stack).await;
    assert_eq!(
        by_s3
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected
    );
    let alerts_after_s3 = outbox_len(&stack).await;
    assert_eq!(alerts_after_s3 as u64, summary.counts.alerts_queued);
    assert!(alerts_after_s3 >= 12, "{alerts_after_s3}");

    // The LookupEvents mode over the same records: the same 439 items, byte for byte (its
    // writes replace the S3 mode's with identical items), and no new alert.
    let (_, lookup) = run_ok(&stack, "lookup-1", json!({})).await;
    assert_eq!(lookup.totals.stored, 439);
    assert_eq!(lookup.totals.alerts_queued, 0);
    let both = items(&stack).await;
    assert_eq!(both.len(), 439);
    for (id, item) in &by_s3 {
        assert_eq!(
            both.get(id),
            Some(item),
            "event {id} differs between the modes"
        );
    }
    assert_eq!(outbox_len(&stack).await, alerts_after_s3);

    // Every account of the organisation trail: the second account's 439 join.
    let all = stack.run_ingestion("s3-2", &range(), false).await.unwrap();
    assert_eq!(all.status, "SUCCEEDED", "{:?}", all.error);
    let summary = all.summary.expect("summary");
    assert_eq!(
        (
            summary.objects,
            summary.counts.ingested,
            summary.counts.already_ingested
        ),
        (2 * n, n, n)
    );
    assert_eq!(summary.counts.stored, 439);
    let everything = items(&stack).await;
    assert_eq!(everything.len(), 878);
    assert_eq!(
        per_account(&everything),
        BTreeMap::from([
            (SECOND_ACCOUNT.to_string(), 439),
            (DATASET_ACCOUNT.to_string(), 439)
        ])
    );
    let alerts_now = outbox_len(&stack).await;
    assert_eq!(
        alerts_now - alerts_after_s3,
        summary.counts.alerts_queued as usize
    );

    // The same range again: nothing new.
    let again = stack.run_ingestion("s3-3", &range(), false).await.unwrap();
    assert_eq!(again.status, "SUCCEEDED", "{:?}", again.error);
    let summary = again.summary.expect("summary");
    assert_eq!(
        (
            summary.counts.ingested,
            summary.counts.already_ingested,
            summary.counts.stored,
            summary.counts.alerts_queued
        ),
        (0, 2 * n, 0, 0)
    );
    assert_eq!(items(&stack).await, everything);
    assert_eq!(outbox_len(&stack).await, alerts_now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_object_fails_the_run_by_key_and_a_retry_finishes_it() {
    let stack = dataset_stack("ingest-corrupt").await;
    let bucket = iamtrail::local::trail_bucket(&stack.options.stack_name);
    let s3 = &stack.context.s3;
    // The largest object of the second account.
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("AWSLogs/o-iamtrail0001/{SECOND_ACCOUNT}/"))
        .send()
        .await
        .unwrap();
    let largest = listed
        .contents()
        .iter()
        .max_by_key(|o| o.size().unwrap_or(0))
        .unwrap();
    let victim = largest.key().unwrap().to_string();
    let good = s3
        .get_object()
        .bucket(&bucket)
        .key(&victim)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec();
    let put = |bytes: Vec<u8>| {
        s3.put_object()
            .bucket(&bucket)
            .key(&victim)
            .body(bytes.into())
            .send()
    };
    put(good[..good.len() / 2].to_vec()).await.unwrap();

    let broken = stack
        .run_ingestion("broken", &range(), false)
        .await
        .unwrap();
    println!("{}", iamtrail::commands::ingest::report(&broken));
    assert_eq!(broken.status, "FAILED");
    let error = broken.error.clone().unwrap();
    let objects = 2 * trail_objects(&stack, SECOND_ACCOUNT).await;
    let head = format!("IngestIncomplete: 1 of {objects} objects were not ingested: ");
    assert!(error.starts_with(&head), "{error}");
    assert!(error.contains(&victim), "{error}");
    assert!(error.contains("iamtrail ingest --retry broken"), "{error}");
    let summary = broken
        .summary
        .expect("the summary is written when the run fails");
    assert_eq!(
        (summary.counts.ingested, summary.left_to_do),
        (objects - 1, 1)
    );
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].key, victim);
    let stored = items(&stack).await.len();
    assert!(stored > 439 && stored < 878, "the rest is stored: {stored}");

    // The object is delivered again whole: the retry reads only it and finishes the job.
    put(good).await.unwrap();
    let retry = IngestRequest {
        retry_of: Some("broken".into()),
        ..Default::default()
    };
    let done = stack.run_ingestion("retry", &retry, false).await.unwrap();
    println!("{}", iamtrail::commands::ingest::report(&done));
    assert_eq!(done.status, "SUCCEEDED", "{:?}", done.error);
    let summary = done.summary.expect("summary");
    assert_eq!((summary.objects, summary.counts.ingested), (1, 1));
    assert_eq!(items(&stack).await.len(), 878);
}
