//! The local stack's tables are the ones `template.yaml` declares: compared attribute by
//! attribute with DescribeTable, DescribeTimeToLive and DescribeContinuousBackups on moto; its
//! alarms (DescribeAlarms) are the template's on the workflow and the steps' own metrics. And
//! what the template alone must hold: retention, parameter defaults, the alarm list (printed),
//! the operations topic, the dashboard and the lifecycle (docs/operations.md); the fast path
//! (docs/realtime.md): the rule pattern against `iamtrail_core::realtime::event_pattern`, the
//! RealtimeAlerts switch, the Realtime role, the dead-letter queues, and
//! templates/realtime-forwarding.yaml; the S3 ingestion (docs/ingest.md): nothing of it without
//! a trail bucket, its least-privilege roles, its state machine's substitutions, the continuous
//! mode's rule, queues and event source mapping, its alarms and outputs, and the functions
//! scripts/package.sh builds.

use std::collections::{BTreeSet, HashMap};

use iamtrail_core::realtime::{envelope, event_pattern, matches_pattern, PatternOptions};
use iamtrail_e2e::*;
use serde_yaml::Value;

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => &t.value,
        other => other,
    }
}

fn s(v: &Value) -> String {
    untag(v)
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("{v:?}"))
}

fn key_schema(v: &Value) -> Vec<(String, String)> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|k| (s(&k["AttributeName"]), s(&k["KeyType"])))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_tables_match_template_yaml() {
    let template: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap())
            .unwrap();
    let stack = start(options("template")).await;
    let db = stack.dynamodb();
    let mut compared = 0;
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        if s(&resource["Type"]) != "AWS::DynamoDB::Table" {
            continue;
        }
        let p = &resource["Properties"];
        let suffix = s(&p["TableName"])
            .rsplit_once("}-")
            .map(|(_, x)| x.to_string())
            .expect("TableName is ${AWS::StackName}-x");
        let name = format!("{}-{suffix}", stack.options.stack_name);
        let table = db
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let table = table.table().unwrap();

        assert_eq!(
            s(&p["BillingMode"]),
            table
                .billing_mode_summary()
                .unwrap()
                .billing_mode()
                .unwrap()
                .as_str(),
            "{name}"
        );
        let local_keys: Vec<_> = table
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect();
        assert_eq!(key_schema(&p["KeySchema"]), local_keys, "{name} keys");
        let attrs: BTreeSet<_> = p["AttributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| (s(&a["AttributeName"]), s(&a["AttributeType"])))
            .collect();
        let local_attrs: BTreeSet<_> = table
            .attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name().to_string(),
                    a.attribute_type().as_str().to_string(),
                )
            })
            .collect();
        assert_eq!(attrs, local_attrs, "{name} attributes");

        let gsis: BTreeSet<_> = p["GlobalSecondaryIndexes"]
            .as_sequence()
            .map(|v| {
                v.iter()
                    .map(|g| {
                        (
                            s(&g["IndexName"]),
                            key_schema(&g["KeySchema"]),
                            s(&g["Projection"]["ProjectionType"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let local_gsis: BTreeSet<_> = table
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                (
                    g.index_name().unwrap().to_string(),
                    g.key_schema()
                        .iter()
                        .map(|k| {
                            (
                                k.attribute_name().to_string(),
                                k.key_type().as_str().to_string(),
                            )
                        })
                        .collect::<Vec<_>>(),
                    g.projection()
                        .unwrap()
                        .projection_type()
                        .unwrap()
                        .as_str()
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(gsis, local_gsis, "{name} indexes");

        let sse = untag(&p["SSESpecification"]["SSEEnabled"])
            .as_bool()
            .unwrap_or(false);
        assert_eq!(
            sse,
            table
                .sse_description()
                .and_then(|d| d.status())
                .map(|s| s.as_str() == "ENABLED")
                .unwrap_or(false),
            "{name} SSE"
        );

        let ttl = db
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .unwrap();
        let ttl = ttl.time_to_live_description().unwrap();
        let template_ttl = &p["TimeToLiveSpecification"];
        assert_eq!(
            untag(&template_ttl["Enabled"]).as_bool(),
            Some(ttl.time_to_live_status().unwrap().as_str() == "ENABLED"),
            "{name} TTL"
        );
        assert_eq!(
            s(&template_ttl["AttributeName"]),
            ttl.attribute_name().unwrap_or_default(),
            "{name} TTL attribute"
        );

        let backups = db
            .describe_continuous_backups()
            .table_name(&name)
            .send()
            .await
            .unwrap();
        let pitr = backups
            .continuous_backups_description()
            .unwrap()
            .point_in_time_recovery_description()
            .unwrap();
        let template_pitr =
            untag(&p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"])
                .as_bool()
                .unwrap_or(false);
        assert_eq!(
            template_pitr,
            pitr.point_in_time_recovery_status().unwrap().as_str() == "ENABLED",
            "{name} PITR"
        );
        compared += 1;
    }
    assert_eq!(compared, 3, "events, control and alerts tables");
    local_alarms_match(&stack, &template).await;
    stack.stop().await;
}

/// The alarms the local stack created in moto: each one is a template alarm of the same name
/// (default parameters, the hourly schedule), on the same metric, notifying the local
/// operations topic; every template alarm on the workflow or the steps' own metrics is there.
async fn local_alarms_match(stack: &iamtrail::local::LocalStack, template: &Value) {
    let name = &stack.options.stack_name;
    let resolver = Resolver::new(template, &[]);
    let declared = alarms(&resolver);
    let described = stack
        .cloudwatch()
        .describe_alarms()
        .alarm_name_prefix(format!("{name}-"))
        .send()
        .await
        .unwrap();
    let topic = iamtrail::local::operations_topic_arn(name);
    let mut local = BTreeSet::new();
    for a in described.metric_alarms() {
        let alarm_name = a.alarm_name().unwrap();
        let suffix = alarm_name.strip_prefix(name.as_str()).unwrap();
        let d = declared
            .iter()
            .find(|d| d.name == format!("!Sub ${{AWS::StackName}}{suffix}"))
            .unwrap_or_else(|| panic!("{alarm_name} is not an alarm of template.yaml"));
        let namespace = d
            .namespace
            .trim_start_matches("!Sub ")
            .replace("${AWS::StackName}", name);
        assert_eq!(a.namespace(), Some(namespace.as_str()), "{alarm_name}");
        assert_eq!(a.metric_name(), Some(d.metric.as_str()), "{alarm_name}");
        let dims: Vec<&str> = a.dimensions().iter().filter_map(|x| x.name()).collect();
        let declared_dims: Vec<&str> = d.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(dims, declared_dims, "{alarm_name}");
        assert_eq!(
            a.statistic().map(|x| x.as_str()),
            Some(d.statistic.as_str()),
            "{alarm_name}"
        );
        assert_eq!(
            a.comparison_operator().map(|x| x.as_str()),
            Some(d.comparison.as_str()),
            "{alarm_name}"
        );
        assert_eq!(a.threshold(), Some(d.threshold), "{alarm_name}");
        assert_eq!(a.period().map(f64::from), Some(d.period), "{alarm_name}");
        assert_eq!(
            a.evaluation_periods().map(f64::from),
            Some(d.evaluation_periods),
            "{alarm_name}"
        );
        assert_eq!(
            a.treat_missing_data(),
            Some(d.missing.as_str()),
            "{alarm_name}"
        );
        assert_eq!(
            a.alarm_actions().to_vec(),
            vec![topic.clone()],
            "{alarm_name}"
        );
        assert_eq!(
            !a.ok_actions().is_empty(),
            !d.ok_actions.is_empty(),
            "{alarm_name} OK actions"
        );
        local.insert(d.logical_id.clone());
    }
    let wanted: BTreeSet<String> = declared
        .iter()
        .filter(|d| d.namespace == OWN_NAMESPACE || d.namespace == "AWS/States")
        .map(|d| d.logical_id.clone())
        .collect();
    assert_eq!(local, wanted, "the local stack's alarms");
}

/// What must outlive a stack deletion or a bad re-export: every table is retained (checkpoints,
/// export progress and undelivered alerts included), and the analytics bucket keeps replaced
/// versions of a day's file for a while.
#[test]
fn tables_are_retained_and_the_analytics_bucket_is_versioned() {
    let template: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap())
            .unwrap();
    let resources = template["Resources"].as_mapping().unwrap();
    let mut tables = 0;
    for (name, resource) in resources {
        if s(&resource["Type"]) == "AWS::DynamoDB::Table" {
            tables += 1;
            assert_eq!(s(&resource["DeletionPolicy"]), "Retain", "{name:?}");
            assert_eq!(s(&resource["UpdateReplacePolicy"]), "Retain", "{name:?}");
        }
    }
    assert_eq!(tables, 3);
    let bucket = &template["Resources"]["AnalyticsBucket"]["Properties"];
    assert_eq!(s(&bucket["VersioningConfiguration"]["Status"]), "Enabled");
    let rules = bucket["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap();
    assert!(
        rules
            .iter()
            .any(|r| !untag(&r["NoncurrentVersionExpiration"]).is_null()),
        "replaced versions expire"
    );
    assert!(
        rules
            .iter()
            .any(|r| !untag(&r["AbortIncompleteMultipartUpload"]).is_null()),
        "incomplete multipart uploads are aborted"
    );
    assert!(
        rules
            .iter()
            .any(|r| s(&r["Prefix"]) == "ingest/" && r["ExpirationInDays"].as_u64() == Some(30)),
        "the S3 ingestion's run files expire"
    );
}

/// Every Lambda environment variable the template sets from a parameter is one the steps read,
/// and the parameters' defaults are values the steps accept.
#[test]
fn parameter_defaults_are_valid_settings() {
    let template: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap())
            .unwrap();
    let parameters = &template["Parameters"];
    let variables = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    let mut values = std::collections::HashMap::new();
    for (name, value) in variables {
        let name = s(name);
        if let Value::Tagged(t) = value {
            if t.tag == "!Ref" {
                let parameter = &parameters[s(&t.value).as_str()];
                let default = match untag(&parameter["Default"]) {
                    Value::Number(n) => n.to_string(),
                    Value::Null => continue,
                    other => s(other),
                };
                values.insert(name, default);
            }
        }
    }
    for name in [
        "IAM_REGION",
        "MIN_SLICE_SECONDS",
        "COLLECT_TIME_BUDGET_SECONDS",
        "LOOKUP_RATE_PER_SECOND",
        "OVERLAP_MINUTES",
        "SETTLE_MINUTES",
    ] {
        assert!(values.contains_key(name), "{name} is set from a parameter");
    }
    let settings = iamtrail_core::Settings::from_lookup(|k| values.get(k).cloned())
        .unwrap_or_else(|e| panic!("the template's defaults: {e}"));
    assert_eq!(settings.iam_region, "us-east-1");
    assert_eq!(settings.lookup_rate_per_second, 2.0);
    assert_eq!(settings.collect_time_budget.as_secs(), 780);
}

// ---- Operations: the alarm list, the operations topic, the lifecycle ----------------------

fn load_template() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap())
        .unwrap()
}

fn tag<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == name => Some(&t.value),
        _ => None,
    }
}

/// `!Ref X`, `!Sub text`, `!GetAtt X.Y` or the plain scalar, as text.
fn show(v: &Value) -> String {
    match v {
        Value::Tagged(t) => format!("{} {}", t.tag, show(&t.value)),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// The template's values for one set of parameter values (the defaults, with overrides):
/// resolves `!Ref` of a parameter (a `CommaDelimitedList` one to a list), `AWS::NoValue`
/// (dropped from its list or mapping), `AWS::Region` when [`Resolver::in_region`] set it, `!If`
/// on a condition (`!Equals`, `!Not`, `!And`, `!Or`, `!Condition`), and `!Join` of plain text.
struct Resolver<'a> {
    template: &'a Value,
    params: HashMap<String, String>,
    region: Option<String>,
}

impl<'a> Resolver<'a> {
    fn new(template: &'a Value, overrides: &[(&str, &str)]) -> Self {
        let mut params = HashMap::new();
        for (name, p) in template["Parameters"].as_mapping().unwrap() {
            let default = match untag(&p["Default"]) {
                Value::Number(n) => n.to_string(),
                Value::Null => String::new(),
                other => s(other),
            };
            params.insert(s(name), default);
        }
        for (k, v) in overrides {
            assert!(params.contains_key(*k), "no parameter {k}");
            params.insert(k.to_string(), v.to_string());
        }
        Resolver {
            template,
            params,
            region: None,
        }
    }

    /// The same, for a stack in `region` (`!Ref AWS::Region`).
    fn in_region(mut self, region: &str) -> Self {
        self.region = Some(region.to_string());
        self
    }

    /// Whether a resource or output exists for these parameters (its `Condition`).
    fn exists(&self, resource: &Value) -> bool {
        match &resource["Condition"] {
            Value::Null => true,
            c => self.condition(&s(c)),
        }
    }

    fn condition(&self, name: &str) -> bool {
        let c = &self.template["Conditions"][name];
        assert!(!c.is_null(), "no condition {name}");
        self.truth(c)
    }

    fn truth(&self, v: &Value) -> bool {
        if let Some(args) = tag(v, "!Equals") {
            let args = args.as_sequence().unwrap();
            return self.text(&args[0]) == self.text(&args[1]);
        }
        if let Some(args) = tag(v, "!Not") {
            return !self.truth(&args.as_sequence().unwrap()[0]);
        }
        if let Some(name) = tag(v, "!Condition") {
            return self.condition(&s(name));
        }
        if let Some(args) = tag(v, "!And") {
            return args.as_sequence().unwrap().iter().all(|c| self.truth(c));
        }
        if let Some(args) = tag(v, "!Or") {
            return args.as_sequence().unwrap().iter().any(|c| self.truth(c));
        }
        panic!("unsupported condition {v:?}")
    }

    /// `v` with parameter references and `!If` resolved (other tags are kept); `Null` for
    /// `AWS::NoValue`.
    fn value(&self, v: &Value) -> Value {
        self.resolve(v).unwrap_or(Value::Null)
    }

    /// [`Resolver::value`], with `None` for `AWS::NoValue`.
    fn resolve(&self, v: &Value) -> Option<Value> {
        if let Some(args) = tag(v, "!If") {
            let args = args.as_sequence().unwrap();
            let branch = if self.condition(&s(&args[0])) {
                &args[1]
            } else {
                &args[2]
            };
            return self.resolve(branch);
        }
        if let Some(name) = tag(v, "!Ref") {
            let name = s(name);
            if name == "AWS::NoValue" {
                return None;
            }
            if let (Some(region), "AWS::Region") = (&self.region, name.as_str()) {
                return Some(Value::String(region.clone()));
            }
            if let Some(p) = self.params.get(&name) {
                let ty = s(&self.template["Parameters"][name.as_str()]["Type"]);
                return Some(if ty == "CommaDelimitedList" {
                    Value::Sequence(p.split(',').map(|x| Value::String(x.into())).collect())
                } else {
                    Value::String(p.clone())
                });
            }
        }
        if let Some(args) = tag(v, "!Join") {
            let args = args.as_sequence().unwrap();
            if let Some(Value::Sequence(items)) = self.resolve(&args[1]) {
                if items.iter().all(Value::is_string) {
                    let parts: Vec<String> = items.iter().map(s).collect();
                    return Some(Value::String(parts.join(&s(&args[0]))));
                }
            }
        }
        Some(match v {
            Value::Sequence(items) => {
                Value::Sequence(items.iter().filter_map(|i| self.resolve(i)).collect())
            }
            Value::Mapping(m) => Value::Mapping(
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.resolve(v)?)))
                    .collect(),
            ),
            // Another function (`!Sub`, `!GetAtt`, ...), kept, with its arguments resolved.
            Value::Tagged(t) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: t.tag.clone(),
                value: self.resolve(&t.value)?,
            })),
            other => other.clone(),
        })
    }

    fn text(&self, v: &Value) -> String {
        show(&self.value(v))
    }

    fn number(&self, v: &Value) -> f64 {
        let text = self.text(v);
        text.parse()
            .unwrap_or_else(|_| panic!("{v:?} is not a number: {text}"))
    }
}

/// One alarm as the template declares it, resolved for a set of parameter values.
#[derive(Debug)]
struct Alarm {
    logical_id: String,
    name: String,
    namespace: String,
    metric: String,
    dimensions: Vec<(String, String)>,
    statistic: String,
    period: f64,
    evaluation_periods: f64,
    datapoints: f64,
    threshold: f64,
    comparison: String,
    missing: String,
    actions: Vec<String>,
    ok_actions: Vec<String>,
    description: String,
}

fn alarms(resolver: &Resolver) -> Vec<Alarm> {
    let resources = resolver.template["Resources"].as_mapping().unwrap();
    let mut out = Vec::new();
    for (id, r) in resources {
        if s(&r["Type"]) != "AWS::CloudWatch::Alarm" || !resolver.exists(r) {
            continue;
        }
        let p = &r["Properties"];
        let list = |v: &Value| -> Vec<String> {
            v.as_sequence()
                .map(|l| l.iter().map(|a| resolver.text(a)).collect())
                .unwrap_or_default()
        };
        let evaluation_periods = resolver.number(&p["EvaluationPeriods"]);
        out.push(Alarm {
            logical_id: s(id),
            name: resolver.text(&p["AlarmName"]),
            namespace: resolver.text(&p["Namespace"]),
            metric: resolver.text(&p["MetricName"]),
            dimensions: p["Dimensions"]
                .as_sequence()
                .map(|d| {
                    d.iter()
                        .map(|d| (resolver.text(&d["Name"]), resolver.text(&d["Value"])))
                        .collect()
                })
                .unwrap_or_default(),
            statistic: resolver.text(&p["Statistic"]),
            period: resolver.number(&p["Period"]),
            evaluation_periods,
            datapoints: if p["DatapointsToAlarm"].is_null() {
                evaluation_periods
            } else {
                resolver.number(&p["DatapointsToAlarm"])
            },
            threshold: resolver.number(&p["Threshold"]),
            comparison: resolver.text(&p["ComparisonOperator"]),
            missing: resolver.text(&p["TreatMissingData"]),
            actions: list(&p["AlarmActions"]),
            ok_actions: list(&p["OKActions"]),
            description: resolver.text(&p["AlarmDescription"]),
        });
    }
    out
}

const TOPIC: &str = "!Ref OperationsTopic";
const OWN_NAMESPACE: &str = "!Sub IamTrail/${AWS::StackName}";
const GE: &str = "GreaterThanOrEqualToThreshold";
const GT: &str = "GreaterThanThreshold";

/// What a required alarm must watch, and how.
struct Want {
    namespace: &'static str,
    metric: &'static str,
    dimensions: Vec<(&'static str, String)>,
    statistic: &'static str,
    comparison: &'static str,
    threshold: f64,
    missing: &'static str,
}

fn want(
    namespace: &'static str,
    metric: &'static str,
    dimensions: Vec<(&'static str, String)>,
    statistic: &'static str,
    comparison: &'static str,
    threshold: f64,
    missing: &'static str,
) -> Want {
    Want {
        namespace,
        metric,
        dimensions,
        statistic,
        comparison,
        threshold,
        missing,
    }
}

/// The required alarms, for the resolver's parameters: the workflow's, the steps' EMF
/// metrics (docs/metrics.md), and three per function, two per table and one per dead-letter
/// queue found in the template (those that exist with these parameters).
fn required_alarms(template: &Value, resolver: &Resolver) -> Vec<Want> {
    let machine = || vec![("StateMachineArn", "!Ref TrackerStateMachine".to_string())];
    let lag = {
        let interval = match resolver.params["TrackerSchedule"].as_str() {
            "rate(1 hour)" => 3600.0,
            "rate(6 hours)" => 21600.0,
            "rate(12 hours)" => 43200.0,
            "rate(1 day)" => 86400.0,
            other => panic!("schedule {other}"),
        };
        match resolver.params["CollectionLagAlarmSeconds"].as_str() {
            "" => 3.0 * interval,
            set => set.parse().unwrap(),
        }
    };
    let pending: f64 = resolver.params["AlertPendingAlarmSeconds"].parse().unwrap();
    let mut wants = vec![
        want(
            "AWS/States",
            "ExecutionsFailed",
            machine(),
            "Sum",
            GE,
            1.0,
            "notBreaching",
        ),
        want(
            "AWS/States",
            "ExecutionsTimedOut",
            machine(),
            "Sum",
            GE,
            1.0,
            "notBreaching",
        ),
        want(
            "AWS/States",
            "ExecutionsAborted",
            machine(),
            "Sum",
            GE,
            1.0,
            "notBreaching",
        ),
        want(
            OWN_NAMESPACE,
            "PartialRun",
            vec![],
            "Maximum",
            GE,
            1.0,
            "ignore",
        ),
        want(
            OWN_NAMESPACE,
            "MaxCollectionLagSeconds",
            vec![],
            "Maximum",
            GT,
            lag,
            "breaching",
        ),
        want(
            OWN_NAMESPACE,
            "AlertsFailed",
            vec![],
            "Sum",
            GE,
            1.0,
            "ignore",
        ),
        want(
            OWN_NAMESPACE,
            "OldestPendingAlertAgeSeconds",
            vec![],
            "Maximum",
            GT,
            pending,
            "ignore",
        ),
        want(
            OWN_NAMESPACE,
            "ExportLagDays",
            vec![],
            "Maximum",
            GT,
            2.0,
            "ignore",
        ),
    ];
    // The S3 ingestion (TrailBucket set): its executions and IngestObjects' errors; its
    // dead-letter queue's alarm is the dead-letter rule's below.
    if resolver.condition("IngestOn") {
        wants.push(want(
            "AWS/States",
            "ExecutionsFailed",
            vec![("StateMachineArn", "!Ref IngestStateMachine".to_string())],
            "Sum",
            GE,
            1.0,
            "notBreaching",
        ));
        wants.push(want(
            "AWS/Lambda",
            "Errors",
            vec![("FunctionName", "!Ref IngestObjectsFunction".to_string())],
            "Sum",
            GE,
            1.0,
            "notBreaching",
        ));
    }
    let resources = template["Resources"].as_mapping().unwrap();
    let mut functions = 0;
    let mut tables = 0;
    let mut queues = 0;
    for (id, r) in resources {
        if !resolver.exists(r) {
            continue;
        }
        let id = s(id);
        let dims = |name: &'static str| vec![(name, format!("!Ref {id}"))];
        match s(&r["Type"]).as_str() {
            "AWS::Serverless::Function" if id.starts_with("Ingest") => functions += 1,
            // The continuous mode's work queue: its failures end in its dead-letter queue.
            "AWS::SQS::Queue" if id == "IngestQueue" => queues += 1,
            "AWS::Serverless::Function" => {
                functions += 1;
                let timeout = resolver.number(&r["Properties"]["Timeout"]);
                let fname = "FunctionName";
                wants.push(want(
                    "AWS/Lambda",
                    "Errors",
                    dims(fname),
                    "Sum",
                    GE,
                    1.0,
                    "notBreaching",
                ));
                wants.push(want(
                    "AWS/Lambda",
                    "Throttles",
                    dims(fname),
                    "Sum",
                    GE,
                    1.0,
                    "notBreaching",
                ));
                wants.push(want(
                    "AWS/Lambda",
                    "Duration",
                    dims(fname),
                    "Maximum",
                    GT,
                    0.8 * timeout * 1000.0,
                    "notBreaching",
                ));
            }
            // A message in a dead-letter queue is an event the fast path dropped.
            "AWS::SQS::Queue" => {
                queues += 1;
                assert!(id.ends_with("DeadLetterQueue"), "{id}: a queue for what?");
                wants.push(want(
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    vec![("QueueName", format!("!GetAtt {id}.QueueName"))],
                    "Maximum",
                    GT,
                    0.0,
                    "notBreaching",
                ));
            }
            "AWS::DynamoDB::Table" => {
                tables += 1;
                for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
                    wants.push(want(
                        "AWS/DynamoDB",
                        metric,
                        dims("TableName"),
                        "Sum",
                        GE,
                        1.0,
                        "notBreaching",
                    ));
                }
            }
            _ => {}
        }
    }
    let realtime = usize::from(resolver.condition("RealtimeOn"));
    let ingest = usize::from(resolver.condition("IngestOn"));
    let continuous = usize::from(resolver.condition("IngestContinuousOn"));
    assert_eq!(
        (functions, tables, queues),
        (5 + realtime + 2 * ingest, 3, realtime + 2 * continuous),
        "five step functions (and Realtime, IngestRun and IngestObjects), three tables (and \
         Realtime's dead-letter queue, the ingest queue and its dead-letter queue)"
    );
    wants
}

/// The anchors of docs/operations.md's headings (GitHub's rule: lowercase, spaces to hyphens,
/// other punctuation dropped).
fn operations_anchors() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/operations.md"))
        .expect("docs/operations.md");
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The template's alarms for these parameters, each one of [`required_alarms`] with its metric,
/// statistic, comparison, threshold and missing-data treatment, and none more.
fn required_alarms_found(template: &Value, resolver: &Resolver) -> Vec<Alarm> {
    let found = alarms(resolver);
    let mut matched = BTreeSet::new();
    for w in required_alarms(template, resolver) {
        let dims: Vec<(String, String)> = w
            .dimensions
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let hits: Vec<&Alarm> = found
            .iter()
            .filter(|a| a.namespace == w.namespace && a.metric == w.metric && a.dimensions == dims)
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "one alarm on {} {} {:?}, found {:?}",
            w.namespace,
            w.metric,
            dims,
            hits.iter().map(|a| &a.logical_id).collect::<Vec<_>>()
        );
        let a = hits[0];
        assert_eq!(a.statistic, w.statistic, "{}", a.logical_id);
        assert_eq!(a.comparison, w.comparison, "{}", a.logical_id);
        assert_eq!(a.threshold, w.threshold, "{} threshold", a.logical_id);
        assert_eq!(a.missing, w.missing, "{} TreatMissingData", a.logical_id);
        matched.insert(a.logical_id.clone());
    }
    assert_eq!(
        matched.len(),
        found.len(),
        "an alarm nobody asked for: update this test"
    );
    found
}

/// With `RealtimeAlerts=false` the fast path's four alarms are gone and every other one is still
/// there; with it on they watch the Realtime function and its dead-letter queue.
#[test]
fn realtime_alarms_exist_only_with_the_fast_path() {
    let template = load_template();
    let on = required_alarms_found(&template, &Resolver::new(&template, &[]));
    let off = required_alarms_found(
        &template,
        &Resolver::new(&template, &[("RealtimeAlerts", "false")]),
    );
    let ids = |alarms: &[Alarm]| -> BTreeSet<String> {
        alarms.iter().map(|a| a.logical_id.clone()).collect()
    };
    let fast: BTreeSet<String> = ids(&on).difference(&ids(&off)).cloned().collect();
    assert_eq!(
        fast,
        BTreeSet::from(
            [
                "RealtimeDeadLetterAlarm",
                "RealtimeDurationAlarm",
                "RealtimeErrorsAlarm",
                "RealtimeThrottlesAlarm"
            ]
            .map(String::from)
        )
    );
    assert!(ids(&off).is_subset(&ids(&on)));
    let duration = on
        .iter()
        .find(|a| a.logical_id == "RealtimeDurationAlarm")
        .unwrap();
    assert_eq!(duration.dimensions[0].1, "!Ref RealtimeFunction");
    assert_eq!(duration.threshold, 24000.0, "0.8 x the 30 s timeout");
    let dead = on
        .iter()
        .find(|a| a.logical_id == "RealtimeDeadLetterAlarm")
        .unwrap();
    assert_eq!(
        dead.dimensions,
        [(
            "QueueName".to_string(),
            "!GetAtt RealtimeDeadLetterQueue.QueueName".to_string()
        )]
    );
    assert_eq!(
        dead.ok_actions,
        [TOPIC],
        "it says when the queue is empty again"
    );
}

/// Every required alarm exists with its metric, namespace, dimensions, statistic,
/// threshold and comparison, notifies the operations topic, is named after the stack (the topic
/// and key policies only let `<stack>-*` alarms publish) and says what it means and what to do,
/// pointing to a section of docs/operations.md that exists. Prints the alarm list.
#[test]
fn required_alarms_watch_their_metrics_and_notify_the_operations_topic() {
    let template = load_template();
    let resolver = Resolver::new(&template, &[]);
    let found = required_alarms_found(&template, &resolver);
    let anchors = operations_anchors();
    println!(
        "{} alarms (default parameters), all to the operations topic:",
        found.len()
    );
    println!(
        "{:<34} {:<46} {:<9} {:<8} {:<10} {:<13} actions",
        "name (after <stack>)",
        "namespace metric[dimension]",
        "threshold",
        "stat",
        "period",
        "missing data"
    );
    for a in &found {
        assert!(
            a.name.starts_with("!Sub ${AWS::StackName}-"),
            "{}: AlarmName {}",
            a.logical_id,
            a.name
        );
        assert_eq!(a.actions, [TOPIC], "{}: AlarmActions", a.logical_id);
        assert!(
            a.ok_actions.is_empty() || a.ok_actions == [TOPIC],
            "{}: OKActions",
            a.logical_id
        );
        assert!(
            a.description.len() >= 120,
            "{}: the description says what it means and what to do",
            a.logical_id
        );
        let anchor = a
            .description
            .split("docs/operations.md#")
            .nth(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '-')
                    .collect::<String>()
            })
            .unwrap_or_else(|| panic!("{}: no docs/operations.md# link", a.logical_id));
        assert!(
            anchors.contains(&anchor),
            "{}: docs/operations.md has no section #{anchor}",
            a.logical_id
        );
        let op = if a.comparison == GE { ">=" } else { ">" };
        let dims = a
            .dimensions
            .iter()
            .map(|(_, v)| v.trim_start_matches("!Ref ").to_string())
            .collect::<Vec<_>>()
            .join(",");
        let metric = if dims.is_empty() {
            a.metric.clone()
        } else {
            format!("{}[{dims}]", a.metric)
        };
        let period = if a.evaluation_periods > 1.0 {
            format!("{}s {}/{}", a.period, a.datapoints, a.evaluation_periods)
        } else {
            format!("{}s", a.period)
        };
        let notifies = if a.ok_actions.is_empty() {
            "ALARM"
        } else {
            "ALARM+OK"
        };
        println!(
            "{:<34} {:<46} {:<9} {:<8} {:<10} {:<13} {notifies} -> operations topic",
            a.name.trim_start_matches("!Sub ${AWS::StackName}"),
            format!("{} {metric}", a.namespace.trim_start_matches("!Sub ")),
            format!("{op} {}", a.threshold),
            a.statistic,
            period,
            a.missing,
        );
    }
}

/// The collection-lag alarm follows the schedule: one period per interval, two of them, and a
/// default threshold of three intervals (or CollectionLagAlarmSeconds when set). Every alarm's
/// evaluation range stays within CloudWatch's limits (1 day under hourly periods, else 7 days).
#[test]
fn collection_lag_alarm_follows_the_schedule() {
    let template = load_template();
    for (schedule, interval) in [
        ("rate(1 hour)", 3600.0),
        ("rate(6 hours)", 21600.0),
        ("rate(12 hours)", 43200.0),
        ("rate(1 day)", 86400.0),
    ] {
        for lag_param in ["", "7200"] {
            let resolver = Resolver::new(
                &template,
                &[
                    ("TrackerSchedule", schedule),
                    ("CollectionLagAlarmSeconds", lag_param),
                ],
            );
            let found = alarms(&resolver);
            let lag = found
                .iter()
                .find(|a| a.metric == "MaxCollectionLagSeconds")
                .unwrap();
            assert_eq!(lag.period, interval, "{schedule}");
            assert_eq!((lag.evaluation_periods, lag.datapoints), (2.0, 2.0));
            let expected = if lag_param.is_empty() {
                3.0 * interval
            } else {
                7200.0
            };
            assert_eq!(lag.threshold, expected, "{schedule} {lag_param:?}");
            assert_eq!(lag.missing, "breaching", "no data means no runs: blind");
            for a in &found {
                let range = a.period * a.evaluation_periods;
                let limit = if a.period < 3600.0 { 86400.0 } else { 604800.0 };
                assert!(range <= limit, "{}: {range} s", a.logical_id);
                assert!(a.datapoints <= a.evaluation_periods, "{}", a.logical_id);
            }
        }
    }
}

/// The operations topic: its own topic (not the alerts one), KMS-encrypted with a key whose
/// policy lets this stack's alarms use it, a topic policy that lets them publish and denies
/// plain HTTP, an email subscription only when OperationsEmail is set, and the output the CLI
/// reads.
#[test]
fn operations_topic_is_encrypted_and_only_this_stacks_alarms_publish() {
    let template = load_template();
    let r = &template["Resources"];
    let topic = &r["OperationsTopic"];
    assert_eq!(s(&topic["Type"]), "AWS::SNS::Topic");
    assert_eq!(
        show(&topic["Properties"]["TopicName"]),
        "!Sub ${AWS::StackName}-operations"
    );
    let key = show(&topic["Properties"]["KmsMasterKeyId"]);
    let key_id = key.strip_prefix("!Ref ").expect("a key of the stack");
    let alarm_arn = "!Sub arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:${AWS::StackName}-*";
    let statements = r[key_id]["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .unwrap();
    let cloudwatch = statements
        .iter()
        .find(|st| s(&st["Principal"]["Service"]) == "cloudwatch.amazonaws.com")
        .expect("the key policy lets CloudWatch alarms publish to the encrypted topic");
    let actions: BTreeSet<String> = cloudwatch["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "kms:Decrypt".to_string(),
            "kms:GenerateDataKey*".to_string()
        ])
    );
    assert_eq!(
        show(&cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"]),
        alarm_arn
    );

    let policy = r
        .as_mapping()
        .unwrap()
        .values()
        .find(|p| {
            s(&p["Type"]) == "AWS::SNS::TopicPolicy"
                && p["Properties"]["Topics"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|t| show(t) == TOPIC)
        })
        .expect("a topic policy on the operations topic");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert!(statements.iter().any(|st| s(&st["Effect"]) == "Deny"
        && s(&st["Condition"]["Bool"]["aws:SecureTransport"]) == "false"));
    let publish = statements
        .iter()
        .find(|st| s(&st["Principal"]["Service"]) == "cloudwatch.amazonaws.com")
        .expect("CloudWatch may publish");
    assert_eq!(s(&publish["Action"]), "sns:Publish");
    assert_eq!(
        show(&publish["Condition"]["ArnLike"]["aws:SourceArn"]),
        alarm_arn
    );

    let subscription = r
        .as_mapping()
        .unwrap()
        .values()
        .find(|p| {
            s(&p["Type"]) == "AWS::SNS::Subscription" && show(&p["Properties"]["TopicArn"]) == TOPIC
        })
        .expect("an email subscription");
    assert_eq!(s(&subscription["Condition"]), "HasOperationsEmail");
    assert_eq!(
        show(&subscription["Properties"]["Endpoint"]),
        "!Ref OperationsEmail"
    );
    assert_ne!(
        show(&r["AlertsTopic"]["Properties"]["TopicName"]),
        show(&topic["Properties"]["TopicName"])
    );
    assert_eq!(
        show(&template["Outputs"]["OperationsTopicArn"]["Value"]),
        TOPIC
    );
}

/// The dashboard shows the lag per region through a Logs Insights table over Aggregate's EMF
/// lines (a region enabled later appears without a redeploy, and costs no custom metric) and,
/// with DetailedMetrics=true, a SEARCH expression; the run totals, alerts and export from the
/// metrics' empty dimension set; and every alarm.
#[test]
fn dashboard_shows_lag_per_region_and_lists_every_alarm() {
    let template = load_template();
    let resources = template["Resources"].as_mapping().unwrap();
    let dashboard = &template["Resources"]["OperationsDashboard"];
    assert_eq!(s(&dashboard["Type"]), "AWS::CloudWatch::Dashboard");
    let sub = tag(&dashboard["Properties"]["DashboardBody"], "!Sub")
        .unwrap()
        .as_sequence()
        .unwrap();
    let resolver = Resolver::new(&template, &[]);
    let (expanded, json) = dashboard_body(&resolver);
    let widgets = json["widgets"].as_array().unwrap();
    let text = s(&sub[0]);
    assert!(text.contains(
        "SEARCH('{${Namespace},Region,Source} MetricName=\\\"CollectionLagSeconds\\\"', 'Maximum', 3600)"
    ));
    let lag_table = widgets
        .iter()
        .find(|w| w["type"] == "log")
        .expect("a Logs Insights widget");
    let query = lag_table["properties"]["query"].as_str().unwrap();
    assert!(
        query.contains("-aggregate'") && query.contains("by Region, Source"),
        "{query}"
    );
    // Only the SEARCH line reads the Region/Source dimension set (DetailedMetrics=true): the
    // totals must read the empty one, which is always published.
    assert_eq!(text.matches("{${Namespace},Region,Source}").count(), 1);
    // The switch reaches every function.
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(show(&env["DETAILED_METRICS"]), "!Ref DetailedMetrics");
    for metric in [
        "EventsFetched",
        "EventsStored",
        "EventsFiltered",
        "PartialRun",
        "SourcesFailed",
        "MaxCollectionLagSeconds",
        "AlertsQueued",
        "AlertsSent",
        "AlertsFailed",
        "OldestPendingAlertAgeSeconds",
        "ExportRows",
        "ExportFiles",
        "ExportLagDays",
        "DirtyDates",
    ] {
        assert!(text.contains(metric), "the dashboard shows {metric}");
    }
    let listed: BTreeSet<String> = widgets
        .iter()
        .find(|w| w["type"] == "alarm")
        .expect("an alarm status widget")["properties"]["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, BTreeSet::from(["x".to_string()]));
    let trail = Resolver::new(&template, &[("TrailBucket", "trail-bucket")]);
    for (resolver, expanded) in [(&resolver, expanded), (&trail, dashboard_body(&trail).0)] {
        for (id, r) in resources {
            if s(&r["Type"]) == "AWS::CloudWatch::Alarm" && resolver.exists(r) {
                assert!(
                    expanded.contains(&format!("${{{}.Arn}}", s(id))),
                    "{id:?} is on the dashboard"
                );
            }
        }
    }
    assert_eq!(show(&sub[1]["Namespace"]), OWN_NAMESPACE);
}

/// The dashboard's body for these parameters: the text with the `!Sub` variables of its
/// second argument put in (the `${Resource.Attribute}` references left), and the JSON with
/// every remaining `${...}` replaced by a sample value.
fn dashboard_body(resolver: &Resolver) -> (String, serde_json::Value) {
    let sub = tag(
        &resolver.template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"],
        "!Sub",
    )
    .unwrap()
    .as_sequence()
    .unwrap();
    let mut text = s(&sub[0]);
    for (name, v) in sub[1].as_mapping().unwrap() {
        let resolved = resolver.value(v);
        let inner = tag(&resolved, "!Sub")
            .map(s)
            .unwrap_or_else(|| show(&resolved));
        text = text.replace(&format!("${{{}}}", s(name)), &inner);
    }
    let mut body = text.clone();
    while let Some(start) = body.find("${") {
        let end = start + body[start..].find('}').unwrap();
        body.replace_range(start..=end, "x");
    }
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON ({e}):\n{body}"));
    (text, json)
}

/// The fast path's alarms are on the dashboard only when they exist: with
/// `RealtimeAlerts=false` the body names none of its resources and is still JSON.
#[test]
fn dashboard_lists_the_fast_path_alarms_only_when_they_exist() {
    let template = load_template();
    let count = |json: &serde_json::Value| {
        json["widgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["type"] == "alarm")
            .unwrap()["properties"]["alarms"]
            .as_array()
            .unwrap()
            .len()
    };
    let (on_text, on) = dashboard_body(&Resolver::new(&template, &[]));
    let (off_text, off) = dashboard_body(&Resolver::new(&template, &[("RealtimeAlerts", "false")]));
    assert_eq!(count(&on), count(&off) + 4);
    for id in [
        "RealtimeErrorsAlarm",
        "RealtimeThrottlesAlarm",
        "RealtimeDurationAlarm",
        "RealtimeDeadLetterAlarm",
    ] {
        let reference = format!("${{{id}.Arn}}");
        assert!(on_text.contains(&reference), "{id}");
        assert!(!off_text.contains(&reference), "{id} without the fast path");
    }
}

/// Athena reads Standard, Standard-IA and Glacier Instant Retrieval but not Glacier Flexible
/// Retrieval or Deep Archive: the default lifecycle keeps every exported day queryable, the
/// deeper tiers are opt-in.
#[test]
fn default_lifecycle_keeps_the_parquet_history_queryable() {
    let template = load_template();
    let classes = |tier: &str| -> Vec<(String, f64)> {
        let resolver = Resolver::new(&template, &[("AnalyticsArchiveTier", tier)]);
        let rules = resolver.value(
            &template["Resources"]["AnalyticsBucket"]["Properties"]["LifecycleConfiguration"]
                ["Rules"],
        );
        let rule = rules
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| s(&r["Prefix"]) == "iam-events/")
            .expect("a rule for the export prefix")
            .clone();
        rule["Transitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    s(&t["StorageClass"]),
                    resolver.number(&t["TransitionInDays"]),
                )
            })
            .collect()
    };
    let default = s(&template["Parameters"]["AnalyticsArchiveTier"]["Default"]);
    assert_eq!(
        classes(&default),
        [
            ("STANDARD_IA".to_string(), 30.0),
            ("GLACIER_IR".to_string(), 90.0)
        ]
    );
    for tier in ["flexible-retrieval", "deep-archive"] {
        let c = classes(tier);
        assert!(c.contains(&("GLACIER".to_string(), 90.0)), "{tier}: {c:?}");
    }
    assert!(classes("deep-archive").contains(&("DEEP_ARCHIVE".to_string(), 365.0)));
}

// ---- Sigma rules: SigmaRulesUri, SIGMA_RULES and the Collect role's read of the rules -------

/// CloudFormation's functions as far as the Collect role's Sigma policy uses them, for given
/// parameter values: `!Ref` (a parameter, `AWS::Partition`, `AWS::NoValue`), `!Sub` (with or
/// without variables), `!Select`, `!Split`, `!Join`, `!If` and the conditions (`!Equals`,
/// `!Not`) it names, each as CloudFormation evaluates them. `None` is `AWS::NoValue`.
struct Cfn<'a> {
    template: &'a Value,
    params: HashMap<String, String>,
}

impl Cfn<'_> {
    fn condition(&self, name: &str) -> bool {
        let c = &self.template["Conditions"][name];
        assert!(!c.is_null(), "no condition {name}");
        self.truth(c)
    }

    fn truth(&self, v: &Value) -> bool {
        let Value::Tagged(t) = v else {
            panic!("not a condition: {v:?}")
        };
        let args = t.value.as_sequence();
        match t.tag.to_string().as_str() {
            "!Equals" => {
                let args = args.unwrap();
                self.text(&args[0]) == self.text(&args[1])
            }
            "!Not" => !self.truth(&args.unwrap()[0]),
            "!And" => args.unwrap().iter().all(|c| self.truth(c)),
            "!Or" => args.unwrap().iter().any(|c| self.truth(c)),
            "!Condition" => self.condition(&s(&t.value)),
            other => panic!("condition {other} is not supported here"),
        }
    }

    fn text(&self, v: &Value) -> String {
        match self.eval(v) {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            other => panic!("{v:?} is not text: {other:?}"),
        }
    }

    fn list(&self, v: &Value) -> Vec<String> {
        match self.eval(v) {
            Some(Value::Sequence(items)) => items.iter().map(s).collect(),
            other => panic!("{v:?} is not a list: {other:?}"),
        }
    }

    fn sub(&self, text: &str, vars: &HashMap<String, String>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').unwrap() + start;
            let name = &rest[start + 2..end];
            let value = vars
                .get(name)
                .or_else(|| self.params.get(name))
                .cloned()
                .or_else(|| (name == "AWS::Partition").then(|| "aws".to_string()))
                .unwrap_or_else(|| panic!("!Sub: ${{{name}}} is not supported here"));
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn eval(&self, v: &Value) -> Option<Value> {
        let Value::Tagged(t) = v else {
            return Some(match v {
                Value::Sequence(items) => {
                    Value::Sequence(items.iter().filter_map(|i| self.eval(i)).collect())
                }
                Value::Mapping(m) => Value::Mapping(
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), self.eval(v)?)))
                        .collect(),
                ),
                other => other.clone(),
            });
        };
        let args = t.value.as_sequence();
        let arg = |i: usize| &args.unwrap_or_else(|| panic!("{}: a list", t.tag))[i];
        let text = |s: String| Some(Value::String(s));
        match t.tag.to_string().as_str() {
            "!Ref" => match s(&t.value).as_str() {
                "AWS::NoValue" => None,
                "AWS::Partition" => text("aws".into()),
                name => text(self.params[name].clone()),
            },
            "!Sub" => match &t.value {
                Value::String(template) => text(self.sub(template, &HashMap::new())),
                _ => {
                    let vars = arg(1)
                        .as_mapping()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (s(k), self.text(v)))
                        .collect();
                    text(self.sub(&s(arg(0)), &vars))
                }
            },
            "!Select" => {
                let index: usize = self.text(arg(0)).parse().unwrap();
                let list = self.list(arg(1));
                assert!(
                    index < list.len(),
                    "!Select {index} of {list:?}: out of range"
                );
                text(list[index].clone())
            }
            "!Split" => Some(Value::Sequence(
                self.text(arg(1))
                    .split(s(arg(0)).as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )),
            "!Join" => text(self.list(arg(1)).join(&s(arg(0)))),
            "!If" => self.eval(arg(if self.condition(&s(arg(0))) { 1 } else { 2 })),
            other => panic!("{other} is not supported here"),
        }
    }
}

/// A role's policies that depend on a condition, evaluated for one SigmaRulesUri.
fn sigma_policies(template: &Value, role: &str, uri: &str) -> Vec<Value> {
    let mut params: HashMap<String, String> = HashMap::new();
    for (name, p) in template["Parameters"].as_mapping().unwrap() {
        let default = match untag(&p["Default"]) {
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            other => s(other),
        };
        params.insert(s(name), default);
    }
    params.insert("SigmaRulesUri".into(), uri.into());
    let cfn = Cfn { template, params };
    template["Resources"][role]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|p| matches!(p, Value::Tagged(_)))
        .filter_map(|p| cfn.eval(p))
        .collect()
}

/// `SigmaRulesUri` reaches Collect, Realtime and IngestObjects (which run the rules), and no
/// other function, as `SIGMA_RULES`; when it is set, their roles may read the rule objects
/// under its prefix and list that prefix, nothing more of the bucket; the parameter's pattern
/// accepts exactly what the steps can read.
#[test]
fn sigma_rules_uri_reaches_collect_with_a_least_privilege_read() {
    use iamtrail_core::sigma::RulesLocation;
    const READERS: [&str; 3] = [
        "CollectFunction",
        "RealtimeFunction",
        "IngestObjectsFunction",
    ];
    let template = load_template();
    let parameter = &template["Parameters"]["SigmaRulesUri"];
    assert_eq!(s(&parameter["Default"]), "");
    for reader in READERS {
        let function = &template["Resources"][reader]["Properties"];
        assert_eq!(
            show(&function["Environment"]["Variables"]["SIGMA_RULES"]),
            "!Ref SigmaRulesUri",
            "{reader}"
        );
    }
    assert!(template["Globals"]["Function"]["Environment"]["Variables"]["SIGMA_RULES"].is_null());
    for (id, r) in template["Resources"].as_mapping().unwrap() {
        if !READERS.contains(&s(id).as_str()) {
            assert!(
                r["Properties"]["Environment"]["Variables"]["SIGMA_RULES"].is_null(),
                "{} gets SIGMA_RULES",
                s(id)
            );
        }
    }

    let pattern = regex::Regex::new(&s(&parameter["AllowedPattern"])).unwrap();
    for bad in [
        "s3://rules-bucket/a/b/c/d/",
        "s3://Rules_Bucket/sigma/",
        "s3://rules-bucket/sigma*/",
        "s3://rules-bucket//sigma/",
        "s3://rules-bucket/${aws:username}/",
        "https://rules-bucket.s3.amazonaws.com/sigma/",
        "rules/sigma",
    ] {
        assert!(!pattern.is_match(bad), "the pattern accepts {bad}");
    }

    for role in ["CollectRole", "RealtimeRole", "IngestObjectsRole"] {
        assert!(
            sigma_policies(&template, role, "").is_empty(),
            "{role}: no Sigma grant without SigmaRulesUri"
        );
    }
    for uri in [
        "s3://rules-bucket/team/sigma/",
        "s3://rules-bucket/sigma",
        "s3://rules-bucket/a/b/c/",
        "s3://rules-bucket/a.b/c=d/e",
        "s3://rules-bucket/",
        "s3://rules-bucket",
    ] {
        assert!(pattern.is_match(uri), "the pattern refuses {uri}");
        let Ok(RulesLocation::S3 { bucket, prefix }) = RulesLocation::parse(uri) else {
            panic!("SIGMA_RULES={uri} is not an S3 location");
        };
        let policies = sigma_policies(&template, "CollectRole", uri);
        assert_eq!(policies.len(), 1, "{uri}");
        for role in ["RealtimeRole", "IngestObjectsRole"] {
            assert_eq!(
                sigma_policies(&template, role, uri),
                policies,
                "{uri}: {role} reads the rules as Collect does"
            );
        }
        let statements = policies[0]["PolicyDocument"]["Statement"]
            .as_sequence()
            .unwrap();
        let mut granted = Vec::new();
        for st in statements {
            assert_eq!(s(&st["Effect"]), "Allow");
            let condition = match &st["Condition"] {
                Value::Null => None,
                c => {
                    let like = c["StringLike"].as_mapping().unwrap();
                    assert_eq!(like.len(), 1, "{uri}: one condition key");
                    Some(s(&c["StringLike"]["s3:prefix"]))
                }
            };
            granted.push((s(&st["Action"]), s(&st["Resource"]), condition));
        }
        let expected_list = (!prefix.is_empty()).then(|| format!("{prefix}*"));
        assert_eq!(
            granted,
            [
                (
                    "s3:GetObject".to_string(),
                    format!("arn:aws:s3:::{bucket}/{prefix}*"),
                    None
                ),
                (
                    "s3:ListBucket".to_string(),
                    format!("arn:aws:s3:::{bucket}"),
                    expected_list
                ),
            ],
            "{uri}"
        );
    }
}

// ---- The fast path: the Realtime rule, function and role, and the forwarding template -------

fn load_forwarding() -> Value {
    let path = repo_root().join("templates/realtime-forwarding.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A resolved YAML value as JSON; it must hold no CloudFormation function any more.
fn json(v: &Value) -> serde_json::Value {
    fn untagged(v: &Value) -> bool {
        match v {
            Value::Tagged(_) => false,
            Value::Sequence(items) => items.iter().all(untagged),
            Value::Mapping(m) => m.values().all(untagged),
            _ => true,
        }
    }
    assert!(untagged(v), "unresolved: {v:?}");
    serde_json::to_value(v).unwrap()
}

/// `event_pattern`'s pattern as EventBridge takes it: an `$or` of one pattern is refused
/// ("There must have at least 2 Objects in $or relationship"), so that pattern's fields stand in
/// its place.
fn eventbridge_form(mut pattern: serde_json::Value) -> serde_json::Value {
    let fields = pattern.as_object_mut().unwrap();
    let single = fields
        .get("$or")
        .and_then(|o| o.as_array())
        .filter(|o| o.len() == 1)
        .map(|o| o[0].as_object().unwrap().clone());
    if let Some(only) = single {
        fields.remove("$or");
        for (k, v) in only {
            assert!(fields.insert(k.clone(), v).is_none(), "{k} twice");
        }
    }
    pattern
}

/// What EventBridge refuses in a pattern: an `$or` of fewer than two patterns, an empty
/// array or object.
fn assert_eventbridge_accepts(pattern: &serde_json::Value, what: &str) {
    match pattern {
        serde_json::Value::Object(fields) => {
            assert!(!fields.is_empty(), "{what}: an empty object");
            for (k, v) in fields {
                if k == "$or" {
                    let branches = v.as_array().expect("$or holds an array");
                    assert!(branches.len() >= 2, "{what}: $or of {}", branches.len());
                }
                assert_eventbridge_accepts(v, what);
            }
        }
        serde_json::Value::Array(items) => {
            assert!(!items.is_empty(), "{what}: an empty array");
            items
                .iter()
                .for_each(|i| assert_eventbridge_accepts(i, what));
        }
        _ => {}
    }
}

/// The Realtime rule's pattern for these parameters, `None` when the rule does not exist.
fn realtime_pattern(template: &Value, overrides: &[(&str, &str)]) -> Option<serde_json::Value> {
    let resolver = Resolver::new(template, overrides);
    let rule = &template["Resources"]["RealtimeRule"];
    assert_eq!(s(&rule["Type"]), "AWS::Events::Rule");
    resolver
        .exists(rule)
        .then(|| json(&resolver.value(&rule["Properties"]["EventPattern"])))
}

fn pattern_options(sts: &[&str], root: bool) -> PatternOptions {
    PatternOptions {
        sts_event_names: sts.iter().map(|n| n.to_string()).collect(),
        root,
    }
}

/// A CloudTrail record of `name` as the rule sees it.
fn api_call(source: &str, name: &str, identity: &str) -> serde_json::Value {
    envelope(&serde_json::json!({
        "eventVersion": "1.08",
        "eventID": "0b9c2a51-0000-4000-8000-000000000001",
        "eventTime": "2026-11-30T10:00:00Z",
        "eventSource": source,
        "eventName": name,
        "eventType": "AwsApiCall",
        "awsRegion": "eu-west-1",
        "readOnly": false,
        "recipientAccountId": "111122223333",
        "userIdentity": {"type": identity, "accountId": "111122223333"},
    }))
    .unwrap()
}

/// The template's rule pattern is `iamtrail_core::realtime::event_pattern` for the options its
/// parameters give: the default STS name and the root branch by default, the names of
/// RealtimeStsEventNames, no STS branch without the STS source or names, no root branch without
/// the root source, and no `$or` when only the sources are left. The rule exists only with
/// RealtimeAlerts=true.
#[test]
fn realtime_rule_pattern_is_the_core_pattern() {
    let template = load_template();
    let cases: [(&[(&str, &str)], PatternOptions); 7] = [
        (&[], PatternOptions::default()),
        (
            &[("ProcessRootEvents", "false")],
            pattern_options(&["GetFederationToken"], false),
        ),
        (
            &[(
                "RealtimeStsEventNames",
                "GetFederationToken,GetSessionToken",
            )],
            pattern_options(&["GetFederationToken", "GetSessionToken"], true),
        ),
        (&[("ProcessStsEvents", "false")], pattern_options(&[], true)),
        (&[("RealtimeStsEventNames", "")], pattern_options(&[], true)),
        (
            &[
                ("ProcessStsEvents", "false"),
                ("ProcessRootEvents", "false"),
            ],
            pattern_options(&[], false),
        ),
        (
            &[
                ("RealtimeStsEventNames", "GetSessionToken"),
                ("ProcessRootEvents", "false"),
            ],
            pattern_options(&["GetSessionToken"], false),
        ),
    ];
    for (overrides, options) in cases {
        let pattern = realtime_pattern(&template, overrides).expect("the rule exists");
        assert_eq!(
            pattern,
            eventbridge_form(event_pattern(&options)),
            "{overrides:?}"
        );
        assert_eventbridge_accepts(&pattern, &format!("{overrides:?}"));
    }
    // The default is the core's default, unchanged (three branches).
    let default = realtime_pattern(&template, &[]).unwrap();
    assert_eq!(default, event_pattern(&PatternOptions::default()));
    assert_eq!(default["$or"].as_array().unwrap().len(), 3);
    let sources_only = realtime_pattern(
        &template,
        &[
            ("ProcessStsEvents", "false"),
            ("ProcessRootEvents", "false"),
        ],
    )
    .unwrap();
    assert!(sources_only.get("$or").is_none(), "{sources_only}");

    // What the pattern lets through, read from the template's own pattern.
    let session_token = api_call("sts.amazonaws.com", "GetSessionToken", "IAMUser");
    let federation_token = api_call("sts.amazonaws.com", "GetFederationToken", "IAMUser");
    let assume_role = api_call("sts.amazonaws.com", "AssumeRole", "AWSService");
    let root_kms = api_call("kms.amazonaws.com", "CreateKey", "Root");
    assert!(matches_pattern(&default, &federation_token));
    assert!(!matches_pattern(&default, &session_token));
    assert!(!matches_pattern(&default, &assume_role));
    assert!(matches_pattern(&default, &root_kms));
    let more = realtime_pattern(
        &template,
        &[(
            "RealtimeStsEventNames",
            "GetFederationToken,GetSessionToken",
        )],
    )
    .unwrap();
    assert!(matches_pattern(&more, &session_token));
    assert!(!matches_pattern(&more, &assume_role));
    assert!(!matches_pattern(&sources_only, &root_kms));
    assert!(matches_pattern(
        &sources_only,
        &api_call("iam.amazonaws.com", "CreateUser", "IAMUser")
    ));

    assert_eq!(
        realtime_pattern(&template, &[("RealtimeAlerts", "false")]),
        None
    );
}

/// With RealtimeAlerts=false no resource or output of the fast path exists and nothing that
/// does exist refers to one (CloudFormation refuses a reference to a resource whose condition
/// is false); with the default every one of them exists.
#[test]
fn realtime_alerts_false_removes_the_whole_fast_path() {
    let template = load_template();
    let resources = template["Resources"].as_mapping().unwrap();
    let ids: Vec<String> = resources
        .keys()
        .map(s)
        .filter(|id| id.starts_with("Realtime"))
        .collect();
    assert_eq!(
        ids.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "RealtimeLogGroup",
            "RealtimeRole",
            "RealtimeFunction",
            "RealtimeDeadLetterQueue",
            "RealtimeDeadLetterQueuePolicy",
            "RealtimeRule",
            "RealtimeInvokePermission",
            "RealtimeErrorsAlarm",
            "RealtimeThrottlesAlarm",
            "RealtimeDurationAlarm",
            "RealtimeDeadLetterAlarm",
        ])
    );
    let on = Resolver::new(&template, &[]);
    let off = Resolver::new(&template, &[("RealtimeAlerts", "false")]);
    for id in &ids {
        let r = &template["Resources"][id.as_str()];
        assert_eq!(s(&r["Condition"]), "RealtimeOn", "{id}");
        assert!(on.exists(r) && !off.exists(r), "{id}");
    }
    let reference = regex::Regex::new(&format!(r#"["{{]({})["}}.]"#, ids.join("|"))).unwrap();
    let outputs = template["Outputs"].as_mapping().unwrap();
    for (id, r) in resources.iter().chain(outputs) {
        if !off.exists(r) {
            continue;
        }
        let text = format!("{:?}", off.value(r));
        if let Some(m) = reference.find(&text) {
            panic!("{}: refers to {} without the fast path", s(id), m.as_str());
        }
    }
    for output in [
        "RealtimeFunctionName",
        "RealtimeRuleArn",
        "RealtimeDeadLetterQueueUrl",
    ] {
        let o = &template["Outputs"][output];
        assert!(on.exists(o) && !off.exists(o), "{output}");
    }
    // The key policy names the role only when it exists.
    let key_statements = |r: &Resolver| -> Vec<Value> {
        r.value(&template["Resources"]["AlertsKey"]["Properties"]["KeyPolicy"]["Statement"])
            .as_sequence()
            .unwrap()
            .clone()
    };
    let realtime_key = |statements: &[Value]| {
        statements
            .iter()
            .filter(|st| show(&st["Principal"]["AWS"]) == "!GetAtt RealtimeRole.Arn")
            .map(|st| {
                st["Action"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(s)
                    .collect::<BTreeSet<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        realtime_key(&key_statements(&on)),
        [BTreeSet::from([
            "kms:Decrypt".to_string(),
            "kms:GenerateDataKey*".to_string()
        ])],
        "Realtime publishes to the KMS-encrypted alerts topic"
    );
    assert!(realtime_key(&key_statements(&off)).is_empty());
}

/// One statement's (action, resource) pairs, the resource as text (`!GetAtt X.Arn`, `!Sub ...`).
fn grants(statement: &Value) -> Vec<(String, String)> {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::Sequence(items) => items.iter().map(show).collect(),
            other => vec![show(other)],
        }
    };
    let mut out = Vec::new();
    for action in list(&statement["Action"]) {
        for resource in list(&statement["Resource"]) {
            out.push((action.clone(), resource));
        }
    }
    out
}

/// A role's statements (policy name, statement) for these parameters.
fn role_statements(resolver: &Resolver, role: &str) -> Vec<(String, Value)> {
    let policies = resolver.value(&resolver.template["Resources"][role]["Properties"]["Policies"]);
    let mut out = Vec::new();
    for policy in policies.as_sequence().unwrap() {
        for st in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
            out.push((s(&policy["PolicyName"]), st.clone()));
        }
    }
    out
}

/// The Realtime role is least privilege: exactly the writes and the one index Query its work
/// needs, on the stack's own tables, topic, queue and log group; no Scan, no CloudTrail, no S3
/// but the Sigma read (only with SigmaRulesUri), no `*` resource and no wildcard action.
#[test]
fn realtime_role_is_least_privilege() {
    let template = load_template();
    let resolver = Resolver::new(&template, &[("SigmaRulesUri", "s3://rules-bucket/sigma/")]);
    let statements = role_statements(&resolver, "RealtimeRole");
    let mut granted = BTreeSet::new();
    let mut sigma = 0;
    for (policy, st) in &statements {
        assert_eq!(s(&st["Effect"]), "Allow", "{policy}: {st:?}");
        for (action, resource) in grants(st) {
            assert!(!action.contains('*'), "{policy}: {action}");
            assert_ne!(resource, "*", "{policy}: {action} on every resource");
            assert!(
                !action.starts_with("cloudtrail:") && action != "dynamodb:Scan",
                "{policy}: {action}"
            );
            if action.starts_with("s3:") {
                assert_eq!(policy, "sigma-rules", "{action} {resource}");
                sigma += 1;
                continue;
            }
            granted.insert((action, resource));
        }
    }
    assert_eq!(sigma, 2, "s3:GetObject and s3:ListBucket of the rules");
    let publish = role_statements(&resolver, "EvaluateAlertsRole")
        .iter()
        .flat_map(|(_, st)| grants(st))
        .find(|(a, _)| a == "sns:Publish")
        .expect("EvaluateAlerts publishes")
        .1;
    let g = |a: &str, r: &str| (a.to_string(), r.to_string());
    assert_eq!(
        granted,
        BTreeSet::from([
            g("dynamodb:BatchWriteItem", "!GetAtt EventsTable.Arn"),
            g("dynamodb:PutItem", "!GetAtt EventsTable.Arn"),
            g(
                "dynamodb:Query",
                "!Sub ${EventsTable.Arn}/index/event_name-event_time-index"
            ),
            g("dynamodb:UpdateItem", "!GetAtt ControlTable.Arn"),
            g("dynamodb:PutItem", "!GetAtt AlertsTable.Arn"),
            g("dynamodb:UpdateItem", "!GetAtt AlertsTable.Arn"),
            g("sns:Publish", &publish),
            g("sqs:SendMessage", "!GetAtt RealtimeDeadLetterQueue.Arn"),
            g("logs:CreateLogStream", "!GetAtt RealtimeLogGroup.Arn"),
            g("logs:PutLogEvents", "!GetAtt RealtimeLogGroup.Arn"),
        ])
    );
    // Without SigmaRulesUri: no S3 at all.
    let plain = Resolver::new(&template, &[]);
    assert!(role_statements(&plain, "RealtimeRole")
        .iter()
        .flat_map(|(_, st)| grants(st))
        .all(|(a, _)| !a.starts_with("s3:")));
    // Lambda runs the function as this role, and only the Realtime rule may invoke it.
    let function = &template["Resources"]["RealtimeFunction"];
    let p = &function["Properties"];
    assert_eq!(
        s(&function["Metadata"]["BuildProperties"]["Binary"]),
        "realtime"
    );
    assert_eq!(s(&function["Metadata"]["BuildMethod"]), "rust-cargolambda");
    assert_eq!(show(&p["Role"]), "!GetAtt RealtimeRole.Arn");
    assert_eq!(show(&p["FunctionName"]), "!Sub ${AWS::StackName}-realtime");
    assert_eq!(show(&p["CodeUri"]), ".");
    assert_eq!(
        show(&p["LoggingConfig"]["LogGroup"]),
        "!Ref RealtimeLogGroup"
    );
    assert_eq!(
        (show(&p["MemorySize"]), show(&p["Timeout"])),
        ("128".into(), "30".into())
    );
    let permission = &template["Resources"]["RealtimeInvokePermission"]["Properties"];
    assert_eq!(show(&permission["FunctionName"]), "!Ref RealtimeFunction");
    assert_eq!(s(&permission["Principal"]), "events.amazonaws.com");
    assert_eq!(show(&permission["SourceArn"]), "!GetAtt RealtimeRule.Arn");
    assert_eq!(show(&permission["SourceAccount"]), "!Ref AWS::AccountId");
}

/// The queues, queue policies and rules of both templates (the stack's, then the forwarding
/// one): every queue is encrypted; every dead-letter queue keeps its messages 14 days, and a
/// work queue (the ingest queue) redrives to one within fewer days; only EventBridge may send
/// to a rule's dead-letter queue, and only for that rule; every rule is ENABLED on the default
/// bus, and its target retries within the hour, then dead-letters.
#[test]
fn dead_letter_queues_are_encrypted_and_only_their_rule_sends() {
    let main = load_template();
    let forwarding = load_forwarding();
    let mut rules = 0;
    for template in [&main, &forwarding] {
        let resources = template["Resources"].as_mapping().unwrap();
        for (id, r) in resources {
            let id = s(id);
            match s(&r["Type"]).as_str() {
                "AWS::SQS::Queue" => {
                    let p = &r["Properties"];
                    assert!(
                        untag(&p["SqsManagedSseEnabled"]).as_bool() == Some(true)
                            || !p["KmsMasterKeyId"].is_null(),
                        "{id} is encrypted"
                    );
                    if id.ends_with("DeadLetterQueue") {
                        assert_eq!(show(&p["MessageRetentionPeriod"]), "1209600", "{id}");
                        assert!(p["RedrivePolicy"].is_null(), "{id}");
                        continue;
                    }
                    // A moved message keeps its first enqueue time: the dead-letter queue
                    // must keep messages longer than the queue it serves.
                    let redrive = &p["RedrivePolicy"];
                    let dead = show(&redrive["deadLetterTargetArn"]);
                    let dead = dead
                        .strip_prefix("!GetAtt ")
                        .and_then(|q| q.strip_suffix(".Arn"))
                        .unwrap_or_else(|| {
                            panic!("{id}: a work queue without a dead-letter queue")
                        });
                    assert!(dead.ends_with("DeadLetterQueue"), "{id} -> {dead}");
                    let retention: u32 = show(&p["MessageRetentionPeriod"]).parse().unwrap();
                    assert!(retention < 1209600, "{id}: {retention} s");
                    assert_eq!(
                        show(&template["Resources"][dead]["Condition"]),
                        show(&r["Condition"]),
                        "{id}: its dead-letter queue exists with it"
                    );
                }
                "AWS::Events::Rule" => {
                    rules += 1;
                    let p = &r["Properties"];
                    assert_eq!(s(&p["State"]), "ENABLED", "{id}");
                    assert_eq!(s(&p["EventBusName"]), "default", "{id}");
                    let targets = p["Targets"].as_sequence().unwrap();
                    assert_eq!(targets.len(), 1, "{id}");
                    let target = &targets[0];
                    let retry = &target["RetryPolicy"];
                    let attempts: u32 = show(&retry["MaximumRetryAttempts"]).parse().unwrap();
                    let age: u32 = show(&retry["MaximumEventAgeInSeconds"]).parse().unwrap();
                    assert!((1..=185).contains(&attempts), "{id}: {attempts} retries");
                    assert!((60..=3600).contains(&age), "{id}: {age} s");
                    let queue = show(&target["DeadLetterConfig"]["Arn"]);
                    let queue = queue
                        .strip_prefix("!GetAtt ")
                        .and_then(|q| q.strip_suffix(".Arn"))
                        .unwrap_or_else(|| panic!("{id}: dead-letter queue {queue}"));
                    assert_eq!(s(&template["Resources"][queue]["Type"]), "AWS::SQS::Queue");
                    assert_eq!(
                        show(&template["Resources"][queue]["Condition"]),
                        show(&r["Condition"]),
                        "{id}: the queue exists with the rule"
                    );
                    let policies: Vec<&Value> = resources
                        .values()
                        .filter(|q| {
                            s(&q["Type"]) == "AWS::SQS::QueuePolicy"
                                && q["Properties"]["Queues"]
                                    .as_sequence()
                                    .unwrap()
                                    .iter()
                                    .any(|x| show(x) == format!("!Ref {queue}"))
                        })
                        .collect();
                    assert_eq!(policies.len(), 1, "{queue}: one queue policy");
                    let mut allows = 0;
                    for st in policies[0]["Properties"]["PolicyDocument"]["Statement"]
                        .as_sequence()
                        .unwrap()
                    {
                        if s(&st["Effect"]) == "Deny" {
                            continue;
                        }
                        allows += 1;
                        assert_eq!(s(&st["Principal"]["Service"]), "events.amazonaws.com");
                        assert_eq!(s(&st["Action"]), "sqs:SendMessage");
                        assert_eq!(show(&st["Resource"]), format!("!GetAtt {queue}.Arn"));
                        assert_eq!(
                            show(&st["Condition"]["ArnEquals"]["aws:SourceArn"]),
                            format!("!GetAtt {id}.Arn"),
                            "{queue}: only {id} sends"
                        );
                    }
                    assert_eq!(allows, 1, "{queue}: one Allow");
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        rules, 3,
        "the Realtime rule, the ingestion's rule and the forwarding rule"
    );
    // Events Realtime itself failed on land in the same queue (Lambda's on-failure
    // destination, sent with the function's role).
    let invoke = &main["Resources"]["RealtimeFunction"]["Properties"]["EventInvokeConfig"];
    assert_eq!(
        show(&invoke["DestinationConfig"]["OnFailure"]["Destination"]),
        "!GetAtt RealtimeDeadLetterQueue.Arn"
    );
    assert_eq!(s(&invoke["DestinationConfig"]["OnFailure"]["Type"]), "SQS");
}

/// The forwarding template's rule selects what the stack's rule selects, for the same choices
/// (its StsEventNames and IncludeRoot are the stack's RealtimeStsEventNames and
/// ProcessRootEvents), and sends it to the home region's default bus with a role that may do
/// nothing else; in the home region itself it creates nothing; it names no region or account.
#[test]
fn forwarding_template_sends_the_same_pattern_to_the_home_bus_only() {
    let main = load_template();
    let forwarding = load_forwarding();
    let home_bus =
        "!Sub arn:${AWS::Partition}:events:${HomeRegion}:${AWS::AccountId}:event-bus/default";
    for (sts, root, options) in [
        ("GetFederationToken", "true", PatternOptions::default()),
        (
            "GetFederationToken",
            "false",
            pattern_options(&["GetFederationToken"], false),
        ),
        (
            "GetFederationToken,GetSessionToken",
            "true",
            pattern_options(&["GetFederationToken", "GetSessionToken"], true),
        ),
        ("", "true", pattern_options(&[], true)),
        ("", "false", pattern_options(&[], false)),
    ] {
        let resolver = Resolver::new(
            &forwarding,
            &[
                ("HomeRegion", "us-east-1"),
                ("StsEventNames", sts),
                ("IncludeRoot", root),
            ],
        )
        .in_region("eu-west-1");
        let rule = &forwarding["Resources"]["ForwardRule"];
        assert!(resolver.exists(rule));
        let pattern = json(&resolver.value(&rule["Properties"]["EventPattern"]));
        assert_eq!(
            pattern,
            eventbridge_form(event_pattern(&options)),
            "{sts:?} {root}"
        );
        assert_eventbridge_accepts(&pattern, &format!("forwarding {sts:?} {root}"));
        assert_eq!(
            Some(pattern),
            realtime_pattern(
                &main,
                &[("RealtimeStsEventNames", sts), ("ProcessRootEvents", root)]
            ),
            "the stack's rule, same choices"
        );
    }
    // The default parameters are the stack's defaults.
    assert_eq!(
        s(&forwarding["Parameters"]["StsEventNames"]["Default"]),
        s(&main["Parameters"]["RealtimeStsEventNames"]["Default"])
    );
    assert_eq!(
        s(&forwarding["Parameters"]["IncludeRoot"]["Default"]),
        s(&main["Parameters"]["ProcessRootEvents"]["Default"])
    );

    let r = &forwarding["Resources"];
    let target = &r["ForwardRule"]["Properties"]["Targets"][0];
    assert_eq!(show(&target["Arn"]), home_bus);
    assert_eq!(show(&target["RoleArn"]), "!GetAtt ForwardRole.Arn");
    let role = &r["ForwardRole"]["Properties"];
    assert!(
        role["RoleName"].is_null(),
        "a StackSet makes one role per region"
    );
    let trust = role["AssumeRolePolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(trust.len(), 1);
    assert_eq!(s(&trust[0]["Principal"]["Service"]), "events.amazonaws.com");
    assert_eq!(s(&trust[0]["Action"]), "sts:AssumeRole");
    assert_eq!(
        show(&trust[0]["Condition"]["StringEquals"]["aws:SourceAccount"]),
        "!Ref AWS::AccountId"
    );
    let resolver =
        Resolver::new(&forwarding, &[("HomeRegion", "us-east-1")]).in_region("eu-west-1");
    let statements = role_statements(&resolver, "ForwardRole");
    let all: Vec<(String, String)> = statements
        .iter()
        .inspect(|(_, st)| assert_eq!(s(&st["Effect"]), "Allow"))
        .flat_map(|(_, st)| grants(st))
        .collect();
    assert_eq!(
        all,
        [("events:PutEvents".to_string(), home_bus.to_string())]
    );

    // In the home region: nothing but the placeholder.
    let home = Resolver::new(&forwarding, &[("HomeRegion", "eu-west-1")]).in_region("eu-west-1");
    let existing: Vec<String> = r
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, v)| home.exists(v))
        .map(|(k, _)| s(k))
        .collect();
    assert_eq!(existing, ["Placeholder"]);
    for (id, o) in forwarding["Outputs"].as_mapping().unwrap() {
        assert!(!home.exists(o), "{}", s(id));
    }

    // Nothing tied to one region or account: usable as a StackSet template.
    let region = regex::Regex::new(r"\b[a-z]{2}(-gov)?-[a-z]+-[0-9]\b|\b[0-9]{12}\b").unwrap();
    for section in ["Parameters", "Conditions", "Resources", "Outputs"] {
        let mut text = format!("{:?}", forwarding[section]);
        if section == "Parameters" {
            // Descriptions may give examples.
            text = forwarding[section]
                .as_mapping()
                .unwrap()
                .values()
                .map(|p| format!("{:?}{:?}", p["Default"], p["AllowedValues"]))
                .collect();
        }
        let text = text.replace(
            &format!(
                "{:?}",
                forwarding["Resources"]["ForwardRule"]["Properties"]["Description"]
            ),
            "",
        );
        assert!(
            region.find(&text).is_none(),
            "{section} names {:?}",
            region.find(&text).map(|m| m.as_str())
        );
    }
}

// ---- The S3 ingestion (docs/ingest.md): TrailBucket and everything that hangs off it --------

const TRAIL_BUCKET: &str = "trail-bucket";
const TRAIL_KEY: &str =
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// The resources of the S3 ingestion, by the condition they are created under.
const INGEST_RESOURCES: [(&str, &str); 20] = [
    ("IngestRunLogGroup", "IngestOn"),
    ("IngestRunRole", "IngestOn"),
    ("IngestRunFunction", "IngestOn"),
    ("IngestObjectsLogGroup", "IngestOn"),
    ("IngestObjectsRole", "IngestOn"),
    ("IngestObjectsFunction", "IngestOn"),
    ("IngestStateMachineLogGroup", "IngestOn"),
    ("IngestStateMachineRole", "IngestOn"),
    ("IngestStateMachine", "IngestOn"),
    ("IngestExecutionsFailedAlarm", "IngestOn"),
    ("IngestObjectsErrorsAlarm", "IngestOn"),
    ("IngestDeadLetterQueue", "IngestContinuousOn"),
    ("IngestDeadLetterQueuePolicy", "IngestContinuousOn"),
    ("IngestQueue", "IngestContinuousOn"),
    ("IngestQueuePolicy", "IngestContinuousOn"),
    ("IngestRule", "IngestContinuousOn"),
    ("IngestEventSourceMapping", "IngestContinuousOn"),
    ("IngestSweepScheduleRole", "IngestContinuousOn"),
    ("IngestSweepRunSchedule", "IngestContinuousOn"),
    ("IngestDeadLetterAlarm", "IngestContinuousOn"),
];

/// The resolver of a stack reading `TRAIL_BUCKET`, with more parameters.
fn ingest_resolver<'a>(template: &'a Value, more: &[(&str, &str)]) -> Resolver<'a> {
    let mut params = vec![("TrailBucket", TRAIL_BUCKET)];
    params.extend_from_slice(more);
    Resolver::new(template, &params).in_region("us-east-1")
}

/// `!Sub "text"` whose `${...}` are all parameters or pseudo parameters, as the plain text
/// CloudFormation makes of it (the stack `iamtrail` in us-east-1, account 123456789012); a
/// `!Sub` naming a resource (`${X.Arn}`) and every other function are kept.
fn expand(resolver: &Resolver, v: &Value) -> Value {
    match v {
        Value::Tagged(t) if t.tag == "!Sub" && t.value.is_string() => {
            let text = s(&t.value);
            let mut out = String::new();
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                let end = start + rest[start..].find('}').unwrap();
                let name = &rest[start + 2..end];
                let value = match name {
                    "AWS::Partition" => Some("aws".to_string()),
                    "AWS::Region" => Some("us-east-1".to_string()),
                    "AWS::AccountId" => Some("123456789012".to_string()),
                    "AWS::StackName" => Some("iamtrail".to_string()),
                    _ => resolver.params.get(name).cloned(),
                };
                let Some(value) = value else {
                    return v.clone();
                };
                out.push_str(&rest[..start]);
                out.push_str(&value);
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Sequence(items) => {
            Value::Sequence(items.iter().map(|i| expand(resolver, i)).collect())
        }
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), expand(resolver, v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A role's grants for these parameters, `(action, resource, condition)`, every value resolved
/// as far as [`expand`] goes (the condition as JSON text, empty without one); each statement
/// an Allow.
fn role_grants(resolver: &Resolver, role: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (policy, st) in role_statements(resolver, role) {
        assert_eq!(s(&st["Effect"]), "Allow", "{role} {policy}: {st:?}");
        let st = expand(resolver, &st);
        let condition = match &st["Condition"] {
            Value::Null => String::new(),
            c => json(c).to_string(),
        };
        for (action, resource) in grants(&st) {
            out.insert((action, resource, condition.clone()));
        }
    }
    out
}

fn grant(action: &str, resource: &str, condition: &str) -> (String, String, String) {
    (action.into(), resource.into(), condition.into())
}

/// Whether `text` matches an IAM resource pattern (`*` any characters, `?` one).
fn iam_glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// With TrailBucket empty (the default) none of the S3 ingestion's resources or outputs exists,
/// and nothing that exists refers to one (CloudFormation refuses a reference to a resource whose
/// condition is false); with a trail bucket all of them exist, the continuous mode's only with
/// IngestContinuous=true. Every resource named Ingest* is in the list, under its condition.
#[test]
fn s3_ingestion_exists_only_with_a_trail_bucket() {
    let template = load_template();
    let resources = template["Resources"].as_mapping().unwrap();
    let ids: BTreeSet<String> = resources
        .keys()
        .map(s)
        .filter(|id| id.starts_with("Ingest"))
        .collect();
    assert_eq!(
        ids,
        INGEST_RESOURCES
            .iter()
            .map(|(id, _)| id.to_string())
            .collect(),
        "the S3 ingestion's resources"
    );
    for (id, condition) in INGEST_RESOURCES {
        assert_eq!(
            s(&template["Resources"][id]["Condition"]),
            condition,
            "{id}"
        );
    }
    assert_eq!(s(&template["Parameters"]["TrailBucket"]["Default"]), "");
    let off = Resolver::new(&template, &[]);
    let batch = ingest_resolver(&template, &[("IngestContinuous", "false")]);
    let continuous = ingest_resolver(&template, &[]);
    // A KMS key or a prefix without a bucket creates nothing either.
    let key_only = Resolver::new(
        &template,
        &[("TrailKmsKeyArn", TRAIL_KEY), ("TrailPrefix", "org/trails")],
    );
    for (id, condition) in INGEST_RESOURCES {
        let r = &template["Resources"][id];
        assert!(
            !off.exists(r) && !key_only.exists(r),
            "{id} without a trail bucket"
        );
        assert!(continuous.exists(r), "{id} with a trail bucket");
        assert_eq!(
            batch.exists(r),
            condition == "IngestOn",
            "{id}, IngestContinuous=false"
        );
    }
    let outputs = template["Outputs"].as_mapping().unwrap();
    let ingest_outputs: Vec<String> = outputs
        .iter()
        .filter(|(_, o)| !off.exists(o))
        .map(|(k, _)| s(k))
        .filter(|k| !k.starts_with("Realtime"))
        .collect();
    assert_eq!(
        ingest_outputs,
        [
            "IngestStateMachineArn",
            "TrailBucketName",
            "IngestRunFunctionName",
            "IngestObjectsFunctionName",
            "IngestDeadLetterQueueUrl"
        ]
    );
    // Nothing left refers to a resource that does not exist.
    for resolver in [&off, &batch, &key_only] {
        let absent: Vec<&str> = INGEST_RESOURCES
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !resolver.exists(&template["Resources"][*id]))
            .collect();
        if absent.is_empty() {
            continue;
        }
        let reference =
            regex::Regex::new(&format!(r#"["{{ ]({})["}}.]"#, absent.join("|"))).unwrap();
        for (id, r) in resources.iter().chain(outputs) {
            if !resolver.exists(r) {
                continue;
            }
            let text = format!("{:?}", resolver.value(r));
            if let Some(m) = reference.find(&text) {
                panic!("{}: refers to {} that does not exist", s(id), m.as_str());
            }
        }
    }
    // The functions the tracker runs are not touched by the switch.
    assert_eq!(
        role_statements(&off, "CollectRole"),
        role_statements(&continuous, "CollectRole")
    );
}

/// The S3 ingestion's roles are least privilege, for a trail at the bucket's root and under a
/// prefix, with and without a KMS key and the continuous mode: exactly the grants their work
/// needs; the trail bucket only under `<TrailPrefix>/AWSLogs/` (the core's `logs_root`),
/// listed by IngestRun and read by IngestObjects; KMS only with TrailKmsKeyArn, only for
/// IngestObjects and only through S3 in the stack's region; no CloudTrail, no wildcard action,
/// and no `*` resource but the log-delivery actions of the state machine role, which have no
/// resource-level permissions (the tracker's role has the same).
#[test]
fn ingest_roles_are_least_privilege() {
    use iamtrail_core::trail::{logs_root, manifest_key, result_key, retry_key, summary_key};
    let template = load_template();
    const ROLES: [&str; 4] = [
        "IngestRunRole",
        "IngestObjectsRole",
        "IngestStateMachineRole",
        "IngestSweepScheduleRole",
    ];
    let log_delivery: BTreeSet<String> =
        role_grants(&Resolver::new(&template, &[]), "TrackerStateMachineRole")
            .into_iter()
            .filter(|(_, r, _)| r == "*")
            .map(|(a, _, _)| a)
            .collect();
    assert!(
        log_delivery.iter().all(|a| a.starts_with("logs:")),
        "{log_delivery:?}"
    );
    for prefix in ["", "org/trails"] {
        for key in ["", TRAIL_KEY] {
            for continuous in ["true", "false"] {
                let resolver = ingest_resolver(
                    &template,
                    &[
                        ("TrailPrefix", prefix),
                        ("TrailKmsKeyArn", key),
                        ("IngestContinuous", continuous),
                    ],
                );
                let case = format!("prefix {prefix:?}, key {key:?}, continuous {continuous}");
                let root = logs_root(prefix);
                let trail = format!("arn:aws:s3:::{TRAIL_BUCKET}");
                let listing = format!(r#"{{"StringLike":{{"s3:prefix":"{root}*"}}}}"#);
                let via_s3 = r#"{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}"#;

                let run = role_grants(&resolver, "IngestRunRole");
                assert_eq!(
                    run,
                    BTreeSet::from([
                        grant("s3:ListBucket", &trail, &listing),
                        grant("s3:GetObject", "!Sub ${AnalyticsBucket.Arn}/ingest/*", ""),
                        grant("s3:PutObject", "!Sub ${AnalyticsBucket.Arn}/ingest/*", ""),
                        grant("s3:ListBucket", "!GetAtt AnalyticsBucket.Arn", ""),
                        grant("dynamodb:GetItem", "!GetAtt ControlTable.Arn", ""),
                        grant("logs:CreateLogStream", "!GetAtt IngestRunLogGroup.Arn", ""),
                        grant("logs:PutLogEvents", "!GetAtt IngestRunLogGroup.Arn", ""),
                    ]),
                    "IngestRunRole, {case}"
                );

                let objects = role_grants(&resolver, "IngestObjectsRole");
                let mut expected = BTreeSet::from([
                    grant("s3:GetObject", &format!("{trail}/{root}*"), ""),
                    grant("dynamodb:BatchWriteItem", "!GetAtt EventsTable.Arn", ""),
                    grant("dynamodb:PutItem", "!GetAtt EventsTable.Arn", ""),
                    grant(
                        "dynamodb:Query",
                        "!Sub ${EventsTable.Arn}/index/event_name-event_time-index",
                        "",
                    ),
                    grant("dynamodb:GetItem", "!GetAtt ControlTable.Arn", ""),
                    grant("dynamodb:PutItem", "!GetAtt ControlTable.Arn", ""),
                    grant("dynamodb:UpdateItem", "!GetAtt ControlTable.Arn", ""),
                    grant("dynamodb:PutItem", "!GetAtt AlertsTable.Arn", ""),
                    grant(
                        "s3:PutObject",
                        "!Sub ${AnalyticsBucket.Arn}/ingest/*/results/*",
                        "",
                    ),
                    grant(
                        "s3:PutObject",
                        "!Sub ${AnalyticsBucket.Arn}/raw-events/*",
                        "",
                    ),
                    grant(
                        "logs:CreateLogStream",
                        "!GetAtt IngestObjectsLogGroup.Arn",
                        "",
                    ),
                    grant("logs:PutLogEvents", "!GetAtt IngestObjectsLogGroup.Arn", ""),
                ]);
                if !key.is_empty() {
                    expected.insert(grant("kms:Decrypt", key, via_s3));
                }
                if continuous == "true" {
                    for action in [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:GetQueueAttributes",
                    ] {
                        expected.insert(grant(action, "!GetAtt IngestQueue.Arn", ""));
                    }
                }
                assert_eq!(objects, expected, "IngestObjectsRole, {case}");

                let machine = role_grants(&resolver, "IngestStateMachineRole");
                let name = "iamtrail-s3-ingest";
                let mut expected = BTreeSet::from([
                    grant("lambda:InvokeFunction", "!GetAtt IngestRunFunction.Arn", ""),
                    grant(
                        "lambda:InvokeFunction",
                        "!Sub ${IngestRunFunction.Arn}:*",
                        "",
                    ),
                    grant(
                        "lambda:InvokeFunction",
                        "!GetAtt IngestObjectsFunction.Arn",
                        "",
                    ),
                    grant(
                        "lambda:InvokeFunction",
                        "!Sub ${IngestObjectsFunction.Arn}:*",
                        "",
                    ),
                    grant(
                        "states:StartExecution",
                        &format!("arn:aws:states:us-east-1:123456789012:stateMachine:{name}"),
                        "",
                    ),
                    grant(
                        "states:DescribeExecution",
                        &format!("arn:aws:states:us-east-1:123456789012:execution:{name}/*"),
                        "",
                    ),
                    grant(
                        "states:StopExecution",
                        &format!("arn:aws:states:us-east-1:123456789012:execution:{name}/*"),
                        "",
                    ),
                    grant(
                        "s3:GetObject",
                        "!Sub ${AnalyticsBucket.Arn}/ingest/*/manifest.json",
                        "",
                    ),
                ]);
                for action in [
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ] {
                    expected.insert(grant(
                        action,
                        "!Sub ${AnalyticsBucket.Arn}/ingest/map-results/*",
                        "",
                    ));
                }
                for action in &log_delivery {
                    expected.insert(grant(action, "*", ""));
                }
                assert_eq!(machine, expected, "IngestStateMachineRole, {case}");

                if continuous == "true" {
                    assert_eq!(
                        role_grants(&resolver, "IngestSweepScheduleRole"),
                        BTreeSet::from([grant(
                            "states:StartExecution",
                            "!Ref IngestStateMachine",
                            ""
                        )]),
                        "{case}"
                    );
                }

                for role in ROLES {
                    if !resolver.exists(&template["Resources"][role]) {
                        continue;
                    }
                    for (action, resource, condition) in role_grants(&resolver, role) {
                        let what = format!("{role} {action} {resource} ({case})");
                        assert!(!action.starts_with("cloudtrail:"), "{what}");
                        assert!(
                            !action.starts_with("kms:") || role == "IngestObjectsRole",
                            "{what}"
                        );
                        assert!(
                            !action.contains('*') || action == "kms:GenerateDataKey*",
                            "{what}"
                        );
                        if resource == "*" {
                            assert!(
                                role == "IngestStateMachineRole" && log_delivery.contains(&action),
                                "{what}: every resource"
                            );
                        }
                        // The trail bucket: its log objects under the logs root, nothing else.
                        if resource.contains(TRAIL_BUCKET) {
                            let object = format!("{trail}/{root}*");
                            assert!(
                                (action == "s3:ListBucket"
                                    && resource == trail
                                    && condition == listing)
                                    || (action == "s3:GetObject"
                                        && resource == object
                                        && condition.is_empty()),
                                "{what} {condition}"
                            );
                        }
                    }
                }
                // The trail lists only the logs root; the object keys the steps read are under it.
                let sample = format!("{root}o-aa11bb22cc/111122223333/CloudTrail/eu-west-1/2026/11/30/111122223333_CloudTrail_eu-west-1_20261130T1005Z_abc.json.gz");
                assert!(iam_glob(
                    &format!("{trail}/{root}*"),
                    &format!("{trail}/{sample}")
                ));
                assert!(!iam_glob(
                    &format!("{trail}/{root}*"),
                    &format!("{trail}/other/AWSLogs/x.json.gz")
                ));
            }
        }
    }

    // The run files the steps read and write are where the roles allow it (the core's keys).
    let run = "sweep-2026-11-30T10-00";
    for (pattern, key) in [
        ("ingest/*", manifest_key(run)),
        ("ingest/*", result_key(run, 3)),
        ("ingest/*", retry_key(run)),
        ("ingest/*", summary_key(run)),
        ("ingest/*/results/*", result_key(run, 3)),
        ("ingest/*/manifest.json", manifest_key(run)),
    ] {
        assert!(iam_glob(pattern, &key), "{key} is not under {pattern}");
    }
    assert!(!iam_glob("ingest/*/results/*", &manifest_key(run)));

    // IngestObjects stores and reads history as Collect does, on the same tables and index.
    let plain = Resolver::new(&template, &[]);
    let table_grants =
        |grants: BTreeSet<(String, String, String)>, table: &str| -> BTreeSet<(String, String)> {
            grants
                .into_iter()
                .filter(|(a, r, _)| a.starts_with("dynamodb:") && r.contains(table))
                .map(|(a, r, _)| (a, r))
                .collect()
        };
    let collect = role_grants(&plain, "CollectRole");
    let objects = role_grants(&ingest_resolver(&template, &[]), "IngestObjectsRole");
    for table in ["EventsTable", "AlertsTable"] {
        assert_eq!(
            table_grants(objects.clone(), table),
            table_grants(collect.clone(), table),
            "{table}: IngestObjects writes as Collect does"
        );
    }
    assert!(table_grants(objects, "ControlTable").is_subset(&table_grants(collect, "ControlTable")));
}

/// The s3-ingest state machine: every `${...}` of statemachine/s3-ingest.asl.json is one of its
/// DefinitionSubstitutions and every substitution is used; the Distributed Map's children are
/// EXPRESS (an IngestObjects batch fits their 5 minutes), no batch may fail unnoticed, the
/// manifest and the Map's results are where the role allows them; STANDARD, logged like the
/// tracker, named as the role's ARNs expect.
#[test]
fn ingest_state_machine_substitutions_cover_the_asl() {
    let template = load_template();
    let machine = &template["Resources"]["IngestStateMachine"];
    assert_eq!(s(&machine["Type"]), "AWS::Serverless::StateMachine");
    let p = &machine["Properties"];
    assert_eq!(s(&p["Type"]), "STANDARD");
    assert_eq!(s(&p["DefinitionUri"]), "statemachine/s3-ingest.asl.json");
    assert_eq!(show(&p["Name"]), "!Sub ${AWS::StackName}-s3-ingest");
    assert_eq!(show(&p["Role"]), "!GetAtt IngestStateMachineRole.Arn");
    let tracker = &template["Resources"]["TrackerStateMachine"]["Properties"];
    assert_eq!(
        show(&p["Logging"]["Level"]),
        show(&tracker["Logging"]["Level"]),
        "logged like the tracker"
    );
    assert_eq!(
        show(&p["Logging"]["IncludeExecutionData"]),
        show(&tracker["Logging"]["IncludeExecutionData"])
    );
    assert_eq!(
        show(&p["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]),
        "!GetAtt IngestStateMachineLogGroup.Arn"
    );
    assert_eq!(
        show(&template["Resources"]["IngestStateMachineLogGroup"]["Properties"]["LogGroupName"]),
        "!Sub /aws/vendedlogs/states/${AWS::StackName}-s3-ingest"
    );

    let text =
        std::fs::read_to_string(repo_root().join("statemachine/s3-ingest.asl.json")).unwrap();
    let used: BTreeSet<String> = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)\}")
        .unwrap()
        .captures_iter(&text)
        .map(|c| c[1].to_string())
        .collect();
    let substitutions = p["DefinitionSubstitutions"].as_mapping().unwrap();
    let given: BTreeSet<String> = substitutions.keys().map(s).collect();
    assert_eq!(
        used, given,
        "the ASL's ${{...}} and the DefinitionSubstitutions"
    );
    let sub = |k: &str| show(&p["DefinitionSubstitutions"][k]);
    assert_eq!(sub("IngestChildExecutionType"), "EXPRESS");
    assert_eq!(sub("IngestRunFunctionArn"), "!GetAtt IngestRunFunction.Arn");
    assert_eq!(
        sub("IngestObjectsFunctionArn"),
        "!GetAtt IngestObjectsFunction.Arn"
    );
    assert_eq!(sub("IngestMaxConcurrency"), "!Ref IngestMaxConcurrency");
    assert_eq!(sub("IngestToleratedFailurePercentage"), "0");
    assert_eq!(sub("AnalyticsBucketName"), "!Ref AnalyticsBucket");
    let timeout: u64 = sub("IngestTimeoutSeconds").parse().unwrap();
    assert!((3600..=86400).contains(&timeout), "{timeout}");
    let concurrency = &template["Parameters"]["IngestMaxConcurrency"];
    assert_eq!(
        (
            show(&concurrency["Default"]),
            show(&concurrency["MinValue"]),
            show(&concurrency["MaxValue"])
        ),
        ("40".into(), "1".into(), "1000".into())
    );
    let description = s(&concurrency["Description"]);
    assert!(description.contains("DynamoDB") && description.contains("Lambda concurrency"));

    // Rendered as SAM renders it (defaults, sample ARNs): JSON, the Map as described.
    let mut rendered = text.clone();
    for (k, v) in substitutions {
        let value = match s(k).as_str() {
            "IngestRunFunctionArn" => {
                "arn:aws:lambda:us-east-1:123456789012:function:iamtrail-ingest-run".into()
            }
            "IngestObjectsFunctionArn" => {
                "arn:aws:lambda:us-east-1:123456789012:function:iamtrail-ingest-objects".into()
            }
            "IngestMaxConcurrency" => show(&concurrency["Default"]),
            "AnalyticsBucketName" => "iamtrail-analytics-123456789012".into(),
            _ => show(v),
        };
        rendered = rendered.replace(&format!("${{{}}}", s(k)), &value);
    }
    let asl: serde_json::Value = serde_json::from_str(&rendered).expect("the rendered ASL is JSON");
    let map = &asl["States"]["Ingest"];
    assert_eq!(
        map["ItemProcessor"]["ProcessorConfig"]["Mode"],
        "DISTRIBUTED"
    );
    assert_eq!(
        map["ItemProcessor"]["ProcessorConfig"]["ExecutionType"],
        "EXPRESS"
    );
    assert_eq!(map["ToleratedFailurePercentage"], 0);
    assert_eq!(map["MaxConcurrency"], 40);
    assert_eq!(asl["TimeoutSeconds"], timeout);
    assert_eq!(
        map["ResultWriter"]["Parameters"]["Bucket"],
        "iamtrail-analytics-123456789012"
    );
    let results = map["ResultWriter"]["Parameters"]["Prefix"]
        .as_str()
        .unwrap();
    let machine_grants = role_grants(&ingest_resolver(&template, &[]), "IngestStateMachineRole");
    assert!(
        machine_grants.contains(&grant(
            "s3:PutObject",
            &format!("!Sub ${{AnalyticsBucket.Arn}}/{results}/*"),
            ""
        )),
        "the ResultWriter's prefix {results} is writable"
    );
    assert_eq!(
        map["ItemReader"]["Resource"],
        "arn:aws:states:::s3:getObject"
    );
    // An EXPRESS child runs at most 5 minutes: one IngestObjects call must fit.
    let objects = &template["Resources"]["IngestObjectsFunction"]["Properties"];
    let function_timeout: u64 = show(&objects["Timeout"]).parse().unwrap();
    assert!(function_timeout <= 300, "{function_timeout}");
}

/// The continuous mode: the rule on the default bus selects the trail bucket's Object Created
/// events under the logs root (the core's `logs_root`) and nothing else, and queues them; only
/// that rule may send to the queue; the queue redrives to its dead-letter queue after 5
/// receives and hides a message longer than six IngestObjects timeouts plus the batching
/// window; Lambda reads it 10 at a time with batch item failures; the sweep starts the state
/// machine with `{"sweep": true}`, a request IngestRun accepts.
#[test]
fn ingest_rule_queue_and_event_source_mapping() {
    use iamtrail_core::trail::{logs_root, LogObjectKey};
    let template = load_template();
    let r = &template["Resources"];

    // EventBridge's prefix matching, for the rule's pattern as the template gives it.
    fn matches(pattern: &serde_json::Value, event: &serde_json::Value) -> bool {
        pattern.as_object().unwrap().iter().all(|(k, want)| {
            let Some(v) = event.get(k) else { return false };
            match want {
                serde_json::Value::Object(_) => matches(want, v),
                serde_json::Value::Array(allowed) => allowed.iter().any(|a| match a {
                    serde_json::Value::Object(o) => match (o.get("prefix"), v.as_str()) {
                        (Some(p), Some(text)) => text.starts_with(p.as_str().unwrap()),
                        _ => panic!("a filter this test does not know: {a}"),
                    },
                    plain => plain == v,
                }),
                _ => false,
            }
        })
    }
    let object_created = |bucket: &str, key: &str| {
        serde_json::json!({
            "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
            "time": "2026-11-30T10:06:00Z", "region": "us-east-1",
            "resources": [format!("arn:aws:s3:::{bucket}")],
            "detail": {"version": "0", "bucket": {"name": bucket},
                "object": {"key": key, "size": 1234, "etag": "b1946ac92492d2347c6235b4d2611184"},
                "request-id": "N4N7GDK58NMKJ12R", "requester": "cloudtrail.amazonaws.com",
                "reason": "PutObject"}
        })
    };
    for prefix in ["", "org/trails"] {
        let resolver = ingest_resolver(&template, &[("TrailPrefix", prefix)]);
        let rule = &r["IngestRule"];
        let p = &rule["Properties"];
        assert_eq!(s(&p["EventBusName"]), "default");
        assert_eq!(s(&p["State"]), "ENABLED");
        let pattern = json(&expand(&resolver, &resolver.value(&p["EventPattern"])));
        let root = logs_root(prefix);
        assert_eq!(
            pattern,
            serde_json::json!({
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [TRAIL_BUCKET]}, "object": {"key": [{"prefix": root}]}}
            }),
            "{prefix:?}"
        );
        assert_eventbridge_accepts(&pattern, prefix);
        let log = format!("{root}o-aa11bb22cc/111122223333/CloudTrail/eu-west-1/2026/11/30/111122223333_CloudTrail_eu-west-1_20261130T1005Z_Ab12Cd34Ef56Gh78.json.gz");
        assert!(LogObjectKey::parse(&log).is_some(), "{log}");
        let event = object_created(TRAIL_BUCKET, &log);
        assert!(matches(&pattern, &event), "{log}");
        let body = event.to_string();
        let named = iamtrail_aws::steps::ingest::notifications::objects_of(&body).unwrap();
        assert_eq!(named.len(), 1);
        assert_eq!(
            (named[0].0.as_str(), named[0].1.key.as_str()),
            (TRAIL_BUCKET, log.as_str())
        );
        assert!(!matches(&pattern, &object_created("other-bucket", &log)));
        assert!(!matches(
            &pattern,
            &object_created(TRAIL_BUCKET, "elsewhere/AWSLogs/x.json.gz")
        ));
        let mut deleted = object_created(TRAIL_BUCKET, &log);
        deleted["detail-type"] = "Object Deleted".into();
        assert!(!matches(&pattern, &deleted));
        let target = &p["Targets"][0];
        assert_eq!(show(&target["Arn"]), "!GetAtt IngestQueue.Arn");
        assert!(
            target["RoleArn"].is_null(),
            "SQS takes the rule's events by its queue policy"
        );
    }

    // Only the rule sends to the queue, over TLS.
    let policies: Vec<&Value> = r
        .as_mapping()
        .unwrap()
        .values()
        .filter(|q| {
            s(&q["Type"]) == "AWS::SQS::QueuePolicy"
                && q["Properties"]["Queues"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|x| show(x) == "!Ref IngestQueue")
        })
        .collect();
    assert_eq!(policies.len(), 1, "one policy on the ingest queue");
    let statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    let allows: Vec<&Value> = statements
        .iter()
        .filter(|st| s(&st["Effect"]) == "Allow")
        .collect();
    assert_eq!(allows.len(), 1);
    assert_eq!(
        s(&allows[0]["Principal"]["Service"]),
        "events.amazonaws.com"
    );
    assert_eq!(s(&allows[0]["Action"]), "sqs:SendMessage");
    assert_eq!(show(&allows[0]["Resource"]), "!GetAtt IngestQueue.Arn");
    assert_eq!(
        show(&allows[0]["Condition"]["ArnEquals"]["aws:SourceArn"]),
        "!GetAtt IngestRule.Arn"
    );
    assert!(statements.iter().any(|st| s(&st["Effect"]) == "Deny"
        && s(&st["Condition"]["Bool"]["aws:SecureTransport"]) == "false"));

    // The queue and the event source mapping.
    let queue = &r["IngestQueue"]["Properties"];
    assert_eq!(untag(&queue["SqsManagedSseEnabled"]).as_bool(), Some(true));
    assert_eq!(
        show(&queue["RedrivePolicy"]["deadLetterTargetArn"]),
        "!GetAtt IngestDeadLetterQueue.Arn"
    );
    assert_eq!(show(&queue["RedrivePolicy"]["maxReceiveCount"]), "5");
    let mapping = &r["IngestEventSourceMapping"];
    assert_eq!(s(&mapping["Type"]), "AWS::Lambda::EventSourceMapping");
    let m = &mapping["Properties"];
    assert_eq!(show(&m["EventSourceArn"]), "!GetAtt IngestQueue.Arn");
    assert_eq!(show(&m["FunctionName"]), "!Ref IngestObjectsFunction");
    assert_eq!(show(&m["BatchSize"]), "10");
    assert_eq!(show(&m["MaximumBatchingWindowInSeconds"]), "60");
    assert_eq!(
        m["FunctionResponseTypes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect::<Vec<_>>(),
        ["ReportBatchItemFailures"]
    );
    assert_eq!(show(&m["ScalingConfig"]["MaximumConcurrency"]), "10");
    let timeout: u64 = show(&r["IngestObjectsFunction"]["Properties"]["Timeout"])
        .parse()
        .unwrap();
    let window: u64 = show(&m["MaximumBatchingWindowInSeconds"]).parse().unwrap();
    let visibility: u64 = show(&queue["VisibilityTimeout"]).parse().unwrap();
    assert!(visibility >= 6 * timeout + window, "{visibility} s");

    // The sweep.
    let sweep = &r["IngestSweepRunSchedule"]["Properties"];
    assert_eq!(
        show(&sweep["ScheduleExpression"]),
        "!Ref IngestSweepSchedule"
    );
    assert_eq!(show(&sweep["Target"]["Arn"]), "!Ref IngestStateMachine");
    assert_eq!(
        show(&sweep["Target"]["RoleArn"]),
        "!GetAtt IngestSweepScheduleRole.Arn"
    );
    let input: serde_json::Value = serde_json::from_str(&s(&sweep["Target"]["Input"])).unwrap();
    assert_eq!(input, serde_json::json!({"sweep": true}));
    let request: iamtrail_aws::steps::ingest::plan::IngestRequest =
        serde_json::from_value(input).expect("IngestRun accepts the sweep's input");
    assert!(request.sweep);
    let schedule = regex::Regex::new(&s(
        &template["Parameters"]["IngestSweepSchedule"]["AllowedPattern"]
    ))
    .unwrap();
    assert!(schedule.is_match(&s(&template["Parameters"]["IngestSweepSchedule"]["Default"])));

    // What the parameters tell the user to do.
    let continuous = s(&template["Parameters"]["IngestContinuous"]["Description"]);
    for needed in [
        "put-bucket-notification-configuration",
        "EventBridgeConfiguration",
        "get-bucket-notification-configuration",
    ] {
        assert!(
            continuous.contains(needed),
            "IngestContinuous says {needed}"
        );
    }
    let bucket = s(&template["Parameters"]["TrailBucket"]["Description"]);
    assert!(bucket.contains("account and region"), "{bucket}");
}

/// The functions read the trail from their environment (TRAIL_BUCKET, TRAIL_PREFIX) as the
/// steps' settings take it; the parameters' patterns accept a bucket, a prefix and a key and
/// refuse what would widen the roles' grants; the outputs the CLI reads are there with a trail
/// bucket, under the keys it reads.
#[test]
fn ingest_functions_settings_and_outputs() {
    use iamtrail::stack::keys;
    use iamtrail_e2e::template_env::Template;
    let template = load_template();
    let mut stack = Template::load(
        &repo_root().join("template.yaml"),
        "iamtrail",
        "us-east-1",
        "123456789012",
    );
    stack
        .parameters
        .insert("TrailBucket".into(), TRAIL_BUCKET.into());
    stack
        .parameters
        .insert("TrailPrefix".into(), "org/trails".into());
    for (binary, function, timeout) in [
        ("ingest-run", "IngestRunFunction", "900"),
        ("ingest-objects", "IngestObjectsFunction", "300"),
    ] {
        assert_eq!(stack.function_by_binary(binary), function);
        let env = stack.function_environment(function);
        let settings = iamtrail_core::Settings::from_lookup(|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{function}: {e}"));
        assert_eq!(
            settings.trail_bucket.as_deref(),
            Some(TRAIL_BUCKET),
            "{function}"
        );
        assert_eq!(
            settings.trail_prefix.as_deref(),
            Some("org/trails"),
            "{function}"
        );
        assert_eq!(
            settings.analytics_bucket.as_deref(),
            Some("iamtrail-analytics-123456789012"),
            "{function}"
        );
        let name = stack.function_property(function, "FunctionName").unwrap();
        assert_eq!(name, format!("iamtrail-{binary}"));
        assert_eq!(
            iamtrail_aws::Step::from_function_name(&name),
            Some(if binary == "ingest-run" {
                iamtrail_aws::Step::IngestRun
            } else {
                iamtrail_aws::Step::IngestObjects
            })
        );
        assert_eq!(
            stack.function_property(function, "Timeout").as_deref(),
            Some(timeout)
        );
        let p = &template["Resources"][function]["Properties"];
        assert_eq!(show(&p["CodeUri"]), ".");
        assert_eq!(show(&p["LoggingConfig"]["LogFormat"]), "JSON");
        assert_eq!(
            show(&p["Role"]),
            format!("!GetAtt {}Role.Arn", function.trim_end_matches("Function"))
        );
    }

    let pattern = |name: &str| {
        regex::Regex::new(&s(&template["Parameters"][name]["AllowedPattern"])).unwrap()
    };
    for (name, good, bad) in [
        (
            "TrailBucket",
            vec!["", "trail-bucket", "org.trail-logs.1"],
            vec!["Trail_Bucket", "ab", "b*", "arn:aws:s3:::b"],
        ),
        (
            "TrailPrefix",
            vec!["", "cloudtrail", "org/trails", "a.b/c=d"],
            vec!["/logs", "logs/", "a//b", "a*", "${aws:username}", "a b"],
        ),
        (
            "TrailKmsKeyArn",
            vec!["", TRAIL_KEY],
            vec![
                "*",
                "arn:aws:kms:us-east-1:111122223333:key/*",
                "arn:aws:kms:us-east-1:111122223333:alias/trail",
            ],
        ),
    ] {
        let p = pattern(name);
        for v in good {
            assert!(p.is_match(v), "{name} refuses {v:?}");
        }
        for v in bad {
            assert!(!p.is_match(v), "{name} accepts {v:?}");
        }
    }

    let on = ingest_resolver(&template, &[]);
    let off = Resolver::new(&template, &[]);
    for (key, value) in [
        (keys::INGEST_STATE_MACHINE, "!Ref IngestStateMachine"),
        (keys::TRAIL_BUCKET, "!Ref TrailBucket"),
        ("IngestRunFunctionName", "!Ref IngestRunFunction"),
        ("IngestObjectsFunctionName", "!Ref IngestObjectsFunction"),
        ("IngestDeadLetterQueueUrl", "!Ref IngestDeadLetterQueue"),
    ] {
        let output = &template["Outputs"][key];
        assert_eq!(show(&output["Value"]), value, "{key}");
        assert!(on.exists(output) && !off.exists(output), "{key}");
    }
    assert_eq!(
        on.text(&template["Outputs"][keys::TRAIL_BUCKET]["Value"]),
        TRAIL_BUCKET
    );
}

/// With a trail bucket every alarm is still one the tests ask for: the ingestion's executions,
/// IngestObjects' errors and (continuous mode) its dead-letter queue, on the operations topic,
/// pointing to a section of docs/ingest.md that exists; without one they are gone.
#[test]
fn ingest_alarms_exist_only_with_the_ingestion() {
    let template = load_template();
    let ids = |alarms: &[Alarm]| -> BTreeSet<String> {
        alarms.iter().map(|a| a.logical_id.clone()).collect()
    };
    let off = required_alarms_found(&template, &Resolver::new(&template, &[]));
    let batch = required_alarms_found(
        &template,
        &ingest_resolver(&template, &[("IngestContinuous", "false")]),
    );
    let continuous = required_alarms_found(&template, &ingest_resolver(&template, &[]));
    let added = |with: &[Alarm]| -> BTreeSet<String> {
        ids(with).difference(&ids(&off)).cloned().collect()
    };
    assert_eq!(
        added(&batch),
        BTreeSet::from(
            ["IngestExecutionsFailedAlarm", "IngestObjectsErrorsAlarm"].map(String::from)
        )
    );
    assert_eq!(
        added(&continuous),
        BTreeSet::from(
            [
                "IngestExecutionsFailedAlarm",
                "IngestObjectsErrorsAlarm",
                "IngestDeadLetterAlarm"
            ]
            .map(String::from)
        )
    );
    let ingest_doc = std::fs::read_to_string(repo_root().join("docs/ingest.md")).unwrap();
    let anchors: BTreeSet<String> = ingest_doc
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    for a in continuous
        .iter()
        .filter(|a| a.logical_id.starts_with("Ingest"))
    {
        assert_eq!(a.actions, [TOPIC], "{}", a.logical_id);
        assert!(
            a.name.starts_with("!Sub ${AWS::StackName}-ingest-"),
            "{}",
            a.name
        );
        assert!(a.description.len() >= 120, "{}", a.logical_id);
        let anchor: String = a
            .description
            .split("docs/ingest.md#")
            .nth(1)
            .unwrap_or_else(|| panic!("{}: no docs/ingest.md# link", a.logical_id))
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '-')
            .collect();
        assert!(
            anchors.contains(&anchor),
            "{}: docs/ingest.md has no #{anchor}",
            a.logical_id
        );
    }
    let dead = continuous
        .iter()
        .find(|a| a.logical_id == "IngestDeadLetterAlarm")
        .unwrap();
    assert_eq!(
        dead.ok_actions,
        [TOPIC],
        "it says when the queue is empty again"
    );
}

/// scripts/package.sh builds and zips exactly the template's functions (their binaries), the
/// S3 ingestion's included.
#[test]
fn package_sh_builds_every_template_function() {
    let script = std::fs::read_to_string(repo_root().join("scripts/package.sh")).unwrap();
    let line = script
        .lines()
        .find(|l| l.starts_with("LAMBDA_FUNCTIONS=("))
        .expect("LAMBDA_FUNCTIONS in scripts/package.sh");
    let packaged: BTreeSet<String> = line
        .trim_start_matches("LAMBDA_FUNCTIONS=(")
        .trim_end_matches(')')
        .split_whitespace()
        .map(String::from)
        .collect();
    let template = load_template();
    let built: BTreeSet<String> = template["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| s(&r["Type"]) == "AWS::Serverless::Function")
        .map(|r| s(&r["Metadata"]["BuildProperties"]["Binary"]))
        .collect();
    assert_eq!(packaged, built);
    assert!(built.contains("ingest-run") && built.contains("ingest-objects"));
}
