//! The local stack's tables are the ones `template.yaml` declares: compared attribute by
//! attribute with DescribeTable, DescribeTimeToLive and DescribeContinuousBackups on moto; its
//! alarms (DescribeAlarms) are the template's on the workflow and the steps' own metrics. And
//! what the template alone must hold: retention, parameter defaults, the alarm list (printed),
//! the operations topic, the dashboard and the lifecycle (docs/operations.md).

use std::collections::{BTreeSet, HashMap};

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
/// resolves `!Ref` of a parameter and `!If` on a condition (`!Equals`, `!Not`, `!Ref`).
struct Resolver<'a> {
    template: &'a Value,
    params: HashMap<String, String>,
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
        Resolver { template, params }
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
        panic!("unsupported condition {v:?}")
    }

    /// `v` with parameter references and `!If` resolved (other tags are kept).
    fn value(&self, v: &Value) -> Value {
        if let Some(args) = tag(v, "!If") {
            let args = args.as_sequence().unwrap();
            let branch = if self.condition(&s(&args[0])) {
                &args[1]
            } else {
                &args[2]
            };
            return self.value(branch);
        }
        if let Some(name) = tag(v, "!Ref") {
            if let Some(p) = self.params.get(&s(name)) {
                return Value::String(p.clone());
            }
        }
        match v {
            Value::Sequence(items) => {
                Value::Sequence(items.iter().map(|i| self.value(i)).collect())
            }
            Value::Mapping(m) => {
                Value::Mapping(m.iter().map(|(k, v)| (k.clone(), self.value(v))).collect())
            }
            other => other.clone(),
        }
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
        if s(&r["Type"]) != "AWS::CloudWatch::Alarm" {
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

/// The required alarms, for the default parameters: the workflow's, the steps' EMF
/// metrics (docs/metrics.md), and three per function and two per table found in the template.
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
    let resources = template["Resources"].as_mapping().unwrap();
    let mut functions = 0;
    let mut tables = 0;
    for (id, r) in resources {
        let id = s(id);
        let dims = |name: &'static str| vec![(name, format!("!Ref {id}"))];
        match s(&r["Type"]).as_str() {
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
    assert_eq!(
        (functions, tables),
        (5, 3),
        "five step functions, three tables"
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

/// Every required alarm exists with its metric, namespace, dimensions, statistic,
/// threshold and comparison, notifies the operations topic, is named after the stack (the topic
/// and key policies only let `<stack>-*` alarms publish) and says what it means and what to do,
/// pointing to a section of docs/operations.md that exists. Prints the alarm list.
#[test]
fn required_alarms_watch_their_metrics_and_notify_the_operations_topic() {
    let template = load_template();
    let resolver = Resolver::new(&template, &[]);
    let found = alarms(&resolver);
    let anchors = operations_anchors();
    let mut matched = BTreeSet::new();
    for w in required_alarms(&template, &resolver) {
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
    // The JSON with every ${...} replaced by a sample value.
    let mut body = s(&sub[0]);
    while let Some(start) = body.find("${") {
        let end = start + body[start..].find('}').unwrap();
        let name = &body[start + 2..end];
        let sample = if name == "LagThreshold" { "10800" } else { "x" };
        body.replace_range(start..=end, sample);
    }
    let json: serde_json::Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
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
    for (id, r) in resources {
        if s(&r["Type"]) == "AWS::CloudWatch::Alarm" {
            assert!(
                text.contains(&format!("${{{}.Arn}}", s(id))),
                "{id:?} is on the dashboard"
            );
        }
    }
    assert_eq!(show(&sub[1]["Namespace"]), OWN_NAMESPACE);
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

/// The Collect role's policies that depend on a condition, evaluated for one SigmaRulesUri.
fn sigma_policies(template: &Value, uri: &str) -> Vec<Value> {
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
    template["Resources"]["CollectRole"]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|p| matches!(p, Value::Tagged(_)))
        .filter_map(|p| cfn.eval(p))
        .collect()
}

/// `SigmaRulesUri` reaches Collect, and only Collect, as `SIGMA_RULES`; when it is set, the
/// Collect role may read the rule objects under its prefix and list that prefix, nothing more
/// of the bucket; the parameter's pattern accepts exactly what the step can read.
#[test]
fn sigma_rules_uri_reaches_collect_with_a_least_privilege_read() {
    use iamtrail_core::sigma::RulesLocation;
    let template = load_template();
    let parameter = &template["Parameters"]["SigmaRulesUri"];
    assert_eq!(s(&parameter["Default"]), "");
    let collect = &template["Resources"]["CollectFunction"]["Properties"];
    assert_eq!(
        show(&collect["Environment"]["Variables"]["SIGMA_RULES"]),
        "!Ref SigmaRulesUri"
    );
    assert!(template["Globals"]["Function"]["Environment"]["Variables"]["SIGMA_RULES"].is_null());
    for (id, r) in template["Resources"].as_mapping().unwrap() {
        if s(id) != "CollectFunction" {
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

    assert!(
        sigma_policies(&template, "").is_empty(),
        "no Sigma grant without SigmaRulesUri"
    );
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
        let policies = sigma_policies(&template, uri);
        assert_eq!(policies.len(), 1, "{uri}");
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
