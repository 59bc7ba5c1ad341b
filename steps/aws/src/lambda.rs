//! The Lambda entry point every step binary runs (feature `lambda`).

use std::time::{Instant, SystemTime};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::{run_step, AwsContext, Step};

/// Starts the Lambda runtime loop for one step: JSON logs (level from `RUST_LOG`), one
/// [`AwsContext`] per container, and step errors reported with their `errorType`.
pub async fn serve(step: Step) -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let context = AwsContext::from_env()
        .await
        .map_err(|e| Box::new(e) as lambda_runtime::Error)?;
    let context = &context;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let remaining = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let deadline = Instant::now() + remaining;
        run_step(step, context, event.payload, Some(deadline))
            .await
            .map_err(|e| Diagnostic {
                error_type: e.error_type.to_string(),
                error_message: e.message,
            })
    }))
    .await
}
