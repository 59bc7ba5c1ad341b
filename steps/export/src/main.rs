//! Lambda binary of the Export step: a thin wrapper around [`iamtrail_aws::run_step`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    iamtrail_aws::lambda::serve(iamtrail_aws::Step::Export).await
}
