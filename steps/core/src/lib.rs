//! IAM Activity Tracker domain library: the CloudTrail record model, normalisation into the
//! events table, noise filters, collection windows and the steps' JSON contracts.
//!
//! It has no AWS SDK dependency, so it compiles and tests in seconds; the `iamtrail-aws` crate
//! adapts it to DynamoDB, CloudTrail and EC2.

pub mod alert_text;
pub mod config;
pub mod contract;
pub mod export;
pub mod filter;
pub mod ingest;
pub mod lookup;
pub mod metrics;
pub mod normalize;
pub mod outbox;
pub mod raw;
pub mod realtime;
pub mod record;
pub mod root_sessions;
pub mod rules;
pub mod sigma;
pub mod source;
pub mod summary;
pub mod synthetic_trail;
pub mod targets;
pub mod trail;
pub mod window;

pub use config::Settings;
pub use contract::{Counts, Mode, WorkItem};
pub use normalize::{normalize, NormalizedEvent};
pub use record::{CloudTrailRecord, RecordError};
pub use source::Source;
