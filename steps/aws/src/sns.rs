//! SNS adapter: alerts to the (KMS-encrypted) alerts topic.

use aws_sdk_sns::error::DisplayErrorContext;
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
            message: DisplayErrorContext(e).to_string(),
        })?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}
