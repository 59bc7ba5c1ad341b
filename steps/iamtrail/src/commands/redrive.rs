//! `iamtrail redrive EXECUTION`: RedriveExecution for a failed, timed-out or aborted execution
//! within Step Functions' 14-day redrive window, checked first with DescribeExecution so the
//! refusal says why; then follows the redriven attempt.

use anyhow::{bail, Context, Result};
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::{ExecutionRedriveStatus, ExecutionStatus};
use chrono::{DateTime, Utc};
use iamtrail_core::record::format_time;

use crate::commands::start::follow_to_end;
use crate::deployed::{to_chrono, Deployed};
use crate::follow::FollowOptions;
use crate::local::sdk_error;
use crate::render::sanitize;

/// Step Functions redrives executions that stopped less than this many days ago.
pub const REDRIVE_WINDOW_DAYS: i64 = 14;

/// Why an execution cannot be redriven, from what DescribeExecution says; `None` when it can.
pub fn refusal(described: &DescribeExecutionOutput, now: DateTime<Utc>) -> Option<String> {
    let name = sanitize(described.name().unwrap_or_default(), 80);
    match described.status() {
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive => {
            return Some(format!(
                "execution {name} is still running ({}); nothing to redrive",
                described.status().as_str()
            ))
        }
        ExecutionStatus::Succeeded => {
            return Some(format!(
                "execution {name} succeeded; only a failed, timed-out or aborted execution can be redriven"
            ))
        }
        _ => {}
    }
    if let Some(stopped) = described.stop_date().and_then(to_chrono) {
        if now - stopped > chrono::Duration::days(REDRIVE_WINDOW_DAYS) {
            return Some(format!(
                "execution {name} stopped at {}, more than {REDRIVE_WINDOW_DAYS} days ago: Step Functions redrives only within {REDRIVE_WINDOW_DAYS} days; re-read that range with `iamtrail backfill --start ... --end ...` instead",
                format_time(stopped)
            ));
        }
    }
    if described.redrive_status() == Some(&ExecutionRedriveStatus::NotRedrivable) {
        return Some(format!(
            "execution {name} is not redrivable: {}",
            sanitize(
                described
                    .redrive_status_reason()
                    .unwrap_or("no reason given"),
                300
            )
        ));
    }
    None
}

/// `iamtrail redrive`.
pub async fn run(deployed: &Deployed, execution: &str, follow: bool) -> Result<()> {
    let arn = deployed.execution_arn(execution)?;
    let described = match deployed
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
    {
        Ok(d) => d,
        Err(e) if e.code() == Some("ExecutionDoesNotExist") => bail!(
            "execution {} not found in {}",
            sanitize(execution, 200),
            deployed.outputs.state_machine_arn
        ),
        Err(e) => return Err(sdk_error(e)).context("DescribeExecution"),
    };
    if let Some(reason) = refusal(&described, Utc::now()) {
        bail!(reason);
    }
    let name = described.name().unwrap_or(execution).to_string();
    let redriven = deployed
        .sfn
        .redrive_execution()
        .execution_arn(&arn)
        .send()
        .await;
    let redriven = match redriven {
        Ok(r) => r,
        Err(e) if e.code() == Some("ExecutionNotRedrivable") => bail!(
            "execution {} is not redrivable: {}",
            sanitize(&name, 80),
            sanitize(e.message().unwrap_or(""), 300)
        ),
        Err(e) => return Err(sdk_error(e)).context("RedriveExecution"),
    };
    println!(
        "Redrove execution {} ({} before, redrive {} at {})",
        sanitize(&name, 80),
        described.status().as_str(),
        described.redrive_count().unwrap_or(0) + 1,
        to_chrono(redriven.redrive_date())
            .map(format_time)
            .unwrap_or_default()
    );
    if !follow {
        println!("Not following it (--no-follow); see `iamtrail executions` or `iamtrail status`.");
        return Ok(());
    }
    let options = FollowOptions {
        redrive_count: Some(described.redrive_count().unwrap_or(0) + 1),
        ..Default::default()
    };
    follow_to_end(deployed, &arn, &name, options).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::DateTime as SdkTime;

    fn described(status: ExecutionStatus, stopped_days_ago: i64) -> DescribeExecutionOutput {
        let now = Utc::now();
        DescribeExecutionOutput::builder()
            .execution_arn("arn:aws:states:us-east-1:1:execution:m:x")
            .state_machine_arn("arn:aws:states:us-east-1:1:stateMachine:m")
            .name("x")
            .status(status)
            .start_date(SdkTime::from_secs(
                (now - chrono::Duration::days(stopped_days_ago + 1)).timestamp(),
            ))
            .stop_date(SdkTime::from_secs(
                (now - chrono::Duration::days(stopped_days_ago)).timestamp(),
            ))
            .build()
            .unwrap()
    }

    #[test]
    fn refusals_say_why() {
        let now = Utc::now();
        assert_eq!(refusal(&described(ExecutionStatus::Failed, 1), now), None);
        assert_eq!(
            refusal(&described(ExecutionStatus::TimedOut, 13), now),
            None
        );
        let says = |s: ExecutionStatus, days: i64, what: &str| {
            let text = refusal(&described(s, days), now).unwrap();
            assert!(text.contains(what), "{text}");
        };
        says(ExecutionStatus::Running, 0, "still running");
        says(ExecutionStatus::Succeeded, 1, "succeeded");
        says(ExecutionStatus::Aborted, 15, "more than 14 days ago");
    }
}
