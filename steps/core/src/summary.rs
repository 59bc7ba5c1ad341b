//! Aggregate's pure part: whether another Map round is needed, and the run summary from the
//! results of every round.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::contract::{
    AggregateInput, Continuation, Counts, RunError, RunSummary, TargetSummary, WorkItem,
};

/// A result the workflow's `CollectFailed` state made: Collect failed after its retries.
fn is_failed(result: &Value) -> bool {
    result.get("failed").and_then(Value::as_bool) == Some(true)
}

/// Every result so far: those of earlier rounds (`collected`), then this round's.
fn all_results(input: &AggregateInput) -> impl Iterator<Item = &Value> {
    input.collected.iter().chain(input.results.iter())
}

/// The items to collect again: those Collect returned with `more: true` (it stopped on its
/// time budget, or waited for the region lease) and fewer than `max_invocations` invocations.
/// `None` when there are none: this round is the final one. Collect itself turns `more` off at
/// the cap (`capped`); the bound here only keeps the workflow's loop finite whatever a result
/// says. See docs/collection.md §8.
pub fn next_round(input: &AggregateInput, max_invocations: u32) -> Option<Continuation> {
    let mut items = Vec::new();
    let mut collected = Vec::new();
    for result in all_results(input) {
        let again = match serde_json::from_value::<WorkItem>(result.clone()) {
            Ok(item) if !is_failed(result) => {
                (item.more && item.invocations < max_invocations).then_some(item)
            }
            _ => None,
        };
        match again {
            Some(item) => items.push(item),
            None => collected.push(result.clone()),
        }
    }
    if items.is_empty() {
        return None;
    }
    Some(Continuation {
        run_id: input.run_id.clone(),
        mode: input.mode,
        enabled_regions: input.enabled_regions.clone(),
        items,
        collected,
    })
}

/// Sums the results of every round. A result that is a failed item (`failed: true`, caught by
/// the workflow) or that cannot be read is reported as an error of its region; the others count.
pub fn summarize(input: &AggregateInput, now: DateTime<Utc>) -> RunSummary {
    let mut totals = Counts::default();
    let mut per_source: BTreeMap<String, Counts> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut targets = Vec::new();
    let mut invocations = 0u64;
    let mut capped_regions = Vec::new();
    let mut regions = 0;
    for result in all_results(input) {
        regions += 1;
        let region = result
            .get("region")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        if is_failed(result) {
            errors.push(RunError {
                region,
                source: None,
                error: describe_failure(result.get("error")),
            });
            continue;
        }
        let item: WorkItem = match serde_json::from_value(result.clone()) {
            Ok(item) => item,
            Err(e) => {
                errors.push(RunError {
                    region,
                    source: None,
                    error: format!("unreadable Collect result: {e}"),
                });
                continue;
            }
        };
        invocations += u64::from(item.invocations);
        // `more` still set: left with work at the workflow's bound (next_round).
        if item.capped || item.more {
            capped_regions.push(item.region.clone());
        }
        for (source, progress) in &item.progress {
            totals.add(&progress.counts);
            per_source
                .entry(source.key().to_string())
                .or_default()
                .add(&progress.counts);
            targets.push(TargetSummary {
                region: item.region.clone(),
                source: *source,
                counts: progress.counts,
                checkpoint: progress.checkpoint,
                error: progress.error.clone(),
                skipped: progress.skipped.clone(),
                warnings: progress.warnings.clone(),
            });
            if let Some(error) = &progress.error {
                errors.push(RunError {
                    region: item.region.clone(),
                    source: Some(*source),
                    error: error.clone(),
                });
            }
        }
    }
    RunSummary {
        run_id: input.run_id.clone(),
        mode: input.mode,
        status: if errors.is_empty() {
            "succeeded"
        } else {
            "partial"
        }
        .to_string(),
        regions,
        totals,
        per_source,
        targets,
        errors,
        collect_invocations: invocations,
        capped_regions,
        finished_at: now,
        export_due: false,
        export_dates: Vec::new(),
    }
}

/// The regions the results of every round name, failed items included, sorted and
/// deduplicated. Aggregate falls back to them for the export's due dates when its payload has
/// no `enabled_regions`.
pub fn result_regions(input: &AggregateInput) -> Vec<String> {
    let mut regions: Vec<String> = all_results(input)
        .filter_map(|r| r.get("region").and_then(Value::as_str))
        .map(String::from)
        .collect();
    regions.sort();
    regions.dedup();
    regions
}

/// Turns a Step Functions `{Error, Cause}` into one line. A Lambda error's cause is itself a
/// JSON document with `errorMessage`.
fn describe_failure(error: Option<&Value>) -> String {
    let Some(error) = error else {
        return "failed".to_string();
    };
    let name = error
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("Error");
    let cause = error.get("Cause").and_then(Value::as_str).unwrap_or("");
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| {
            c.get("errorMessage")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| cause.to_string());
    if message.is_empty() {
        name.to_string()
    } else {
        format!("{name}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Mode, SourceProgress};
    use crate::source::Source;
    use serde_json::json;

    #[test]
    fn sums_items_and_reports_failures() {
        let mut item = WorkItem {
            run_id: "r".into(),
            region: "us-east-1".into(),
            sources: vec![Source::Iam, Source::Sts],
            invocations: 2,
            ..Default::default()
        };
        item.progress.insert(
            Source::Iam,
            SourceProgress {
                counts: Counts {
                    fetched: 10,
                    stored: 8,
                    filtered_aws_service: 2,
                    ..Default::default()
                },
                done: true,
                ..Default::default()
            },
        );
        item.progress.insert(
            Source::Sts,
            SourceProgress {
                error: Some("AccessDenied".into()),
                ..Default::default()
            },
        );
        let failed = json!({"region": "eu-west-1", "sources": ["sts"], "failed": true,
            "error": {"Error": "Lambda.Unknown", "Cause": "{\"errorType\":\"X\",\"errorMessage\":\"boom\"}"}});
        let input = AggregateInput {
            run_id: "r".into(),
            mode: Mode::Incremental,
            execution: None,
            enabled_regions: vec![],
            collected: vec![],
            results: vec![
                serde_json::to_value(&item).unwrap(),
                failed,
                json!("garbage"),
            ],
        };
        let s = summarize(&input, Utc::now());
        assert_eq!(s.totals.fetched, 10);
        assert_eq!(s.totals.filtered(), 2);
        assert_eq!(s.per_source["iam"].stored, 8);
        assert_eq!(s.targets.len(), 2);
        assert_eq!(s.targets[0].region, "us-east-1");
        assert_eq!(s.status, "partial");
        assert_eq!(s.collect_invocations, 2);
        assert_eq!(s.errors.len(), 3);
        assert_eq!(s.errors[0].source, Some(Source::Sts));
        assert_eq!(s.errors[1].error, "Lambda.Unknown: boom");
        assert_eq!(s.errors[2].region, "unknown");
        assert_eq!(result_regions(&input), vec!["eu-west-1", "us-east-1"]);
    }

    /// A region's item as Collect returns it after `invocations` invocations.
    fn returned(region: &str, stored: u64, more: bool, invocations: u32) -> Value {
        let mut item = WorkItem {
            run_id: "r".into(),
            region: region.into(),
            sources: vec![Source::Sts],
            more,
            invocations,
            ..Default::default()
        };
        item.progress.insert(
            Source::Sts,
            SourceProgress {
                counts: Counts {
                    fetched: stored,
                    stored,
                    ..Default::default()
                },
                done: !more,
                ..Default::default()
            },
        );
        serde_json::to_value(&item).unwrap()
    }

    fn round(collected: Vec<Value>, results: Vec<Value>) -> AggregateInput {
        AggregateInput {
            run_id: "r".into(),
            mode: Mode::Incremental,
            execution: None,
            enabled_regions: vec!["eu-west-1".into(), "us-east-1".into(), "us-west-2".into()],
            collected,
            results,
        }
    }

    #[test]
    fn items_with_more_go_round_again_and_the_rest_is_carried() {
        let failed = json!({"region": "us-west-2", "sources": ["sts"], "failed": true,
            "error": {"Error": "States.Timeout", "Cause": ""}});
        let first = round(
            vec![],
            vec![
                returned("us-east-1", 50, true, 1),
                returned("eu-west-1", 3, false, 1),
                failed.clone(),
            ],
        );
        let next = next_round(&first, 3).expect("us-east-1 has more");
        assert_eq!(next.run_id, "r");
        assert_eq!(next.enabled_regions, first.enabled_regions);
        assert_eq!(next.items.len(), 1);
        assert_eq!(next.items[0].region, "us-east-1");
        assert_eq!(
            next.items[0].invocations, 1,
            "the item as Collect returned it"
        );
        assert_eq!(
            next.collected,
            vec![returned("eu-west-1", 3, false, 1), failed]
        );

        // Round 2: the state carries `collected`; us-east-1 finishes. Final, and every region
        // is counted once, with us-east-1's newest result only.
        let second = round(next.collected, vec![returned("us-east-1", 80, false, 2)]);
        assert_eq!(next_round(&second, 3), None);
        let s = summarize(&second, Utc::now());
        assert_eq!(s.regions, 3);
        assert_eq!(s.totals.stored, 83);
        assert_eq!(s.collect_invocations, 3);
        assert_eq!(s.status, "partial", "us-west-2 failed in round 1");
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].region, "us-west-2");
        assert!(s.capped_regions.is_empty());
        assert_eq!(
            result_regions(&second),
            vec!["eu-west-1", "us-east-1", "us-west-2"]
        );
    }

    #[test]
    fn the_invocation_cap_ends_the_rounds() {
        // Collect caps itself (more: false, capped: true); a result still saying more at the
        // cap is not sent round again either, and is reported like a capped one.
        let at_cap = round(vec![], vec![returned("us-east-1", 50, true, 3)]);
        assert_eq!(next_round(&at_cap, 3), None);
        assert_eq!(
            summarize(&at_cap, Utc::now()).capped_regions,
            vec!["us-east-1"]
        );
        assert!(next_round(&at_cap, 4).is_some());
        // Nothing to read again: the first round is the final one.
        let done = round(vec![], vec![returned("us-east-1", 5, false, 1)]);
        assert_eq!(next_round(&done, 3), None);
        assert_eq!(next_round(&round(vec![], vec![]), 3), None);
    }

    #[test]
    fn failed_and_unreadable_results_never_go_round_again() {
        // A failed item keeps the fields of the item it came from (more: true included).
        let mut failed = returned("us-east-1", 0, true, 1);
        failed["failed"] = json!(true);
        let input = round(vec![], vec![failed, json!({"more": true})]);
        assert_eq!(next_round(&input, 3), None);
    }
}
