//! Collection windows, slices and checkpoint rules (docs/collection.md).
//!
//! A window runs from the checkpoint minus the overlap to now minus the settle time. Collect
//! works through it oldest slice first: a slice whose first LookupEvents page is not the last is
//! narrowed (its newest events held, or the slice split in two, older half first) until it is
//! no longer than the minimum slice; a slice is paged to the end, stored, and only then does the
//! checkpoint move to its end.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Settings, CLOUDTRAIL_HISTORY_DAYS};
use crate::contract::Mode;
use crate::record::format_time;

/// A closed time range `[start, end]` with whole-second bounds, as LookupEvents takes it
/// (both bounds inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(1)).unwrap_or(t)
}

impl Window {
    /// A window with bounds truncated to whole seconds.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Window {
        Window {
            start: whole_seconds(start),
            end: whole_seconds(end),
        }
    }

    /// Whether the window holds no second at all.
    pub fn is_empty(&self) -> bool {
        self.start > self.end
    }

    /// Length of the window.
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// Splits into an older and a newer half that partition the window's seconds exactly
    /// (`[start, mid-1s]` and `[mid, end]`), so no event is read twice. This relies on
    /// CloudTrail's event times being whole seconds, which they always are. `None` for a window of
    /// one second.
    pub fn split(&self) -> Option<(Window, Window)> {
        let secs = (self.end - self.start).num_seconds();
        if secs < 1 {
            return None;
        }
        let mid = self.start + Duration::seconds((secs + 1) / 2);
        Some((
            Window {
                start: self.start,
                end: mid - Duration::seconds(1),
            },
            Window {
                start: mid,
                end: self.end,
            },
        ))
    }
}

/// The oldest time LookupEvents can still return, with a minute of margin.
pub fn history_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::days(CLOUDTRAIL_HISTORY_DAYS) + Duration::minutes(1)
}

/// The incremental window for a source: from the checkpoint minus the overlap (or now minus
/// the initial lookback on a first run) to now minus the settle time, never before CloudTrail's
/// 90-day history.
///
/// Returns a warning when the checkpoint itself is older than that history: the events between
/// the checkpoint and the history's start can no longer be read by LookupEvents, so the tracker
/// has lost them (only CloudTrail's S3 logs, if a trail kept them, still hold them). Clipping
/// just the overlap loses nothing (those events were stored) and is not reported.
pub fn incremental_window(
    checkpoint: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    settings: &Settings,
) -> (Window, Option<String>) {
    let end = now - settings.settle;
    let oldest = history_start(now);
    let start = match checkpoint {
        Some(cp) => cp - settings.overlap,
        None => now - settings.initial_lookback,
    };
    let warning = checkpoint.filter(|cp| *cp < oldest).map(|cp| {
        format!(
            "checkpoint {} is older than CloudTrail's {CLOUDTRAIL_HISTORY_DAYS}-day event history; \
             events between {} and {} can no longer be read (LookupEvents no longer returns \
             them, so they are lost to this tracker); reading from {}",
            format_time(cp),
            format_time(cp),
            format_time(oldest),
            format_time(oldest),
        )
    });
    (Window::new(start.max(oldest), end), warning)
}

/// A backfill range must be ordered; it is clipped to CloudTrail's history and to the settle
/// time. Returns the window and a warning when it was clipped.
pub fn backfill_window(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Result<(Window, Option<String>), String> {
    if start >= end {
        return Err(format!("backfill start {start} is not before end {end}"));
    }
    let mut warning = None;
    let oldest = history_start(now);
    let latest = now - settings.settle;
    if start < oldest {
        warning = Some(format!(
            "backfill start {start} is older than CloudTrail's {CLOUDTRAIL_HISTORY_DAYS}-day event history; reading from {oldest}"
        ));
    }
    let window = Window::new(start.max(oldest), end.min(latest));
    if window.is_empty() {
        return Err(format!(
            "backfill range {start} – {end} has nothing CloudTrail can still return"
        ));
    }
    Ok((window, warning))
}

/// The checkpoint after a slice has been fully stored, or `None` to leave it as it is.
///
/// Incremental runs move it forward to the slice's end (never backwards). A backfill moves it
/// only when the slice is contiguous with it (starts at or before it and ends after it), so a
/// backfill never leaves a gap behind a checkpoint, never creates one, and never moves one back.
pub fn advance_checkpoint(
    mode: Mode,
    existing: Option<DateTime<Utc>>,
    slice: &Window,
) -> Option<DateTime<Utc>> {
    match (mode, existing) {
        (Mode::Incremental, None) => Some(slice.end),
        (Mode::Incremental, Some(cp)) => (slice.end > cp).then_some(slice.end),
        (Mode::Backfill, Some(cp)) => {
            (slice.start <= cp + Duration::seconds(1) && slice.end > cp).then_some(slice.end)
        }
        (Mode::Backfill, None) => None,
        // An export-only run reads no CloudTrail.
        (Mode::Export, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, h, m, s).unwrap()
    }

    fn settings() -> Settings {
        Settings::from_lookup(|_| None).unwrap()
    }

    #[test]
    fn split_partitions_seconds() {
        let w = Window::new(t(0, 0, 0), t(0, 0, 9));
        let (a, b) = w.split().unwrap();
        assert_eq!(
            (a.start, a.end, b.start, b.end),
            (t(0, 0, 0), t(0, 0, 4), t(0, 0, 5), t(0, 0, 9))
        );
        let two = Window::new(t(0, 0, 0), t(0, 0, 1));
        let (a, b) = two.split().unwrap();
        assert_eq!(
            (a.start, a.end, b.start, b.end),
            (t(0, 0, 0), t(0, 0, 0), t(0, 0, 1), t(0, 0, 1))
        );
        assert!(Window::new(t(0, 0, 0), t(0, 0, 0)).split().is_none());
        // Repeated splitting covers every second exactly once.
        let mut stack = vec![Window::new(t(0, 0, 0), t(0, 1, 39))];
        let mut seconds = Vec::new();
        while let Some(w) = stack.pop() {
            match w.split() {
                Some((older, newer)) => {
                    stack.push(newer);
                    stack.push(older);
                }
                None => seconds.push(w.start),
            }
        }
        assert_eq!(seconds.len(), 100);
        assert!(
            seconds
                .windows(2)
                .all(|p| p[1] - p[0] == Duration::seconds(1)),
            "oldest first, no gap"
        );
    }

    #[test]
    fn incremental_windows() {
        let s = settings();
        let now = t(12, 0, 0) + Duration::days(100);
        let (first, warning) = incremental_window(None, now, &s);
        assert_eq!(first.start, history_start(now));
        assert_eq!(first.end, now - Duration::minutes(5));
        assert_eq!(warning, None, "a first run's lookback is clipped silently");
        let cp = now - Duration::hours(1);
        let (next, warning) = incremental_window(Some(cp), now, &s);
        assert_eq!(next.start, cp - Duration::minutes(15));
        assert_eq!(warning, None);
        let (fresh, _) = incremental_window(Some(now - Duration::minutes(1)), now, &s);
        assert!(!fresh.is_empty(), "overlap re-reads the last minutes");
    }

    #[test]
    fn a_checkpoint_older_than_the_history_is_clipped_with_a_warning() {
        let s = settings();
        let now = t(12, 0, 0) + Duration::days(100);
        let cp = now - Duration::days(200);
        let (ancient, warning) = incremental_window(Some(cp), now, &s);
        assert_eq!(ancient.start, history_start(now));
        let warning = warning.expect("the lost range is reported");
        assert!(warning.contains(&format_time(cp)), "{warning}");
        assert!(
            warning.contains(&format_time(history_start(now))),
            "{warning}"
        );
        assert!(
            warning.contains("90-day") && warning.contains("lost"),
            "{warning}"
        );
        // Only the overlap reaches past the history: nothing is lost, nothing is reported.
        let edge = history_start(now) + Duration::minutes(5);
        let (w, warning) = incremental_window(Some(edge), now, &s);
        assert_eq!((w.start, warning), (history_start(now), None));
    }

    #[test]
    fn backfill_windows() {
        let s = settings();
        let now = t(12, 0, 0);
        assert!(backfill_window(now, now - Duration::hours(1), now, &s).is_err());
        let (w, warn) = backfill_window(now - Duration::days(120), now, now, &s).unwrap();
        assert_eq!(w.start, history_start(now));
        assert_eq!(w.end, now - Duration::minutes(5));
        assert!(warn.unwrap().contains("90-day"));
        assert!(backfill_window(now - Duration::minutes(3), now, now, &s).is_err());
    }

    #[test]
    fn checkpoints_never_move_back_or_jump_gaps() {
        let slice = Window::new(t(1, 0, 0), t(2, 0, 0));
        assert_eq!(
            advance_checkpoint(Mode::Incremental, None, &slice),
            Some(t(2, 0, 0))
        );
        assert_eq!(
            advance_checkpoint(Mode::Incremental, Some(t(3, 0, 0)), &slice),
            None
        );
        assert_eq!(
            advance_checkpoint(Mode::Incremental, Some(t(1, 30, 0)), &slice),
            Some(t(2, 0, 0))
        );
        assert_eq!(advance_checkpoint(Mode::Backfill, None, &slice), None);
        assert_eq!(
            advance_checkpoint(Mode::Backfill, Some(t(3, 0, 0)), &slice),
            None,
            "never backwards"
        );
        assert_eq!(
            advance_checkpoint(Mode::Backfill, Some(t(0, 30, 0)), &slice),
            None,
            "never across a gap"
        );
        assert_eq!(
            advance_checkpoint(Mode::Backfill, Some(t(1, 30, 0)), &slice),
            Some(t(2, 0, 0))
        );
        assert_eq!(
            advance_checkpoint(Mode::Backfill, Some(t(0, 59, 59)), &slice),
            Some(t(2, 0, 0))
        );
    }
}
