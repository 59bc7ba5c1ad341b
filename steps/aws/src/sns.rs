//! SNS adapter: alerts to the (KMS-encrypted) alerts topic.

use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sns::types::MessageAttributeValue;

use crate::ports::{Notification, Notifier, StoreError};

/// Publishes to one topic.
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        SnsNotifier {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, n: &Notification) -> Result<String, StoreError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&n.subject)
            .message(&n.body);
        for (name, value) in &n.attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| StoreError {
                    operation: "sns:Publish",
                    message: e.to_string(),
                })?;
            request = request.message_attributes(name, attribute);
        }
        let out = request.send().await.map_err(|e| StoreError {
            operation: "sns:Publish",
            message: publish_error(&e),
        })?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}

/// A failed publish in one line: the service's error code and message when SNS answered (what
/// the alert keeps as `last_error`), the whole error chain otherwise (network, time-out). Not
/// the raw response: it can be large, and it is no use to an operator.
fn publish_error<E, R>(e: &aws_sdk_sns::error::SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(e).to_string(),
    }
}
