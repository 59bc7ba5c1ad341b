//! The daily export's pure rules: which dates are due, and where their Parquet goes.
//! See docs/export.md.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

/// Most new dates one run hands to Export (dirty dates come on top); the rest are due again on
/// the next run.
pub const MAX_DATES_PER_RUN: usize = 100;

/// The object-key prefix of every export.
pub const PREFIX: &str = "iam-events";

/// The file name of every export object (one per date, or per date and region).
pub const FILE_NAME: &str = "events.parquet";

/// The newest day that no normal run can still add events to: the last day whose end plus
/// `overlap` plus `settle` every checkpoint has reached.
///
/// `checkpoints` holds the stored checkpoint of every region/source that counts (every enabled
/// one, failed ones included, paused ones left out by the caller). A run re-reads `overlap`
/// before its checkpoint, so a day is final only once every checkpoint is `overlap` past its
/// end; `settle` keeps a margin for CloudTrail's delivery delay on top. `None` when a
/// region/source has no checkpoint yet (its first run may store events of any day) or when
/// there is none at all.
pub fn last_due_day(
    checkpoints: &[Option<DateTime<Utc>>],
    overlap: Duration,
    settle: Duration,
) -> Option<NaiveDate> {
    let mut oldest: Option<DateTime<Utc>> = None;
    for checkpoint in checkpoints {
        let checkpoint = (*checkpoint)?;
        oldest = Some(oldest.map_or(checkpoint, |o| o.min(checkpoint)));
    }
    // The day before the one the oldest checkpoint (less overlap and settle) falls in.
    (oldest? - overlap - settle).date_naive().pred_opt()
}

/// The dates to export, oldest first:
///
/// - **new** dates: every day after `last_exported` (from `earliest` when nothing was exported
///   yet) up to `last_due`, at most [`MAX_DATES_PER_RUN`] of them;
/// - **dirty** dates (already exported, events stored since) up to `last_due`; later ones wait,
///   since their day is not finished.
///
/// Nothing is due without a `last_due` (see [`last_due_day`]).
pub fn due_dates(
    last_due: Option<NaiveDate>,
    last_exported: Option<NaiveDate>,
    earliest: NaiveDate,
    dirty: &[NaiveDate],
) -> Vec<NaiveDate> {
    let Some(last_due) = last_due else {
        return Vec::new();
    };
    let mut out: Vec<NaiveDate> = dirty.iter().copied().filter(|d| *d <= last_due).collect();
    let mut day = match last_exported {
        Some(d) => d.succ_opt().unwrap_or(d),
        None => earliest,
    };
    let mut new = 0;
    while day <= last_due && new < MAX_DATES_PER_RUN {
        out.push(day);
        new += 1;
        day = match day.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    out.sort();
    out.dedup();
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

/// The one object key of a date (and region): `…/day=15/events.parquet` or
/// `…/day=15/region=eu-west-1/events.parquet`. The same key on every export of that date, so a
/// re-export is one atomic overwrite.
pub fn object_key(date: NaiveDate, region: Option<&str>) -> String {
    format!("{}{FILE_NAME}", date_prefix(date, region))
}

/// The region of an export key under a date's prefix: `Some(None)` for the date's unpartitioned
/// file, `Some(Some(region))` for a region's file, `None` for any other object (not written by
/// this layout, e.g. a file of an older layout).
pub fn key_region(date: NaiveDate, key: &str) -> Option<Option<String>> {
    let rest = key.strip_prefix(&date_prefix(date, None))?;
    if rest == FILE_NAME {
        return Some(None);
    }
    let region = rest
        .strip_prefix("region=")?
        .strip_suffix(&format!("/{FILE_NAME}"))?;
    (!region.is_empty() && !region.contains('/')).then(|| Some(region.to_string()))
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

    fn at(day: u32, h: u32, m: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2024, 1, day, h, m, 0).unwrap())
    }

    const NONE: Duration = Duration::zero();

    #[test]
    fn a_day_is_due_once_every_checkpoint_is_past_its_end_plus_overlap_plus_settle() {
        let (overlap, settle) = (Duration::minutes(15), Duration::minutes(5));
        // The 15th ends at 00:00 on the 16th: 00:19 is not past it + 20 minutes, 00:20 is.
        assert_eq!(
            last_due_day(&[at(16, 0, 19)], overlap, settle),
            Some(d(2024, 1, 14))
        );
        assert_eq!(
            last_due_day(&[at(16, 0, 20)], overlap, settle),
            Some(d(2024, 1, 15))
        );
        // The oldest checkpoint decides.
        assert_eq!(
            last_due_day(&[at(16, 9, 0), at(15, 23, 0)], overlap, settle),
            Some(d(2024, 1, 14))
        );
        assert_eq!(last_due_day(&[], overlap, settle), None);
    }

    #[test]
    fn overlap_counts() {
        // With the settle time alone the 15th would be due at 00:05; the next run re-reads 15
        // minutes before its checkpoint, so events of the 15th can still arrive until 00:20.
        let settle = Duration::minutes(5);
        assert_eq!(
            last_due_day(&[at(16, 0, 5)], NONE, settle),
            Some(d(2024, 1, 15))
        );
        assert_eq!(
            last_due_day(&[at(16, 0, 5)], Duration::minutes(15), settle),
            Some(d(2024, 1, 14))
        );
    }

    #[test]
    fn a_failed_regions_old_checkpoint_holds_the_date_back() {
        // us-east-1 is current; eu-west-1's Collect failed and its stored checkpoint is still
        // on the 14th: nothing after the 13th is due, whatever this run read.
        let (overlap, settle) = (Duration::minutes(15), Duration::minutes(5));
        let checkpoints = [at(16, 9, 0), at(14, 10, 0)];
        let last_due = last_due_day(&checkpoints, overlap, settle);
        assert_eq!(last_due, Some(d(2024, 1, 13)));
        assert_eq!(
            due_dates(last_due, Some(d(2024, 1, 12)), d(2024, 1, 1), &[]),
            vec![d(2024, 1, 13)]
        );
    }

    #[test]
    fn a_source_without_a_checkpoint_holds_every_date_back() {
        let last_due = last_due_day(&[at(16, 9, 0), None], NONE, NONE);
        assert_eq!(last_due, None);
        assert!(due_dates(
            last_due,
            Some(d(2024, 1, 1)),
            d(2024, 1, 1),
            &[d(2024, 1, 2)]
        )
        .is_empty());
    }

    #[test]
    fn dirty_dates_up_to_the_last_due_day_are_exported_again() {
        let dirty = [
            d(2024, 1, 3),
            d(2024, 1, 10),
            d(2024, 1, 15),
            d(2024, 1, 20),
        ];
        assert_eq!(
            due_dates(
                Some(d(2024, 1, 15)),
                Some(d(2024, 1, 13)),
                d(2024, 1, 1),
                &dirty
            ),
            // 3rd and 10th again; 14th and 15th new (the 15th also dirty: once); 20th waits.
            vec![
                d(2024, 1, 3),
                d(2024, 1, 10),
                d(2024, 1, 14),
                d(2024, 1, 15)
            ]
        );
    }

    #[test]
    fn first_export_starts_at_earliest_and_is_capped() {
        let last_due = Some(d(2024, 5, 31));
        let dates = due_dates(last_due, None, d(2024, 1, 1), &[]);
        assert_eq!(dates.len(), MAX_DATES_PER_RUN);
        assert_eq!(dates[0], d(2024, 1, 1));
        let next = due_dates(last_due, dates.last().copied(), d(2024, 1, 1), &[]);
        assert_eq!(next[0], d(2024, 4, 10));
        // Dirty dates come on top of the cap.
        let with_dirty = due_dates(last_due, None, d(2024, 1, 2), &[d(2023, 12, 1)]);
        assert_eq!(with_dirty.len(), MAX_DATES_PER_RUN + 1);
        assert_eq!(with_dirty[0], d(2023, 12, 1));
    }

    #[test]
    fn one_deterministic_key_per_date_and_region_without_leading_zeros() {
        assert_eq!(
            object_key(d(2024, 1, 5), None),
            "iam-events/year=2024/month=1/day=5/events.parquet"
        );
        assert_eq!(
            object_key(d(2024, 11, 25), Some("eu-west-1")),
            "iam-events/year=2024/month=11/day=25/region=eu-west-1/events.parquet"
        );
        assert_eq!(parse_date("2024-02-29"), Some(d(2024, 2, 29)));
        assert_eq!(parse_date("2024-02-30"), None);
    }

    #[test]
    fn key_region_recognises_only_this_layout() {
        let day = d(2024, 1, 5);
        assert_eq!(key_region(day, &object_key(day, None)), Some(None));
        assert_eq!(
            key_region(day, &object_key(day, Some("eu-west-1"))),
            Some(Some("eu-west-1".to_string()))
        );
        // The layout before deterministic keys, and other dates.
        assert_eq!(
            key_region(
                day,
                "iam-events/year=2024/month=1/day=5/events_20240105_143052.parquet"
            ),
            None
        );
        assert_eq!(key_region(day, &object_key(d(2024, 1, 6), None)), None);
        assert_eq!(
            key_region(d(2024, 1, 1), &object_key(d(2024, 1, 15), None)),
            None
        );
    }
}
