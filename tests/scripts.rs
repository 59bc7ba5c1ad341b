//! The operations scripts (scripts/deploy.sh, destroy.sh, status.sh, logs.sh and their shared
//! scripts/lib.sh): argument handling, the stack-name rule, the command lines they build, and
//! destroy.sh for real against moto server (CloudFormation, S3) with the real SAM CLI's
//! `sam delete`. No AWS account is touched: every script runs with fake credentials, no AWS
//! config files, instance metadata disabled and, where it calls AWS, AWS_ENDPOINT_URL on moto.
//!
//! Needs `.venv` with moto and boto3 (scripts/setup-venv.sh) and the SAM CLI in it
//! (scripts/setup-venv.sh --build); a missing tool fails the test with that command.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use iamtrail_e2e::repo_root;
use iamtrail_local::{find_moto_server, MotoOptions, MotoServer};
use serde_json::Value;

const SCRIPTS: [&str; 4] = ["deploy", "destroy", "status", "logs"];
const STEPS: [&str; 7] = [
    "list-targets",
    "collect",
    "aggregate",
    "evaluate-alerts",
    "export",
    "realtime",
    "state-machine",
];

fn script(name: &str) -> PathBuf {
    repo_root().join("scripts").join(format!("{name}.sh"))
}

fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-venv.sh",
        python.display()
    );
    python
}

fn venv_sam() -> PathBuf {
    let sam = repo_root().join(".venv/bin/sam");
    assert!(
        sam.exists(),
        "{} is missing: run scripts/setup-venv.sh --build (installs the SAM CLI into .venv)",
        sam.display()
    );
    sam
}

/// A command for `bash scripts/NAME.sh ARGS` with no terminal (stdin is /dev/null), no AWS
/// configuration or credentials of this machine, no instance metadata lookups, no stack default.
fn command(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.arg(script(name)).args(args).current_dir(repo_root());
    for var in [
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "IAMTRAIL_STACK",
        "IAMTRAIL_SAM",
        "IAMTRAIL_PYTHON",
        "IAMTRAIL_BIN",
    ] {
        c.env_remove(var);
    }
    let nowhere = std::env::temp_dir().join("iamtrail-scripts-test-no-aws-config");
    c.env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SAM_CLI_TELEMETRY", "0")
        .stdin(Stdio::null());
    c
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(mut c: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("bash runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn run_script(name: &str, args: &[&str]) -> Run {
    run(command(name, args))
}

/// The arguments that make each script get as far as its stack-name check without AWS.
fn minimal_args(name: &str) -> Vec<&'static str> {
    match name {
        "deploy" => vec!["--dry-run", "--region", "us-east-1"],
        "logs" => vec!["collect", "--dry-run", "--region", "us-east-1"],
        _ => vec!["--region", "us-east-1"],
    }
}

#[test]
fn help_prints_each_scripts_usage() {
    for name in SCRIPTS {
        for flag in ["--help", "-h"] {
            let r = run_script(name, &[flag]);
            assert_eq!(r.code, 0, "{name}.sh {flag}: {r}");
            assert!(
                r.stdout.contains(&format!("scripts/{name}.sh ["))
                    || r.stdout.contains(&format!("scripts/{name}.sh STEP")),
                "{name}.sh {flag} prints its usage line: {r}"
            );
            assert!(r.stdout.contains("--stack NAME"), "{name}.sh {flag}: {r}");
            assert!(
                !r.stdout.lines().any(|l| l.starts_with('#')),
                "comment markers are stripped: {r}"
            );
        }
    }
    // Help wins over everything else on the line, even an invalid stack name.
    let r = run_script("destroy", &["--stack", "Bad_Name", "--help"]);
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn invalid_stack_names_are_rejected_with_the_rule() {
    let long36 = "a".repeat(36);
    let long129 = "a".repeat(129);
    let cases: [(&str, &str); 8] = [
        (
            "Bad_Name",
            "start with a letter and contain only letters, digits and hyphens",
        ),
        (
            "1stack",
            "start with a letter and contain only letters, digits and hyphens",
        ),
        (
            "my.stack",
            "start with a letter and contain only letters, digits and hyphens",
        ),
        (&long129, "at most 128 characters"),
        ("MyStack", "must be lowercase"),
        (&long36, "at most 35 are allowed"),
        (
            "xn--stack",
            "must not start with xn--, sthree- or amzn-s3-demo-",
        ),
        ("sthree-stack", "must not start with xn--"),
    ];
    for name in SCRIPTS {
        for (stack, message) in &cases {
            let mut args = minimal_args(name);
            args.extend(["--stack", stack]);
            let r = run_script(name, &args);
            assert_eq!(r.code, 1, "{name}.sh --stack {stack}: {r}");
            assert!(
                r.stderr.contains(message),
                "{name}.sh --stack {stack} says {message:?}: {r}"
            );
            assert!(
                !r.stdout.contains("would run"),
                "{name}.sh --stack {stack} stops: {r}"
            );
        }
        // The same rule for the IAMTRAIL_STACK default and for --stack=NAME.
        let mut c = command(name, &minimal_args(name));
        c.env("IAMTRAIL_STACK", "Team_A");
        let r = run(c);
        assert_eq!(r.code, 1, "{name}.sh with IAMTRAIL_STACK=Team_A: {r}");
        assert!(r.stderr.contains("invalid stack name 'Team_A'"), "{r}");
        let mut args = minimal_args(name);
        args.push("--stack=UPPER");
        let r = run_script(name, &args);
        assert!(
            r.code == 1 && r.stderr.contains("must be lowercase"),
            "{name}.sh --stack=UPPER: {r}"
        );
    }
    // The message names the bucket whose length is the limit.
    let r = run_script(
        "deploy",
        &["--dry-run", "--region", "us-east-1", "--stack", &long36],
    );
    assert!(
        r.stderr.contains("-athena-results-ACCOUNT") && r.stderr.contains("63 characters"),
        "{r}"
    );
}

#[test]
fn the_longest_valid_stack_name_is_accepted() {
    // 35 characters: NAME-athena-results-123456789012 is exactly S3's 63.
    let stack = format!("a{}", "-b".repeat(17));
    assert_eq!(stack.len(), 35);
    assert_eq!(format!("{stack}-athena-results-123456789012").len(), 63);
    let r = run_script(
        "deploy",
        &["--dry-run", "--region", "us-east-1", "--stack", &stack],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains(&format!(
            "sam deploy --stack-name {stack} --region us-east-1"
        )),
        "{r}"
    );
    // IAMTRAIL_STACK is the default stack when --stack is not given.
    let mut c = command("logs", &["export", "--dry-run", "--region", "us-east-1"]);
    c.env("IAMTRAIL_STACK", "team-b");
    let r = run(c);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("--stack-name team-b -n ExportFunction"),
        "{r}"
    );
}

#[test]
fn unknown_and_malformed_options_are_rejected() {
    for name in SCRIPTS {
        let mut args = minimal_args(name);
        args.push("--bogus");
        let r = run_script(name, &args);
        assert_eq!(r.code, 1, "{name}.sh --bogus: {r}");
        assert!(
            r.stderr.contains("unknown option: --bogus"),
            "{name}.sh --bogus: {r}"
        );

        let mut args = minimal_args(name);
        args.push("--region");
        let r = run_script(name, &args);
        assert_eq!(r.code, 1, "{name}.sh ... --region: {r}");
        assert!(
            r.stderr.contains("--region needs a value"),
            "{name}.sh: {r}"
        );

        let mut args = minimal_args(name);
        args.extend(["--region", "Europe"]);
        let r = run_script(name, &args);
        assert!(
            r.code == 1 && r.stderr.contains("does not look like an AWS region"),
            "{name}.sh --region Europe: {r}"
        );
    }
    // Each script takes only its own options.
    for (name, option) in [
        ("destroy", "--arch=arm64"),
        ("status", "--yes"),
        ("logs", "--email=a@b.co"),
        ("status", "--dry-run"),
        ("destroy", "--"),
    ] {
        let mut args = minimal_args(name);
        args.push(option);
        let r = run_script(name, &args);
        assert_eq!(r.code, 1, "{name}.sh {option}: {r}");
    }
    let cases: [(&[&str], &str); 7] = [
        (&["--arch", "arm"], "--arch must be arm64 or x86_64"),
        (&["--email", "not-an-address"], "is not an email address"),
        (
            &["--param", "NoSuchParameter=1"],
            "the template has no parameter NoSuchParameter",
        ),
        (&["--param", "Architecture=x86_64"], "use --arch"),
        (&["--param", "TrackerSchedule"], "is not KEY=VALUE"),
        (&["--guided", "--yes"], "cannot be combined with --yes"),
        (&["extra"], "unexpected argument: extra"),
    ];
    for (extra, message) in cases {
        let mut args = minimal_args("deploy");
        args.extend_from_slice(extra);
        let r = run_script("deploy", &args);
        assert_eq!(r.code, 1, "deploy.sh {extra:?}: {r}");
        assert!(
            r.stderr.contains(message),
            "deploy.sh {extra:?} says {message:?}: {r}"
        );
    }
    let r = run_script("status", &["--format", "xml"]);
    assert!(
        r.code == 1 && r.stderr.contains("--format must be table or json"),
        "{r}"
    );
}

#[test]
fn no_region_anywhere_is_an_error_naming_the_ways_to_set_one() {
    let r = run_script("logs", &["collect", "--dry-run"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr
            .contains("no AWS region: pass --region R, set AWS_REGION"),
        "{r}"
    );
    // AWS_DEFAULT_REGION is used when AWS_REGION is not set.
    let mut c = command("logs", &["collect", "--dry-run"]);
    c.env("AWS_DEFAULT_REGION", "ap-southeast-2");
    let r = run(c);
    assert!(
        r.code == 0 && r.stdout.contains("--region ap-southeast-2"),
        "{r}"
    );
}

#[test]
fn logs_with_an_unknown_step_names_the_valid_ones() {
    for args in [
        &["bogus", "--region", "us-east-1"][..],
        &["--region", "us-east-1"][..],
    ] {
        let r = run_script("logs", args);
        assert_eq!(r.code, 1, "logs.sh {args:?}: {r}");
        for step in STEPS {
            assert!(
                r.stderr.contains(step),
                "logs.sh {args:?} names {step}: {r}"
            );
        }
    }
    let r = run_script("logs", &["collect", "export", "--region", "us-east-1"]);
    assert!(
        r.code == 1 && r.stderr.contains("one step at a time"),
        "{r}"
    );
}

/// The template's resources (CloudFormation's !Ref, !Sub, ... stay as tagged values).
fn template_resources() -> serde_yaml::Mapping {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).expect("template.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    doc["Resources"].as_mapping().expect("Resources").clone()
}

#[test]
fn logs_maps_each_step_to_its_template_resource() {
    let resources = template_resources();
    let expected = [
        (
            "list-targets",
            "ListTargetsFunction",
            "AWS::Serverless::Function",
        ),
        ("collect", "CollectFunction", "AWS::Serverless::Function"),
        (
            "aggregate",
            "AggregateFunction",
            "AWS::Serverless::Function",
        ),
        (
            "evaluate-alerts",
            "EvaluateAlertsFunction",
            "AWS::Serverless::Function",
        ),
        ("export", "ExportFunction", "AWS::Serverless::Function"),
        ("realtime", "RealtimeFunction", "AWS::Serverless::Function"),
        (
            "state-machine",
            "TrackerStateMachine",
            "AWS::Serverless::StateMachine",
        ),
    ];
    for (step, logical_id, kind) in expected {
        let resource = resources
            .get(logical_id)
            .unwrap_or_else(|| panic!("template.yaml has no {logical_id}"));
        assert_eq!(resource["Type"].as_str(), Some(kind), "{logical_id}");
        // sam logs finds the log group from the resource's logging configuration.
        let props = &resource["Properties"];
        let logged = if kind == "AWS::Serverless::StateMachine" {
            !props["Logging"]["Destinations"].is_null()
        } else {
            !props["LoggingConfig"]["LogGroup"].is_null()
        };
        assert!(logged, "{logical_id} has a log group sam logs can find");

        let r = run_script(
            "logs",
            &[
                step,
                "--dry-run",
                "--region",
                "eu-west-1",
                "--stack",
                "team-a",
            ],
        );
        assert_eq!(r.code, 0, "logs.sh {step}: {r}");
        assert_eq!(
            r.stdout.trim(),
            format!(
                "would run: sam logs --stack-name team-a -n {logical_id} --region eu-west-1 -s 1\\ hours\\ ago"
            ),
            "logs.sh {step}"
        );
    }
    let r = run_script(
        "logs",
        &[
            "collect",
            "--dry-run",
            "--region",
            "us-east-1",
            "--since",
            "30m",
            "--follow",
            "--filter",
            "ERROR",
            "--profile",
            "ops",
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        r.stdout.trim(),
        "would run: sam logs --stack-name iamtrail -n CollectFunction --region us-east-1 -s 30\\ minutes\\ ago --profile ops --tail --filter ERROR"
    );
    let r = run_script(
        "logs",
        &[
            "export",
            "--dry-run",
            "--region",
            "us-east-1",
            "--since=2026-01-01 10:00:00",
        ],
    );
    assert!(r.stdout.contains("-s 2026-01-01\\ 10:00:00"), "{r}");
}

#[test]
fn deploy_dry_run_prints_the_build_and_the_sam_deploy_command() {
    let r = run_script(
        "deploy",
        &[
            "--dry-run",
            "--region",
            "eu-west-1",
            "--stack",
            "team-a",
            "--email",
            "sec@example.com",
            "--param",
            "TrackerSchedule=rate(6 hours)",
            "--",
            "--tags",
            "owner=sec",
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    let lines: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("would run: "))
        .collect();
    assert_eq!(
        lines,
        [
            "would run: scripts/build.sh --arch arm64",
            "would run: sam deploy --stack-name team-a --region eu-west-1 --capabilities CAPABILITY_IAM \
             --resolve-s3 --no-confirm-changeset --no-fail-on-empty-changeset --parameter-overrides \
             Architecture=\\\"arm64\\\" AlertEmail=\\\"sec@example.com\\\" \
             GlueDatabaseName=\\\"team_a_analytics\\\" TrackerSchedule=\\\"rate\\(6\\ hours\\)\\\" \
             --tags owner=sec",
        ],
        "{r}"
    );
    // --arch, --profile and --no-build; a GlueDatabaseName given wins over the derived one.
    let r = run_script(
        "deploy",
        &[
            "--dry-run",
            "--region",
            "us-east-1",
            "--arch=x86_64",
            "--profile",
            "ops",
            "--no-build",
            "--param",
            "GlueDatabaseName=mine",
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(!r.stdout.contains("build.sh"), "{r}");
    assert!(
        r.stdout.contains(
            "sam deploy --stack-name iamtrail --region us-east-1 --profile ops --capabilities CAPABILITY_IAM"
        ) && r.stdout.contains("Architecture=\\\"x86_64\\\" GlueDatabaseName=\\\"mine\\\"")
            && !r.stdout.contains("iamtrail_analytics"),
        "{r}"
    );
}

#[test]
fn samconfig_matches_what_the_scripts_pass() {
    let text = std::fs::read_to_string(repo_root().join("samconfig.toml")).expect("samconfig.toml");
    for line in [
        "version = 0.1",
        "stack_name = \"iamtrail\"",
        "capabilities = \"CAPABILITY_IAM\"",
        "resolve_s3 = true",
        "confirm_changeset = false",
        "fail_on_empty_changeset = false",
        "beta_features = true",
        "parameter_overrides = \"Architecture=arm64\"",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "samconfig.toml has `{line}`"
        );
    }
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("region")),
        "samconfig.toml leaves the region to the environment"
    );
    // CAPABILITY_IAM is enough only while no IAM resource has a fixed name (else
    // CAPABILITY_NAMED_IAM), and nothing needs CAPABILITY_AUTO_EXPAND (nested applications).
    let named = [
        ("AWS::IAM::Role", "RoleName"),
        ("AWS::IAM::ManagedPolicy", "ManagedPolicyName"),
        ("AWS::IAM::User", "UserName"),
        ("AWS::IAM::Group", "GroupName"),
        ("AWS::IAM::InstanceProfile", "InstanceProfileName"),
    ];
    let mut roles = 0;
    for (id, resource) in template_resources() {
        let kind = resource["Type"].as_str().unwrap_or_default().to_string();
        assert_ne!(
            kind, "AWS::Serverless::Application",
            "{id:?} needs CAPABILITY_AUTO_EXPAND"
        );
        assert_ne!(
            kind, "AWS::CloudFormation::Stack",
            "{id:?} is a nested stack"
        );
        roles += usize::from(kind == "AWS::IAM::Role");
        for (iam_kind, name) in named {
            assert!(
                kind != iam_kind || resource["Properties"][name].is_null(),
                "{id:?} has a fixed {name}: deploy needs CAPABILITY_NAMED_IAM"
            );
        }
    }
    assert!(
        roles >= 6,
        "the template creates its IAM roles ({roles}): CAPABILITY_IAM is needed"
    );
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    // The bucket names the 35-character limit protects.
    for bucket in [
        "${AWS::StackName}-analytics-${AWS::AccountId}",
        "${AWS::StackName}-athena-results-${AWS::AccountId}",
    ] {
        assert!(
            template.contains(bucket),
            "template.yaml names a bucket {bucket}"
        );
    }
}

// --- Against moto server ---------------------------------------------------------------------

const RESULTS: &str = "t-athena-results-123456789012";
const ANALYTICS: &str = "t-analytics-123456789012";

/// Python (boto3 on moto) for the test's set-up and checks: `python - COMMAND` with
/// AWS_ENDPOINT_URL set; prints JSON.
const PY_HELPER: &str = r#"
import json, sys
import boto3

cfn, s3, ddb = boto3.client("cloudformation"), boto3.client("s3"), boto3.client("dynamodb")
command = sys.argv[1]

def template(results, analytics, table, results_policy):
    return json.dumps({
        "Resources": {
            "AthenaResultsBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": results_policy,
                                    "Properties": {"BucketName": results}},
            "AnalyticsBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain",
                                "UpdateReplacePolicy": "Retain", "Properties": {"BucketName": analytics}},
            "EventsTable": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain",
                            "Properties": {"TableName": table, "BillingMode": "PAY_PER_REQUEST",
                                           "KeySchema": [{"AttributeName": "event_date", "KeyType": "HASH"}],
                                           "AttributeDefinitions": [{"AttributeName": "event_date", "AttributeType": "S"}]}},
        },
        "Outputs": {
            "AthenaResultsBucketName": {"Value": {"Ref": "AthenaResultsBucket"}},
            "AnalyticsBucketName": {"Value": {"Ref": "AnalyticsBucket"}},
            "EventsTableName": {"Value": {"Ref": "EventsTable"}},
        },
    })

def fill(bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):  # three versions of one result
        s3.put_object(Bucket=bucket, Key="results/q1.csv", Body=b"v%d" % i)
    s3.delete_object(Bucket=bucket, Key="results/q1.csv")  # a delete marker on top
    s3.put_object(Bucket=bucket, Key="results/q2.csv.metadata", Body=b"m")

if command == "create":
    stack = sys.argv[2]
    results, analytics = f"{stack}-athena-results-123456789012", f"{stack}-analytics-123456789012"
    cfn.create_stack(StackName=stack, TemplateBody=template(results, analytics, f"{stack}-events", "Delete"))
    fill(results)
    s3.put_object(Bucket=analytics, Key="iam-events/year=2026/month=01/day=01/part.parquet", Body=b"p")
    ddb.put_item(TableName=f"{stack}-events", Item={"event_date": {"S": "2026-01-01"}})
    print(json.dumps({"ok": True}))
elif command == "control":
    # The premise of the test: moto's stack deletion leaves a bucket that still holds objects.
    results = "ctl-athena-results-123456789012"
    cfn.create_stack(StackName="ctl", TemplateBody=template(results, "ctl-analytics-123456789012", "ctl-events", "Delete"))
    fill(results)
    cfn.delete_stack(StackName="ctl")
    print(json.dumps({"kept_non_empty_bucket": results in [b["Name"] for b in s3.list_buckets()["Buckets"]]}))
elif command == "state":
    stack = sys.argv[2]
    try:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except cfn.exceptions.ClientError as e:
        status = "gone" if "does not exist" in str(e) else str(e)
    buckets = {}
    for b in [f"{stack}-athena-results-123456789012", f"{stack}-analytics-123456789012"]:
        try:
            v = s3.list_object_versions(Bucket=b)
            buckets[b] = {"versions": len(v.get("Versions", [])), "markers": len(v.get("DeleteMarkers", []))}
        except s3.exceptions.ClientError:
            buckets[b] = None
    tables = ddb.list_tables()["TableNames"]
    print(json.dumps({"status": status, "buckets": buckets, "tables": tables}))
"#;

struct Moto {
    server: MotoServer,
}

impl Moto {
    async fn start(name: &str) -> Moto {
        let bin = find_moto_server(&repo_root())
            .unwrap_or_else(|e| panic!("{e} (run scripts/setup-venv.sh)"));
        let log_dir = std::env::temp_dir().join("iamtrail-e2e");
        std::fs::create_dir_all(&log_dir).ok();
        let server = MotoServer::start(MotoOptions {
            moto_server_bin: bin,
            moto_port_env: 0,
            log_file: Some(log_dir.join(format!("moto-scripts-{name}.log"))),
            s3_upload_part_min_size: None,
        })
        .await
        .expect("moto server starts");
        Moto { server }
    }

    fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    fn env(&self, c: &mut Command) {
        c.env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1");
    }

    fn script(&self, name: &str, args: &[&str]) -> Run {
        let mut c = command(name, args);
        self.env(&mut c);
        run(c)
    }

    fn py(&self, args: &[&str]) -> Value {
        let mut c = Command::new(venv_python());
        c.arg("-c").arg(PY_HELPER).args(args);
        c.env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        self.env(&mut c);
        let r = run(c);
        assert_eq!(r.code, 0, "python helper {args:?}: {r}");
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {r}"))
    }
}

fn versions(state: &Value, bucket: &str) -> Option<(u64, u64)> {
    let b = &state["buckets"][bucket];
    (!b.is_null()).then(|| {
        (
            b["versions"].as_u64().unwrap(),
            b["markers"].as_u64().unwrap(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_empties_the_results_bucket_deletes_the_stack_and_keeps_the_retained_data() {
    venv_sam();
    let moto = Moto::start("destroy").await;
    let control = moto.py(&["control"]);
    assert_eq!(
        control["kept_non_empty_bucket"], true,
        "moto deletes a stack's non-empty bucket: the test could not tell an emptied bucket from one deleted full"
    );
    moto.py(&["create", "t"]);
    let before = moto.py(&["state", "t"]);
    assert_eq!(before["status"], "CREATE_COMPLETE", "{before}");
    assert_eq!(versions(&before, RESULTS), Some((4, 1)), "{before}");

    // No terminal and no --yes: it shows the plan, refuses, and deletes nothing.
    let r = moto.script("destroy", &["--stack", "t"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("refusing without confirmation"), "{r}");
    assert!(r.stderr.contains("pass --yes"), "{r}");
    for shown in [
        "Stack t in us-east-1 (CREATE_COMPLETE)",
        "the Athena results bucket t-athena-results-123456789012, which is emptied first",
        "DynamoDB table t-events",
        "S3 bucket t-analytics-123456789012",
        "aws dynamodb delete-table --region us-east-1 --table-name t-events",
        "aws s3api delete-bucket --region us-east-1 --bucket t-analytics-123456789012",
        "A new deployment under the name t fails while these exist",
    ] {
        assert!(r.stdout.contains(shown), "destroy.sh shows {shown:?}: {r}");
    }
    assert_eq!(
        moto.py(&["state", "t"]),
        before,
        "nothing changed after the refusal"
    );

    // --dry-run: counts what it would empty, prints the sam command, deletes nothing.
    let r = moto.script("destroy", &["--stack", "t", "--dry-run"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains(
            "would empty t-athena-results-123456789012: 4 object version(s), 1 delete marker(s) (versioning: Enabled)"
        ),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("would run: sam delete --stack-name t --region us-east-1 --no-prompts"),
        "{r}"
    );
    assert_eq!(
        moto.py(&["state", "t"]),
        before,
        "nothing changed after the dry run"
    );

    // A stack that does not exist.
    let r = moto.script("destroy", &["--stack", "nope", "--yes"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr
            .contains("stack nope does not exist in us-east-1: nothing to delete"),
        "{r}"
    );

    // --yes: empties the results bucket, sam delete removes the stack (and with it the now
    // empty bucket), the retained table and bucket stay with their data.
    let r = moto.script("destroy", &["--stack", "t", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains(
            "deleted 5 object version(s) and delete marker(s) from t-athena-results-123456789012"
        ),
        "{r}"
    );
    assert!(
        r.stdout.contains("Deleted successfully"),
        "sam delete ran: {r}"
    );
    assert!(r.stdout.contains("stack t in us-east-1 is deleted"), "{r}");
    let after = moto.py(&["state", "t"]);
    assert_eq!(after["status"], "gone", "{after}");
    assert_eq!(
        versions(&after, RESULTS),
        None,
        "results bucket deleted: {after}"
    );
    assert_eq!(
        versions(&after, ANALYTICS),
        Some((1, 0)),
        "analytics bucket kept: {after}"
    );
    assert!(
        after["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "t-events"),
        "events table kept: {after}"
    );
    moto.server.stop().ok();
}

#[test]
fn deploy_without_credentials_stops_before_building_with_a_clear_message() {
    venv_sam();
    let r = run_script(
        "deploy",
        &["--region", "us-east-1", "--email", "sec@example.com"],
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("no AWS credentials found"), "{r}");
    assert!(
        r.stderr
            .contains("could not describe stack iamtrail in us-east-1"),
        "{r}"
    );
    assert!(!r.all().contains("building the Lambda functions"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_of_a_new_stack_without_terminal_needs_yes_and_builds_nothing() {
    venv_sam();
    let moto = Moto::start("deploy").await;
    // A new stack: the first deployment is guided, which needs a terminal. It stops before
    // building anything.
    let r = moto.script(
        "deploy",
        &["--stack", "fresh", "--email", "sec@example.com"],
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stdout
            .contains("stack fresh does not exist in us-east-1 yet: creating it"),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("pass --yes to deploy with the template defaults"),
        "{r}"
    );
    assert!(!r.all().contains("building the Lambda functions"), "{r}");
    // --guided without a terminal is refused as well.
    let r = moto.script("deploy", &["--stack", "fresh", "--guided"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr
            .contains("--guided asks questions and needs a terminal"),
        "{r}"
    );
    moto.server.stop().ok();
}
