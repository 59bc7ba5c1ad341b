//! One LookupEvents request: under the region's lease and rate limit, within the time budget,
//! retrying throttles (for as long as the budget allows) and transient failures (a few times),
//! with the one back-off of [`crate::backoff`].

use std::time::Duration as StdDuration;

use iamtrail_core::contract::Counts;

use super::{Invocation, Stop};
use crate::backoff::{backoff, THROTTLE_BACKOFF, TRANSIENT_BACKOFF};
use crate::ports::{
    AlertStore, ControlStore, EventSource, EventStore, LookupError, LookupPage, LookupRequest,
    ObjectStore,
};

/// Transient failures (network, 5xx) tolerated per request before the source is failed.
const MAX_TRANSIENT_RETRIES: u32 = 5;

impl<S, E, C, A, O> Invocation<'_, S, E, C, A, O>
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
    O: ObjectStore,
{
    /// Makes one request (counted in `counts`), retrying as needed.
    pub(super) async fn lookup(
        &self,
        request: &LookupRequest,
        counts: &mut Counts,
    ) -> Result<LookupPage, Stop> {
        let mut throttles = 0u32;
        let mut transient = 0u32;
        loop {
            if self.budget.exhausted_after(StdDuration::ZERO) {
                return Err(Stop::OutOfTime);
            }
            // Never read without the lease.
            self.lease.ensure(self.deps.control, &self.budget).await?;
            self.limiter.acquire().await;
            counts.requests += 1;
            let answer =
                tokio::time::timeout(self.budget.remaining(), self.deps.source.lookup(request))
                    .await
                    .map_err(|_| Stop::OutOfTime)?;
            let (pause, message) = match answer {
                Ok(page) => return Ok(page),
                Err(LookupError::Throttled(message)) => {
                    counts.throttled += 1;
                    throttles += 1;
                    (backoff(throttles, THROTTLE_BACKOFF), message)
                }
                Err(LookupError::Transient(message)) => {
                    transient += 1;
                    if transient > MAX_TRANSIENT_RETRIES {
                        return Err(Stop::Failed(format!(
                            "LookupEvents kept failing: {message}"
                        )));
                    }
                    (backoff(transient, TRANSIENT_BACKOFF), message)
                }
                Err(LookupError::Failed(message)) => {
                    return Err(Stop::Failed(format!("LookupEvents: {message}")))
                }
            };
            tracing::warn!(region = %request.region, throttles, transient, pause_ms = pause.as_millis() as u64, %message,
                "LookupEvents throttled or failed; retrying");
            if self.budget.exhausted_after(pause) {
                return Err(Stop::OutOfTime);
            }
            tokio::time::sleep(pause).await;
        }
    }
}
