//! The daily export's pure rules (DESIGN §7): which dates are due, and where their Parquet goes.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

/// Most dates one Export invocation writes; the rest are due again on the next run.
pub const MAX_DATES_PER_RUN: usize = 100;

/// The object-key prefix of every export.
pub const PREFIX: &str = "iam-events";

/// The dates due for export: a date is due once every collector's checkpoint has passed the
/// end of that day plus the settle time (no event of it can still arrive in a normal run), and
/// it has not been exported yet (it is after `last_exported`). The first export starts at
/// `earliest`. At most [`MAX_DATES_PER_RUN`], oldest first.
pub fn due_dates(
    checkpoints: &[DateTime<Utc>],
    last_exported: Option<NaiveDate>,
    earliest: NaiveDate,
    settle: Duration,
) -> Vec<NaiveDate> {
    let Some(oldest_checkpoint) = checkpoints.iter().min() else {
        return Vec::new();
    };
    // The newest day whose end (+ settle) every checkpoint has passed.
    let Some(last_due) = (*oldest_checkpoint - settle).date_naive().pred_opt() else {
        return Vec::new();
    };
    let mut day = match last_exported {
        Some(d) => d.succ_opt().unwrap_or(d),
        None => earliest,
    };
    let mut out = Vec::new();
    while day <= last_due && out.len() < MAX_DATES_PER_RUN {
        out.push(day);
        day = match day.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    out
}

/// The prefix holding one date's files (and, partitioned, one region's):
/// `iam-events/year=2024/month=1/day=15/` (no leading zeros, for partition projection).
pub fn date_prefix(date: NaiveDate, region: Option<&str>) -> String {
    let mut p = format!(
        "{PREFIX}/year={}/month={}/day={}/",
        date.year(),
        date.month(),
        date.day()
    );
    if let Some(r) = region {
        p.push_str(&format!("region={r}/"));
    }
    p
}

/// The object key of one export file: `…/events_20240115_143052.parquet`.
pub fn object_key(date: NaiveDate, region: Option<&str>, written_at: DateTime<Utc>) -> String {
    format!(
        "{}events_{}_{}.parquet",
        date_prefix(date, region),
        date.format("%Y%m%d"),
        written_at.format("%H%M%S")
    )
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn a_day_is_due_when_every_checkpoint_passed_its_end_plus_settle() {
        let settle = Duration::minutes(5);
        let cp = |h, m| Utc.with_ymd_and_hms(2024, 1, 16, h, m, 0).unwrap();
        // 00:04 on the 16th is not past the 15th + 5 minutes.
        assert_eq!(
            due_dates(&[cp(0, 4)], Some(d(2024, 1, 14)), d(2024, 1, 1), settle),
            vec![]
        );
        assert_eq!(
            due_dates(&[cp(0, 5)], Some(d(2024, 1, 14)), d(2024, 1, 1), settle),
            vec![d(2024, 1, 15)]
        );
        // The slowest collector decides.
        let slow = Utc.with_ymd_and_hms(2024, 1, 15, 23, 0, 0).unwrap();
        assert_eq!(
            due_dates(
                &[cp(9, 0), slow],
                Some(d(2024, 1, 13)),
                d(2024, 1, 1),
                settle
            ),
            vec![d(2024, 1, 14)]
        );
        assert!(due_dates(&[], None, d(2024, 1, 1), settle).is_empty());
    }

    #[test]
    fn first_export_starts_at_earliest_and_is_capped() {
        let cp = Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap();
        let dates = due_dates(&[cp], None, d(2024, 1, 1), Duration::minutes(5));
        assert_eq!(dates.len(), MAX_DATES_PER_RUN);
        assert_eq!(dates[0], d(2024, 1, 1));
        let next = due_dates(
            &[cp],
            dates.last().copied(),
            d(2024, 1, 1),
            Duration::minutes(5),
        );
        assert_eq!(next[0], d(2024, 4, 10));
    }

    #[test]
    fn keys_have_no_leading_zeros() {
        let at = Utc.with_ymd_and_hms(2024, 1, 15, 14, 30, 52).unwrap();
        assert_eq!(
            object_key(d(2024, 1, 5), None, at),
            "iam-events/year=2024/month=1/day=5/events_20240105_143052.parquet"
        );
        assert_eq!(
            object_key(d(2024, 11, 25), Some("eu-west-1"), at),
            "iam-events/year=2024/month=11/day=25/region=eu-west-1/events_20241125_143052.parquet"
        );
        assert_eq!(parse_date("2024-02-29"), Some(d(2024, 2, 29)));
        assert_eq!(parse_date("2024-02-30"), None);
    }
}
