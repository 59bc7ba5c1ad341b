//! The CLI's connection to a deployed stack: the SDK configuration from the default chain
//! (credentials, region, and the standard `AWS_ENDPOINT_URL`, which the tests point at the
//! local stack), the stack's outputs ([`crate::stack`]) and the clients the commands use.

use anyhow::{Context, Result};
use aws_config::SdkConfig;

use crate::stack::{resolve, StackOutputs};

/// Which stack, where: the global `--stack` and `--region` options.
#[derive(Debug, Clone)]
pub struct Target {
    pub stack: String,
    /// `None`: the AWS default chain (`AWS_REGION`, the profile, ...).
    pub region: Option<String>,
}

/// The SDK configuration from the default chain, with `region` on top when given.
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    loader.load().await
}

/// A deployed stack and the clients to reach it.
pub struct Deployed {
    pub sdk: SdkConfig,
    pub outputs: StackOutputs,
    pub sfn: aws_sdk_sfn::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Deployed {
    /// Loads the SDK configuration and resolves the stack's outputs.
    pub async fn connect(target: &Target) -> Result<Deployed> {
        let sdk = sdk_config(target.region.as_deref()).await;
        anyhow::ensure!(
            sdk.region().is_some(),
            "no AWS region: pass --region REGION or set AWS_REGION (or a region in your AWS profile)"
        );
        let cfn = aws_sdk_cloudformation::Client::new(&sdk);
        let outputs = resolve(&cfn, &target.stack).await?;
        Ok(Deployed {
            sfn: aws_sdk_sfn::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            outputs,
            sdk,
        })
    }

    /// The region the stack was looked up in.
    pub fn region(&self) -> String {
        self.sdk.region().map(|r| r.to_string()).unwrap_or_default()
    }

    /// An execution's ARN: `name` as given when it is an ARN, else the state machine's
    /// execution of that name.
    pub fn execution_arn(&self, name_or_arn: &str) -> Result<String> {
        execution_arn(&self.outputs.state_machine_arn, name_or_arn)
    }
}

/// `arn:aws:states:R:A:stateMachine:M` and a name → `arn:aws:states:R:A:execution:M:NAME`.
pub fn execution_arn(state_machine_arn: &str, name_or_arn: &str) -> Result<String> {
    if name_or_arn.starts_with("arn:") {
        return Ok(name_or_arn.to_string());
    }
    let (prefix, machine) = state_machine_arn
        .rsplit_once(":stateMachine:")
        .with_context(|| format!("{state_machine_arn:?} is not a state machine ARN"))?;
    Ok(format!("{prefix}:execution:{machine}:{name_or_arn}"))
}

/// A new execution's name: who started it, what it is, when, and a few random hex digits so
/// two starts in one second do not collide (names are unique per state machine for 90 days).
pub fn execution_name(kind: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    format!(
        "cli-{kind}-{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        salt & 0xffff
    )
}

/// An SDK date-time as chrono.
pub fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_from_names() {
        let machine = "arn:aws:states:us-east-1:123456789012:stateMachine:iamtrail-tracker";
        assert_eq!(
            execution_arn(machine, "run-1").unwrap(),
            "arn:aws:states:us-east-1:123456789012:execution:iamtrail-tracker:run-1"
        );
        let arn = "arn:aws:states:us-east-1:1:execution:m:x";
        assert_eq!(execution_arn(machine, arn).unwrap(), arn);
        assert!(execution_arn("nope", "x").is_err());
    }

    #[test]
    fn names_say_what_and_when() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T07:58:36Z")
            .unwrap()
            .to_utc();
        let name = execution_name("backfill", now);
        assert!(name.starts_with("cli-backfill-20261125T075836Z-"), "{name}");
        assert_eq!(name.len(), "cli-backfill-20261125T075836Z-0000".len());
    }
}
