//! CloudTrail LookupEvents adapter.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_cloudtrail::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_sdk_cloudtrail::Client;
use aws_smithy_types::DateTime as SmithyTime;
use chrono::{DateTime, TimeZone, Utc};

use iamtrail_core::source::LookupKey;

use crate::ports::{EventSource, LookupError, LookupEvent, LookupPage, LookupRequest};

/// LookupEvents returns at most 50 events per page.
pub const PAGE_SIZE: i32 = 50;

/// Reads CloudTrail event history, with one client per region (LookupEvents only sees the
/// region it is called in). SDK retries are off: the collector counts every request against
/// the quota and handles throttling itself.
pub struct CloudTrailSource {
    sdk: SdkConfig,
    endpoint: Option<String>,
    clients: Mutex<HashMap<String, Client>>,
}

impl CloudTrailSource {
    /// A source from a shared SDK configuration and an optional endpoint override (the local
    /// stack's gateway).
    pub fn new(sdk: SdkConfig, endpoint: Option<String>) -> Self {
        CloudTrailSource {
            sdk,
            endpoint,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, region: &str) -> Client {
        let mut clients = self.clients.lock().expect("client cache poisoned");
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let mut builder = aws_sdk_cloudtrail::config::Builder::from(&self.sdk)
                    .region(Region::new(region.to_string()))
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(std::time::Duration::from_secs(30))
                            .build(),
                    );
                if let Some(url) = &self.endpoint {
                    builder = builder.endpoint_url(url);
                }
                Client::from_conf(builder.build())
            })
            .clone()
    }
}

fn to_smithy(t: DateTime<Utc>) -> SmithyTime {
    SmithyTime::from_secs(t.timestamp())
}

fn from_smithy(t: &SmithyTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

/// Sorts an SDK error into throttled / transient / failed.
pub fn classify_error<E>(
    err: &SdkError<E, aws_sdk_cloudtrail::config::http::HttpResponse>,
) -> LookupError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = aws_sdk_cloudtrail::error::DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("");
            let status = ctx.raw().status().as_u16();
            if matches!(
                code,
                "ThrottlingException"
                    | "Throttling"
                    | "TooManyRequestsException"
                    | "RequestLimitExceeded"
            ) {
                LookupError::Throttled(text)
            } else if status >= 500
                || code.contains("InternalFailure")
                || code.contains("InternalServer")
                || code.ends_with("Unavailable")
            {
                LookupError::Transient(text)
            } else {
                LookupError::Failed(text)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            LookupError::Transient(text)
        }
        _ => LookupError::Failed(text),
    }
}

impl EventSource for CloudTrailSource {
    async fn lookup(&self, request: &LookupRequest) -> Result<LookupPage, LookupError> {
        let (key, value) = request.source.lookup();
        let attribute = LookupAttribute::builder()
            .attribute_key(match key {
                LookupKey::EventSource => LookupAttributeKey::EventSource,
                LookupKey::Username => LookupAttributeKey::Username,
            })
            .attribute_value(value)
            .build()
            .map_err(|e| LookupError::Failed(e.to_string()))?;
        let response = self
            .client(&request.region)
            .lookup_events()
            .lookup_attributes(attribute)
            .start_time(to_smithy(request.start))
            .end_time(to_smithy(request.end))
            .max_results(PAGE_SIZE)
            .set_next_token(request.next_token.clone())
            .send()
            .await
            .map_err(|e| classify_error(&e))?;
        let events = response
            .events()
            .iter()
            .map(|e| LookupEvent {
                event_id: e.event_id().map(String::from),
                event_name: e.event_name().map(String::from),
                event_source: e.event_source().map(String::from),
                event_time: e.event_time().and_then(from_smithy),
                username: e.username().map(String::from),
                cloudtrail_event: e.cloud_trail_event().map(String::from),
            })
            .collect();
        Ok(LookupPage {
            events,
            next_token: response
                .next_token()
                .filter(|t| !t.is_empty())
                .map(String::from),
        })
    }
}
