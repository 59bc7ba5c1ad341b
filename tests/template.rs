//! The local stack's tables are the ones `template.yaml` declares: compared attribute by
//! attribute with DescribeTable, DescribeTimeToLive and DescribeContinuousBackups on moto.

use std::collections::BTreeSet;

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
    stack.stop().await;
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
