//! Lambda binary of IngestRun (the S3 ingestion's planning and summary): a thin wrapper around
//! [`iamtrail_aws::run_step`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    iamtrail_aws::lambda::serve(iamtrail_aws::Step::IngestRun).await
}
