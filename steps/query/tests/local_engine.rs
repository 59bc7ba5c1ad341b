//! The local engine over a Parquet tree with the export's exact schema: every query of the
//! repository's `queries/` plans and runs on DataFusion, parameters are bound (an injection
//! attempt matches nothing), the window and the hive partitions work.

mod common;

use std::path::Path;

use chrono::{Datelike, Duration, Utc};
use common::{events, repo_root, temp_dir, write_tree, TempDir};
use iamtrail_query::{
    catalog, render_csv, render_json, render_table, Bindings, Error, LocalEngine, ParamKind,
    QueryFile,
};

fn fixture(by_region: bool) -> TempDir {
    let root = temp_dir(if by_region { "region" } else { "plain" });
    write_tree(root.path(), &events(Utc::now()), by_region);
    root
}

fn inline_query(name: &str, params: &str, sql: &str) -> QueryFile {
    QueryFile::parse(
        Path::new(&format!("{name}.sql")),
        &format!("-- name: {name}\n-- description: test\n-- params: {params}\n{sql}\n"),
    )
    .unwrap()
}

fn bind(query: &QueryFile, pairs: &[&str]) -> Bindings {
    let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
    Bindings::from_args(query, None, &pairs, Utc::now()).unwrap()
}

#[tokio::test]
async fn every_repository_query_runs_on_datafusion() {
    let dir = repo_root().join("queries");
    let has_files = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .unwrap_or(false);
    if !has_files {
        iamtrail_local::missing_test_dependency(
            format!("{} has no .sql files: there are no queries to run", dir.display()),
            "restore the repository's queries/*.sql (git checkout -- queries) or run from a full clone",
        );
    }
    let queries = catalog::load_dir(&dir).expect("every query file has a valid header");
    for partitioned in [false, true] {
        let tree = fixture(partitioned);
        let engine = LocalEngine::new(tree.path()).await.unwrap();
        let mut failures = Vec::new();
        for q in &queries {
            // Any value will do for string parameters; `user` gets a user of the fixture.
            let pairs: Vec<String> = q
                .distinct_params()
                .iter()
                .filter(|p| p.name != "since" && p.kind != ParamKind::Day)
                .map(|p| match p.kind {
                    ParamKind::Day => unreachable!("derived from the window, filtered out"),
                    ParamKind::String if p.name.contains("user") => format!("{}=alice", p.name),
                    ParamKind::String => format!("{}=alice", p.name),
                    ParamKind::Timestamp => format!("{}={}", p.name, Utc::now().to_rfc3339()),
                })
                .collect();
            let bindings = Bindings::from_args(q, None, &pairs, Utc::now()).unwrap();
            match engine.run(q, &bindings).await {
                Ok(result) => {
                    eprintln!(
                        "{} ({} rows, partitioned by region: {partitioned}):\n{}",
                        q.name,
                        result.rows.len(),
                        render_table(&result, 40)
                    );
                    // The output formats handle whatever the query returns.
                    let _ = render_json(&result);
                    let _ = render_csv(&result);
                }
                Err(e) => failures.push(format!("  {}: {e}", q.name)),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} queries in {} do not plan/run on DataFusion \
             (partitioned by region: {partitioned}):\n{}",
            failures.len(),
            queries.len(),
            dir.display(),
            failures.join("\n")
        );
        if let Ok(q) = catalog::find(&queries, "root_usage") {
            let r = engine.run(q, &bind(q, &[])).await.unwrap();
            assert!(
                !r.rows.is_empty(),
                "root_usage finds the fixture's root login"
            );
        }
    }
}

#[tokio::test]
async fn string_parameters_are_bound_not_spliced() {
    let tree = fixture(false);
    let engine = LocalEngine::new(tree.path()).await.unwrap();
    let mut queries = vec![inline_query(
        "lookup",
        "since:timestamp, user:string",
        "SELECT event_id, user_name FROM iam_events WHERE event_time >= ? AND user_name = ? ORDER BY event_id",
    )];
    // The repository's user_lookup too, once it exists.
    if let Ok(all) = catalog::load_dir(repo_root().join("queries")) {
        if let Ok(q) = catalog::find(&all, "user_lookup") {
            queries.push(q.clone());
        }
    }
    for q in &queries {
        let user_param = q
            .distinct_params()
            .iter()
            .find(|p| p.kind == ParamKind::String)
            .map(|p| p.name.clone())
            .expect("a string parameter");
        // Spliced, this would be `user_name = 'x' OR '1'='1'` and match every row.
        let injected = engine
            .run(q, &bind(q, &[&format!("{user_param}=x' OR '1'='1")]))
            .await
            .unwrap();
        assert_eq!(
            injected.rows,
            Vec::<Vec<Option<String>>>::new(),
            "{}",
            q.name
        );
        // A real user with a quote in its name is matched exactly.
        let quoted = engine
            .run(q, &bind(q, &[&format!("{user_param}=x'")]))
            .await
            .unwrap();
        assert_eq!(quoted.rows.len(), 1, "{}: {:?}", q.name, quoted.rows);
        let alice = engine
            .run(q, &bind(q, &[&format!("{user_param}=alice")]))
            .await
            .unwrap();
        // Three in the window; the 30-day-old one is outside --days 7.
        assert_eq!(alice.rows.len(), 3, "{}: {:?}", q.name, alice.rows);
        if alice.columns.iter().any(|c| c == "user_name") {
            assert!(alice
                .column("user_name")
                .iter()
                .all(|u| *u == Some("alice")));
        }
    }
}

#[tokio::test]
async fn window_partitions_and_types() {
    for by_region in [false, true] {
        let tree = fixture(by_region);
        let root = tree.path();
        // Both the bucket root and the iam-events/ directory are accepted.
        for dir in [root.to_path_buf(), root.join("iam-events")] {
            let engine = LocalEngine::new(&dir).await.unwrap();
            assert_eq!(engine.partitioned_by_region(), by_region);
            // The same columns for both layouts (the Glue table's): no `region` column.
            let q = inline_query(
                "parts",
                "since:timestamp",
                "SELECT event_id, year, month, day, aws_region, event_time, mfa_used \
                 FROM iam_events WHERE event_time >= ? ORDER BY event_time",
            );
            let r = engine.run(&q, &bind(&q, &[])).await.unwrap();
            assert_eq!(
                r.rows.len(),
                10,
                "the 30-day-old event is outside the window"
            );
            assert!(!r.column("event_id").contains(&Some("old")));
            // Partition values come from the path and match the event dates.
            let times = r.column("event_time");
            for (i, t) in times.iter().enumerate() {
                let t = t.unwrap();
                assert_eq!(t.len(), "2024-01-01 00:00:00.000".len(), "{t}");
                let date = chrono::NaiveDate::parse_from_str(&t[..10], "%Y-%m-%d").unwrap();
                assert_eq!(r.column("year")[i], Some(date.year().to_string().as_str()));
                assert_eq!(
                    r.column("month")[i],
                    Some(date.month().to_string().as_str())
                );
                assert_eq!(r.column("day")[i], Some(date.day().to_string().as_str()));
            }
            if by_region {
                let e = engine
                    .run_sql("SELECT region FROM iam_events", &[])
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("region"), "no region column: {e}");
            }
            assert_eq!(
                r.column_types[1],
                iamtrail_query::ColumnType::Integer,
                "year is Int32"
            );
            // A pruned partition predicate works too.
            let yesterday = Utc::now() - Duration::days(1);
            let q2 = inline_query(
                "day",
                "since:timestamp",
                &format!(
                    "SELECT count(*) AS n FROM iam_events WHERE event_time >= ? \
                     AND year = {} AND month = {} AND day = {}",
                    yesterday.year(),
                    yesterday.month(),
                    yesterday.day()
                ),
            );
            let n = engine.run(&q2, &bind(&q2, &[])).await.unwrap();
            assert_eq!(n.rows, vec![vec![Some("6".to_string())]]);
            // --param since= overrides the window.
            let all = Bindings::from_args(&q, None, &["since=2000-01-01".to_string()], Utc::now())
                .unwrap();
            assert_eq!(engine.run(&q, &all).await.unwrap().rows.len(), 11);
        }
    }
}

#[tokio::test]
async fn missing_or_empty_data_is_a_clear_error() {
    let tree = temp_dir("empty");
    let empty = tree.path();
    std::fs::create_dir_all(empty.join("iam-events/year=2024/month=1/day=1")).unwrap();
    for dir in [empty.to_path_buf(), empty.join("does-not-exist")] {
        let e = LocalEngine::new(&dir).await.unwrap_err();
        assert!(matches!(e, Error::NoData(_)), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "no exported Parquet under {}; run an export first",
                dir.display()
            )),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_tree_with_both_layouts_is_refused() {
    let tree = temp_dir("mixed");
    write_tree(tree.path(), &events(Utc::now())[..2], false);
    write_tree(tree.path(), &events(Utc::now())[2..4], true);
    let e = LocalEngine::new(tree.path()).await.unwrap_err().to_string();
    assert!(e.contains("mixes two layouts"), "{e}");
}

#[tokio::test]
async fn a_query_that_does_not_plan_names_itself() {
    let tree = fixture(false);
    let engine = LocalEngine::new(tree.path()).await.unwrap();
    let q = inline_query(
        "broken",
        "since:timestamp",
        "SELECT no_such_column FROM iam_events WHERE event_time >= ?",
    );
    let e = engine
        .run(&q, &bind(&q, &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("query broken (broken.sql) on the local engine:"),
        "{e}"
    );
    assert!(e.contains("no_such_column"), "{e}");
}
