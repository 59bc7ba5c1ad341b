//! Query parameters: what a query declares, what the user gives (`--days N`, `--param k=v`),
//! and how the values reach each engine.
//!
//! The SQL text keeps positional `?` placeholders. Values are never spliced into it:
//! - DataFusion: [`to_dollar_placeholders`] turns the `?`s into `$1..$n` and the values are
//!   bound as [`ScalarValue`]s ([`ParamValue::to_scalar`]);
//! - Athena: the values go in `ExecutionParameters`, one SQL literal each
//!   ([`ParamValue::to_athena_literal`]), which Athena binds to the `?`s in order.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use datafusion::scalar::ScalarValue;

use crate::catalog::QueryFile;
use crate::{Error, Result};

/// The kind of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A point in time (UTC), compared with `event_time`.
    Timestamp,
    /// Text.
    String,
    /// A UTC date bound as the integer `YYYYMMDD`, compared with the partition columns as
    /// `year * 10000 + month * 100 + day`. Only `from_day` (the date of `since`) and `to_day`
    /// (the date of now) exist; both are derived from the window, never given on the command
    /// line. They are what lets Athena and the local engine skip the days outside the window
    /// (`docs/export.md`, "Partition pruning").
    Day,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamKind::Timestamp => "timestamp",
            ParamKind::String => "string",
            ParamKind::Day => "day",
        })
    }
}

/// One declared parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Its name (`--param NAME=...`).
    pub name: String,
    /// Its kind.
    pub kind: ParamKind,
}

/// A bound value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// A UTC instant, kept to the millisecond (the precision of `event_time`).
    Timestamp(DateTime<Utc>),
    /// Text, exactly as given.
    String(String),
    /// A UTC date (kind [`ParamKind::Day`]), bound as the integer `YYYYMMDD`.
    Day(NaiveDate),
}

/// The parameter of kind `day` bound to the UTC date of `since`.
pub const FROM_DAY: &str = "from_day";
/// The parameter of kind `day` bound to the UTC date of now (the end of the window).
pub const TO_DAY: &str = "to_day";

/// `YYYYMMDD` of a date: what `year * 10000 + month * 100 + day` gives for its partition.
pub fn day_number(date: NaiveDate) -> i64 {
    i64::from(date.year()) * 10_000 + i64::from(date.month()) * 100 + i64::from(date.day())
}

impl ParamValue {
    /// The DataFusion value: `Utf8`, or `TimestampMillisecond` without a time zone (like
    /// `event_time`, UTC wall time).
    pub fn to_scalar(&self) -> ScalarValue {
        match self {
            ParamValue::Timestamp(t) => {
                ScalarValue::TimestampMillisecond(Some(t.timestamp_millis()), None)
            }
            ParamValue::String(s) => ScalarValue::Utf8(Some(s.clone())),
            ParamValue::Day(d) => ScalarValue::Int64(Some(day_number(*d))),
        }
    }

    /// The Athena `ExecutionParameters` entry: a SQL literal. Strings are `'...'` with `'`
    /// doubled (the only character special inside a Trino string literal); timestamps are
    /// `TIMESTAMP 'YYYY-MM-DD HH:MM:SS.mmm'` (UTC wall time, like `event_time`); days are the
    /// integer `YYYYMMDD`.
    pub fn to_athena_literal(&self) -> String {
        match self {
            ParamValue::Timestamp(t) => {
                format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.3f"))
            }
            ParamValue::String(s) => format!("'{}'", s.replace('\'', "''")),
            ParamValue::Day(d) => day_number(*d).to_string(),
        }
    }

    /// The value as a person would read it.
    pub fn display(&self) -> String {
        match self {
            ParamValue::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ParamValue::String(s) => s.clone(),
            ParamValue::Day(d) => d.format("%Y-%m-%d").to_string(),
        }
    }
}

/// Parses a timestamp given on the command line: RFC 3339 (`2024-05-01T12:00:00Z`,
/// offsets allowed), `YYYY-MM-DD HH:MM[:SS[.fff]]` or `YYYY-MM-DDTHH:MM[:SS[.fff]]` (UTC), or
/// `YYYY-MM-DD` (midnight UTC).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

/// Truncates to the millisecond (the precision both engines bind).
fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// The default window of `--days`.
pub const DEFAULT_DAYS: u32 = 7;

/// The values of one query's parameters, in `?` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bindings {
    /// (name, value) of each distinct parameter, in first-use order.
    named: Vec<(String, ParamValue)>,
    /// One value per `?`.
    positional: Vec<ParamValue>,
}

impl Bindings {
    /// Binds a query's parameters from the command line.
    ///
    /// - `since` (when the query has it) is `now - days` (default [`DEFAULT_DAYS`]), or
    ///   `--param since=TIMESTAMP` (not both);
    /// - every other parameter comes from `pairs` (`NAME=VALUE`, the value may contain `=`);
    ///   timestamps accept the forms of [`parse_timestamp`].
    ///
    /// An unknown name, a missing parameter, a repeated one or an unparsable timestamp is an
    /// error that lists the query's parameters.
    pub fn from_args(
        query: &QueryFile,
        days: Option<u32>,
        pairs: &[String],
        now: DateTime<Utc>,
    ) -> Result<Bindings> {
        let declared = query.distinct_params();
        let listing = || params_listing(query);
        let mut given: Vec<(String, String)> = Vec::new();
        for pair in pairs {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                Error::Params(format!(
                    "--param {pair:?}: expected NAME=VALUE; {}",
                    listing()
                ))
            })?;
            let name = name.trim();
            if !declared.iter().any(|p| p.name == name) {
                return Err(Error::Params(format!(
                    "query {} has no parameter {name:?}; {}",
                    query.name,
                    listing()
                )));
            }
            if given.iter().any(|(n, _)| n == name) {
                return Err(Error::Params(format!("--param {name} is given twice")));
            }
            if declared
                .iter()
                .any(|p| p.name == name && p.kind == ParamKind::Day)
            {
                return Err(Error::Params(format!(
                    "--param {name}: it is derived from the window (the UTC date of since, or \
                     of now); set the window with --days N or --param since=TIMESTAMP"
                )));
            }
            given.push((name.to_string(), value.to_string()));
        }
        let mut named = Vec::new();
        for p in &declared {
            let raw = given
                .iter()
                .find(|(n, _)| *n == p.name)
                .map(|(_, v)| v.as_str());
            let value = match (p.kind, raw) {
                // Bound below, from the window.
                (ParamKind::Day, _) => continue,
                (ParamKind::Timestamp, Some(raw)) => {
                    if p.name == "since" && days.is_some() {
                        return Err(Error::Params(
                            "give either --days or --param since=..., not both".into(),
                        ));
                    }
                    ParamValue::Timestamp(to_millis(parse_timestamp(raw).ok_or_else(|| {
                        Error::Params(format!(
                            "--param {}={raw:?} is not a timestamp; use 2024-05-01, \
                             2024-05-01 12:00:00 (UTC) or 2024-05-01T12:00:00Z",
                            p.name
                        ))
                    })?))
                }
                (ParamKind::Timestamp, None) if p.name == "since" => {
                    let days = days.unwrap_or(DEFAULT_DAYS);
                    ParamValue::Timestamp(to_millis(now - Duration::days(i64::from(days))))
                }
                (ParamKind::String, Some(raw)) => ParamValue::String(raw.to_string()),
                (_, None) => {
                    return Err(Error::Params(format!(
                        "query {} needs --param {}=VALUE; {}",
                        query.name,
                        p.name,
                        listing()
                    )))
                }
            };
            named.push((p.name.clone(), value));
        }
        // The partition window: the UTC dates of `since` and of now.
        let since = named
            .iter()
            .find_map(|(n, v)| match v {
                ParamValue::Timestamp(t) if n == "since" => Some(*t),
                _ => None,
            })
            .unwrap_or_else(|| now - Duration::days(i64::from(days.unwrap_or(DEFAULT_DAYS))));
        for p in declared.iter().filter(|p| p.kind == ParamKind::Day) {
            let date = match p.name.as_str() {
                FROM_DAY => since.date_naive(),
                TO_DAY => now.date_naive(),
                other => {
                    return Err(Error::Params(format!(
                        "query {} has a day parameter {other:?}; only {FROM_DAY} and {TO_DAY} \
                         exist",
                        query.name
                    )))
                }
            };
            named.push((p.name.clone(), ParamValue::Day(date)));
        }
        Ok(Bindings::from_named(query, named))
    }

    /// Bindings from values by name (every declared parameter must be present; extra names
    /// are ignored). For callers that are not a command line.
    pub fn from_named(query: &QueryFile, named: Vec<(String, ParamValue)>) -> Bindings {
        let positional = query
            .params
            .iter()
            .filter_map(|p| {
                named
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, v)| v.clone())
            })
            .collect();
        Bindings { named, positional }
    }

    /// One value per `?`, in order.
    pub fn positional(&self) -> &[ParamValue] {
        &self.positional
    }

    /// (name, value) of each distinct parameter.
    pub fn named(&self) -> &[(String, ParamValue)] {
        &self.named
    }

    /// The values as DataFusion scalars, for `$1..$n`.
    pub fn scalars(&self) -> Vec<ScalarValue> {
        self.positional.iter().map(ParamValue::to_scalar).collect()
    }

    /// The values as Athena `ExecutionParameters`.
    pub fn athena_parameters(&self) -> Vec<String> {
        self.positional
            .iter()
            .map(ParamValue::to_athena_literal)
            .collect()
    }
}

fn params_listing(query: &QueryFile) -> String {
    let list = query.distinct_params();
    if list.is_empty() {
        return format!("query {} takes no parameters", query.name);
    }
    let items: Vec<String> = list
        .iter()
        .map(|p| {
            if p.name == "since" {
                format!("since ({}, set by --days)", p.kind)
            } else if p.kind == ParamKind::Day {
                format!("{} ({}, from the window)", p.name, p.kind)
            } else {
                format!("{} ({})", p.name, p.kind)
            }
        })
        .collect();
    format!("its parameters are: {}", items.join(", "))
}

/// Byte offsets of the `?` placeholders of `sql`: every `?` outside string literals
/// (`'...'` with `''` escapes), quoted identifiers (`"..."`, `` `...` ``), line comments
/// (`-- ...`) and block comments (`/* ... */`).
pub fn placeholder_positions(sql: &str) -> Vec<usize> {
    #[derive(PartialEq)]
    enum State {
        Code,
        Single,
        Double,
        Backtick,
        Line,
        Block,
    }
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut state = State::Code;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match state {
            State::Code => match b {
                b'?' => out.push(i),
                b'\'' => state = State::Single,
                b'"' => state = State::Double,
                b'`' => state = State::Backtick,
                b'-' if next == Some(b'-') => {
                    state = State::Line;
                    i += 1;
                }
                b'/' if next == Some(b'*') => {
                    state = State::Block;
                    i += 1;
                }
                _ => {}
            },
            // A doubled quote inside a literal is an escaped quote: the state stays.
            State::Single if b == b'\'' => {
                if next == Some(b'\'') {
                    i += 1;
                } else {
                    state = State::Code;
                }
            }
            State::Double if b == b'"' => {
                if next == Some(b'"') {
                    i += 1;
                } else {
                    state = State::Code;
                }
            }
            State::Backtick if b == b'`' => state = State::Code,
            State::Line if b == b'\n' => state = State::Code,
            State::Block if b == b'*' && next == Some(b'/') => {
                state = State::Code;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// `sql` with its `?` placeholders (see [`placeholder_positions`]) numbered `$1..$n`, for
/// DataFusion; everything else is unchanged.
pub fn to_dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut last = 0;
    for (n, pos) in placeholder_positions(sql).into_iter().enumerate() {
        out.push_str(&sql[last..pos]);
        out.push('$');
        out.push_str(&(n + 1).to_string());
        last = pos + 1;
    }
    out.push_str(&sql[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn query() -> QueryFile {
        QueryFile::parse(
            Path::new("user_lookup.sql"),
            "-- name: user_lookup\n-- description: d\n-- params: since:timestamp, user:string, user:string\n\
             SELECT 1 FROM iam_events WHERE event_time >= ? AND (user_name = ? OR user_arn = ?)",
        )
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 10, 12, 0, 0).unwrap()
    }

    #[test]
    fn binds_days_and_params() {
        let b = Bindings::from_args(&query(), Some(2), &["user=alice=x".into()], now()).unwrap();
        assert_eq!(
            b.positional(),
            &[
                ParamValue::Timestamp(Utc.with_ymd_and_hms(2024, 5, 8, 12, 0, 0).unwrap()),
                ParamValue::String("alice=x".into()),
                ParamValue::String("alice=x".into()),
            ]
        );
        assert_eq!(
            b.athena_parameters(),
            vec![
                "TIMESTAMP '2024-05-08 12:00:00.000'",
                "'alice=x'",
                "'alice=x'"
            ]
        );
        let b = Bindings::from_args(
            &query(),
            None,
            &["user=x".into(), "since=2024-05-01".into()],
            now(),
        )
        .unwrap();
        assert_eq!(
            b.positional()[0].to_scalar(),
            ScalarValue::TimestampMillisecond(Some(1_714_521_600_000), None)
        );
        let b = Bindings::from_args(&query(), None, &["user=x".into()], now()).unwrap();
        assert_eq!(
            b.positional()[0],
            ParamValue::Timestamp(Utc.with_ymd_and_hms(2024, 5, 3, 12, 0, 0).unwrap())
        );
    }

    #[test]
    fn param_errors_list_the_params() {
        let e = Bindings::from_args(&query(), None, &["usr=x".into()], now())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "query user_lookup has no parameter \"usr\"; its parameters are: \
             since (timestamp, set by --days), user (string)"
        );
        let e = Bindings::from_args(&query(), None, &[], now())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("query user_lookup needs --param user=VALUE; its parameters are"));
        let e = Bindings::from_args(
            &query(),
            Some(3),
            &["user=x".into(), "since=2024-01-01".into()],
            now(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
        let e = Bindings::from_args(
            &query(),
            None,
            &["user=x".into(), "since=yesterday".into()],
            now(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not a timestamp"), "{e}");
        let e = Bindings::from_args(&query(), None, &["user".into()], now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected NAME=VALUE"), "{e}");
    }

    #[test]
    fn athena_literals_double_quotes() {
        assert_eq!(
            ParamValue::String("x' OR '1'='1".into()).to_athena_literal(),
            "'x'' OR ''1''=''1'"
        );
        let t = Utc.timestamp_millis_opt(1_714_521_600_123).unwrap();
        assert_eq!(
            ParamValue::Timestamp(t).to_athena_literal(),
            "TIMESTAMP '2024-05-01 00:00:00.123'"
        );
    }

    #[test]
    fn timestamps_parse() {
        let t = |s| parse_timestamp(s).map(|t| t.to_rfc3339());
        assert_eq!(t("2024-05-01"), Some("2024-05-01T00:00:00+00:00".into()));
        assert_eq!(
            t("2024-05-01 10:30"),
            Some("2024-05-01T10:30:00+00:00".into())
        );
        assert_eq!(
            t("2024-05-01T10:30:00+02:00"),
            Some("2024-05-01T08:30:00+00:00".into())
        );
        assert_eq!(t("soon"), None);
    }
}
