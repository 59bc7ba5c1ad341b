//! A request pacer: LookupEvents allows 2 requests per second per account and region.

use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Mutex;

/// Spaces request starts at least `interval` apart. Shared by every source of a region, whose
/// reads run one after another in one Collect invocation.
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter allowing `rate` requests per second.
    pub fn per_second(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            2.0
        };
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(None),
        }
    }

    /// Waits until the next request may start.
    pub async fn acquire(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        let start = match *next {
            Some(at) if at > now => at,
            _ => now,
        };
        *next = Some(start + self.interval);
        drop(next);
        if start > now {
            tokio::time::sleep_until(start).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests() {
        let limiter = RateLimiter::per_second(2.0);
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // Five starts at 0, 0.5, 1.0, 1.5, 2.0 s.
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
    }
}
