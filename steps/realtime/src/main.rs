//! Lambda binary of the Realtime step (the near-real-time path, docs/realtime.md): a thin
//! wrapper around [`iamtrail_aws::run_step`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    iamtrail_aws::lambda::serve(iamtrail_aws::Step::Realtime).await
}
