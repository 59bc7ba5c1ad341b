//! The query catalog: `queries/*.sql`.
//!
//! Each file starts with header comments, then one `SELECT` (or `WITH ... SELECT`) over
//! `iam_events` in the subset of SQL that Athena (Trino) and DataFusion share:
//!
//! ```sql
//! -- name: user_lookup
//! -- description: Everything one user did in the window
//! -- params: since:timestamp, user:string
//! SELECT event_time, event_name FROM iam_events WHERE event_time >= ? AND user_name = ?
//! ```
//!
//! `params` lists the positional `?` parameters in order (`since` first); kinds are `timestamp`,
//! `string` and `day` (only `from_day` and `to_day`, the UTC dates of `since` and of now, bound
//! as `YYYYMMDD` for the partition predicate `year * 10000 + month * 100 + day BETWEEN ? AND ?`
//! that keeps a query to the days of its window). A parameter used twice is listed twice (the
//! same name binds both). Other comment lines in the header are ignored. The name must be the
//! file's stem.

use std::path::{Path, PathBuf};

use crate::params::{placeholder_positions, Param, ParamKind, FROM_DAY, TO_DAY};
use crate::{Error, Result};

/// One query of the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryFile {
    /// `-- name:` (also the file's stem).
    pub name: String,
    /// `-- description:` (continuation lines `--   more` are joined with a space).
    pub description: String,
    /// `-- params:`, one per `?` in order.
    pub params: Vec<Param>,
    /// The SQL after the header, without a trailing `;`, with its `?` placeholders.
    pub sql: String,
    /// The file it was read from.
    pub path: PathBuf,
}

impl QueryFile {
    /// The distinct parameters in first-use order (a name listed twice appears once).
    pub fn distinct_params(&self) -> Vec<&Param> {
        let mut out: Vec<&Param> = Vec::new();
        for p in &self.params {
            if !out.iter().any(|q| q.name == p.name) {
                out.push(p);
            }
        }
        out
    }

    /// `since:timestamp, user:string` (distinct parameters), or `-` when there are none.
    pub fn params_summary(&self) -> String {
        let list = self.distinct_params();
        if list.is_empty() {
            return "-".into();
        }
        list.iter()
            .map(|p| format!("{}:{}", p.name, p.kind))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parses a query file's text. `path` names the file in errors; its stem must equal the
    /// header's name.
    pub fn parse(path: &Path, text: &str) -> Result<QueryFile> {
        let err = |message: String| Error::Catalog {
            file: path.to_path_buf(),
            message,
        };
        let mut name: Option<String> = None;
        let mut description: Option<String> = None;
        let mut params: Option<Vec<Param>> = None;
        let mut last_key: Option<&str> = None;
        let mut body_start = text.len();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                offset += line.len();
                last_key = None;
                continue;
            }
            let Some(comment) = trimmed.strip_prefix("--") else {
                body_start = offset;
                break;
            };
            offset += line.len();
            let comment_text = comment.trim();
            let (key, value) = match comment_text.split_once(':') {
                Some((k, v)) if matches!(k.trim(), "name" | "description" | "params") => {
                    (k.trim(), v.trim())
                }
                _ => {
                    // A continuation of the description (`--   more words`), or an ordinary comment.
                    if last_key == Some("description") && comment.starts_with("  ") {
                        if let Some(d) = description.as_mut() {
                            d.push(' ');
                            d.push_str(comment_text);
                        }
                    } else {
                        last_key = None;
                    }
                    continue;
                }
            };
            last_key = Some(key);
            let duplicate = match key {
                "name" => name.replace(value.to_string()).is_some(),
                "description" => description.replace(value.to_string()).is_some(),
                _ => params
                    .replace(parse_params(value).map_err(|m| err(format!("`-- params:` {m}")))?)
                    .is_some(),
            };
            if duplicate {
                return Err(err(format!("the header has two `-- {key}:` lines")));
            }
        }
        let header_help =
            "each query file starts with `-- name: NAME`, `-- description: TEXT` and \
                           `-- params: since:timestamp[, NAME:string|timestamp ...]` lines";
        let name = name.ok_or_else(|| err(format!("missing `-- name:` ({header_help})")))?;
        let description = description
            .filter(|d| !d.is_empty())
            .ok_or_else(|| err(format!("missing `-- description:` ({header_help})")))?;
        let params = params.ok_or_else(|| err(format!("missing `-- params:` ({header_help})")))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(err(format!(
                "query name {name:?} must be lowercase letters, digits and _"
            )));
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem != name {
            return Err(err(format!(
                "`-- name: {name}` does not match the file name (expected `-- name: {stem}`)"
            )));
        }
        let mut sql = text[body_start..].trim().to_string();
        while sql.ends_with(';') {
            sql.pop();
            sql = sql.trim_end().to_string();
        }
        if sql.is_empty() {
            return Err(err("no SQL after the header".into()));
        }
        let first_word = sql
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if first_word != "SELECT" && first_word != "WITH" {
            return Err(err(format!(
                "the SQL must be one SELECT (or WITH ... SELECT); it starts with {first_word:?}"
            )));
        }
        let placeholders = placeholder_positions(&sql).len();
        if placeholders != params.len() {
            return Err(err(format!(
                "the SQL has {placeholders} `?` placeholder(s) but `-- params:` lists {} ({}); \
                 list one parameter per `?`, in order (repeat a name to bind it twice)",
                params.len(),
                params
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for (i, p) in params.iter().enumerate() {
            if let Some(q) = params[..i].iter().find(|q| q.name == p.name) {
                if q.kind != p.kind {
                    return Err(err(format!(
                        "parameter {} is listed as both {} and {}",
                        p.name, q.kind, p.kind
                    )));
                }
            }
            if p.name == "since" && p.kind != ParamKind::Timestamp {
                return Err(err("parameter `since` must be a timestamp".into()));
            }
            if (p.name == FROM_DAY || p.name == TO_DAY) && p.kind != ParamKind::Day {
                return Err(err(format!("parameter `{}` must be a day", p.name)));
            }
        }
        Ok(QueryFile {
            name,
            description,
            params,
            sql,
            path: path.to_path_buf(),
        })
    }
}

fn parse_params(value: &str) -> std::result::Result<Vec<Param>, String> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("none") || value == "-" {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            let (name, kind) = item.split_once(':').ok_or_else(|| {
                format!("{item:?} is not NAME:KIND (KIND is timestamp or string)")
            })?;
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{name:?} is not a valid parameter name"));
            }
            let kind = match kind.trim().to_ascii_lowercase().as_str() {
                "timestamp" => ParamKind::Timestamp,
                "string" => ParamKind::String,
                "day" if name == FROM_DAY || name == TO_DAY => ParamKind::Day,
                "day" => {
                    return Err(format!(
                        "parameter {name} has kind day; only {FROM_DAY} (the date of since) and \
                         {TO_DAY} (the date of now) are days"
                    ))
                }
                other => {
                    return Err(format!(
                        "parameter {name} has kind {other:?}; kinds are timestamp, string and day"
                    ))
                }
            };
            Ok(Param {
                name: name.to_string(),
                kind,
            })
        })
        .collect()
}

/// Reads every `*.sql` file of `dir` (not recursive), sorted by name. Any ill-formed file is
/// an error naming it; so are two files with the same name.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<QueryFile>> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        context: format!("cannot read the query directory {}", dir.display()),
        source,
    })?;
    let mut queries = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            context: format!("cannot read the query directory {}", dir.display()),
            source,
        })?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?;
        queries.push(QueryFile::parse(&path, &text)?);
    }
    queries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(queries)
}

include!(concat!(env!("OUT_DIR"), "/embedded_queries.rs"));

/// The queries built into the binary: the repository's `queries/*.sql` at build time, parsed
/// and checked like [`load_dir`]'s (each named `queries/NAME.sql`), sorted by name. This is
/// what `iamtrail query` uses unless it is given `--queries DIR`, so an installed binary works
/// from any directory.
pub fn embedded() -> Result<Vec<QueryFile>> {
    let mut queries = EMBEDDED_QUERIES
        .iter()
        .map(|(file, text)| QueryFile::parse(&Path::new("queries").join(file), text))
        .collect::<Result<Vec<_>>>()?;
    queries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(queries)
}

/// The query named `name`, or an error listing a close name ("did you mean") or all names.
pub fn find<'a>(queries: &'a [QueryFile], name: &str) -> Result<&'a QueryFile> {
    if let Some(q) = queries.iter().find(|q| q.name == name) {
        return Ok(q);
    }
    let wanted = name.to_ascii_lowercase().replace('-', "_");
    if let Some(q) = queries.iter().find(|q| q.name == wanted) {
        return Ok(q);
    }
    let names: Vec<&str> = queries.iter().map(|q| q.name.as_str()).collect();
    if names.is_empty() {
        return Err(Error::NotFound(format!(
            "no query named {name:?}: the query directory has no queries"
        )));
    }
    match suggest(&wanted, &names) {
        Some(s) => Err(Error::NotFound(format!(
            "no query named {name:?}; did you mean {s:?}? (`iamtrail query list` shows them all)"
        ))),
        None => Err(Error::NotFound(format!(
            "no query named {name:?}; the queries are: {}",
            names.join(", ")
        ))),
    }
}

/// The closest of `names` to `wanted`: a unique name containing it, else the smallest edit
/// distance if it is small for the length.
pub fn suggest<'a>(wanted: &str, names: &[&'a str]) -> Option<&'a str> {
    if wanted.is_empty() {
        return None;
    }
    let containing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.contains(wanted))
        .collect();
    if containing.len() == 1 {
        return Some(containing[0]);
    }
    let (best, distance) = names
        .iter()
        .map(|n| (*n, levenshtein(wanted, n)))
        .min_by_key(|(_, d)| *d)?;
    let limit = (wanted.chars().count() / 3).max(2);
    (distance <= limit).then_some(best)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<QueryFile> {
        QueryFile::parse(Path::new(&format!("queries/{name}.sql")), text)
    }

    #[test]
    fn parses_a_header_and_body() {
        let q = parse(
            "user_lookup",
            "-- name: user_lookup\n-- description: One user's activity\n--   in the window\n\
             -- params: since:timestamp, user:string\n-- note: anything\n\n\
             SELECT * FROM iam_events\nWHERE event_time >= ? AND user_name = ?;\n",
        )
        .unwrap();
        assert_eq!(q.name, "user_lookup");
        assert_eq!(q.description, "One user's activity in the window");
        assert_eq!(q.params_summary(), "since:timestamp, user:string");
        assert_eq!(
            q.sql,
            "SELECT * FROM iam_events\nWHERE event_time >= ? AND user_name = ?"
        );
    }

    #[test]
    fn header_errors_name_the_file() {
        let e = parse("x", "SELECT 1").unwrap_err().to_string();
        assert!(e.starts_with("queries/x.sql: missing `-- name:`"), "{e}");
        let e = parse("x", "-- name: x\n-- params: since:timestamp\nSELECT ?")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing `-- description:`"), "{e}");
        let e = parse("x", "-- name: x\n-- description: d\nSELECT 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing `-- params:`"), "{e}");
        let e = parse(
            "x",
            "-- name: y\n-- description: d\n-- params: since:timestamp\nSELECT ?",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not match the file name"), "{e}");
        let e = parse(
            "x",
            "-- name: x\n-- description: d\n-- params: since:date\nSELECT ?",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kinds are timestamp, string and day"), "{e}");
        let e = parse(
            "x",
            "-- name: x\n-- description: d\n-- params: since:timestamp\nSELECT 1 WHERE a = '?'",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("0 `?` placeholder(s)"), "{e}");
        let e = parse(
            "x",
            "-- name: x\n-- description: d\n-- params: since:timestamp\nDELETE FROM t WHERE ?",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("one SELECT"), "{e}");
    }

    #[test]
    fn embedded_queries_are_the_repository_files() {
        let embedded = embedded().expect("every embedded query parses");
        let on_disk = load_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../queries"))
            .expect("the repository's queries parse");
        assert!(!embedded.is_empty());
        let names = |qs: &[QueryFile]| {
            qs.iter()
                .map(|q| (q.name.clone(), q.sql.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&embedded), names(&on_disk));
    }

    #[test]
    fn find_suggests() {
        let mk = |n: &str| QueryFile {
            name: n.into(),
            description: "d".into(),
            params: vec![],
            sql: "SELECT 1".into(),
            path: PathBuf::from(n),
        };
        let qs = vec![mk("failed_auth"), mk("root_usage"), mk("user_lookup")];
        assert_eq!(find(&qs, "root-usage").unwrap().name, "root_usage");
        let e = find(&qs, "user_lokup").unwrap_err().to_string();
        assert!(e.contains("did you mean \"user_lookup\""), "{e}");
        let e = find(&qs, "failed").unwrap_err().to_string();
        assert!(e.contains("did you mean \"failed_auth\""), "{e}");
        let e = find(&qs, "zzz").unwrap_err().to_string();
        assert!(
            e.contains("the queries are: failed_auth, root_usage, user_lookup"),
            "{e}"
        );
    }
}
