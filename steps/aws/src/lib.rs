//! IAM Activity Tracker AWS adapters and steps.
//!
//! The adapters (CloudTrail, DynamoDB, EC2) implement the small traits of [`ports`]; the steps
//! in [`steps`] are library functions written against those traits. [`AwsContext`] wires the
//! real adapters from an SDK configuration, and [`run_step`] is the one entry point the Lambda
//! binaries and the local stack's gateway both call.

pub mod alerts;
pub mod backoff;
pub mod cloudtrail;
pub mod dynamo;
pub mod ec2;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod limiter;
#[cfg(feature = "memory")]
pub mod memory;
pub mod metrics;
pub mod ports;
pub mod s3;
pub mod sigma;
pub mod sns;
pub mod steps;
pub mod tables;

use std::sync::Arc;
use std::time::Instant;

use aws_config::SdkConfig;
use chrono::Utc;
use iamtrail_core::contract::{AggregateInput, ListTargetsInput, WorkItem};
use iamtrail_core::sigma::SigmaRules;
use iamtrail_core::Settings;
use serde_json::Value;

use crate::alerts::DynamoAlertStore;
use crate::cloudtrail::CloudTrailSource;
use crate::dynamo::{DynamoControlStore, DynamoEventStore};
use crate::ec2::Ec2Regions;
use crate::sns::SnsNotifier;
use crate::steps::collect::CollectDeps;

/// A step failure. `error_type` becomes the Lambda `errorType`, which the state machine's
/// Retry and Catch match on: `InvalidInput` and `ConfigError` are not retried.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{error_type}: {message}")]
pub struct StepError {
    pub error_type: &'static str,
    pub message: String,
}

impl StepError {
    pub fn invalid_input(message: impl Into<String>) -> Self {
        StepError {
            error_type: "InvalidInput",
            message: message.into(),
        }
    }
    pub fn config(message: impl std::fmt::Display) -> Self {
        StepError {
            error_type: "ConfigError",
            message: message.to_string(),
        }
    }
    pub fn aws(message: impl std::fmt::Display) -> Self {
        StepError {
            error_type: "AwsError",
            message: message.to_string(),
        }
    }
}

/// Endpoint overrides (the local stack); `None` means the real AWS endpoints.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// DynamoDB, EC2 and SNS.
    pub aws: Option<String>,
    /// SNS only (the local stack routes it through the gateway for failure injection).
    pub sns: Option<String>,
    /// CloudTrail (the local stack's emulator).
    pub cloudtrail: Option<String>,
}

/// The real adapters, built once per Lambda container (or once per local stack).
pub struct AwsContext {
    pub settings: Settings,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub sns: aws_sdk_sns::Client,
    pub s3: aws_sdk_s3::Client,
    pub cloudtrail: CloudTrailSource,
    /// Where the steps' EMF metrics go (stdout in Lambda; nowhere unless set otherwise).
    pub metrics: metrics::Metrics,
    /// The Sigma rules of `SIGMA_RULES`, once loaded ([`AwsContext::sigma_rules`]).
    sigma: tokio::sync::OnceCell<Arc<SigmaRules>>,
}

impl AwsContext {
    /// Reads the settings from the environment and the SDK configuration from the usual chain.
    pub async fn from_env() -> Result<Self, StepError> {
        let settings = Settings::from_env().map_err(StepError::config)?;
        let metrics = metrics::Metrics::stdout_from_env()?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(AwsContext::new(&sdk, settings, Endpoints::default()).with_metrics(metrics))
    }

    /// Builds the adapters from an SDK configuration.
    pub fn new(sdk: &SdkConfig, settings: Settings, endpoints: Endpoints) -> Self {
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
        let mut ec2 = aws_sdk_ec2::config::Builder::from(sdk);
        let mut sns = aws_sdk_sns::config::Builder::from(sdk);
        let mut s3 = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(url) = &endpoints.aws {
            dynamodb = dynamodb.endpoint_url(url);
            ec2 = ec2.endpoint_url(url);
            // Emulators serve buckets by path, not by virtual host.
            s3 = s3.endpoint_url(url).force_path_style(true);
        }
        if let Some(url) = endpoints.sns.as_ref().or(endpoints.aws.as_ref()) {
            sns = sns.endpoint_url(url);
        }
        AwsContext {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            ec2: aws_sdk_ec2::Client::from_conf(ec2.build()),
            sns: aws_sdk_sns::Client::from_conf(sns.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            cloudtrail: CloudTrailSource::new(sdk.clone(), endpoints.cloudtrail.or(endpoints.aws)),
            settings,
            metrics: metrics::Metrics::discard(),
            sigma: tokio::sync::OnceCell::new(),
        }
    }

    /// The Sigma rules Collect evaluates (`SIGMA_RULES`, docs/sigma.md): loaded on the first
    /// call and kept for the life of the context, which is a Lambda container's (or the local
    /// stack's). A load that fails is not kept: the call fails with every rejected file and
    /// its reason (`ConfigError`), or with the read error (`AwsError`), and the next call
    /// loads again, so a fixed rule set is picked up without waiting for a new container.
    pub async fn sigma_rules(&self) -> Result<Arc<SigmaRules>, StepError> {
        let Some(location) = &self.settings.sigma_rules else {
            return Ok(Arc::default());
        };
        let rules = self
            .sigma
            .get_or_try_init(|| async {
                let rules = sigma::load_with(location, Some(&self.s3)).await?;
                tracing::info!(%location, rules = rules.len(), "Sigma rules loaded");
                Ok(Arc::new(rules))
            })
            .await
            .map_err(|e: sigma::SigmaRulesError| {
                let message = format!("SIGMA_RULES={e}");
                if e.is_transient() {
                    StepError::aws(message)
                } else {
                    StepError::config(message)
                }
            })?;
        Ok(rules.clone())
    }

    /// The same context writing the steps' metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn event_store(&self) -> DynamoEventStore {
        DynamoEventStore::new(self.dynamodb.clone(), &self.settings.events_table)
    }

    pub fn control_store(&self) -> DynamoControlStore {
        DynamoControlStore::new(self.dynamodb.clone(), &self.settings.control_table)
    }

    pub fn alert_store(&self) -> DynamoAlertStore {
        DynamoAlertStore::new(self.dynamodb.clone(), &self.settings.alerts_table)
    }

    /// The alerts topic, when one is configured.
    pub fn notifier(&self) -> Option<SnsNotifier> {
        self.settings
            .alerts_topic_arn
            .as_ref()
            .map(|arn| SnsNotifier::new(self.sns.clone(), arn))
    }

    /// The analytics bucket (`ANALYTICS_BUCKET`).
    pub fn analytics_store(&self) -> Result<s3::S3Store, StepError> {
        let bucket = self
            .settings
            .analytics_bucket
            .clone()
            .ok_or_else(|| StepError::config("ANALYTICS_BUCKET is not set"))?;
        Ok(s3::S3Store::new(
            self.s3.clone(),
            bucket,
            self.settings.export_part_size,
        ))
    }

    pub fn region_lister(&self) -> Ec2Regions {
        Ec2Regions::new(self.ec2.clone())
    }
}

/// The workflow's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    ListTargets,
    Collect,
    Aggregate,
    EvaluateAlerts,
    Export,
    /// The near-real-time path: one EventBridge event (docs/realtime.md).
    Realtime,
    /// The S3 ingestion's planning and summary (docs/ingest.md).
    IngestRun,
    /// The S3 ingestion's batch of log objects (docs/ingest.md).
    IngestObjects,
}

impl Step {
    /// The step a Lambda function name (or ARN) stands for: `...list-targets`, `...collect`,
    /// `...aggregate`, `...evaluate-alerts`, `...export`, `...realtime`.
    pub fn from_function_name(name: &str) -> Option<Step> {
        let name = name
            .rsplit(':')
            .find(|p| !p.is_empty() && !p.starts_with('$') && p.parse::<u64>().is_err())
            .unwrap_or(name);
        let name = name.to_ascii_lowercase();
        if name.ends_with("list-targets") {
            Some(Step::ListTargets)
        } else if name.ends_with("collect") {
            Some(Step::Collect)
        } else if name.ends_with("aggregate") {
            Some(Step::Aggregate)
        } else if name.ends_with("evaluate-alerts") {
            Some(Step::EvaluateAlerts)
        } else if name.ends_with("export") {
            Some(Step::Export)
        } else if name.ends_with("realtime") {
            Some(Step::Realtime)
        } else if name.ends_with("ingest-run") {
            Some(Step::IngestRun)
        } else if name.ends_with("ingest-objects") {
            Some(Step::IngestObjects)
        } else {
            None
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(payload: Value, what: &str) -> Result<T, StepError> {
    serde_json::from_value(payload)
        .map_err(|e| StepError::invalid_input(format!("{what} payload: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, StepError> {
    serde_json::to_value(value).map_err(|e| StepError {
        error_type: "InternalError",
        message: e.to_string(),
    })
}

/// Runs one step on a JSON payload. `deadline` is when the caller must have an answer (the
/// Lambda deadline); Collect stops well before it, and before its own time budget.
pub async fn run_step(
    step: Step,
    ctx: &AwsContext,
    payload: Value,
    deadline: Option<Instant>,
) -> Result<Value, StepError> {
    let now = Utc::now();
    match step {
        Step::ListTargets => {
            let input: ListTargetsInput = parse(payload, "ListTargets")?;
            let out = steps::list_targets::list_targets(
                input,
                &ctx.region_lister(),
                &ctx.control_store(),
                &ctx.settings,
                now,
            )
            .await?;
            to_json(&out)
        }
        Step::Collect => {
            let item: WorkItem = parse(payload, "Collect")?;
            let budget = Instant::now() + ctx.settings.collect_time_budget;
            let deadline = match deadline {
                // Keep a margin for the answer itself.
                Some(d) => budget.min(d.checked_sub(steps::DEADLINE_MARGIN).unwrap_or(d)),
                None => budget,
            };
            // Full records of events the table cannot hold whole go to the analytics bucket.
            let bucket = ctx.settings.analytics_bucket.clone().ok_or_else(|| {
                StepError::config(
                    "ANALYTICS_BUCKET is not set: Collect keeps the full records of oversized \
                     or unstorable events under raw-events/ in the analytics bucket",
                )
            })?;
            let objects = s3::S3Store::new(ctx.s3.clone(), bucket, ctx.settings.export_part_size);
            // A rule set that does not load fails the invocation before anything is read:
            // the checkpoints stay, and the events are read again once the rules are fixed.
            let sigma = ctx.sigma_rules().await?;
            let (events, control, alerts) =
                (ctx.event_store(), ctx.control_store(), ctx.alert_store());
            let deps = CollectDeps {
                settings: &ctx.settings,
                source: &ctx.cloudtrail,
                events: &events,
                control: &control,
                alerts: &alerts,
                objects: &objects,
                sigma: &sigma,
            };
            let out = steps::collect::collect(item, &deps, &ctx.metrics, deadline, now).await?;
            to_json(&out)
        }
        Step::EvaluateAlerts => {
            let input: steps::evaluate_alerts::EvaluateAlertsInput =
                parse(payload, "EvaluateAlerts")?;
            let out = steps::evaluate_alerts::evaluate_alerts(
                input,
                &ctx.alert_store(),
                ctx.notifier().as_ref(),
                &ctx.metrics,
                &ctx.settings,
                now,
                deadline.map(tokio::time::Instant::from_std),
            )
            .await?;
            to_json(&out)
        }
        Step::Export => {
            let input: steps::export::ExportInput = parse(payload, "Export")?;
            let bucket = ctx
                .settings
                .analytics_bucket
                .clone()
                .ok_or_else(|| StepError::config("ANALYTICS_BUCKET is not set"))?;
            let objects = s3::S3Store::new(ctx.s3.clone(), bucket, ctx.settings.export_part_size);
            let out = steps::export::export(
                input,
                &ctx.event_store(),
                &objects,
                &ctx.control_store(),
                &ctx.metrics,
                &ctx.settings,
                now,
                deadline.map(tokio::time::Instant::from_std),
            )
            .await?;
            to_json(&out)
        }
        Step::Realtime => {
            // A rule set that does not load fails the invocation, as it fails Collect.
            let sigma = ctx.sigma_rules().await?;
            let (events, control, alerts) =
                (ctx.event_store(), ctx.control_store(), ctx.alert_store());
            let notifier = ctx.notifier();
            let deps = steps::realtime::RealtimeDeps {
                settings: &ctx.settings,
                events: &events,
                control: &control,
                alerts: &alerts,
                notifier: notifier.as_ref(),
                sigma: &sigma,
            };
            let out = steps::realtime::realtime(payload, &deps, now).await?;
            to_json(&out)
        }
        Step::IngestRun => {
            let input: steps::ingest::IngestRunInput = parse(payload, "IngestRun")?;
            let objects = ctx.analytics_store()?;
            match input {
                steps::ingest::IngestRunInput::Plan(input) => {
                    let bucket = input
                        .request
                        .bucket
                        .clone()
                        .or_else(|| ctx.settings.trail_bucket.clone())
                        .unwrap_or_default();
                    let trail =
                        s3::S3Store::new(ctx.s3.clone(), bucket, ctx.settings.export_part_size);
                    let deps = steps::ingest::plan::PlanDeps {
                        settings: &ctx.settings,
                        trail: &trail,
                        objects: &objects,
                        ledger: &ctx.control_store(),
                    };
                    to_json(&steps::ingest::plan::plan(input, &deps, now).await?)
                }
                steps::ingest::IngestRunInput::Summarize(input) => {
                    to_json(&steps::ingest::summary::summarize(input, &objects).await?)
                }
            }
        }
        Step::IngestObjects => {
            use steps::ingest::notifications::{ingest_notifications, is_sqs_event, SqsEvent};
            // A batch of the Distributed Map, or the continuous mode's SQS event.
            let (batch, event) = if is_sqs_event(&payload) {
                (
                    None,
                    Some(parse::<SqsEvent>(payload, "IngestObjects (SQS)")?),
                )
            } else {
                let batch = parse::<iamtrail_core::trail::IngestBatch>(payload, "IngestObjects")?;
                (Some(batch), None)
            };
            let bucket = match &batch {
                Some(batch) => batch.bucket.clone(),
                None => ctx.settings.trail_bucket.clone().ok_or_else(|| {
                    StepError::config(
                        "TRAIL_BUCKET is not set: the continuous mode reads its objects",
                    )
                })?,
            };
            let objects = ctx.analytics_store()?;
            // A rule set that does not load fails the batch before anything is read.
            let sigma = ctx.sigma_rules().await?;
            let trail = s3::S3Store::new(
                ctx.s3.clone(),
                bucket.clone(),
                ctx.settings.export_part_size,
            );
            let (events, control, alerts) =
                (ctx.event_store(), ctx.control_store(), ctx.alert_store());
            let deps = steps::ingest::objects::IngestDeps {
                settings: &ctx.settings,
                trail: &trail,
                events: &events,
                control: &control,
                alerts: &alerts,
                objects: &objects,
                sigma: &sigma,
            };
            let deadline = deadline.map(tokio::time::Instant::from_std);
            match (batch, event) {
                (Some(batch), _) => to_json(
                    &steps::ingest::objects::ingest_objects(batch, &deps, now, deadline).await?,
                ),
                (None, Some(event)) => {
                    to_json(&ingest_notifications(event, &bucket, &deps, now, deadline).await?)
                }
                (None, None) => Err(StepError::invalid_input("IngestObjects: nothing to ingest")),
            }
        }
        Step::Aggregate => {
            let input: AggregateInput = parse(payload, "Aggregate")?;
            let out = steps::aggregate::aggregate(
                input,
                &ctx.control_store(),
                &ctx.metrics,
                &ctx.settings,
                now,
            )
            .await?;
            to_json(&out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        assert_eq!(
            Step::from_function_name("iamtrail-collect"),
            Some(Step::Collect)
        );
        assert_eq!(
            Step::from_function_name(
                "arn:aws:lambda:us-east-1:123456789012:function:stack-list-targets"
            ),
            Some(Step::ListTargets)
        );
        assert_eq!(
            Step::from_function_name(
                "arn:aws:lambda:us-east-1:123456789012:function:stack-aggregate:$LATEST"
            ),
            Some(Step::Aggregate)
        );
        assert_eq!(
            Step::from_function_name(
                "arn:aws:lambda:us-east-1:123456789012:function:stack-collect:7"
            ),
            Some(Step::Collect)
        );
        assert_eq!(
            Step::from_function_name("stack-evaluate-alerts"),
            Some(Step::EvaluateAlerts)
        );
        assert_eq!(
            Step::from_function_name("stack-realtime"),
            Some(Step::Realtime)
        );
        assert_eq!(Step::from_function_name("other"), None);
    }
}
