//! Aggregate's pure part: a run summary from the Map results.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::contract::{AggregateInput, Counts, RunError, RunSummary, TargetSummary, WorkItem};

/// Sums the Map results. A result that is a failed item (`failed: true`, caught by the
/// workflow) or that cannot be read is reported as an error of its region; the others count.
pub fn summarize(input: &AggregateInput, now: DateTime<Utc>) -> RunSummary {
    let mut totals = Counts::default();
    let mut per_source: BTreeMap<String, Counts> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut targets = Vec::new();
    let mut invocations = 0u64;
    let mut capped_regions = Vec::new();
    for result in &input.results {
        let region = result
            .get("region")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        if result.get("failed").and_then(Value::as_bool) == Some(true) {
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
        if item.capped {
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
        regions: input.results.len(),
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

/// The regions the Map results name, failed items included, sorted and deduplicated. Aggregate
/// falls back to them for the export's due dates when its payload has no `enabled_regions`.
pub fn result_regions(input: &AggregateInput) -> Vec<String> {
    let mut regions: Vec<String> = input
        .results
        .iter()
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
}
