//! A [`QueryResult`] as a terminal table, JSON or CSV.
//!
//! Cells come from CloudTrail and are attacker-controlled (user names, user agents, request
//! fields):
//! - table: every cell goes through [`iamtrail_core::alert_text::escape_data`] (control
//!   characters, ANSI escapes and line breaks shown escaped, long values cut), the same
//!   escaping as the CLI's other tables (`iamtrail::render::sanitize`);
//! - JSON: serde_json escapes everything that needs it;
//! - CSV: RFC 4180 quoting, and cells that a spreadsheet would take for a formula (starting
//!   with `=`, `+`, `-`, `@`, tab or carriage return) get a leading `'`, unless the whole cell
//!   is a plain number (so `-5` stays `-5`).

use std::fmt;
use std::str::FromStr;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, ContentArrangement, Table};
use iamtrail_core::alert_text::escape_data;
use serde_json::{Number, Value};

use crate::{ColumnType, QueryResult};

/// The output formats of `iamtrail query run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// A terminal table.
    Table,
    /// A JSON array of objects.
    Json,
    /// CSV with a header row.
    Csv,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "json" => Ok(OutputFormat::Json),
            "csv" => Ok(OutputFormat::Csv),
            other => Err(format!("unknown format {other:?}: use table, json or csv")),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Table => "table",
            OutputFormat::Json => "json",
            OutputFormat::Csv => "csv",
        })
    }
}

/// The longest cell shown in a table, in characters (longer values end with `…`).
pub const DEFAULT_MAX_CELL_CHARS: usize = 80;

/// A comfy-table of the rows: header in cyan, numbers right-aligned, NULL as an empty cell,
/// every cell sanitised and cut to `max_cell_chars`. Colour follows comfy-table's rule (only
/// when stdout is a terminal).
pub fn render_table(result: &QueryResult, max_cell_chars: usize) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(
        result
            .columns
            .iter()
            .map(|h| Cell::new(escape_data(h, max_cell_chars)).fg(Color::Cyan)),
    );
    for row in &result.rows {
        table.add_row(row.iter().enumerate().map(|(i, cell)| {
            let numeric = result
                .column_types
                .get(i)
                .copied()
                .is_some_and(ColumnType::is_numeric);
            let c = Cell::new(
                cell.as_deref()
                    .map(|v| escape_data(v, max_cell_chars))
                    .unwrap_or_default(),
            );
            if numeric {
                c.set_alignment(CellAlignment::Right)
            } else {
                c
            }
        }));
    }
    table
}

fn json_value(cell: Option<&str>, kind: ColumnType) -> Value {
    let Some(text) = cell else {
        return Value::Null;
    };
    let typed = match kind {
        ColumnType::Integer => text
            .parse::<i64>()
            .ok()
            .map(Number::from)
            .or_else(|| text.parse::<u64>().ok().map(Number::from))
            .map(Value::Number),
        ColumnType::Float => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
        ColumnType::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    typed.unwrap_or_else(|| Value::String(text.to_string()))
}

/// The rows as a JSON array of objects (`{"column": value, ...}`, keys in column order);
/// numbers and booleans typed from the column kinds, NULL as `null`, everything else a
/// string. Pretty-printed, one key per line.
pub fn render_json(result: &QueryResult) -> String {
    // Written by hand rather than through serde_json::Map, which would sort the keys.
    let quote = |s: &str| Value::String(s.to_string()).to_string();
    let mut out = String::from("[");
    for (r, row) in result.rows.iter().enumerate() {
        out.push_str(if r == 0 { "\n  {" } else { ",\n  {" });
        for (i, name) in result.columns.iter().enumerate() {
            let kind = result
                .column_types
                .get(i)
                .copied()
                .unwrap_or(ColumnType::Text);
            let value = json_value(row.get(i).and_then(|c| c.as_deref()), kind);
            out.push_str(if i == 0 { "\n    " } else { ",\n    " });
            out.push_str(&quote(name));
            out.push_str(": ");
            out.push_str(&value.to_string());
        }
        out.push_str(if result.columns.is_empty() {
            "}"
        } else {
            "\n  }"
        });
    }
    out.push_str(if result.rows.is_empty() { "]" } else { "\n]" });
    out
}

/// One CSV field: formula-looking text neutralised with a leading `'`, then quoted when it
/// holds a comma, quote, CR or LF (quotes doubled), per RFC 4180.
pub fn csv_field(value: &str) -> String {
    let risky = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let is_number = value.trim() == value && value.parse::<f64>().is_ok_and(f64::is_finite);
    let value = if risky && !is_number {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The rows as CSV: a header line, then one line per row, CRLF line ends (RFC 4180), NULL as
/// an empty field.
pub fn render_csv(result: &QueryResult) -> String {
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(
        result.columns.iter().map(|c| csv_field(c)).collect(),
        &mut out,
    );
    for row in &result.rows {
        line(
            row.iter()
                .map(|c| c.as_deref().map(csv_field).unwrap_or_default())
                .collect(),
            &mut out,
        );
    }
    out
}

/// A size as people read it: `812 B`, `4.2 KB`, `13.0 MB`, `1.50 GB` (powers of 1024).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if value < 10.0 {
        format!("{value:.2} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result() -> QueryResult {
        QueryResult {
            columns: vec!["user_name".into(), "events".into(), "ok".into()],
            column_types: vec![ColumnType::Text, ColumnType::Integer, ColumnType::Boolean],
            rows: vec![
                vec![
                    Some("=HYPERLINK(\"x\")".into()),
                    Some("-5".into()),
                    Some("true".into()),
                ],
                vec![Some("a,b\nc".into()), None, None],
                vec![
                    Some("\u{1b}[31mred".into()),
                    Some("12".into()),
                    Some("false".into()),
                ],
            ],
            bytes_scanned: None,
            cost_usd: None,
            engine_time: None,
            execution_id: None,
            local_scan: None,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn csv_quotes_and_neutralises_formulas() {
        assert_eq!(
            render_csv(&result()),
            "user_name,events,ok\r\n\"'=HYPERLINK(\"\"x\"\")\",-5,true\r\n\"a,b\nc\",,\r\n\u{1b}[31mred,12,false\r\n"
        );
        assert_eq!(csv_field("+1+1"), "'+1+1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("-2.5"), "-2.5");
        assert_eq!(csv_field("-inf"), "'-inf");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn json_types_values() {
        let text = render_json(&result());
        assert!(
            text.starts_with("[\n  {\n    \"user_name\": \"=HYPERLINK(\\\"x\\\")\",\n    \"events\": -5,\n    \"ok\": true\n  },"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"user_name": "=HYPERLINK(\"x\")", "events": -5, "ok": true},
                {"user_name": "a,b\nc", "events": null, "ok": null},
                {"user_name": "\u{1b}[31mred", "events": 12, "ok": false},
            ])
        );
    }

    #[test]
    fn json_of_nothing_is_an_empty_array() {
        let mut r = result();
        r.rows.clear();
        assert_eq!(render_json(&r), "[]");
    }

    #[test]
    fn table_escapes_control_characters() {
        let mut t = render_table(&result(), 80);
        t.force_no_tty();
        let text = t.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("red"), "{text}");
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MB");
        assert_eq!(human_bytes(1536 * 1024 * 1024), "1.50 GB");
    }
}
