//! Finding a deployed stack's resources from its name: CloudFormation DescribeStacks, the
//! stack's outputs (`template.yaml`'s `Outputs`), and typed [`StackOutputs`] with errors that
//! say what to do: no such stack, a stack that failed or is rolling back, an output missing.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::Stack;

/// The `template.yaml` output keys the CLI reads. The local stack registers the same keys.
pub mod keys {
    pub const EVENTS_TABLE: &str = "EventsTableName";
    pub const CONTROL_TABLE: &str = "ControlTableName";
    pub const ALERTS_TABLE: &str = "AlertsTableName";
    pub const STATE_MACHINE: &str = "TrackerStateMachineArn";
    pub const ALERTS_TOPIC: &str = "AlertsTopicArn";
    pub const ANALYTICS_BUCKET: &str = "AnalyticsBucketName";
    pub const LIST_TARGETS_FUNCTION: &str = "ListTargetsFunctionName";
    pub const COLLECT_FUNCTION: &str = "CollectFunctionName";
    pub const AGGREGATE_FUNCTION: &str = "AggregateFunctionName";
    pub const EVALUATE_ALERTS_FUNCTION: &str = "EvaluateAlertsFunctionName";
    pub const EXPORT_FUNCTION: &str = "ExportFunctionName";
    /// The SNS topic the stack's CloudWatch alarms notify (docs/operations.md).
    pub const OPERATIONS_TOPIC: &str = "OperationsTopicArn";
    /// The S3 ingestion's state machine (docs/ingest.md); only with a trail bucket.
    pub const INGEST_STATE_MACHINE: &str = "IngestStateMachineArn";
    /// The trail bucket the S3 ingestion reads.
    pub const TRAIL_BUCKET: &str = "TrailBucketName";
}

/// Why a stack cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StackError {
    #[error("stack {stack:?} not found in {region} (deploy it, or pick it with --stack NAME / IAMTRAIL_STACK and --region)")]
    NotFound { stack: String, region: String },
    #[error("stack {stack:?} is {status}{}: its resources cannot be trusted until it is fixed (see the stack's events in the CloudFormation console, then redeploy)", .reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Unusable {
        stack: String,
        status: String,
        reason: Option<String>,
    },
    #[error("stack {stack:?} has no output {key}: is this an iamtrail stack? redeploy with the current template")]
    MissingOutput { stack: String, key: String },
    #[error("describing stack {stack:?}: {message}")]
    Aws { stack: String, message: String },
}

/// Statuses whose outputs describe working resources. `UPDATE_ROLLBACK_COMPLETE` is back on the
/// previous template; an update in progress still has the previous outputs.
const USABLE: [&str; 7] = [
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE",
];

/// A deployed stack's resources, from its outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct StackOutputs {
    pub stack: String,
    pub status: String,
    pub events_table: String,
    pub control_table: String,
    pub alerts_table: String,
    pub state_machine_arn: String,
    /// Every output, for the ones only some commands need.
    pub all: BTreeMap<String, String>,
}

impl StackOutputs {
    /// Typed outputs from a stack's name, status and outputs map.
    pub fn from_outputs(
        stack: &str,
        status: &str,
        outputs: BTreeMap<String, String>,
    ) -> Result<StackOutputs, StackError> {
        let need = |key: &str| -> Result<String, StackError> {
            outputs
                .get(key)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| StackError::MissingOutput {
                    stack: stack.to_string(),
                    key: key.to_string(),
                })
        };
        Ok(StackOutputs {
            stack: stack.to_string(),
            status: status.to_string(),
            events_table: need(keys::EVENTS_TABLE)?,
            control_table: need(keys::CONTROL_TABLE)?,
            alerts_table: need(keys::ALERTS_TABLE)?,
            state_machine_arn: need(keys::STATE_MACHINE)?,
            all: outputs,
        })
    }

    /// An output some commands need.
    pub fn output(&self, key: &str) -> Result<&str, StackError> {
        self.all
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| StackError::MissingOutput {
                stack: self.stack.clone(),
                key: key.to_string(),
            })
    }
}

/// Checks a stack's status.
pub fn check_status(stack: &str, status: &str, reason: Option<&str>) -> Result<(), StackError> {
    if USABLE.contains(&status) {
        return Ok(());
    }
    Err(StackError::Unusable {
        stack: stack.to_string(),
        status: status.to_string(),
        reason: reason.filter(|r| !r.is_empty()).map(String::from),
    })
}

/// A described stack's typed outputs, after its status check.
pub fn outputs_of(name: &str, stack: &Stack) -> Result<StackOutputs, StackError> {
    let status = stack
        .stack_status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    check_status(name, &status, stack.stack_status_reason())?;
    let outputs = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    StackOutputs::from_outputs(name, &status, outputs)
}

/// Describes the stack and reads its outputs.
pub async fn resolve(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
) -> Result<StackOutputs, StackError> {
    let region = cfn
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "the default region".into());
    let described = cfn.describe_stacks().stack_name(name).send().await;
    let described = match described {
        Ok(d) => d,
        Err(e) => {
            use aws_sdk_cloudformation::error::ProvideErrorMetadata;
            // CloudFormation answers a missing stack with a ValidationError ("Stack with id X
            // does not exist").
            let missing = e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist"));
            if missing {
                return Err(StackError::NotFound {
                    stack: name.to_string(),
                    region,
                });
            }
            return Err(StackError::Aws {
                stack: name.to_string(),
                message: aws_sdk_cloudformation::error::DisplayErrorContext(e).to_string(),
            });
        }
    };
    let stack = described
        .stacks()
        .first()
        .ok_or_else(|| StackError::NotFound {
            stack: name.to_string(),
            region,
        })?;
    outputs_of(name, stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> BTreeMap<String, String> {
        [
            (keys::EVENTS_TABLE, "s-events"),
            (keys::CONTROL_TABLE, "s-control"),
            (keys::ALERTS_TABLE, "s-alerts"),
            (
                keys::STATE_MACHINE,
                "arn:aws:states:eu-west-1:1:stateMachine:s-tracker",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn typed_outputs_and_missing_ones() {
        let out = StackOutputs::from_outputs("s", "CREATE_COMPLETE", complete()).unwrap();
        assert_eq!(out.control_table, "s-control");
        let err = out.output(keys::ANALYTICS_BUCKET).unwrap_err().to_string();
        assert!(err.contains("no output AnalyticsBucketName"), "{err}");
        let mut partial = complete();
        partial.remove(keys::STATE_MACHINE);
        let err = StackOutputs::from_outputs("s", "CREATE_COMPLETE", partial)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is this an iamtrail stack? redeploy with the current template"));
    }

    #[test]
    fn failed_and_rolling_back_stacks_are_refused() {
        for ok in [
            "CREATE_COMPLETE",
            "UPDATE_COMPLETE",
            "UPDATE_ROLLBACK_COMPLETE",
        ] {
            assert!(check_status("s", ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "CREATE_FAILED",
            "ROLLBACK_COMPLETE",
            "ROLLBACK_IN_PROGRESS",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "UPDATE_ROLLBACK_FAILED",
            "DELETE_COMPLETE",
            "CREATE_IN_PROGRESS",
        ] {
            let err = check_status("s", bad, Some("Resource creation cancelled")).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(bad) && text.contains("Resource creation cancelled"),
                "{text}"
            );
        }
    }
}
