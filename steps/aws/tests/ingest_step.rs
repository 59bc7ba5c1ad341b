//! The S3 ingestion's steps on the in-memory adapters (docs/ingest.md): the bundled dataset
//! laid out as an organisation trail of two accounts is planned, ingested batch by batch and
//! summarised; every event is stored once with its own account, a second run stores nothing
//! and queues nothing, a corrupt object fails its batch by key while the rest is stored, and a
//! retry of what the run left undone finishes the job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use iamtrail_aws::memory::{MemoryAlerts, MemoryControl, MemoryEvents, MemoryObjects};
use iamtrail_aws::ports::ObjectStore;
use iamtrail_aws::steps::ingest::objects::{ingest_objects, IngestDeps, IngestObjectsOutput};
use iamtrail_aws::steps::ingest::plan::{plan, IngestRequest, PlanDeps, PlanInput, PlanOutput};
use iamtrail_aws::steps::ingest::summary::{summarize, IngestSummary, RunState, SummaryInput};
use iamtrail_aws::StepError;
use iamtrail_core::record::{delivery_records, log_file_paths};
use iamtrail_core::sigma::SigmaRules;
use iamtrail_core::synthetic_trail::{
    gzip, layout, objects_as_account, DATASET_ACCOUNT, SECOND_ACCOUNT,
};
use iamtrail_core::trail::{manifest_key, IngestBatch};
use iamtrail_core::Settings;

const BUCKET: &str = "org-trail";

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn dataset() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/invictus-aws-2023/CloudTrail")
}

struct World {
    settings: Settings,
    trail: MemoryObjects,
    analytics: MemoryObjects,
    events: MemoryEvents,
    control: MemoryControl,
    alerts: MemoryAlerts,
    sigma: SigmaRules,
}

/// The dataset in the organisation layout, as its own account and as a second one.
async fn world() -> World {
    let trail = MemoryObjects::new();
    let mut records = Vec::new();
    for path in log_file_paths(&dataset()).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        records.extend(
            delivery_records(&bytes)
                .unwrap()
                .iter()
                .map(|r| r.get().to_string()),
        );
    }
    let own = layout(records.iter().map(String::as_str), "AWSLogs/");
    let other = objects_as_account(&own, DATASET_ACCOUNT, SECOND_ACCOUNT).unwrap();
    for object in own.iter().chain(&other) {
        trail
            .put_bytes(&object.key, gzip(&object.body).unwrap(), "application/gzip")
            .await
            .unwrap();
    }
    World {
        settings: Settings::from_pairs(&[("ANALYTICS_BUCKET", "analytics")]).unwrap(),
        trail,
        analytics: MemoryObjects::new(),
        events: MemoryEvents::new(),
        control: MemoryControl::new(),
        alerts: MemoryAlerts::new(),
        sigma: SigmaRules::default(),
    }
}

/// The dataset's range (2023-07-10 11:00 to 13:00, UTC).
fn request() -> IngestRequest {
    IngestRequest {
        bucket: Some(BUCKET.into()),
        start: Some(t("2023-07-10T00:00:00Z")),
        end: Some(t("2023-07-11T00:00:00Z")),
        batch_objects: Some(2),
        ..Default::default()
    }
}

/// The clock of the run: the dataset's day, so its alerts are recent enough to send.
fn now() -> DateTime<Utc> {
    t("2023-07-10T14:00:00Z")
}

impl World {
    /// IngestObjects' adapters: this world's.
    fn deps(
        &self,
    ) -> IngestDeps<'_, MemoryObjects, MemoryEvents, MemoryControl, MemoryAlerts, MemoryObjects>
    {
        IngestDeps {
            settings: &self.settings,
            trail: &self.trail,
            events: &self.events,
            control: &self.control,
            alerts: &self.alerts,
            objects: &self.analytics,
            sigma: &self.sigma,
        }
    }

    async fn plan(&self, run_id: &str, request: IngestRequest) -> Result<PlanOutput, StepError> {
        let deps = PlanDeps {
            settings: &self.settings,
            trail: &self.trail,
            objects: &self.analytics,
            ledger: &self.control,
        };
        plan(
            PlanInput {
                run_id: run_id.into(),
                request,
            },
            &deps,
            now(),
        )
        .await
    }

    /// The Distributed Map: every batch of the manifest, in order.
    async fn ingest(&self, plan: &PlanOutput) -> Vec<Result<IngestObjectsOutput, StepError>> {
        let manifest = self
            .analytics
            .get(&manifest_key(&plan.run_id))
            .unwrap()
            .bytes;
        let batches: Vec<IngestBatch> = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(batches.len() as u64, plan.batches);
        let deps = self.deps();
        let mut results = Vec::new();
        for batch in batches {
            results.push(ingest_objects(batch, &deps, now(), None).await);
        }
        results
    }

    async fn summarize(&self, plan: PlanOutput) -> Result<IngestSummary, StepError> {
        summarize(
            SummaryInput {
                run: RunState {
                    plan,
                    map_error: None,
                },
            },
            &self.analytics,
        )
        .await
    }

    /// A whole run: plan, every batch, summary.
    async fn run(&self, run_id: &str, request: IngestRequest) -> Result<IngestSummary, StepError> {
        let plan = self.plan(run_id, request).await?;
        self.ingest(&plan).await;
        self.summarize(plan).await
    }

    fn stored_per_account(&self) -> BTreeMap<String, usize> {
        let mut per = BTreeMap::new();
        for e in self.events.all() {
            *per.entry(e.account_id.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        per
    }
}

#[tokio::test]
async fn two_accounts_of_an_organisation_trail_are_stored_once_each() {
    let w = world().await;
    let plan = w.plan("run-1", request()).await.unwrap();
    assert_eq!(plan.objects, 24, "an object per five minutes, per account");
    assert_eq!(plan.accounts, [SECOND_ACCOUNT, DATASET_ACCOUNT]);
    assert_eq!(plan.batches, 12, "2 objects a batch");
    let summary = w.run("run-1", request()).await.unwrap();
    assert_eq!(summary.counts.ingested, 24);
    assert_eq!(summary.counts.records, 5800);
    assert_eq!(summary.counts.stored, 878);
    assert_eq!(summary.left_to_do, 0);
    assert_eq!(summary.retry_key, None);
    assert_eq!(
        w.stored_per_account(),
        BTreeMap::from([
            (SECOND_ACCOUNT.to_string(), 439),
            (DATASET_ACCOUNT.to_string(), 439)
        ])
    );
    let alerts = w.alerts.all();
    assert_eq!(alerts.len() as u64, summary.counts.alerts_queued);
    assert!(
        summary.counts.alerts_queued >= 24,
        "12 alerts per account at least, {}",
        summary.counts.alerts_queued
    );
    let dirty = w.control.dirty_dates_now();
    assert_eq!(
        dirty.keys().map(|d| d.to_string()).collect::<Vec<_>>(),
        ["2023-07-10"]
    );

    // The same range again: every object is known, nothing is written or queued.
    let before_events = w.events.all();
    let before_dirty = w.control.dirty_dates_now();
    let again = w.run("run-2", request()).await.unwrap();
    assert_eq!(
        (
            again.counts.ingested,
            again.counts.already_ingested,
            again.counts.stored,
            again.counts.alerts_queued
        ),
        (0, 24, 0, 0)
    );
    assert_eq!(w.events.all(), before_events);
    assert_eq!(w.alerts.all().len(), alerts.len());
    assert_eq!(
        w.control.dirty_dates_now(),
        before_dirty,
        "no date marked again"
    );

    // Forced, the objects are read again: the same items, no new alert.
    let forced = w
        .run(
            "run-3",
            IngestRequest {
                force: true,
                ..request()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            forced.counts.ingested,
            forced.counts.stored,
            forced.counts.alerts_queued
        ),
        (24, 878, 0)
    );
    assert_eq!(w.events.all(), before_events);
}

#[tokio::test]
async fn filters_by_account_region_and_range() {
    let w = world().await;
    let one = w
        .run(
            "one",
            IngestRequest {
                accounts: vec![SECOND_ACCOUNT.into()],
                ..request()
            },
        )
        .await
        .unwrap();
    assert_eq!((one.objects, one.counts.stored), (12, 439));
    assert_eq!(
        w.stored_per_account().keys().collect::<Vec<_>>(),
        [SECOND_ACCOUNT]
    );
    let none = w
        .run(
            "none",
            IngestRequest {
                regions: vec!["eu-west-3".into()],
                ..request()
            },
        )
        .await
        .unwrap();
    assert_eq!((none.objects, none.batches), (0, 0));
    // Half an hour: only the objects written in it (and up to an hour after), and
    // only the records of that half hour.
    let hour = w
        .run(
            "hour",
            IngestRequest {
                start: Some(t("2023-07-10T11:00:00Z")),
                end: Some(t("2023-07-10T11:30:00Z")),
                force: true,
                ..request()
            },
        )
        .await
        .unwrap();
    assert!(hour.objects < 24 && hour.objects > 0, "{}", hour.objects);
    assert!(hour.counts.outside_range > 0);
}

#[tokio::test]
async fn a_corrupt_object_fails_its_batch_by_key_and_a_retry_finishes_the_job() {
    let w = world().await;
    let plan = w.plan("broken", request()).await.unwrap();
    let manifest: Vec<IngestBatch> =
        serde_json::from_slice(&w.analytics.get(&manifest_key("broken")).unwrap().bytes).unwrap();
    // The largest object: it holds tracked events.
    let (batch, victim) = manifest
        .iter()
        .flat_map(|b| b.objects.iter().map(move |o| (b.batch, o)))
        .max_by_key(|(_, o)| o.size)
        .map(|(b, o)| (b, o.key.clone()))
        .unwrap();
    let good = w.trail.get(&victim).unwrap().bytes;
    let mut corrupt = good.clone();
    corrupt.truncate(good.len() / 2);
    w.trail
        .put_bytes(&victim, corrupt, "application/gzip")
        .await
        .unwrap();

    let results = w.ingest(&plan).await;
    let failed: Vec<&StepError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error_type, "ObjectsFailed");
    assert!(failed[0].message.contains(&victim), "{}", failed[0].message);
    let head = format!("1 of 2 objects of batch {batch} were not ingested: ");
    assert!(
        failed[0].message.starts_with(&head),
        "{}",
        failed[0].message
    );
    let error = w.summarize(plan).await.unwrap_err();
    assert_eq!(error.error_type, "IngestIncomplete");
    assert!(error.message.contains(&victim), "{}", error.message);
    assert!(
        error.message.contains("iamtrail ingest --retry broken"),
        "{}",
        error.message
    );
    let stored = w.events.all().len();
    assert!(stored > 439 && stored < 878, "the rest is stored: {stored}");

    // Retried while still corrupt: it fails again, naming the same key.
    let error = w
        .run(
            "retry-1",
            IngestRequest {
                retry_of: Some("broken".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        error.message.starts_with("1 of 1 objects"),
        "{}",
        error.message
    );
    // The object is fixed (a new delivery of the same key): the retry finishes the job.
    w.trail
        .put_bytes(&victim, good, "application/gzip")
        .await
        .unwrap();
    let done = w
        .run(
            "retry-2",
            IngestRequest {
                retry_of: Some("retry-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (done.objects, done.counts.ingested, done.left_to_do),
        (1, 1, 0)
    );
    assert_eq!(w.events.all().len(), 878);
}

#[tokio::test]
async fn a_batch_that_never_ran_is_left_to_do() {
    let w = world().await;
    let plan = w.plan("partial", request()).await.unwrap();
    // Only the first batch ran (the Map stopped).
    let manifest: Vec<IngestBatch> =
        serde_json::from_slice(&w.analytics.get(&manifest_key("partial")).unwrap().bytes).unwrap();
    let deps = w.deps();
    ingest_objects(manifest[0].clone(), &deps, now(), None)
        .await
        .unwrap();
    let error = w.summarize(plan).await.unwrap_err();
    assert!(
        error.message.starts_with("22 of 24 objects"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("its batch did not finish"),
        "{}",
        error.message
    );
    let done = w
        .run(
            "rest",
            IngestRequest {
                retry_of: Some("partial".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((done.objects, done.counts.ingested), (22, 22));
    assert_eq!(w.events.all().len(), 878);
}

#[tokio::test]
async fn bad_requests_are_refused_clearly() {
    let w = world().await;
    let e = w
        .plan(
            "x",
            IngestRequest {
                end: None,
                ..request()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.error_type, "InvalidInput");
    assert!(e.message.contains("give start and end"), "{}", e.message);
    let e = w
        .plan(
            "x",
            IngestRequest {
                start: Some(t("2023-07-12T00:00:00Z")),
                ..request()
            },
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("must be before end"), "{}", e.message);
    let e = w
        .plan(
            "x",
            IngestRequest {
                prefix: Some("elsewhere".into()),
                ..request()
            },
        )
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("no account folders under s3://org-trail/elsewhere/AWSLogs/"),
        "{}",
        e.message
    );
    let e = w
        .plan(
            "x",
            IngestRequest {
                bucket: None,
                ..request()
            },
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("TRAIL_BUCKET"), "{}", e.message);
    let e = w
        .plan(
            "x",
            IngestRequest {
                retry_of: Some("never".into()),
                ..request()
            },
        )
        .await
        .unwrap_err();
    assert!(
        e.message.contains("run never left nothing to retry"),
        "{}",
        e.message
    );
}

/// An SQS message carrying the EventBridge "Object Created" event of a key.
fn object_created(id: &str, bucket: &str, key: &str) -> serde_json::Value {
    let event = serde_json::json!({
        "version": "0", "id": format!("ev-{id}"), "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "time": "2023-07-10T12:40:00Z",
        "region": "us-east-1", "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": 1234, "etag": "e"},
                   "request-id": "r", "requester": "cloudtrail.amazonaws.com", "reason": "PutObject"}
    });
    serde_json::json!({"messageId": id, "receiptHandle": "h", "body": event.to_string(),
                       "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
                       "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                       "awsRegion": "us-east-1"})
}

#[tokio::test]
async fn notifications_ingest_new_objects_and_the_sweep_reads_what_they_missed() {
    use iamtrail_aws::ports::IngestLedger;
    use iamtrail_aws::steps::ingest::notifications::{ingest_notifications, SqsEvent};
    let w = world().await;
    let deps = w.deps();
    let keys: Vec<String> = w
        .trail
        .keys()
        .into_iter()
        .filter(|k| k.contains(&format!("/{DATASET_ACCOUNT}/")))
        .collect();
    let (first, second) = (keys[0].clone(), keys[1].clone());
    let corrupt = keys[2].clone();
    let good = w.trail.get(&corrupt).unwrap().bytes;
    w.trail
        .put_bytes(&corrupt, b"\x1f\x8bnot gzip".to_vec(), "application/gzip")
        .await
        .unwrap();
    let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
        object_created("m1", BUCKET, &first),
        object_created("m2", BUCKET, &second),
        object_created("m3", BUCKET, &first),
        object_created("m4", BUCKET, &corrupt),
        object_created("m5", BUCKET, "AWSLogs/o-iamtrail0001/123837392027/CloudTrail-Digest/us-east-1/2023/07/10/x.json.gz"),
        object_created("m6", "another-bucket", &first),
    ]}))
    .unwrap();
    let response = ingest_notifications(event.clone(), BUCKET, &deps, now(), None)
        .await
        .unwrap();
    let failures: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failures,
        ["m4"],
        "only the corrupt object's message is delivered again"
    );
    assert_eq!(
        response.ignored, 2,
        "the digest and the other bucket's object"
    );
    assert_eq!(
        (response.ingested.objects, response.ingested.counts.ingested),
        (3, 2)
    );
    let stored = w.events.all().len();
    assert!(stored > 0);
    let checkpoints = w.control.trail_checkpoints(BUCKET).await.unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].0, DATASET_ACCOUNT);

    // SQS delivers the batch again (after the object was delivered whole): only m4 is read.
    w.trail
        .put_bytes(&corrupt, good, "application/gzip")
        .await
        .unwrap();
    let again = ingest_notifications(event, BUCKET, &deps, now(), None)
        .await
        .unwrap();
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(
        (
            again.ingested.counts.ingested,
            again.ingested.counts.already_ingested
        ),
        (1, 2)
    );

    // The sweep: from a day before the oldest checkpoint to now, everything the
    // notifications never brought (the rest of both accounts).
    let sweep = w
        .run(
            "sweep",
            IngestRequest {
                bucket: Some(BUCKET.into()),
                sweep: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(sweep.counts.already_ingested, 3);
    assert_eq!(sweep.counts.ingested, sweep.objects - 3);
    assert_eq!(w.events.all().len(), 878);
}

#[test]
fn s3_event_notifications_name_their_objects_url_decoded() {
    use iamtrail_aws::steps::ingest::notifications::objects_of;
    let body = serde_json::json!({"Records": [{"eventSource": "aws:s3", "s3": {
        "bucket": {"name": "trail"},
        "object": {"key": "logs+2024/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/01/01/a%3Db.json.gz", "size": 7}}}]})
    .to_string();
    let objects = objects_of(&body).unwrap();
    assert_eq!(objects[0].0, "trail");
    assert_eq!(
        objects[0].1.key,
        "logs 2024/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/01/01/a=b.json.gz"
    );
    assert_eq!(objects_of(r#"{"Event":"s3:TestEvent"}"#).unwrap(), vec![]);
    assert!(objects_of("{}")
        .unwrap_err()
        .contains("neither an EventBridge event"));
    assert!(objects_of("nope").unwrap_err().contains("not JSON"));
}
