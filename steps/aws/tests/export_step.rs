//! Export with the in-memory adapters: one deterministic key per date (and region), atomic
//! overwrites, the fewer-rows rule and `force`, dirty sequence numbers, and the time budget (on
//! tokio's paused clock).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use iamtrail_aws::memory::{MemoryControl, MemoryEvents, MemoryObjects};
use iamtrail_aws::ports::{
    ControlStore, DayPage, EventReader, EventStore, ObjectStore, StoreError,
};
use iamtrail_aws::steps::export::{export, ExportInput, ExportOutput};
use iamtrail_core::export::object_key;
use iamtrail_core::{NormalizedEvent, Settings};
use tokio::time::Instant;
fn settings(pairs: &[(&str, &str)]) -> Settings {
    Settings::from_pairs(pairs).unwrap()
}

fn d(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 20, 12, 0, 0).unwrap()
}

fn event(date: NaiveDate, id: &str, region: &str) -> NormalizedEvent {
    NormalizedEvent {
        event_date: date.format("%Y-%m-%d").to_string(),
        event_id: id.to_string(),
        event_time: format!("{}T10:00:00Z", date.format("%Y-%m-%d")),
        event_name: "AssumeRole".into(),
        event_source: "sts.amazonaws.com".into(),
        event_type: "sts".into(),
        user_name: "alice".into(),
        aws_region: region.to_string(),
        ..Default::default()
    }
}

async fn store(events: &MemoryEvents, list: Vec<NormalizedEvent>) {
    let out = events.put_events(&list).await.unwrap();
    assert!(out.rejected.is_empty());
}

fn input(run_id: &str, dates: &[NaiveDate], force: bool) -> ExportInput {
    ExportInput {
        run_id: Some(run_id.into()),
        export_dates: dates.to_vec(),
        force,
        ..Default::default()
    }
}

async fn run<R: EventReader>(
    input: ExportInput,
    reader: &R,
    objects: &MemoryObjects,
    control: &MemoryControl,
    settings: &Settings,
) -> ExportOutput {
    export(
        input,
        reader,
        objects,
        control,
        &iamtrail_aws::metrics::Metrics::discard(),
        settings,
        now(),
        None,
    )
    .await
    .expect("export")
}

/// The next invocation's input, as the workflow builds it: its whole state (the run summary
/// with every due date) and the previous result under `export`, through the fields its
/// ResultSelector keeps.
fn looped(all_dates: &[NaiveDate], previous: &ExportOutput) -> ExportInput {
    let full = serde_json::to_value(previous).unwrap();
    let mut selected = serde_json::Map::new();
    for field in [
        "dates",
        "rows",
        "files",
        "kept",
        "more",
        "export_dates",
        "invocations",
    ] {
        selected.insert(field.to_string(), full[field].clone());
    }
    let state = serde_json::json!({
        "run_id": "run-1", "mode": "incremental", "status": "succeeded",
        "errors": [], "export_due": true, "export_dates": all_dates,
        "alerts": {"enabled": true, "sent": 0, "more": false, "invocations": 1},
        "export": selected,
    });
    serde_json::from_value(state).expect("the workflow's state is a valid input")
}

/// The rows of a stored Parquet object, read back with the parquet crate.
fn parquet_rows(objects: &MemoryObjects, key: &str) -> i64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    // Tests run in parallel threads and read the same keys: one file per read.
    static READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let object = objects.get(key).expect("object exists");
    let path = std::env::temp_dir().join(format!(
        "iamtrail-export-step-{}-{}-{}.parquet",
        std::process::id(),
        READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        key.replace('/', "_")
    ));
    std::fs::write(&path, &object.bytes).unwrap();
    let rows = SerializedFileReader::new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows();
    std::fs::remove_file(&path).ok();
    rows
}

fn rows_metadata(objects: &MemoryObjects, key: &str) -> Option<String> {
    objects.get(key)?.metadata.get("rows").cloned()
}

#[tokio::test]
async fn reexport_writes_one_deterministic_key() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let s = settings(&[]);
    store(
        &events,
        (0..3)
            .map(|i| event(d(5), &format!("e{i}"), "us-east-1"))
            .collect(),
    )
    .await;
    control.mark_dirty(&[d(5)]).await.unwrap();
    let out = run(
        input("run-1", &[d(5)], false),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    let key = object_key(d(5), None);
    assert_eq!(key, "iam-events/year=2026/month=3/day=5/events.parquet");
    assert_eq!(objects.keys(), vec![key.clone()]);
    assert_eq!((out.rows, out.files, out.more), (3, 1, false));
    let object = objects.get(&key).unwrap();
    assert_eq!(object.metadata.get("rows").map(String::as_str), Some("3"));
    assert_eq!(
        object.metadata.get("exported-by").map(String::as_str),
        Some("run-1")
    );
    assert!(
        control.dirty_dates().await.unwrap().is_empty(),
        "the mark is cleared"
    );

    // A late event for the 5th: the date is dirty, the re-export overwrites the same key (a
    // new version of one object; nothing deleted, nothing added beside it).
    store(&events, vec![event(d(5), "late", "us-east-1")]).await;
    control.mark_dirty(&[d(5)]).await.unwrap();
    let again = run(
        input("run-2", &[d(5)], false),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    assert_eq!(again.rows, 4);
    assert_eq!(objects.keys(), vec![key.clone()]);
    assert_eq!(objects.versions(&key), 2);
    assert_eq!(parquet_rows(&objects, &key), 4);
    let record = control.export_record(d(5)).await.unwrap().unwrap();
    assert_eq!((record.rows, record.keys), (4, vec![key]));
    assert!(control.dirty_dates().await.unwrap().is_empty());
}

#[tokio::test]
async fn reexport_with_fewer_rows_keeps_the_old_file_unless_forced() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let s = settings(&[]);
    store(
        &events,
        (0..3)
            .map(|i| event(d(5), &format!("e{i}"), "us-east-1"))
            .collect(),
    )
    .await;
    run(
        input("run-1", &[d(5)], false),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    let key = object_key(d(5), None);

    // The day's items expired (TTL); one event of it is stored again by a backfill.
    events.expire_day(d(5));
    store(&events, vec![event(d(5), "e0", "us-east-1")]).await;
    control.mark_dirty(&[d(5)]).await.unwrap();
    let out = run(
        input("run-2", &[d(5)], false),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    assert_eq!(
        objects.versions(&key),
        1,
        "the complete file is not replaced"
    );
    assert_eq!(parquet_rows(&objects, &key), 3);
    assert_eq!((out.rows, out.files), (0, 0));
    assert_eq!(out.kept.len(), 1);
    let kept = &out.kept[0];
    assert_eq!((kept.existing_rows, kept.new_rows), (Some(3), 1));
    assert!(
        kept.warning.contains("kept the existing file")
            && kept.warning.contains("with 3 rows; the table now has 1")
            && kept.warning.contains("use force"),
        "{}",
        kept.warning
    );
    assert_eq!(control.export_record(d(5)).await.unwrap().unwrap().rows, 3);
    assert!(
        control.dirty_dates().await.unwrap().is_empty(),
        "not exported again every run"
    );

    // Told to: the file is replaced with the table's one row.
    let forced = run(
        input("run-3", &[d(5)], true),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    assert!(forced.kept.is_empty());
    assert_eq!(objects.versions(&key), 2);
    assert_eq!(parquet_rows(&objects, &key), 1);
    assert_eq!(rows_metadata(&objects, &key).as_deref(), Some("1"));

    // Every item gone and forced: an empty file replaces it (never a delete).
    events.expire_day(d(5));
    run(
        input("run-4", &[d(5)], true),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    assert_eq!(objects.versions(&key), 3);
    assert_eq!(parquet_rows(&objects, &key), 0);
}

/// A reader that marks the date dirty while the export is reading it (as a Collect storing an
/// event of that date at that moment would).
struct MarkingReader<'a> {
    events: &'a MemoryEvents,
    control: &'a MemoryControl,
    marked: AtomicBool,
}

impl EventReader for MarkingReader<'_> {
    async fn day_page(
        &self,
        date: NaiveDate,
        after: Option<String>,
    ) -> Result<DayPage, StoreError> {
        let page = self.events.day_page(date, after).await?;
        if !self.marked.swap(true, Ordering::SeqCst) {
            self.control.mark_dirty(&[date]).await?;
        }
        Ok(page)
    }
}

#[tokio::test]
async fn dirty_mark_during_export_keeps_the_date_dirty() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let s = settings(&[]);
    store(&events, vec![event(d(5), "e0", "us-east-1")]).await;
    control.mark_dirty(&[d(5)]).await.unwrap();
    let reader = MarkingReader {
        events: &events,
        control: &control,
        marked: AtomicBool::new(false),
    };
    run(
        input("run-1", &[d(5)], false),
        &reader,
        &objects,
        &control,
        &s,
    )
    .await;
    // The export read sequence number 1; the mark made while it read is number 2, so the
    // clear did not remove it: the next run exports the date again.
    assert_eq!(control.dirty_dates().await.unwrap().get(&d(5)), Some(&2));
    run(
        input("run-2", &[d(5)], false),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    assert!(control.dirty_dates().await.unwrap().is_empty());
}

/// A reader that takes `delay` per page (on tokio's clock).
struct SlowReader<'a> {
    events: &'a MemoryEvents,
    delay: StdDuration,
}

impl EventReader for SlowReader<'_> {
    async fn day_page(
        &self,
        date: NaiveDate,
        after: Option<String>,
    ) -> Result<DayPage, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.events.day_page(date, after).await
    }
}

#[tokio::test(start_paused = true)]
async fn export_stops_on_its_time_budget_and_resumes() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let s = settings(&[("EXPORT_TIME_BUDGET_SECONDS", "10")]);
    let dates: Vec<NaiveDate> = (1..=5).map(d).collect();
    for date in &dates {
        store(&events, vec![event(*date, "e", "us-east-1")]).await;
    }
    let reader = SlowReader {
        events: &events,
        delay: StdDuration::from_secs(4),
    };
    // Each date takes one 4 s page: dates start at 0, 4 and 8 s; at 12 s the budget is spent.
    let one = run(
        input("run-1", &dates, false),
        &reader,
        &objects,
        &control,
        &s,
    )
    .await;
    assert_eq!(one.dates, vec![d(1), d(2), d(3)]);
    assert!(one.more);
    assert_eq!(one.export_dates, vec![d(4), d(5)], "the dates left");
    assert_eq!(one.invocations, 1);

    // The workflow invokes Export again with its whole state: Aggregate's run summary (whose
    // export_dates are all five) and this result under `export`, through its ResultSelector.
    let two = run(looped(&dates, &one), &reader, &objects, &control, &s).await;
    assert_eq!(two.dates, dates, "cumulative");
    assert_eq!((two.rows, two.files, two.invocations), (5, 5, 2));
    assert!(!two.more && two.export_dates.is_empty());
    assert_eq!(objects.keys().len(), 5);
    assert_eq!(control.last_export().await.unwrap(), Some(d(5)));
}

#[tokio::test(start_paused = true)]
async fn a_day_too_large_for_one_invocation_does_not_block_the_later_dates() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let s = settings(&[]);
    // 1,000 events: 10 pages of 4 s. The Lambda has 60 s: it gives a date up 30 s before.
    store(
        &events,
        (0..1000)
            .map(|i| event(d(1), &format!("e{i:04}"), "us-east-1"))
            .collect(),
    )
    .await;
    store(
        &events,
        vec![event(d(2), "e", "us-east-1"), event(d(3), "e", "us-east-1")],
    )
    .await;
    let reader = SlowReader {
        events: &events,
        delay: StdDuration::from_secs(4),
    };
    let deadline = Instant::now() + StdDuration::from_secs(60);
    let one = export(
        input("run-1", &[d(1), d(2), d(3)], false),
        &reader,
        &objects,
        &control,
        &iamtrail_aws::metrics::Metrics::discard(),
        &s,
        now(),
        Some(deadline),
    )
    .await
    .unwrap();
    assert!(one.dates.is_empty());
    assert_eq!(one.errors.len(), 1);
    assert!(one.errors[0].contains("2026-03-01"), "{:?}", one.errors);
    assert_eq!(one.export_dates, vec![d(2), d(3)], "the later dates go on");
    assert!(one.more);
    assert!(
        control.dirty_dates().await.unwrap().contains_key(&d(1)),
        "the big day stays due for a later run"
    );
    assert!(objects.keys().is_empty());

    let deadline = Instant::now() + StdDuration::from_secs(60);
    let next = looped(&[d(1), d(2), d(3)], &one);
    let two = export(
        next,
        &reader,
        &objects,
        &control,
        &iamtrail_aws::metrics::Metrics::discard(),
        &s,
        now(),
        Some(deadline),
    )
    .await
    .unwrap();
    assert_eq!(two.dates, vec![d(2), d(3)]);
    assert!(!two.more);
    assert!(
        two.errors.is_empty(),
        "errors are logged and reported per invocation"
    );
}

#[tokio::test]
async fn an_empty_day_writes_nothing_and_is_recorded() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let out = run(
        input("run-1", &[d(7)], false),
        &events,
        &objects,
        &control,
        &settings(&[]),
    )
    .await;
    assert_eq!(out.dates, vec![d(7)]);
    assert_eq!((out.rows, out.files), (0, 0));
    assert!(objects.keys().is_empty());
    let record = control.export_record(d(7)).await.unwrap().unwrap();
    assert_eq!((record.rows, record.keys.len()), (0, 0));
    assert_eq!(control.last_export().await.unwrap(), Some(d(7)));
}

#[tokio::test]
async fn a_region_whose_items_expired_keeps_its_file() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let s = settings(&[("PARTITION_BY_REGION", "true")]);
    let us = vec![
        event(d(5), "u1", "us-east-1"),
        event(d(5), "u2", "us-east-1"),
    ];
    store(&events, us.clone()).await;
    store(&events, vec![event(d(5), "e1", "eu-west-1")]).await;
    let out = run(
        input("run-1", &[d(5)], false),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    let (us_key, eu_key) = (
        object_key(d(5), Some("us-east-1")),
        object_key(d(5), Some("eu-west-1")),
    );
    assert_eq!(out.files, 2);
    assert_eq!(objects.keys(), vec![eu_key.clone(), us_key.clone()]);

    // eu-west-1's only item is gone; us-east-1's are still there.
    events.expire_day(d(5));
    store(&events, us).await;
    let again = run(
        input("run-2", &[d(5)], false),
        &events,
        &objects,
        &control,
        &s,
    )
    .await;
    assert_eq!(again.files, 1);
    assert_eq!(again.kept.len(), 1);
    assert_eq!(again.kept[0].key, eu_key);
    assert_eq!(objects.versions(&eu_key), 1);
    assert_eq!(parquet_rows(&objects, &eu_key), 1);
    assert_eq!(objects.versions(&us_key), 2);
    let record = control.export_record(d(5)).await.unwrap().unwrap();
    assert_eq!(record.rows, 3, "what the bucket holds for the date");
    assert_eq!(record.keys.len(), 2);
}

#[tokio::test]
async fn objects_of_another_layout_are_reported_not_deleted() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let old = "iam-events/year=2026/month=3/day=5/events_20260305_101010.parquet";
    objects
        .put_bytes(old, vec![1, 2, 3], "application/octet-stream")
        .await
        .unwrap();
    store(&events, vec![event(d(5), "e0", "us-east-1")]).await;
    let out = run(
        input("run-1", &[d(5)], false),
        &events,
        &objects,
        &control,
        &settings(&[]),
    )
    .await;
    assert_eq!(out.files, 1);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains(old) && w.contains("Athena reads it too")),
        "{:?}",
        out.warnings
    );
    assert!(objects.get(old).is_some());
}

#[tokio::test]
async fn two_racing_exports_leave_one_complete_object() {
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let s = settings(&[]);
    store(
        &events,
        (0..250)
            .map(|i| event(d(5), &format!("e{i:03}"), "us-east-1"))
            .collect(),
    )
    .await;
    let (a, b) = tokio::join!(
        run(
            input("run-a", &[d(5)], false),
            &events,
            &objects,
            &control,
            &s
        ),
        run(
            input("run-b", &[d(5)], false),
            &events,
            &objects,
            &control,
            &s
        ),
    );
    assert_eq!((a.rows, b.rows), (250, 250));
    let key = object_key(d(5), None);
    assert_eq!(objects.keys(), vec![key.clone()]);
    assert_eq!(parquet_rows(&objects, &key), 250);
}
