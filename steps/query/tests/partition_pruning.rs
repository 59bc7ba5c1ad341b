//! Every query reads only the days of its window, on both layouts of the export, and the Glue
//! table that Athena queries has the same partitions as the local engine for both values of
//! `PartitionByRegion` (`docs/export.md`, "Partition pruning").
//!
//! The tree: 30 days that cross a year boundary (2025-12-10 .. 2026-01-08), each day holding
//! the same ten events (IAM changes, failed and root console sign-ins, a denied AssumeRole, IAM
//! Identity Center changes) in us-east-1 and eu-west-1.

mod common;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use common::{every_day, repo_root, temp_dir, write_tree, TempDir};
use iamtrail_query::params::{ParamValue, FROM_DAY, TO_DAY};
use iamtrail_query::{catalog, Bindings, LocalEngine, QueryFile, QueryResult, PARTITION_COLUMNS};

const FIRST_DAY: (i32, u32, u32) = (2025, 12, 10);
const DAYS: i64 = 30;
/// Regions of the fixture's events.
const REGIONS: usize = 2;

fn days() -> Vec<NaiveDate> {
    let first = NaiveDate::from_ymd_opt(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2).unwrap();
    (0..DAYS).map(|i| first + Duration::days(i)).collect()
}

/// The last day of the tree, 20:00 UTC: "now" for every query.
fn now() -> DateTime<Utc> {
    let last = *days().last().unwrap();
    Utc.from_utc_datetime(&last.and_hms_opt(20, 0, 0).unwrap())
}

fn tree(by_region: bool) -> TempDir {
    let root = temp_dir(if by_region { "prune-region" } else { "prune" });
    write_tree(root.path(), &every_day(&days()), by_region);
    root
}

fn queries() -> Vec<QueryFile> {
    let queries = catalog::load_dir(repo_root().join("queries")).expect("the queries parse");
    assert_eq!(queries.len(), 15, "the 15 queries of docs/export.md");
    queries
}

/// Bindings for a window starting at `since` (now is [`now`]); `user` gets a user of the
/// fixture.
fn window(q: &QueryFile, since: &str) -> Bindings {
    let mut pairs = vec![format!("since={since}")];
    if q.distinct_params().iter().any(|p| p.name == "user") {
        pairs.push("user=alice".into());
    }
    Bindings::from_args(q, None, &pairs, now()).unwrap()
}

/// The same bindings with the partition predicate opened to every possible day: what the
/// query returns when only `event_time >= since` limits it (the queries before pruning).
fn unpruned(q: &QueryFile, b: &Bindings) -> Bindings {
    let named = b
        .named()
        .iter()
        .map(|(name, value)| {
            let value = match name.as_str() {
                FROM_DAY => ParamValue::Day(NaiveDate::from_ymd_opt(1, 1, 1).unwrap()),
                TO_DAY => ParamValue::Day(NaiveDate::from_ymd_opt(9999, 12, 31).unwrap()),
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect();
    Bindings::from_named(q, named)
}

async fn run(engine: &LocalEngine, q: &QueryFile, b: &Bindings) -> QueryResult {
    engine
        .run(q, b)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", q.name))
}

/// For each query and each window (1 day; 10 days across the new year): the scan opens exactly
/// the window's files, and returns the same rows as the query without the partition predicate.
async fn check_pruning(by_region: bool) -> Vec<(String, QueryResult)> {
    let tree = tree(by_region);
    let engine = LocalEngine::new(tree.path()).await.unwrap();
    assert_eq!(engine.partitioned_by_region(), by_region);
    let per_day = if by_region { REGIONS } else { 1 };
    assert_eq!(engine.file_count(), DAYS as usize * per_day);
    let mut results = Vec::new();
    for q in &queries() {
        for (since, days_in_window) in [("2026-01-08", 1), ("2025-12-30 06:00", 10)] {
            let b = window(q, since);
            let pruned = run(&engine, q, &b).await;
            let scan = pruned
                .local_scan
                .expect("the local engine reports its scan");
            assert_eq!(scan.files_in_tree, DAYS as usize * per_day);
            assert_eq!(
                scan.files_opened,
                days_in_window * per_day,
                "{} with since={since} (by region: {by_region}) opened {} of {} files; its \
                 window has {days_in_window} day(s): does its WHERE still have \
                 `year * 10000 + month * 100 + day BETWEEN ? AND ?`?",
                q.name,
                scan.files_opened,
                scan.files_in_tree
            );
            assert!(scan.opened_bytes > 0 && scan.opened_bytes < scan.tree_bytes);
            let all = run(&engine, q, &unpruned(q, &b)).await;
            let all_scan = all.local_scan.unwrap();
            assert_eq!(
                all_scan.files_opened, all_scan.files_in_tree,
                "{}: without the partition predicate every file is opened",
                q.name
            );
            assert_eq!(
                pruned.rows, all.rows,
                "{} with since={since}: pruning changed the answer",
                q.name
            );
            if days_in_window == 1 {
                results.push((q.name.clone(), pruned));
            }
        }
    }
    results
}

#[tokio::test]
async fn a_window_opens_only_its_days_files() {
    let results = check_pruning(false).await;
    // The windows are not empty: the answers above are compared on real rows.
    let rows = |name: &str| {
        results
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.rows.len())
            .unwrap()
    };
    for name in [
        "user_lookup",
        "failed_auth",
        "root_usage",
        "active_users",
        "permission_changes",
        "role_assumptions",
        "daily_summary",
        "sso_permission_sets",
        "sso_account_assignments",
    ] {
        assert!(rows(name) > 0, "{name} has rows in the one-day window");
    }
}

/// `PartitionByRegion=true`: the export writes `day=D/region=R/events.parquet`. Every query runs
/// on such a tree, opens only its window's files (of every region) and gives the same answer as
/// on the tree without regions.
#[tokio::test]
async fn partition_by_region_runs_every_query_with_the_same_answers() {
    let by_region = check_pruning(true).await;
    let plain = check_pruning(false).await;
    assert_eq!(by_region.len(), 15);
    for ((name, a), (_, b)) in by_region.iter().zip(&plain) {
        assert_eq!(a.columns, b.columns, "{name}");
        assert_eq!(a.rows, b.rows, "{name}: the two layouts answer differently");
    }
}

/// The value of `key` in a YAML mapping.
fn get<'a>(value: &'a serde_yaml::Value, key: &str) -> &'a serde_yaml::Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no {key:?} in {value:?}"))
}

/// `value` as deployed with condition `PartitionByRegionEnabled` = `by_region`: every
/// `!If [Condition, a, b]` becomes a or b.
fn resolve(value: &serde_yaml::Value, by_region: bool) -> serde_yaml::Value {
    use serde_yaml::Value;
    match value {
        Value::Tagged(t) if t.tag == "!If" => {
            let args = t.value.as_sequence().expect("!If takes a list");
            let condition = args[0].as_str().unwrap();
            let chosen = match condition {
                "PartitionByRegionEnabled" if by_region => &args[1],
                "PartitionByRegionEnabled" => &args[2],
                other => panic!("the Glue table depends on condition {other}"),
            };
            resolve(chosen, by_region)
        }
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), resolve(v, by_region)))
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(s.iter().map(|v| resolve(v, by_region)).collect()),
        other => other.clone(),
    }
}

/// The Glue table of `template.yaml`, for both values of `PartitionByRegion`: partition keys
/// year/month/day (the local engine's partition columns, which the queries' partition
/// predicate uses), projected as integers (no injected region: it would need a region
/// predicate in every query), and a location template whose partition location holds the
/// export's object for that day in both layouts, region files included.
#[test]
fn the_glue_table_covers_both_export_layouts() {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let template: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let resources = get(&template, "Resources").as_mapping().unwrap();
    let tables: Vec<_> = resources
        .values()
        .filter(|r| r.get("Type").and_then(|t| t.as_str()) == Some("AWS::Glue::Table"))
        .collect();
    assert_eq!(tables.len(), 1, "one Glue table");
    let input = get(get(tables[0], "Properties"), "TableInput");
    for by_region in [false, true] {
        let table = resolve(input, by_region);
        let keys: Vec<(&str, &str)> = get(&table, "PartitionKeys")
            .as_sequence()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    get(k, "Name").as_str().unwrap(),
                    get(k, "Type").as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            PARTITION_COLUMNS.map(|c| (c, "int")),
            "PartitionByRegion={by_region}"
        );
        let params = get(&table, "Parameters");
        assert_eq!(get(params, "projection.enabled").as_str(), Some("true"));
        for (key, value) in params.as_mapping().unwrap() {
            let key = key.as_str().unwrap();
            if let Some(rest) = key.strip_prefix("projection.") {
                let column = rest.split('.').next().unwrap();
                assert!(
                    column == "enabled" || PARTITION_COLUMNS.contains(&column),
                    "{key} (PartitionByRegion={by_region}): only year/month/day are projected"
                );
                if rest.ends_with(".type") {
                    assert_eq!(value.as_str(), Some("integer"), "{key}");
                }
            }
        }
        let location = match get(params, "storage.location.template") {
            serde_yaml::Value::Tagged(t) if t.tag == "!Sub" => t.value.as_str().unwrap(),
            other => panic!("storage.location.template is {other:?}, expected !Sub"),
        };
        for day in [
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        ] {
            let partition = location
                .replace("${AnalyticsBucket}", "bucket")
                .replace("${!year}", &day.format("%Y").to_string())
                .replace("${!month}", &day.format("%-m").to_string())
                .replace("${!day}", &day.format("%-d").to_string());
            assert!(
                partition.ends_with('/'),
                "{partition}: a day's location ends with /"
            );
            let region = by_region.then_some("eu-west-1");
            let object = format!(
                "s3://bucket/{}",
                iamtrail_core::export::object_key(day, region)
            );
            assert!(
                object.starts_with(&partition),
                "PartitionByRegion={by_region}: {object} is not under its partition {partition}"
            );
            // ... and not under another day's (day=1 must not take in day=10 .. day=19).
            let next = partition.replace(
                &format!("day={}/", day.format("%-d")),
                &format!("day={}0/", day.format("%-d")),
            );
            assert!(!next.starts_with(&partition));
        }
    }
}
