//! The local stack (README "Local stack details"; docs/architecture.md §3): moto server for AWS
//! services, our gateway for Lambda Invoke and CloudTrail, the tables created from the same
//! definitions as `template.yaml`, and the state machine registered from
//! `statemachine/tracker.asl.json`. Executions are real: moto's Step Functions interpreter runs
//! the ASL and calls the gateway, which runs the step functions in-process against moto over
//! HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::config::Credentials;
use iamtrail_aws::metrics::{Metrics, MetricsSink};
use iamtrail_aws::tables::{create_table, table_specs};
use iamtrail_aws::{run_step, AwsContext, Endpoints, Step};
use iamtrail_core::Settings;
use iamtrail_local::{
    CloudTrailEmulator, EmulatorOptions, EmulatorStats, FaultPlan, FunctionError, Gateway,
    GatewayConfig, InvalidItemFault, LambdaRegistry, MotoOptions, MotoServer, RequestCounts,
    TextMatch, UnprocessedItemsFault, UploadPartFault, SMALL_S3_PART_SIZE,
};
use serde_json::Value;

/// moto's default account.
pub const LOCAL_ACCOUNT: &str = "123456789012";
/// The local stack's region (the state machine's, and the IAM region).
pub const LOCAL_REGION: &str = "us-east-1";

/// How to start a local stack.
#[derive(Clone)]
pub struct LocalOptions {
    /// The repository root (for `.venv`, `statemachine/`).
    pub repo_root: PathBuf,
    /// The stack name: tables are `{stack}-events`, ...
    pub stack_name: String,
    /// A directory of CloudTrail log files for the emulator (`None`: start empty).
    pub dataset: Option<PathBuf>,
    /// Throttling, time shift, failure injection, clock.
    pub emulator: EmulatorOptions,
    /// Environment-style settings (`PROCESS_STS_EVENTS`, `FILTERED_ROLES`, ...), on top of the
    /// process environment.
    pub settings: HashMap<String, String>,
    /// The Map's `MaxConcurrency`.
    pub map_max_concurrency: u32,
    /// Where moto writes its log.
    pub moto_log: Option<PathBuf>,
    /// Failure injection for tests: Collect invocations for these regions fail as a Lambda
    /// function error (`InjectedFailure`), as a crashed or timed-out function would.
    pub fail_collect_regions: Vec<String>,
    /// S3's minimum multipart part size in moto (`S3_UPLOAD_PART_MIN_SIZE`): by default
    /// [`SMALL_S3_PART_SIZE`] (256 bytes), so that tests can upload multipart files of a few
    /// KB; `None` keeps AWS's 5 MiB.
    pub s3_part_min_size: Option<u64>,
    /// Where the steps' EMF metrics go (namespace `IamTrail/<stack name>`, as deployed);
    /// `None` drops them. See docs/metrics.md.
    pub metrics: Option<Arc<dyn MetricsSink>>,
    /// Accounts the local trail bucket holds a copy of the dataset for, beside the dataset's
    /// own (docs/ingest.md, "On the local stack").
    pub trail_copies: Vec<String>,
}

impl LocalOptions {
    /// Defaults for a repository root: stack `iamtrail`, no dataset, no throttling.
    pub fn new(repo_root: impl Into<PathBuf>) -> Self {
        LocalOptions {
            repo_root: repo_root.into(),
            stack_name: "iamtrail".into(),
            dataset: None,
            emulator: EmulatorOptions::default(),
            settings: HashMap::new(),
            map_max_concurrency: 10,
            moto_log: None,
            fail_collect_regions: Vec::new(),
            s3_part_min_size: Some(SMALL_S3_PART_SIZE),
            metrics: None,
            trail_copies: vec![iamtrail_core::synthetic_trail::SECOND_ACCOUNT.to_string()],
        }
    }
}

/// A running local stack. Dropping it stops moto and the gateway.
pub struct LocalStack {
    pub options: LocalOptions,
    pub moto: MotoServer,
    pub gateway: Gateway,
    pub emulator: Arc<CloudTrailEmulator>,
    pub context: Arc<AwsContext>,
    pub sdk: aws_config::SdkConfig,
    pub state_machine_arn: Option<String>,
}

/// How an execution ended (see [`crate::follow`]).
pub use crate::follow::ExecutionResult;

/// Settings for a stack name: table names from the stack, then the overrides, then the
/// process environment.
pub fn local_settings(stack: &str, overrides: &HashMap<String, String>) -> Result<Settings> {
    let mut values: HashMap<String, String> = HashMap::new();
    values.insert("EVENTS_TABLE".into(), format!("{stack}-events"));
    values.insert("CONTROL_TABLE".into(), format!("{stack}-control"));
    values.insert("ALERTS_TABLE".into(), format!("{stack}-alerts"));
    values.insert("ALERTS_TOPIC_ARN".into(), topic_arn(stack));
    values.insert("ANALYTICS_BUCKET".into(), analytics_bucket(stack));
    values.insert("COLLECT_TIME_BUDGET_SECONDS".into(), "600".into());
    let from_env = |k: &str| std::env::var(k).ok();
    let settings = Settings::from_lookup(|k| {
        overrides
            .get(k)
            .cloned()
            .or_else(|| {
                // The stack's own resources never come from the shell: a real topic ARN
                // exported for `iamtrail test-alert` must not leak into the local stack.
                if k.ends_with("_TABLE") || k == "ALERTS_TOPIC_ARN" || k == "ANALYTICS_BUCKET" {
                    None
                } else {
                    from_env(k)
                }
            })
            .or_else(|| values.get(k).cloned())
    })?;
    Ok(settings)
}

/// Substitutes `${Name}` in the ASL text; fails if any placeholder is left.
pub fn render_asl(text: &str, substitutions: &[(&str, String)]) -> Result<String> {
    let mut out = text.to_string();
    for (name, value) in substitutions {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    if let Some(pos) = out.find("${") {
        let rest: String = out[pos..].chars().take(40).collect();
        bail!("state machine definition has an unsubstituted placeholder near {rest:?}");
    }
    serde_json::from_str::<Value>(&out)
        .context("state machine definition is not valid JSON after substitution")?;
    Ok(out)
}

/// An SDK error with its full context (service code, message, request id) as an `anyhow`.
pub fn sdk_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!(aws_sdk_sfn::error::DisplayErrorContext(e).to_string())
}

/// The local analytics bucket (as the template names it, with moto's account).
pub fn analytics_bucket(stack: &str) -> String {
    format!("{stack}-analytics-{LOCAL_ACCOUNT}")
}

/// The local trail bucket: the dataset in an organisation trail's layout (docs/ingest.md).
pub fn trail_bucket(stack: &str) -> String {
    format!("{stack}-trail-{LOCAL_ACCOUNT}")
}

/// The local alerts topic's ARN (moto's ARNs are deterministic).
pub fn topic_arn(stack: &str) -> String {
    format!("arn:aws:sns:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{stack}-alerts")
}

/// The local operations topic's ARN (`OperationsTopicArn`): the alarms notify it.
pub fn operations_topic_arn(stack: &str) -> String {
    format!("arn:aws:sns:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{stack}-operations")
}

/// The SQS queue subscribed to the local alerts topic: it plays the mailbox.
pub fn mailbox_queue(stack: &str) -> String {
    format!("{stack}-alerts-mailbox")
}

/// An alert as a subscriber receives it (the SNS envelope delivered to SQS).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedAlert {
    pub message_id: String,
    pub subject: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
    /// When the message reached the mailbox queue (SQS `SentTimestamp`).
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl ReceivedAlert {
    /// The alert's CloudTrail event id (the body's `Event ID` line); `None` for a root
    /// session's email, which lists several calls.
    pub fn event_id(&self) -> Option<&str> {
        let mut ids = self
            .body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- Event ID: "));
        let id = ids.next()?;
        ids.next().is_none().then_some(id.trim())
    }
}

/// The ARN of the local S3 ingestion state machine (moto's ARNs are deterministic).
pub fn ingest_state_machine_arn(stack: &str) -> String {
    format!("arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:{stack}-s3-ingest")
}

/// The ARN of a local Lambda function.
pub fn function_arn(stack: &str, step: &str) -> String {
    format!("arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{stack}-{step}")
}

/// An SDK configuration for the local stack (static test credentials, us-east-1).
pub async fn local_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(LOCAL_REGION))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "iamtrail-local",
        ))
        .load()
        .await
}

/// One alarm the local stack creates in moto, as `template.yaml` declares it.
struct LocalAlarm<'a> {
    name: &'static str,
    namespace: &'a str,
    metric: &'static str,
    dimension: Option<(&'static str, &'a str)>,
    statistic: aws_sdk_cloudwatch::types::Statistic,
    comparison: aws_sdk_cloudwatch::types::ComparisonOperator,
    threshold: f64,
    period: i32,
    evaluations: i32,
    missing: &'static str,
    ok_actions: bool,
}

impl LocalStack {
    /// Starts the gateway, then moto (with `MOTO_PORT` = the gateway's port so its Step
    /// Functions engine calls the gateway), then wires the gateway to moto.
    pub async fn start(options: LocalOptions) -> Result<LocalStack> {
        let emulator = Arc::new(match &options.dataset {
            Some(dir) => CloudTrailEmulator::from_dir(dir, options.emulator.clone())
                .with_context(|| format!("loading CloudTrail logs from {}", dir.display()))?,
            None => CloudTrailEmulator::new(options.emulator.clone()),
        });
        let settings = local_settings(&options.stack_name, &options.settings)?;
        let sdk = local_sdk_config().await;

        // The Lambda functions need the endpoints, known only once both servers run: the
        // context goes in a cell the registry reads at call time.
        let cell: Arc<tokio::sync::OnceCell<Arc<AwsContext>>> =
            Arc::new(tokio::sync::OnceCell::new());
        let mut registry = LambdaRegistry::new();
        for (name, step) in [
            ("list-targets", Step::ListTargets),
            ("collect", Step::Collect),
            ("aggregate", Step::Aggregate),
            ("evaluate-alerts", Step::EvaluateAlerts),
            ("export", Step::Export),
            ("realtime", Step::Realtime),
            ("ingest-run", Step::IngestRun),
            ("ingest-objects", Step::IngestObjects),
        ] {
            let cell = cell.clone();
            let failing = options.fail_collect_regions.clone();
            registry = registry.with(
                format!("{}-{name}", options.stack_name),
                move |payload: Value| {
                    let cell = cell.clone();
                    let region = payload
                        .get("region")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let inject = step == Step::Collect && failing.contains(&region);
                    async move {
                        if inject {
                            return Err(FunctionError::new(
                                "InjectedFailure",
                                format!("injected Collect failure for {region}"),
                            ));
                        }
                        let context = cell.get().cloned().ok_or_else(|| {
                            FunctionError::new("NotReady", "local stack is starting")
                        })?;
                        run_step(step, &context, payload, None)
                            .await
                            .map_err(|e| FunctionError::new(e.error_type, e.message))
                    }
                },
            );
        }
        let gateway = Gateway::start(GatewayConfig {
            upstream: None,
            lambda: Some(Arc::new(registry)),
            cloudtrail: Some(emulator.clone()),
        })
        .await
        .context("starting the gateway")?;
        let moto_bin = iamtrail_local::find_moto_server(&options.repo_root)?;
        let moto = MotoServer::start(MotoOptions {
            moto_server_bin: moto_bin,
            moto_port_env: gateway.port(),
            log_file: options.moto_log.clone(),
            s3_upload_part_min_size: options.s3_part_min_size,
        })
        .await
        .context("starting moto server")?;
        gateway.set_upstream(moto.endpoint());
        let metrics = match &options.metrics {
            Some(sink) => Metrics::for_stack(&options.stack_name, sink.clone())?,
            None => Metrics::discard(),
        };
        let context = Arc::new(
            AwsContext::new(
                &sdk,
                settings,
                // Every AWS call of the steps goes through the gateway (which proxies to moto), so
                // tests can inject faults into DynamoDB, SNS and S3 and count the requests.
                Endpoints {
                    aws: Some(gateway.endpoint()),
                    cloudtrail: Some(gateway.endpoint()),
                    sns: Some(gateway.endpoint()),
                },
            )
            .with_metrics(metrics),
        );
        cell.set(context.clone()).ok();
        Ok(LocalStack {
            options,
            moto,
            gateway,
            emulator,
            context,
            sdk,
            state_machine_arn: None,
        })
    }

    /// A DynamoDB client on moto directly, for the harness: its requests bypass the gateway,
    /// so faults never touch them and the gateway does not count them. The steps' own client
    /// (`context.dynamodb`) goes through the gateway.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(&self.sdk)
            .endpoint_url(self.moto.endpoint())
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    /// A Step Functions client on moto.
    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        let conf = aws_sdk_sfn::config::Builder::from(&self.sdk)
            .endpoint_url(self.moto.endpoint())
            .build();
        aws_sdk_sfn::Client::from_conf(conf)
    }

    /// A CloudWatch client on moto (which stores alarms but does not evaluate them).
    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        let conf = aws_sdk_cloudwatch::config::Builder::from(&self.sdk)
            .endpoint_url(self.moto.endpoint())
            .build();
        aws_sdk_cloudwatch::Client::from_conf(conf)
    }

    /// An SQS client on moto.
    /// An SNS client of moto.
    fn sns(&self) -> aws_sdk_sns::Client {
        let conf = aws_sdk_sns::config::Builder::from(&self.sdk)
            .endpoint_url(self.moto.endpoint())
            .build();
        aws_sdk_sns::Client::from_conf(conf)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let conf = aws_sdk_sqs::config::Builder::from(&self.sdk)
            .endpoint_url(self.moto.endpoint())
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    // ---- Fault injection (all off by default) -------------------------------------------
    //
    // The gateway injects the faults into the steps' AWS traffic as the real services fail
    // (see `iamtrail_local::gateway`). Each setter changes one fault and keeps the others;
    // changing a fault restarts that fault's own counters (its decision sequence, its
    // `max_batches`/`times` budget).

    /// Replaces the whole fault plan (restarting every fault's counters).
    pub fn set_faults(&self, plan: FaultPlan) {
        self.gateway.set_fault_plan(plan);
    }

    /// Changes the fault plan in place.
    pub fn update_faults(&self, change: impl FnOnce(&mut FaultPlan)) {
        self.gateway.update_fault_plan(change);
    }

    /// The current fault plan.
    pub fn faults(&self) -> FaultPlan {
        self.gateway.fault_plan()
    }

    /// Turns every fault off.
    pub fn clear_faults(&self) {
        self.gateway.set_fault_plan(FaultPlan::default());
    }

    /// Makes every SNS Publish fail (HTTP 500 `InternalError` from the gateway) until called
    /// with `false`.
    pub fn fail_sns_publish(&self, fail: bool) {
        self.update_faults(|p| p.sns_publish_fail = fail.then_some(TextMatch::Any));
    }

    /// Makes SNS Publish fail (HTTP 500 `InternalError`) for messages whose subject or body
    /// contains `pattern`; `None` turns it off.
    pub fn fail_sns_publish_matching(&self, pattern: Option<&str>) {
        self.update_faults(|p| p.sns_publish_fail = pattern.map(TextMatch::contains));
    }

    /// Delays every SNS Publish by `delay` before it is forwarded; `None` turns it off.
    pub fn delay_sns_publish(&self, delay: Option<Duration>) {
        self.update_faults(|p| p.sns_publish_delay = delay);
    }

    /// DynamoDB `BatchWriteItem` returns part of its items in `UnprocessedItems` (see
    /// [`UnprocessedItemsFault`]: probability, fraction kept back, seed, at most N batches,
    /// table); `None` turns it off.
    pub fn dynamodb_unprocessed_items(&self, fault: Option<UnprocessedItemsFault>) {
        self.update_faults(|p| p.dynamodb_unprocessed = fault);
    }

    /// A `BatchWriteItem` (or `PutItem`) holding an item whose `attribute` (string or number)
    /// equals `value`, e.g. `("event_id", "…")`, fails whole with DynamoDB's
    /// `ValidationException`. Adds to the poison items already set.
    pub fn reject_dynamodb_item(&self, attribute: &str, value: &str) {
        self.update_faults(|p| {
            p.dynamodb_invalid_items
                .push(InvalidItemFault::new(attribute, value))
        });
    }

    /// Forgets every poison item of [`Self::reject_dynamodb_item`].
    pub fn accept_all_dynamodb_items(&self) {
        self.update_faults(|p| p.dynamodb_invalid_items.clear());
    }

    /// S3 `UploadPart` fails (HTTP 500 `InternalError`) for a part number (see
    /// [`UploadPartFault`]); `None` turns it off.
    pub fn fail_s3_upload_part(&self, fault: Option<UploadPartFault>) {
        self.update_faults(|p| p.s3_upload_part_fail = fault);
    }

    /// S3 `CompleteMultipartUpload` fails (HTTP 500 `InternalError`) for keys containing
    /// `pattern` (`""` for every key); `None` turns it off.
    pub fn fail_s3_complete_multipart(&self, pattern: Option<&str>) {
        self.update_faults(|p| p.s3_complete_multipart_fail = pattern.map(TextMatch::contains));
    }

    /// S3 `PutObject` fails (HTTP 500 `InternalError`) for keys containing `pattern` (`""` for
    /// every key); `None` turns it off.
    pub fn fail_s3_put_object(&self, pattern: Option<&str>) {
        self.update_faults(|p| p.s3_put_object_fail = pattern.map(TextMatch::contains));
    }

    // ---- Counters ------------------------------------------------------------------------

    /// Requests the gateway received for `service` (SigV4 signing name: `dynamodb`, `sns`,
    /// `s3`, `ec2`, `cloudtrail`, `lambda`, `states`) and `operation` (`BatchWriteItem`,
    /// `Publish`, `UploadPart`, `LookupEvents`, `Invoke`, ...), faulted ones included. The
    /// harness's own clients ([`Self::dynamodb`], [`Self::sfn`], [`Self::sqs`])
    /// talk to moto directly and are not counted.
    pub fn requests(&self, service: &str, operation: &str) -> u64 {
        self.gateway.requests(service, operation)
    }

    /// Requests of `service`/`operation` a fault was injected into.
    pub fn injected(&self, service: &str, operation: &str) -> u64 {
        self.gateway.injected(service, operation)
    }

    /// Every gateway counter, by (service, operation).
    pub fn request_counts(&self) -> RequestCounts {
        self.gateway.request_counts()
    }

    /// Sets the gateway's counters back to zero (the CloudTrail emulator's are cumulative).
    pub fn reset_request_counts(&self) {
        self.gateway.reset_counts();
    }

    /// The CloudTrail emulator's counters: requests, throttled and failed, in total and per
    /// region.
    pub fn cloudtrail_stats(&self) -> EmulatorStats {
        self.emulator.stats()
    }

    /// Reads (and removes) every alert delivered to the mailbox queue so far.
    pub async fn received_alerts(&self) -> Result<Vec<ReceivedAlert>> {
        let sqs = self.sqs();
        let url = sqs
            .get_queue_url()
            .queue_name(mailbox_queue(&self.options.stack_name))
            .send()
            .await
            .map_err(sdk_error)?
            .queue_url()
            .unwrap_or_default()
            .to_string();
        let mut alerts = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
                )
                .send()
                .await
                .map_err(sdk_error)?;
            let messages = out.messages();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let envelope: Value =
                    serde_json::from_str(m.body().unwrap_or("{}")).context("SNS envelope")?;
                let text = |k: &str| {
                    envelope
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let mut attributes: Vec<(String, String)> = envelope
                    .get("MessageAttributes")
                    .and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v.get("Value")
                                        .and_then(Value::as_str)
                                        .unwrap_or("")
                                        .to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                attributes.sort();
                alerts.push(ReceivedAlert {
                    message_id: text("MessageId"),
                    subject: text("Subject"),
                    body: text("Message"),
                    attributes,
                    received_at: m
                        .attributes()
                        .and_then(|a| {
                            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
                        })
                        .and_then(|ms| ms.parse::<i64>().ok())
                        .and_then(chrono::DateTime::from_timestamp_millis),
                });
                if let Some(handle) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(&url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map_err(sdk_error)?;
                }
            }
        }
        Ok(alerts)
    }

    /// The settings the steps run with.
    pub fn settings(&self) -> &Settings {
        &self.context.settings
    }

    /// Creates the tables, the topic and the bucket, registers the state machine, and registers
    /// a CloudFormation stack of the same name whose outputs point at them.
    pub async fn deploy(&mut self) -> Result<String> {
        let dynamodb = self.dynamodb();
        for spec in table_specs() {
            create_table(&dynamodb, &self.options.stack_name, &spec)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        let stack = &self.options.stack_name;
        self.create_topic().await?;
        self.create_operations_topic().await?;
        self.context
            .s3
            .create_bucket()
            .bucket(analytics_bucket(stack))
            .send()
            .await
            .map_err(sdk_error)
            .context("creating the analytics bucket")?;
        self.create_trail_bucket().await?;
        let asl_path = self.options.repo_root.join("statemachine/tracker.asl.json");
        let text = std::fs::read_to_string(&asl_path)
            .with_context(|| format!("reading {}", asl_path.display()))?;
        let definition = render_asl(
            &text,
            &[
                (
                    "ListTargetsFunctionArn",
                    function_arn(stack, "list-targets"),
                ),
                ("CollectFunctionArn", function_arn(stack, "collect")),
                ("AggregateFunctionArn", function_arn(stack, "aggregate")),
                (
                    "EvaluateAlertsFunctionArn",
                    function_arn(stack, "evaluate-alerts"),
                ),
                ("ExportFunctionArn", function_arn(stack, "export")),
                (
                    "MapMaxConcurrency",
                    self.options.map_max_concurrency.to_string(),
                ),
                (
                    "ExecutionTimeoutSeconds",
                    self.context.settings.run_lease.num_seconds().to_string(),
                ),
                ("MaxAlertInvocations", "5".to_string()),
                ("MaxExportInvocations", "10".to_string()),
            ],
        )?;
        let created = self
            .sfn()
            .create_state_machine()
            .name(format!("{stack}-tracker"))
            .definition(definition)
            .role_arn(format!(
                "arn:aws:iam::{LOCAL_ACCOUNT}:role/{stack}-tracker-role"
            ))
            .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
            .send()
            .await
            .map_err(sdk_error)
            .context("registering the state machine")?;
        let arn = created.state_machine_arn().to_string();
        self.state_machine_arn = Some(arn.clone());
        self.register_ingest_state_machine().await?;
        self.create_alarms(&arn).await?;
        self.register_stack(&arn).await?;
        Ok(arn)
    }

    /// Creates the local trail bucket and uploads the emulator's records to it as CloudTrail
    /// delivers an organisation trail (one object per account, region and five minutes), with
    /// a copy for each of [`LocalOptions::trail_copies`]: the S3 ingestion reads the same
    /// records LookupEvents serves.
    async fn create_trail_bucket(&self) -> Result<()> {
        use iamtrail_core::synthetic_trail::{gzip, layout, objects_as_account, DATASET_ACCOUNT};
        let bucket = trail_bucket(&self.options.stack_name);
        let s3 = &self.context.s3;
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(sdk_error)
            .context("creating the trail bucket")?;
        let records = self.emulator.records();
        let own = layout(records.iter().map(String::as_str), "AWSLogs/");
        let mut objects = own.clone();
        for account in &self.options.trail_copies {
            objects.extend(objects_as_account(&own, DATASET_ACCOUNT, account)?);
        }
        for object in objects {
            s3.put_object()
                .bucket(&bucket)
                .key(&object.key)
                .body(gzip(&object.body)?.into())
                .content_type("application/gzip")
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("uploading {} to the trail bucket", object.key))?;
        }
        Ok(())
    }

    /// Registers `statemachine/s3-ingest.asl.json` as `{stack}-s3-ingest`. moto's Distributed
    /// Map cannot parse an `EXPRESS` child workflow, so the local stack runs the children as
    /// `STANDARD` ones (the same states; docs/ingest.md, "On the local stack").
    async fn register_ingest_state_machine(&mut self) -> Result<String> {
        let stack = self.options.stack_name.clone();
        let path = self
            .options
            .repo_root
            .join("statemachine/s3-ingest.asl.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let definition = render_asl(
            &text,
            &[
                ("IngestRunFunctionArn", function_arn(&stack, "ingest-run")),
                (
                    "IngestObjectsFunctionArn",
                    function_arn(&stack, "ingest-objects"),
                ),
                ("IngestChildExecutionType", "STANDARD".to_string()),
                (
                    "IngestMaxConcurrency",
                    self.options.map_max_concurrency.to_string(),
                ),
                // moto reads the tolerance only as a float.
                ("IngestToleratedFailurePercentage", "0.0".to_string()),
                ("IngestTimeoutSeconds", "86400".to_string()),
                ("AnalyticsBucketName", analytics_bucket(&stack)),
            ],
        )?;
        let created = self
            .sfn()
            .create_state_machine()
            .name(format!("{stack}-s3-ingest"))
            .definition(definition)
            .role_arn(format!(
                "arn:aws:iam::{LOCAL_ACCOUNT}:role/{stack}-s3-ingest-role"
            ))
            .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
            .send()
            .await
            .map_err(sdk_error)
            .context("registering the S3 ingestion state machine")?;
        Ok(created.state_machine_arn().to_string())
    }

    /// The outputs a deployed stack of this name would have (`template.yaml`'s output keys),
    /// for the local resources that exist: the tables, the state machine, the functions, the
    /// topic and the analytics bucket.
    pub fn stack_outputs(&self, state_machine_arn: &str) -> Vec<(&'static str, String)> {
        use crate::stack::keys;
        let stack = &self.options.stack_name;
        let settings = self.settings();
        vec![
            (keys::EVENTS_TABLE, settings.events_table.clone()),
            (keys::CONTROL_TABLE, settings.control_table.clone()),
            (keys::ALERTS_TABLE, settings.alerts_table.clone()),
            (keys::STATE_MACHINE, state_machine_arn.to_string()),
            (keys::ALERTS_TOPIC, topic_arn(stack)),
            (keys::ANALYTICS_BUCKET, analytics_bucket(stack)),
            (keys::LIST_TARGETS_FUNCTION, format!("{stack}-list-targets")),
            (keys::COLLECT_FUNCTION, format!("{stack}-collect")),
            (keys::AGGREGATE_FUNCTION, format!("{stack}-aggregate")),
            (
                keys::EVALUATE_ALERTS_FUNCTION,
                format!("{stack}-evaluate-alerts"),
            ),
            (keys::EXPORT_FUNCTION, format!("{stack}-export")),
            (keys::OPERATIONS_TOPIC, operations_topic_arn(stack)),
            (keys::INGEST_STATE_MACHINE, ingest_state_machine_arn(stack)),
            (keys::TRAIL_BUCKET, trail_bucket(stack)),
        ]
    }

    /// A CloudFormation client on moto.
    pub fn cloudformation(&self) -> aws_sdk_cloudformation::Client {
        let conf = aws_sdk_cloudformation::config::Builder::from(&self.sdk)
            .endpoint_url(self.moto.endpoint())
            .build();
        aws_sdk_cloudformation::Client::from_conf(conf)
    }

    /// Registers a CloudFormation stack named after the local stack, whose outputs are the
    /// local resources' names (one placeholder resource, `AWS::CloudFormation::WaitConditionHandle`,
    /// which moto supports), so that the CLI finds the local stack as it finds a deployed one.
    async fn register_stack(&self, state_machine_arn: &str) -> Result<()> {
        let outputs: serde_json::Map<String, Value> = self
            .stack_outputs(state_machine_arn)
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!({ "Value": v })))
            .collect();
        let template = serde_json::json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": "iamtrail local stack: the outputs of template.yaml for the local resources",
            "Resources": {"LocalStackMarker": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": outputs,
        });
        self.cloudformation()
            .create_stack()
            .stack_name(&self.options.stack_name)
            .template_body(template.to_string())
            .send()
            .await
            .map_err(sdk_error)
            .context("registering the local CloudFormation stack")?;
        Ok(())
    }

    /// Creates the operations topic the alarms notify (`template.yaml`'s OperationsTopic).
    async fn create_operations_topic(&self) -> Result<()> {
        let stack = &self.options.stack_name;
        let sns = self.sns();
        let topic = sns
            .create_topic()
            .name(format!("{stack}-operations"))
            .send()
            .await
            .map_err(sdk_error)
            .context("creating the operations topic")?;
        let topic = topic.topic_arn().unwrap_or_default();
        anyhow::ensure!(
            topic == operations_topic_arn(stack),
            "unexpected topic ARN {topic}"
        );
        Ok(())
    }

    /// Creates, in moto, the alarms of `template.yaml` on the workflow and on the steps' own
    /// metrics (namespace `IamTrail/<stack>`), with the template's default thresholds; the
    /// per-function and per-table alarms watch AWS metrics the local stack does not have.
    /// moto stores alarms and their state but does not evaluate them. `tests/template.rs`
    /// compares these with the template.
    async fn create_alarms(&self, state_machine_arn: &str) -> Result<()> {
        use aws_sdk_cloudwatch::types::{ComparisonOperator as Op, Dimension, Statistic};
        let stack = &self.options.stack_name;
        let own = format!("IamTrail/{stack}");
        let topic = operations_topic_arn(stack);
        let execution = |name, metric| LocalAlarm {
            name,
            namespace: "AWS/States",
            metric,
            dimension: Some(("StateMachineArn", state_machine_arn)),
            statistic: Statistic::Sum,
            comparison: Op::GreaterThanOrEqualToThreshold,
            threshold: 1.0,
            period: 300,
            evaluations: 1,
            missing: "notBreaching",
            ok_actions: false,
        };
        // Written once per run: the state holds between runs (docs/operations.md).
        let per_run = |name, metric, statistic, comparison, threshold| LocalAlarm {
            name,
            namespace: &own,
            metric,
            dimension: None,
            statistic,
            comparison,
            threshold,
            period: 300,
            evaluations: 1,
            missing: "ignore",
            ok_actions: true,
        };
        let (ge, gt) = (Op::GreaterThanOrEqualToThreshold, Op::GreaterThanThreshold);
        let (sum, max) = (Statistic::Sum, Statistic::Maximum);
        let alarms = [
            execution("executions-failed", "ExecutionsFailed"),
            execution("executions-timed-out", "ExecutionsTimedOut"),
            execution("executions-aborted", "ExecutionsAborted"),
            per_run("partial-run", "PartialRun", max.clone(), ge.clone(), 1.0),
            per_run("alerts-failed", "AlertsFailed", sum, ge, 1.0),
            per_run(
                "alerts-pending",
                "OldestPendingAlertAgeSeconds",
                max.clone(),
                gt.clone(),
                3600.0,
            ),
            per_run("export-lag", "ExportLagDays", max.clone(), gt.clone(), 2.0),
            // The hourly schedule the local runs' lease and timeout assume: one period per
            // interval, 2 of 2, 3 intervals behind, no data is breaching.
            LocalAlarm {
                period: 3600,
                evaluations: 2,
                missing: "breaching",
                ..per_run(
                    "collection-lag",
                    "MaxCollectionLagSeconds",
                    max,
                    gt,
                    10800.0,
                )
            },
        ];
        let cloudwatch = self.cloudwatch();
        for a in alarms {
            let mut put = cloudwatch
                .put_metric_alarm()
                .alarm_name(format!("{stack}-{}", a.name))
                .alarm_description(format!(
                    "The local stack's copy of template.yaml's {} alarm (docs/operations.md).",
                    a.name
                ))
                .namespace(a.namespace)
                .metric_name(a.metric)
                .statistic(a.statistic)
                .comparison_operator(a.comparison)
                .threshold(a.threshold)
                .period(a.period)
                .evaluation_periods(a.evaluations)
                .datapoints_to_alarm(a.evaluations)
                .treat_missing_data(a.missing)
                .alarm_actions(&topic);
            if a.ok_actions {
                put = put.ok_actions(&topic);
            }
            if let Some((name, value)) = a.dimension {
                put = put.dimensions(Dimension::builder().name(name).value(value).build());
            }
            put.send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("creating the {} alarm", a.name))?;
        }
        Ok(())
    }

    /// Creates the alerts topic and subscribes the mailbox queue to it (raw delivery off, so the
    /// queue receives the SNS envelope with subject and attributes, as email would show them).
    async fn create_topic(&self) -> Result<()> {
        let stack = &self.options.stack_name;
        let sns = self.sns();
        let topic = sns
            .create_topic()
            .name(format!("{stack}-alerts"))
            .send()
            .await
            .map_err(sdk_error)
            .context("creating the alerts topic")?;
        let topic = topic.topic_arn().unwrap_or_default().to_string();
        anyhow::ensure!(topic == topic_arn(stack), "unexpected topic ARN {topic}");
        let sqs = self.sqs();
        let url = sqs
            .create_queue()
            .queue_name(mailbox_queue(stack))
            .send()
            .await
            .map_err(sdk_error)
            .context("creating the mailbox queue")?
            .queue_url()
            .unwrap_or_default()
            .to_string();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sdk_error)?;
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .context("queue has no ARN")?;
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .map_err(sdk_error)
            .context("subscribing the mailbox to the topic")?;
        Ok(())
    }

    /// Starts a named execution and follows it to the end, calling `progress` with a one-line
    /// description whenever it changes.
    /// Runs an S3 ingestion (`statemachine/s3-ingest.asl.json`) named `name` on the local
    /// trail bucket (unless the request names another) and follows it to its end
    /// (docs/ingest.md).
    pub async fn run_ingestion(
        &self,
        name: &str,
        request: &iamtrail_aws::steps::ingest::plan::IngestRequest,
        show_progress: bool,
    ) -> Result<crate::commands::ingest::IngestRun> {
        let stack = &self.options.stack_name;
        let mut request = request.clone();
        if request.bucket.is_none() && request.retry_of.is_none() {
            request.bucket = Some(trail_bucket(stack));
        }
        let sfn = self.sfn();
        let arn = ingest_state_machine_arn(stack);
        let analytics = analytics_bucket(stack);
        let target = crate::commands::ingest::IngestTarget {
            sfn: &sfn,
            s3: &self.context.s3,
            state_machine_arn: &arn,
            analytics_bucket: &analytics,
        };
        crate::commands::ingest::start_and_follow(&target, name, &request, show_progress).await
    }

    pub async fn run_execution(
        &self,
        name: &str,
        input: &Value,
        progress: impl FnMut(&str),
    ) -> Result<ExecutionResult> {
        let arn = self
            .state_machine_arn
            .as_deref()
            .context("deploy() the stack before running executions")?;
        let sfn = self.sfn();
        let started = std::time::Instant::now();
        let execution_arn = crate::follow::start_execution(&sfn, arn, name, input).await?;
        let mut result = crate::follow::follow_execution(
            &sfn,
            &execution_arn,
            crate::follow::FollowOptions::default(),
            progress,
        )
        .await?;
        // The demo and the tests time the whole call, start included.
        result.duration = started.elapsed();
        Ok(result)
    }

    /// Stops moto and the gateway.
    pub async fn stop(self) {
        let LocalStack { moto, gateway, .. } = self;
        gateway.shutdown().await;
        drop(moto);
    }
}

/// The repository root: `IAMTRAIL_REPO` or the nearest ancestor of the current directory (or
/// of this crate's source) holding `statemachine/tracker.asl.json`.
pub fn find_repo_root() -> Result<PathBuf> {
    if let Ok(root) = std::env::var("IAMTRAIL_REPO") {
        return Ok(PathBuf::from(root));
    }
    let starts = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.into_iter().flatten() {
        let mut dir: Option<&Path> = Some(&start);
        while let Some(d) = dir {
            if d.join("statemachine/tracker.asl.json").is_file() {
                return Ok(d.to_path_buf());
            }
            dir = d.parent();
        }
    }
    bail!("cannot find the iamtrail repository (statemachine/tracker.asl.json); run from inside it or set IAMTRAIL_REPO")
}
