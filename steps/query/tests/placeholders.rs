//! The `?` → `$n` conversion for DataFusion: only placeholders in code count.

use iamtrail_query::params::{placeholder_positions, to_dollar_placeholders};

#[test]
fn numbers_placeholders_in_code() {
    assert_eq!(
        to_dollar_placeholders("SELECT * FROM iam_events WHERE event_time >= ? AND user_name = ?"),
        "SELECT * FROM iam_events WHERE event_time >= $1 AND user_name = $2"
    );
    assert_eq!(to_dollar_placeholders("f(?,?)"), "f($1,$2)");
}

#[test]
fn ignores_question_marks_in_string_literals() {
    assert_eq!(
        to_dollar_placeholders("SELECT 'why?', 'it''s ?' FROM t WHERE a = ? AND b LIKE '%?%'"),
        "SELECT 'why?', 'it''s ?' FROM t WHERE a = $1 AND b LIKE '%?%'"
    );
    // An escaped quote right before the closing one.
    assert_eq!(
        to_dollar_placeholders("SELECT '?''' , ?"),
        "SELECT '?''' , $1"
    );
}

#[test]
fn ignores_question_marks_in_comments_and_identifiers() {
    let sql = "-- who did it? when?\nSELECT \"odd?col\" /* why? ? */ FROM t -- trailing ?\nWHERE a = ? -- and ?\n  AND b = ?";
    assert_eq!(
        to_dollar_placeholders(sql),
        "-- who did it? when?\nSELECT \"odd?col\" /* why? ? */ FROM t -- trailing ?\nWHERE a = $1 -- and ?\n  AND b = $2"
    );
    assert_eq!(placeholder_positions(sql).len(), 2);
}

#[test]
fn a_single_dash_or_slash_is_code() {
    assert_eq!(
        to_dollar_placeholders("SELECT a - ? / ? FROM t"),
        "SELECT a - $1 / $2 FROM t"
    );
}

#[test]
fn keeps_non_ascii_text() {
    assert_eq!(
        to_dollar_placeholders("SELECT 'é?ü' AS «x», ? -- ö?\n"),
        "SELECT 'é?ü' AS «x», $1 -- ö?\n"
    );
}
