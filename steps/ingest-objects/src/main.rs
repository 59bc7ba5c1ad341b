//! Lambda binary of IngestObjects (one batch of trail log objects): a thin wrapper around
//! [`iamtrail_aws::run_step`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    iamtrail_aws::lambda::serve(iamtrail_aws::Step::IngestObjects).await
}
