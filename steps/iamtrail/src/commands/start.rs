//! `iamtrail run`, `backfill` and `export`: start an execution of the deployed state machine
//! (validated here with the steps' own types first, so a bad request starts nothing), then
//! follow it to the end with the same progress line and run table as the local demo.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use iamtrail_aws::ports::RegionLister;
use iamtrail_core::config::looks_like_region;
use iamtrail_core::contract::{ExecutionInput, Mode};
use iamtrail_core::record::parse_time;
use iamtrail_core::targets::is_enabled;
use iamtrail_core::window::backfill_window;
use iamtrail_core::{Settings, Source};
use serde_json::Value;

use crate::deployed::{execution_name, Deployed};
use crate::follow::{
    alerts_line, export_line, follow_with_spinner, report, start_execution, FollowOptions,
};
use crate::render::sanitize;

/// How often a deployed execution is polled while it is followed (each poll reads its whole
/// history: GetExecutionHistory has a tight per-account rate).
pub const DEPLOYED_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The input the schedule sends (`template.yaml`, `TrackerRunSchedule`: `Input: "{}"`).
pub fn scheduled_input() -> Value {
    Value::Object(Default::default())
}

/// An execution input as JSON, without the fields left out.
fn input_json(input: &ExecutionInput) -> Value {
    let mut value = serde_json::to_value(input).expect("an execution input serialises");
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// A validated backfill input, and the warnings (a start clipped to CloudTrail's history).
/// The same checks as ListTargets, with the same library functions: RFC 3339 times, start
/// before end, something left inside CloudTrail's 90 days, known sources, region names.
pub fn backfill_input(
    start: &str,
    end: &str,
    regions: &[String],
    sources: &[String],
    now: DateTime<Utc>,
) -> Result<(Value, Vec<String>)> {
    let time = |name: &str, text: &str| {
        parse_time(text).with_context(|| {
            format!("--{name} {text:?} is not an RFC 3339 time such as 2024-01-31T00:00:00Z")
        })
    };
    let (from, to) = (time("start", start)?, time("end", end)?);
    let settings = Settings::from_lookup(|_| None).context("default settings")?;
    let (_, warning) = backfill_window(from, to, now, &settings).map_err(anyhow::Error::msg)?;
    for source in sources {
        source.parse::<Source>()?;
    }
    if let Some(bad) = regions.iter().find(|r| !looks_like_region(r)) {
        bail!("--regions: {bad:?} is not a region name such as eu-west-1");
    }
    let input = ExecutionInput {
        mode: Some(Mode::Backfill),
        start: Some(start.to_string()),
        end: Some(end.to_string()),
        regions: (!regions.is_empty()).then(|| regions.to_vec()),
        sources: (!sources.is_empty()).then(|| sources.to_vec()),
        ..Default::default()
    };
    Ok((input_json(&input), warning.into_iter().collect()))
}

/// A validated export input: `YYYY-MM-DD` dates, none in the future.
pub fn export_input(dates: &[String], force: bool, today: NaiveDate) -> Result<Value> {
    anyhow::ensure!(
        !dates.is_empty(),
        "--dates needs at least one YYYY-MM-DD date"
    );
    let mut parsed = Vec::new();
    for text in dates {
        let date = iamtrail_core::export::parse_date(text)
            .with_context(|| format!("--dates: {text:?} is not a YYYY-MM-DD date"))?;
        anyhow::ensure!(date <= today, "--dates: {date} is in the future");
        parsed.push(date);
    }
    parsed.sort();
    parsed.dedup();
    let input = ExecutionInput {
        mode: Some(Mode::Export),
        dates: Some(parsed.iter().map(|d| d.to_string()).collect()),
        force: force.then_some(true),
        ..Default::default()
    };
    Ok(input_json(&input))
}

/// Checks that the requested regions are enabled (EC2 DescribeRegions, as ListTargets does).
/// When the caller may not call DescribeRegions, says so and leaves the check to ListTargets.
pub async fn check_regions_enabled(deployed: &Deployed, regions: &[String]) -> Result<()> {
    if regions.is_empty() {
        return Ok(());
    }
    let lister = iamtrail_aws::ec2::Ec2Regions::new(aws_sdk_ec2::Client::new(&deployed.sdk));
    let listed = match lister.regions().await {
        Ok(listed) => listed,
        Err(e) => {
            eprintln!(
                "warning: could not list the enabled regions ({e}); ListTargets will check them"
            );
            return Ok(());
        }
    };
    let enabled: Vec<String> = listed
        .into_iter()
        .filter(is_enabled)
        .map(|r| r.name)
        .collect();
    let unknown: Vec<&String> = regions.iter().filter(|r| !enabled.contains(r)).collect();
    anyhow::ensure!(
        unknown.is_empty(),
        "--regions: not enabled in this account: {}",
        unknown
            .iter()
            .map(|r| sanitize(r, 40))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Starts an execution named for `kind`, then (unless `follow` is false) follows it and prints
/// how it ended. Fails when it did not succeed.
pub async fn start_and_follow(
    deployed: &Deployed,
    kind: &str,
    input: &Value,
    follow: bool,
) -> Result<()> {
    let name = execution_name(kind, Utc::now());
    let arn = start_execution(
        &deployed.sfn,
        &deployed.outputs.state_machine_arn,
        &name,
        input,
    )
    .await?;
    println!("Started {kind} execution {name}\n  input {input}\n  {arn}");
    if !follow {
        println!("Not following it (--no-follow); see `iamtrail executions` or `iamtrail status`.");
        return Ok(());
    }
    follow_to_end(deployed, &arn, &name, FollowOptions::default()).await
}

/// Follows an execution with the spinner, then prints its line, run table, alerts and export.
pub async fn follow_to_end(
    deployed: &Deployed,
    arn: &str,
    label: &str,
    options: FollowOptions,
) -> Result<()> {
    let options = FollowOptions {
        poll: Some(DEPLOYED_POLL),
        ..options
    };
    let result = follow_with_spinner(&deployed.sfn, arn, label, options).await?;
    report(&result)?;
    let output = result.output.as_ref();
    if let Some(alerts) = output.and_then(|o| o.get("alerts")) {
        println!("{}", alerts_line(alerts));
    }
    if let Some(export) = output.and_then(|o| o.get("export")) {
        let bucket = deployed
            .outputs
            .output(crate::stack::keys::ANALYTICS_BUCKET)
            .ok();
        println!("{}", export_line(export, bucket));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        parse_time("2026-11-25T08:00:00Z").unwrap()
    }

    #[test]
    fn a_valid_backfill_becomes_the_steps_input() {
        let (input, warnings) = backfill_input(
            "2026-11-20T00:00:00Z",
            "2026-11-21T00:00:00Z",
            &["eu-west-1".into()],
            &["sts".into()],
            now(),
        )
        .unwrap();
        assert_eq!(
            input,
            json!({"mode": "backfill", "start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z",
                   "regions": ["eu-west-1"], "sources": ["sts"]})
        );
        assert!(warnings.is_empty());
        // Older than CloudTrail's 90 days: clipped, with the steps' warning.
        let (_, warnings) = backfill_input(
            "2026-01-01T00:00:00Z",
            "2026-11-21T00:00:00Z",
            &[],
            &[],
            now(),
        )
        .unwrap();
        assert!(warnings[0].contains("90-day"), "{warnings:?}");
    }

    #[test]
    fn invalid_backfills_are_refused_with_the_reason() {
        let err = |s: &str, e: &str, r: &[&str], src: &[&str]| {
            let r: Vec<String> = r.iter().map(|x| x.to_string()).collect();
            let src: Vec<String> = src.iter().map(|x| x.to_string()).collect();
            backfill_input(s, e, &r, &src, now())
                .unwrap_err()
                .to_string()
        };
        let ok = "2026-11-20T00:00:00Z";
        assert!(err("yesterday", ok, &[], &[]).contains("not an RFC 3339 time"));
        assert!(err(ok, "2026-11-19T00:00:00Z", &[], &[]).contains("is not before end"));
        assert!(
            err("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", &[], &[])
                .contains("nothing CloudTrail can still return")
        );
        assert!(err(ok, "2026-11-21T00:00:00Z", &[], &["s3"]).contains("unknown source"));
        assert!(err(ok, "2026-11-21T00:00:00Z", &["EU-WEST-1"], &[]).contains("not a region name"));
    }

    #[test]
    fn export_dates_are_checked() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let dates = |d: &[&str]| d.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            export_input(
                &dates(&["2026-11-24", "2026-11-23", "2026-11-24"]),
                true,
                today
            )
            .unwrap(),
            json!({"mode": "export", "dates": ["2026-11-23", "2026-11-24"], "force": true})
        );
        assert_eq!(
            export_input(&dates(&["2026-11-24"]), false, today).unwrap(),
            json!({"mode": "export", "dates": ["2026-11-24"]})
        );
        assert!(export_input(&dates(&["24/11/2026"]), false, today).is_err());
        assert!(export_input(&dates(&["2026-11-26"]), false, today)
            .unwrap_err()
            .to_string()
            .contains("future"));
        assert!(export_input(&[], false, today).is_err());
    }
}
