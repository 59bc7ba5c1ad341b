//! The steps' library functions: `input JSON -> output JSON`, called by the Lambda binaries,
//! the local stack's gateway and the tests alike.

pub mod aggregate;
pub mod collect;
pub(crate) mod deliver;
pub(crate) mod detect;
pub mod evaluate_alerts;
pub mod export;
pub mod ingest;
pub mod list_targets;
pub mod realtime;

use tokio::time::Instant;

/// Time EvaluateAlerts and Export keep in hand before the Lambda deadline.
pub(crate) const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// When an invocation stops: `budget` from now, and never later than the Lambda `deadline` less
/// [`DEADLINE_MARGIN`] (less a fifth of the time left, for short deadlines).
pub(crate) fn stop_time(budget: std::time::Duration, deadline: Option<Instant>) -> Instant {
    let now = Instant::now();
    let by_budget = now + budget;
    match deadline {
        Some(d) => {
            let margin = DEADLINE_MARGIN.min(d.saturating_duration_since(now) / 5);
            by_budget.min(d.checked_sub(margin).unwrap_or(d))
        }
        None => by_budget,
    }
}

/// A step invocation's clock: the wall time it was given at its start plus the time elapsed
/// since on tokio's clock, so that claims, marks, leases and alert times follow one clock (the
/// test's, when tokio's clock is paused).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepClock {
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl StepClock {
    /// A clock reading `now` at this instant.
    pub(crate) fn start(now: chrono::DateTime<chrono::Utc>) -> Self {
        StepClock {
            started: Instant::now(),
            started_at: now,
        }
    }

    /// The current wall time on this clock.
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.started_at
            + chrono::Duration::from_std(self.started.elapsed()).unwrap_or(chrono::Duration::MAX)
    }
}
