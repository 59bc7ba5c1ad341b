//! What the local engine reads for each query of a query directory: files opened of the tree's,
//! bytes scanned (DataFusion's `bytes_scanned`) and the opened files' size. Used for the
//! before/after figures of partition pruning in `queries/README.md`. Not a test.
//!
//! ```sh
//! cargo run -p iamtrail-query --example scan_stats -- QUERIES_DIR TREE SINCE
//! cargo run -p iamtrail-query --example scan_stats -- queries /tmp/iamtrail-bench 2026-11-30
//! ```
//!
//! `SINCE` is any `--param since=` form; now is the real clock; `user` is bound to `user-7`.

use chrono::Utc;
use iamtrail_query::{catalog, Bindings, LocalEngine};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: scan_stats QUERIES_DIR TREE SINCE";
    let (dir, tree, since) = (
        args.next().expect(usage),
        args.next().expect(usage),
        args.next().expect(usage),
    );
    let queries = catalog::load_dir(&dir).expect("the query directory");
    let engine = LocalEngine::new(&tree).await.expect("the tree");
    println!("| query | rows | files opened | bytes scanned | size of the opened files |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for q in &queries {
        let mut pairs = vec![format!("since={since}")];
        if q.distinct_params().iter().any(|p| p.name == "user") {
            pairs.push("user=user-7".into());
        }
        let b = Bindings::from_args(q, None, &pairs, Utc::now()).expect("bindings");
        let r = engine.run(q, &b).await.expect("the query runs");
        let s = r.local_scan.expect("a local scan");
        println!(
            "| {} | {} | {} of {} | {} | {} of {} |",
            q.name,
            r.rows.len(),
            s.files_opened,
            s.files_in_tree,
            s.bytes_scanned,
            s.opened_bytes,
            s.tree_bytes
        );
    }
}
