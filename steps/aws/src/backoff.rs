//! The one back-off formula of every retry loop: exponential from a base, capped, with up to
//! 25 % jitter so that parallel callers spread out.

use std::time::Duration;

use crate::ports::StoreError;

/// A back-off schedule: `base`, `2 × base`, `4 × base`, ... never above `cap` (before jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

/// DynamoDB batch retries (`UnprocessedItems`, throttles): 50 ms ... 5 s.
pub const BATCH_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(50),
    cap: Duration::from_secs(5),
};

/// LookupEvents throttles: 1 s ... 20 s.
pub const THROTTLE_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(20),
};

/// Transient failures (network, 5xx) of single requests: 200 ms ... 5 s.
pub const TRANSIENT_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    cap: Duration::from_secs(5),
};

/// The pause before retry number `attempt` (1 for the first retry).
pub fn backoff(attempt: u32, schedule: Backoff) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let pause = schedule
        .base
        .saturating_mul(1u32 << exponent)
        .min(schedule.cap);
    pause + jitter(pause / 4)
}

/// A pseudo-random duration in `[0, max]` (from the clock's nanoseconds: no RNG needed).
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let max_nanos = max.as_nanos() as u64;
    Duration::from_nanos(u64::from(nanos) % (max_nanos + 1))
}

/// Calls a store operation up to `attempts` times, pausing on [`TRANSIENT_BACKOFF`] between
/// tries (the SDK has already retried each call); the last error is returned. `what` names the
/// operation in the log.
pub async fn retry_store<T, F, Fut>(what: &str, attempts: u32, mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if attempt < attempts => {
                tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                tokio::time::sleep(backoff(attempt, TRANSIENT_BACKOFF)).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        for (attempt, base_ms) in [(1, 50), (2, 100), (3, 200), (8, 5000), (40, 5000)] {
            let pause = backoff(attempt, BATCH_BACKOFF);
            let base = Duration::from_millis(base_ms);
            assert!(
                pause >= base && pause <= base + base / 4,
                "{attempt}: {pause:?}"
            );
        }
        let first = backoff(1, THROTTLE_BACKOFF);
        assert!(first >= Duration::from_secs(1) && first <= Duration::from_millis(1250));
        assert!(backoff(9, THROTTLE_BACKOFF) <= Duration::from_secs(25));
        assert!(backoff(0, TRANSIENT_BACKOFF) >= Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_store_tries_the_given_number_of_times() {
        let calls = std::cell::Cell::new(0);
        let failing = || {
            calls.set(calls.get() + 1);
            async {
                Err::<(), _>(StoreError {
                    operation: "op",
                    message: "down".into(),
                })
            }
        };
        assert!(retry_store("op", 3, failing).await.is_err());
        assert_eq!(calls.get(), 3);
        calls.set(0);
        let second = || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 2 {
                    Err(StoreError {
                        operation: "op",
                        message: "down".into(),
                    })
                } else {
                    Ok(n)
                }
            }
        };
        assert_eq!(retry_store("op", 3, second).await, Ok(2));
    }
}
